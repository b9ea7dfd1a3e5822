"""RAdam, as PyTorch's."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..core.tensor import Tensor
from .optimizer import (
    Optimizer,
    _adam_like_defaults,
)


class RAdam(Optimizer):
    """RAdam (rectified Adam), PyTorch's rule.

    At step ``t``, with ``ρ∞ = 2/(1 − β2) − 1`` and ``ρₜ = ρ∞ − 2t·β2ᵗ/(1 − β2ᵗ)``::

        g ← g + λ·w                (or w ← w − lr·λ·w if decoupled_weight_decay)
        m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²
        m̂ = m/(1 − β1ᵗ)
        w ← w − lr·m̂·r·sqrt(1 − β2ᵗ)/(sqrt(v) + eps)   if ρₜ > 5, with
            r = sqrt((ρₜ − 4)(ρₜ − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρₜ))
        w ← w − lr·m̂                                    otherwise

    Parameters
    ----------
    params : iterable of Tensor or of dicts (parameter groups)
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    decoupled_weight_decay : bool, default False
    maximize : bool, default False

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import RAdam
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = RAdam([w], lr=0.1)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)  # early steps are plain momentum SGD: 1 - 0.1 * 2
    0.8
    """

    _state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ):
        defaults = _adam_like_defaults("RAdam", lr, betas, eps, weight_decay)
        defaults.update(
            decoupled_weight_decay=bool(decoupled_weight_decay), maximize=bool(maximize)
        )
        super().__init__(params, defaults)

    def _scalars(self, group, count):
        beta1, beta2 = (float(b) for b in group["betas"])
        step = count + 1
        bc1, bc2 = 1.0 - beta1**step, 1.0 - beta2**step
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        rho_t = rho_inf - 2.0 * step * beta2**step / bc2
        rect = None
        if rho_t > 5.0:
            rect = math.sqrt(
                (rho_t - 4.0)
                * (rho_t - 2.0)
                * rho_inf
                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
            )
        return (
            float(group["lr"]),
            beta1,
            beta2,
            float(group["eps"]),
            float(group["weight_decay"]),
            bool(group["decoupled_weight_decay"]),
            bc1,
            bc2,
            rect,
        )

    def _apply(self, param, grad, state, scalars):
        lr, beta1, beta2, eps, wd, decoupled, bc1, bc2, rect = scalars
        exp_avg, exp_avg_sq = state
        g = grad
        if wd != 0:
            if decoupled:
                param *= 1.0 - lr * wd
            else:
                g = grad + wd * param
        exp_avg += (1.0 - beta1) * (g - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * g * g
        corrected = exp_avg / bc1
        if rect is None:
            param -= corrected * lr
        else:
            adaptive = math.sqrt(bc2) / (np.sqrt(exp_avg_sq) + eps)
            param -= corrected * lr * adaptive * rect
