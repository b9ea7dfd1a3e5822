"""Adamax, as PyTorch's."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..core.tensor import Tensor
from .optimizer import (
    Optimizer,
    _adam_like_defaults,
    _l2,
)


class Adamax(Optimizer):
    """Adamax (Adam with the infinity norm), PyTorch's rule.

    At step ``t``::

        g ← g + λ·w
        m ← β1·m + (1 − β1)·g
        u ← max(β2·u, |g| + eps)
        w ← w − lr/(1 − β1ᵗ) · m/u

    Parameters
    ----------
    params : iterable of Tensor or of dicts (parameter groups)
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    maximize : bool, default False

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import Adamax
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = Adamax([w], lr=0.1)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)
    0.9
    """

    _state_names = ("exp_avg", "exp_inf")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ):
        defaults = _adam_like_defaults("Adamax", lr, betas, eps, weight_decay)
        defaults["maximize"] = bool(maximize)
        super().__init__(params, defaults)

    def _scalars(self, group, count):
        beta1, beta2 = group["betas"]
        step = count + 1
        clr = float(group["lr"]) / (1.0 - float(beta1) ** step)
        return clr, float(beta1), float(beta2), float(group["eps"]), float(group["weight_decay"])

    def _apply(self, param, grad, state, scalars):
        clr, beta1, beta2, eps, wd = scalars
        exp_avg, exp_inf = state
        g = _l2(param, grad, wd)
        exp_avg += (1.0 - beta1) * (g - exp_avg)
        exp_inf *= beta2
        np.maximum(exp_inf, np.abs(g) + eps, out=exp_inf)
        param -= clr * (exp_avg / exp_inf)
