"""NAdam, as PyTorch's."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..core.tensor import Tensor
from .optimizer import (
    Optimizer,
    _adam_like_defaults,
    _check_range,
)


class NAdam(Optimizer):
    """NAdam (Adam with Nesterov momentum and momentum decay), PyTorch's rule.

    At step ``t``, with ``μₜ = β1·(1 − ½·0.96^(t·ψ))`` (``ψ = momentum_decay``)::

        g ← g + λ·w                (or w ← w − lr·λ·w if decoupled_weight_decay)
        m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²
        d = sqrt(v/(1 − β2ᵗ)) + eps
        w ← w − lr·(1 − μₜ)/(1 − Πᵢ≤ₜ μᵢ) · g/d − lr·μₜ₊₁/(1 − Πᵢ≤ₜ₊₁ μᵢ) · m/d

    Parameters
    ----------
    params : iterable of Tensor or of dicts (parameter groups)
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum_decay : float, default 4e-3
    decoupled_weight_decay : bool, default False
    maximize : bool, default False

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import NAdam
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = NAdam([w], lr=0.1)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> float(w.data[0]) < 1.0
    True
    """

    _state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ):
        defaults = _adam_like_defaults("NAdam", lr, betas, eps, weight_decay)
        _check_range("NAdam", "momentum_decay", momentum_decay, 0.0)
        defaults.update(
            momentum_decay=momentum_decay,
            decoupled_weight_decay=bool(decoupled_weight_decay),
            maximize=bool(maximize),
        )
        super().__init__(params, defaults)

    @staticmethod
    def _mu(beta1: float, psi: float, t: int) -> float:
        return beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))

    def _mu_product(self, group, steps: int) -> float:
        # The product of μ₁..μₜ depends on the step number only (PyTorch keeps it as
        # state 'mu_product'; here it is recomputed, so uneven counts need no extra buffer).
        # NOTE: PyTorch holds it in a float32 scalar tensor whatever the parameters' dtype;
        # the product is rounded the same way so that float64 runs agree with it exactly.
        beta1, psi = float(group["betas"][0]), float(group["momentum_decay"])
        # Cached per (beta1, psi): products[t] is the product up to step t.
        products = self.__dict__.setdefault("_mu_products", {}).setdefault((beta1, psi), [1.0])
        while len(products) <= steps:
            t = len(products)
            mu = np.float32(self._mu(beta1, psi, t))
            products.append(float(np.float32(np.float32(products[-1]) * mu)))
        return products[steps]

    def _extra_state(self, group, count):
        return {"mu_product": self._mu_product(group, count)}

    def _scalars(self, group, count):
        beta1, beta2 = (float(b) for b in group["betas"])
        psi = float(group["momentum_decay"])
        step = count + 1
        mu, mu_next = self._mu(beta1, psi, step), self._mu(beta1, psi, step + 1)
        product = self._mu_product(group, step)
        return (
            float(group["lr"]),
            beta1,
            beta2,
            float(group["eps"]),
            float(group["weight_decay"]),
            bool(group["decoupled_weight_decay"]),
            1.0 - beta2**step,
            mu,
            mu_next,
            product,
            product * mu_next,
        )

    def _apply(self, param, grad, state, scalars):
        lr, beta1, beta2, eps, wd, decoupled, bc2, mu, mu_next, prod, prod_next = scalars
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
        denom = np.sqrt(exp_avg_sq / bc2) + eps
        param -= (lr * (1.0 - mu) / (1.0 - prod)) * (g / denom)
        param -= (lr * mu_next / (1.0 - prod_next)) * (exp_avg / denom)
