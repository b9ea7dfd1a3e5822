"""RMSprop, as PyTorch's (centered, momentum, weight decay)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..core.tensor import Tensor
from .optimizer import (
    Optimizer,
    _check_range,
    _l2,
)


class RMSprop(Optimizer):
    """RMSprop with PyTorch's rule (optionally centered, with momentum).

    Per parameter ``w`` with gradient ``g``::

        g ← g + λ·w
        v ← α·v + (1 − α)·g²
        ḡ ← α·ḡ + (1 − α)·g,  d = sqrt(v − ḡ²) + eps   (centered)
        d = sqrt(v) + eps                                (otherwise)
        b ← μ·b + g/d,  w ← w − lr·b                     (momentum μ > 0)
        w ← w − lr·g/d                                   (otherwise)

    Parameters
    ----------
    params : iterable of Tensor or of dicts (parameter groups)
    lr : float, default 1e-2
    alpha : float, default 0.99
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum : float, default 0
    centered : bool, default False
    maximize : bool, default False

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import RMSprop
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = RMSprop([w], lr=0.01)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)  # 1 - 0.01 * 2 / sqrt(0.01 * 4)
    0.9
    """

    # All three buffers always exist, so that momentum or centered can be turned on later.
    _state_names = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ):
        who = "RMSprop"
        _check_range(who, "learning rate lr", lr, 0.0)
        _check_range(who, "alpha", alpha, 0.0)
        _check_range(who, "eps", eps, 0.0)
        _check_range(who, "weight_decay", weight_decay, 0.0)
        _check_range(who, "momentum", momentum, 0.0)
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": bool(centered),
            "maximize": bool(maximize),
        }
        super().__init__(params, defaults)

    def _scalars(self, group, count):
        return (
            float(group["lr"]),
            float(group["alpha"]),
            float(group["eps"]),
            float(group["weight_decay"]),
            float(group["momentum"]),
            bool(group["centered"]),
        )

    def _apply(self, param, grad, state, scalars):
        lr, alpha, eps, wd, momentum, centered = scalars
        square_avg, buf, grad_avg = state
        g = _l2(param, grad, wd)
        square_avg *= alpha
        square_avg += (1.0 - alpha) * g * g
        if centered:
            grad_avg += (1.0 - alpha) * (g - grad_avg)
            avg = np.sqrt(square_avg - grad_avg * grad_avg)
        else:
            avg = np.sqrt(square_avg)
        avg += eps
        if momentum > 0:
            buf *= momentum
            buf += g / avg
            param -= lr * buf
        else:
            param -= lr * (g / avg)

    def _export_buffer(self, name, view, shape, group=None):
        group = self.param_groups[0] if group is None else group
        if name == "momentum_buffer" and group["momentum"] == 0:
            return None
        if name == "grad_avg" and not group["centered"]:
            return None
        return view.reshape(shape).copy()
