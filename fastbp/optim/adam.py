"""Adam and AdamW (with AMSGrad), as PyTorch's."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .. import kernels
from ..core.tensor import Tensor
from .optimizer import (
    Optimizer,
    _adam_update,
    _check_pair,
    _check_range,
)


class Adam(Optimizer):
    """Adam (Kingma & Ba), with PyTorch's update rule and bias correction.

    Per parameter ``w`` with gradient ``g`` at step ``t`` (1, 2, ...)::

        g ← g + λ·w                          (weight_decay λ: L2 regularisation)
        m ← β1·m + (1 − β1)·g
        v ← β2·v + (1 − β2)·g²
        w ← w − lr/(1 − β1ᵗ) · m / (sqrt(v)/sqrt(1 − β2ᵗ) + eps)

    ``weight_decay`` here is coupled L2 regularisation: ``λ·w`` is added to the
    gradient (the gradient of ``(λ/2)·‖w‖²``) and so is rescaled by Adam like the
    rest of the gradient; use :class:`AdamW` for decoupled weight decay.

    Parameters
    ----------
    params : iterable of Tensor
        The parameters; each ``p.data`` is rebound to a view of a flat buffer.
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator for numerical stability.
    weight_decay : float, default 0
        L2 penalty coefficient λ.
    amsgrad : bool, default False
        Use the running maximum of ``v`` in the denominator (AMSGrad); runs in NumPy,
        not the fused kernel. Fixed per group when the group is added.
    maximize : bool, default False
        Maximize the objective.

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import Adam
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = Adam([w], lr=0.1)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)  # the first Adam step moves by ~lr
    0.9
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        who = type(self).__name__
        _check_range(who, "learning rate lr", lr, 0.0)
        _check_pair(who, "betas", betas)
        _check_range(who, "beta1", betas[0], 0.0, 1.0)
        _check_range(who, "beta2", betas[1], 0.0, 1.0)
        _check_range(who, "eps", eps, 0.0)
        _check_range(who, "weight_decay", weight_decay, 0.0)
        defaults = {
            "lr": lr,
            "betas": (float(betas[0]), float(betas[1])),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": bool(amsgrad),
            "maximize": bool(maximize),
        }
        super().__init__(params, defaults)

    update_kernel = staticmethod(kernels.optim._adam_loop)

    def _state_names_for(self, group):
        # The running maximum of v exists only for amsgrad groups (fixed when added).
        return self._state_names + (("max_exp_avg_sq",) if group.get("amsgrad") else ())

    def _kernel_runs(self, group):
        return not group.get("maximize") and not group.get("amsgrad")

    def _scalars(self, group, count):
        beta1, beta2 = group["betas"]
        return (
            float(group["lr"]),
            float(beta1),
            float(beta2),
            float(group["eps"]),
            float(group["weight_decay"]),
            count + 1,
            self._decoupled,
        )

    def _apply(self, param, grad, state, scalars):
        if len(state) == 3:
            _amsgrad_update(param, grad, *state, *scalars)
        else:
            _adam_update(param, grad, state[0], state[1], *scalars)


def _amsgrad_update(param, grad, exp_avg, exp_avg_sq, max_sq, lr, beta1, beta2, eps, wd, step, dec):
    """Adam/AdamW with amsgrad (PyTorch's rule), in NumPy over flat buffers.

    NOTE: NumPy, not a Numba kernel: amsgrad is rare and this costs ~2x the fused kernel.
    """
    g = grad
    if wd != 0:
        if dec:
            param *= 1.0 - lr * wd
        else:
            g = grad + wd * param
    exp_avg += (1.0 - beta1) * (g - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1.0 - beta2) * g * g
    np.maximum(max_sq, exp_avg_sq, out=max_sq)
    denom = np.sqrt(max_sq) / math.sqrt(1.0 - beta2**step) + eps
    param -= (lr / (1.0 - beta1**step)) * (exp_avg / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as PyTorch's AdamW.

    The decay shrinks the weights directly instead of entering the gradient::

        w ← w − lr·λ·w                   (before the Adam step; not rescaled by Adam)
        then the Adam update of :class:`Adam` with λ = 0

    Parameters
    ----------
    params : iterable of Tensor
        The parameters; each ``p.data`` is rebound to a view of a flat buffer.
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 1e-2
        Decoupled decay coefficient λ.
    amsgrad : bool, default False
    maximize : bool, default False

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import AdamW
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = AdamW([w], lr=0.1, weight_decay=0.5)
    >>> opt.zero_grad(); (w * 0.0).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)  # only the decay acts: 1 - 0.1 * 0.5
    0.95
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
