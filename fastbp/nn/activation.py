"""Activation modules: one for every activation of :mod:`fastbp.nn.functional`.

Each holds its hyperparameters and calls the functional form; ``inplace`` is accepted
for PyTorch code, but the result is always a new tensor.

Example
-------
>>> import fastbp as fb
>>> from fastbp import nn
>>> nn.Sequential(nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 1))(fb.zeros(4, 2)).shape
(4, 1)
"""

from __future__ import annotations

from typing import Any

from ..core.tensor import Tensor
from . import functional as F
from .module import Module

__all__ = [
    "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Softplus", "Softsign",
    "Hardtanh", "ReLU6", "Hardsigmoid", "Hardswish", "LogSigmoid", "Softmin", "Softmax",
    "LogSoftmax",
]  # fmt: skip


class _Activation(Module):
    """An activation: ``forward`` is the functional form with the stored settings."""

    _fn: Any = None
    _settings: tuple[str, ...] = ()

    def forward(self, x: Any) -> Tensor:
        """Apply the activation elementwise."""
        return type(self)._fn(x, **{k: getattr(self, k) for k in self._settings})

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in self._settings)


class LeakyReLU(_Activation):
    """:func:`fastbp.nn.functional.leaky_relu` as a module.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.LeakyReLU(0.1)(fb.tensor([-1.0, 1.0]))
    tensor([-0.1,  1. ])
    """

    _fn = staticmethod(F.leaky_relu)
    _settings = ("negative_slope",)

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace


class ELU(_Activation):
    """:func:`fastbp.nn.functional.elu` as a module."""

    _fn = staticmethod(F.elu)
    _settings = ("alpha",)

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace


class SELU(_Activation):
    """:func:`fastbp.nn.functional.selu` as a module."""

    _fn = staticmethod(F.selu)

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace


class CELU(_Activation):
    """:func:`fastbp.nn.functional.celu` as a module."""

    _fn = staticmethod(F.celu)
    _settings = ("alpha",)

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace


class GELU(_Activation):
    """:func:`fastbp.nn.functional.gelu` as a module (``approximate='none'|'tanh'``)."""

    _fn = staticmethod(F.gelu)
    _settings = ("approximate",)

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate


class SiLU(_Activation):
    """:func:`fastbp.nn.functional.silu` as a module."""

    _fn = staticmethod(F.silu)

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace


class Mish(_Activation):
    """:func:`fastbp.nn.functional.mish` as a module."""

    _fn = staticmethod(F.mish)

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace


class Softplus(_Activation):
    """:func:`fastbp.nn.functional.softplus` as a module."""

    _fn = staticmethod(F.softplus)
    _settings = ("beta", "threshold")

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold


class Softsign(_Activation):
    """:func:`fastbp.nn.functional.softsign` as a module."""

    _fn = staticmethod(F.softsign)


class Hardtanh(_Activation):
    """:func:`fastbp.nn.functional.hardtanh` as a module."""

    _fn = staticmethod(F.hardtanh)
    _settings = ("min_val", "max_val")

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        if min_val > max_val:
            raise ValueError(f"Hardtanh: min_val ({min_val}) must not exceed max_val ({max_val})")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace


class ReLU6(_Activation):
    """:func:`fastbp.nn.functional.relu6` as a module."""

    _fn = staticmethod(F.relu6)

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace


class Hardsigmoid(_Activation):
    """:func:`fastbp.nn.functional.hardsigmoid` as a module."""

    _fn = staticmethod(F.hardsigmoid)

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace


class Hardswish(_Activation):
    """:func:`fastbp.nn.functional.hardswish` as a module."""

    _fn = staticmethod(F.hardswish)

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace


class LogSigmoid(_Activation):
    """:func:`fastbp.nn.functional.logsigmoid` as a module."""

    _fn = staticmethod(F.logsigmoid)


class Softmin(_Activation):
    """:func:`fastbp.nn.functional.softmin` along ``dim`` as a module."""

    _fn = staticmethod(F.softmin)
    _settings = ("dim",)

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim


def _softmax(x: Any, dim: int | None) -> Tensor:
    return F.softmax(x, axis=F._implicit_dim(x.ndim) if dim is None else dim)


def _log_softmax(x: Any, dim: int | None) -> Tensor:
    return F.log_softmax(x, axis=F._implicit_dim(x.ndim) if dim is None else dim)


class Softmax(_Activation):
    """``softmax`` along ``dim`` as a module.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.Softmax(dim=-1)(fb.zeros(1, 2))
    tensor([[0.5, 0.5]])
    """

    _fn = staticmethod(_softmax)
    _settings = ("dim",)

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim


class LogSoftmax(_Activation):
    """``log_softmax`` along ``dim`` as a module."""

    _fn = staticmethod(_log_softmax)
    _settings = ("dim",)

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim
