"""Adagrad, as PyTorch's."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..core.tensor import Tensor
from .optimizer import (
    Optimizer,
    _check_range,
    _l2,
)


class Adagrad(Optimizer):
    """Adagrad with PyTorch's rule (learning-rate decay, initial accumulator).

    At step ``t`` (1, 2, ...)::

        g ← g + λ·w
        s ← s + g²
        w ← w − lr / (1 + (t − 1)·lr_decay) · g / (sqrt(s) + eps)

    Parameters
    ----------
    params : iterable of Tensor or of dicts (parameter groups)
    lr : float, default 1e-2
    lr_decay : float, default 0
    weight_decay : float, default 0
    initial_accumulator_value : float, default 0
        The starting value of ``s``.
    eps : float, default 1e-10
    maximize : bool, default False

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import Adagrad
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = Adagrad([w], lr=0.5)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)  # 1 - 0.5 * 2 / 2
    0.5
    """

    _state_names = ("sum",)

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ):
        who = "Adagrad"
        _check_range(who, "learning rate lr", lr, 0.0)
        _check_range(who, "lr_decay", lr_decay, 0.0)
        _check_range(who, "weight_decay", weight_decay, 0.0)
        _check_range(who, "initial_accumulator_value", initial_accumulator_value, 0.0)
        _check_range(who, "eps", eps, 0.0)
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "maximize": bool(maximize),
        }
        super().__init__(params, defaults)

    def _init_state(self, group, flat):
        flat.state[0].fill(group["initial_accumulator_value"])

    def _scalars(self, group, count):
        clr = float(group["lr"]) / (1.0 + count * float(group["lr_decay"]))
        return clr, float(group["eps"]), float(group["weight_decay"])

    def _apply(self, param, grad, state, scalars):
        clr, eps, wd = scalars
        g = _l2(param, grad, wd)
        total = state[0]
        total += g * g
        param -= clr * (g / (np.sqrt(total) + eps))
