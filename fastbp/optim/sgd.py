"""SGD, with momentum, dampening, Nesterov and weight decay, as PyTorch's."""

from __future__ import annotations

from collections.abc import Iterable

from .. import kernels
from ..core.tensor import Tensor
from .optimizer import (
    Optimizer,
    _check_range,
    _sgd_update,
)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and L2.

    Per parameter ``w`` with gradient ``g`` (PyTorch's rule, step for step)::

        g ← g + λ·w                      (weight_decay λ: L2 regularisation)
        b ← g                            (first step)
        b ← μ·b + (1 − τ)·g              (later steps; momentum μ, dampening τ)
        g ← g + μ·b  if nesterov else b  (only when μ ≠ 0)
        w ← w − lr·g

    ``weight_decay`` adds ``λ·w`` to the gradient, i.e. the gradient of the penalty
    ``(λ/2)·‖w‖²`` added to the loss.

    Parameters
    ----------
    params : iterable of Tensor
        The parameters; each ``p.data`` is rebound to a view of a flat buffer
        (see the module docstring).
    lr : float
        Learning rate.
    momentum : float, default 0
    dampening : float, default 0
    weight_decay : float, default 0
        L2 penalty coefficient λ.
    nesterov : bool, default False
        Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
    maximize : bool, default False
        Maximize the objective (step along the gradient), as in PyTorch.

    Raises
    ------
    ValueError
        For a negative or non-finite hyperparameter, or ``nesterov`` without
        momentum or with dampening.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import SGD
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = SGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     opt.zero_grad(); (w * 1.0).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)  # 1 - 0.1 * (1 + 1.9)
    0.71
    """

    _state_names = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ):
        who = "SGD"
        _check_range(who, "learning rate lr", lr, 0.0)
        _check_range(who, "momentum", momentum, 0.0)
        _check_range(who, "dampening", dampening, 0.0)
        _check_range(who, "weight_decay", weight_decay, 0.0)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"SGD: nesterov=True needs momentum > 0 and dampening == 0, got "
                f"momentum={momentum}, dampening={dampening}"
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": bool(nesterov),
            "maximize": bool(maximize),
        }
        super().__init__(params, defaults)

    update_kernel = staticmethod(kernels.optim._sgd_loop)

    def _count_key(self, count):
        return count == 0  # the first step starts the momentum buffer; the rest are alike

    def _scalars(self, group, count):
        return (
            float(group["lr"]),
            float(group["momentum"]),
            float(group["dampening"]),
            float(group["weight_decay"]),
            bool(group["nesterov"]),
            count == 0,
        )

    def fold_coefficients(self, group):
        # Without momentum, w ← w − lr·(g + λ·w) = (1 − lr·λ)·w − lr·g.
        if group["momentum"] != 0 or group.get("maximize") or len(self.param_groups) != 1:
            return None
        lr = float(group["lr"])
        return -lr, 1.0 - lr * float(group["weight_decay"])

    def _apply(self, param, grad, state, scalars):
        # NOTE: the momentum buffer is allocated even when momentum == 0 so the kernel
        # always gets a real array of the right size (it does not touch it then).
        _sgd_update(param, grad, state[0], *scalars)

    def _update_each(self, group, params, grads, states, count) -> None:
        # The every-step path: _own_grads has checked each gradient's dtype, shape and
        # layout, so the loop calls the kernel itself, without the two Python layers of
        # _apply and sgd_update (about 1 us per parameter on a small model).
        if group.get("maximize"):
            super()._update_each(group, params, grads, states, count)
            return
        scalars = self._scalars(group, count)
        loop = self.update_kernel
        i = 0
        try:
            for i, param in enumerate(params):
                loop(param, grads[i], states[i][0], *scalars)
        except Exception:
            # Only a kernel error gets here (e.g. a parameter made read-only): the checked
            # wrapper explains it. Parameters before i are updated, as with one call each.
            _sgd_update(params[i], grads[i], states[i][0], *scalars)
            raise

    def _export_buffer(self, name, view, shape, group=None):
        # As in PyTorch, plain SGD has no momentum buffer.
        group = self.param_groups[0] if group is None else group
        return None if group["momentum"] == 0 else view.reshape(shape).copy()
