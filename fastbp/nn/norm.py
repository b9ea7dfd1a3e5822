"""Normalisation and dropout modules: BatchNorm1d/2d, LayerNorm, GroupNorm, Dropout, Dropout2d.

BatchNorm keeps ``running_mean``, ``running_var`` and ``num_batches_tracked`` as buffers (so they
are in ``state_dict``) and switches between batch and running statistics with ``train()`` /
``eval()``; Dropout is the identity in evaluation mode. Affine parameters start at weight 1,
bias 0, as in PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.tensor import Tensor
from . import functional_norm as Fn
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "Dropout", "Dropout2d", "GroupNorm", "LayerNorm"]


class _BatchNorm(Module):
    _ranks: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.bias = Parameter(np.zeros(num_features, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, dtype)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, dtype)))
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), np.int64)))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, input: Tensor | np.ndarray) -> Tensor:
        """Normalise ``input`` with batch statistics (training) or running ones (eval)."""
        ndim = np.ndim(getattr(input, "data", input))
        if ndim not in self._ranks:
            raise ValueError(
                f"{type(self).__name__}: expected a {' or '.join(f'{r}-D' for r in self._ranks)}"
                f" input, got shape {np.shape(getattr(input, 'data', input))}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data[...] += 1
            if self.momentum is None:  # a cumulative moving average, as PyTorch
                factor = 1.0 / float(self.num_batches_tracked.data)
        use_batch = self.training or self.running_mean is None
        return Fn.batch_norm(
            input,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L), PyTorch's ``nn.BatchNorm1d``.

    Parameters
    ----------
    num_features : int
        C.
    eps : float, default 1e-5
    momentum : float or None, default 0.1
        None: cumulative average of all batches.
    affine : bool, default True
    track_running_stats : bool, default True
    dtype : dtype, default np.float32

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> bn = nn.BatchNorm1d(3)
    >>> bn(fb.randn(8, 3)).shape, sorted(bn.state_dict())
    ((8, 3), ['bias', 'num_batches_tracked', 'running_mean', 'running_var', 'weight'])
    """

    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W), PyTorch's ``nn.BatchNorm2d``.

    Parameters
    ----------
    num_features, eps, momentum, affine, track_running_stats, dtype
        As :class:`BatchNorm1d`.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.BatchNorm2d(4).eval()(fb.zeros(1, 4, 2, 2)).shape
    (1, 4, 2, 2)
    """

    _ranks = (4,)


class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape``, PyTorch's ``nn.LayerNorm``.

    Parameters
    ----------
    normalized_shape : int or sequence of int
    eps : float, default 1e-5
    elementwise_affine : bool, default True
    bias : bool, default True
    dtype : dtype, default np.float32

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.LayerNorm(5)(fb.randn(2, 5)).shape
    (2, 5)
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        shape = (
            (int(normalized_shape),)
            if isinstance(normalized_shape, (int, np.integer))
            else tuple(int(n) for n in normalized_shape)
        )
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        self.weight = Parameter(np.ones(shape, dtype)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(shape, dtype)) if elementwise_affine and bias else None

    def forward(self, input: Tensor | np.ndarray) -> Tensor:
        """Normalise ``input`` over its trailing axes."""
        return Fn.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


class GroupNorm(Module):
    """Group normalisation, PyTorch's ``nn.GroupNorm``.

    Parameters
    ----------
    num_groups : int
    num_channels : int
        Divisible by ``num_groups``.
    eps : float, default 1e-5
    affine : bool, default True
    dtype : dtype, default np.float32

    Raises
    ------
    ValueError
        If ``num_channels`` is not divisible by ``num_groups``.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.GroupNorm(2, 4)(fb.randn(3, 4, 5)).shape
    (3, 4, 5)
    """

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(
                f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups "
                f"({num_groups})"
            )
        self.num_groups, self.num_channels, self.eps, self.affine = (
            num_groups,
            num_channels,
            eps,
            affine,
        )
        self.weight = Parameter(np.ones(num_channels, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_channels, dtype)) if affine else None

    def forward(self, input: Tensor | np.ndarray) -> Tensor:
        """Normalise ``input`` per sample and group."""
        return Fn.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class Dropout(Module):
    """Zero elements with probability ``p`` in training mode, PyTorch's ``nn.Dropout``.

    Parameters
    ----------
    p : float, default 0.5
    inplace : bool, default False
        Accepted for compatibility.

    Raises
    ------
    ValueError
        If ``p`` is not in [0, 1].

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> drop = nn.Dropout(0.5).eval()
    >>> bool((drop(fb.ones(4)).data == 1).all())
    True
    """

    _fn = staticmethod(Fn.dropout)

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p = Fn._check_p(type(self).__name__, p)
        self.inplace = inplace

    def forward(self, input: Tensor | np.ndarray) -> Tensor:
        """Apply dropout when training; the identity in eval mode."""
        return self._fn(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Zero whole channels with probability ``p`` in training mode, PyTorch's ``nn.Dropout2d``.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.Dropout2d(0.2)(fb.ones(2, 3, 4, 4)).shape
    (2, 3, 4, 4)
    """

    _fn = staticmethod(Fn.dropout2d)
