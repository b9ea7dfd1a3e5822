"""Learning-rate schedulers with PyTorch's names, arguments and step-by-step values.

A scheduler changes ``optimizer.param_groups[i]["lr"]``, which every fastbp optimizer
reads at each step. Call ``scheduler.step()`` after ``optimizer.step()``, once per
epoch or per batch, exactly as in PyTorch; the learning rates follow PyTorch's
recursive ("chainable") formulas, so two schedulers on one optimizer compose the same
way and the values agree with PyTorch's at every step.

This module uses nothing but the optimizer's ``param_groups`` (and, for OneCycleLR,
``defaults``), so it does not import :mod:`fastbp.optim`.

Example
-------
>>> import fastbp as fb
>>> from fastbp.optim import SGD
>>> from fastbp.optim.lr_scheduler import StepLR
>>> opt = SGD([fb.ones(1, requires_grad=True)], lr=1.0)
>>> sched = StepLR(opt, step_size=2, gamma=0.5)
>>> lrs = []
>>> for _ in range(5):
...     opt.step(); sched.step(); lrs.append(sched.get_last_lr()[0])
>>> lrs
[1.0, 0.5, 0.5, 0.25, 0.25]
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "LRScheduler",
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "LinearLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "LambdaLR",
    "SequentialLR",
]


def _groups(optimizer: Any, who: str) -> list[dict]:
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise TypeError(
            f"{who}: expected an optimizer (with param_groups), got {type(optimizer).__name__}"
        )
    return groups


class LRScheduler:
    """Base class: ``step()``, ``get_last_lr()``, ``state_dict()``, ``load_state_dict()``.

    Subclasses implement ``get_lr()`` (the recursive form, from the groups' current
    ``lr``) and may implement ``_closed_form()`` (the value at ``last_epoch`` from the
    base rates), used by ``step(epoch)`` and :class:`SequentialLR`.

    Parameters
    ----------
    optimizer : Optimizer
    last_epoch : int, default -1
        The index of the last epoch when resuming; -1 starts fresh (a group without
        ``initial_lr`` gets its current ``lr`` as ``initial_lr``). Resuming needs
        ``initial_lr`` in every group.

    Raises
    ------
    KeyError
        If ``last_epoch != -1`` and a group has no ``initial_lr``.
    """

    def __init__(self, optimizer: Any, last_epoch: int = -1):
        who = type(self).__name__
        self.optimizer = optimizer
        groups = _groups(optimizer, who)
        if last_epoch == -1:
            for group in groups:
                # setdefault, as in PyTorch: a second scheduler keeps the first's base.
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"{who}: param group {i} has no 'initial_lr'; resuming with "
                        f"last_epoch={last_epoch} needs the optimizer's state loaded first"
                    )
        self.base_lrs = [group["initial_lr"] for group in groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The learning rates for the current ``last_epoch``, one per group."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_lr()")

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last :meth:`step`, one per parameter group.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp.optim import SGD
        >>> from fastbp.optim.lr_scheduler import ExponentialLR
        >>> opt = SGD([fb.ones(1, requires_grad=True)], lr=0.1)
        >>> ExponentialLR(opt, gamma=0.5).get_last_lr()
        [0.1]
        """
        return list(self._last_lr)

    def step(self, epoch: int | None = None) -> None:
        """Advance one epoch (or jump to ``epoch``, PyTorch's deprecated form) and set lr.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp.optim import SGD
        >>> from fastbp.optim.lr_scheduler import ExponentialLR
        >>> opt = SGD([fb.ones(1, requires_grad=True)], lr=1.0)
        >>> s = ExponentialLR(opt, gamma=0.5); s.step(); opt.param_groups[0]["lr"]
        0.5
        """
        self._step_count += 1
        self._update_lr(epoch)

    def _update_lr(self, epoch: int | None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_closed_form", None)
            values = closed() if closed is not None else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (and functions), as in PyTorch.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp.optim import SGD
        >>> from fastbp.optim.lr_scheduler import StepLR
        >>> s = StepLR(SGD([fb.ones(1, requires_grad=True)], lr=1.0), step_size=3)
        >>> s.state_dict()["last_epoch"], s.state_dict()["step_size"]
        (0, 3)
        """
        return {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("optimizer", "_schedulers") and not callable(v)
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the optimizer's lr is not changed).

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp.optim import SGD
        >>> from fastbp.optim.lr_scheduler import StepLR
        >>> opt = SGD([fb.ones(1, requires_grad=True)], lr=1.0)
        >>> a, b = StepLR(opt, step_size=3), StepLR(opt, step_size=3)
        >>> a.step(); b.load_state_dict(a.state_dict()); b.last_epoch
        1
        """
        self.__dict__.update(state_dict)


class LambdaLR(LRScheduler):
    """``lr = initial_lr · lr_lambda(epoch)``, one function or one per group.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import SGD
    >>> from fastbp.optim.lr_scheduler import LambdaLR
    >>> opt = SGD([fb.ones(1, requires_grad=True)], lr=1.0)
    >>> s = LambdaLR(opt, lambda e: 1 / (e + 1)); s.step(); s.get_last_lr()
    [0.5]
    """

    def __init__(
        self,
        optimizer: Any,
        lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
        last_epoch: int = -1,
    ):
        n = len(_groups(optimizer, "LambdaLR"))
        if callable(lr_lambda):
            self.lr_lambdas = [lr_lambda] * n
        else:
            if len(lr_lambda) != n:
                raise ValueError(f"LambdaLR: expected {n} lr_lambdas, got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [b * f(self.last_epoch) for b, f in zip(self.base_lrs, self.lr_lambdas, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.pop("lr_lambdas", None)  # functions are not saved, as in PyTorch
        return state


class StepLR(LRScheduler):
    """Multiply lr by ``gamma`` every ``step_size`` epochs.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import SGD
    >>> from fastbp.optim.lr_scheduler import StepLR
    >>> opt = SGD([fb.ones(1, requires_grad=True)], lr=1.0)
    >>> s = StepLR(opt, step_size=1, gamma=0.1); s.step(); round(s.get_last_lr()[0], 6)
    0.1
    """

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if int(step_size) <= 0:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self.last_epoch == 0 or self._is_initial or self.last_epoch % self.step_size != 0:
            return [g["lr"] for g in groups]
        return [g["lr"] * self.gamma for g in groups]

    def _closed_form(self) -> list[float]:
        return [b * self.gamma ** (self.last_epoch // self.step_size) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply lr by ``gamma`` at each epoch in ``milestones`` (counted with repeats).

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import SGD
    >>> from fastbp.optim.lr_scheduler import MultiStepLR
    >>> opt = SGD([fb.ones(1, requires_grad=True)], lr=1.0)
    >>> s = MultiStepLR(opt, milestones=[2], gamma=0.5)
    >>> [(s.step(), s.get_last_lr()[0])[1] for _ in range(3)]
    [1.0, 0.5, 0.5]
    """

    def __init__(
        self, optimizer: Any, milestones: Sequence[int], gamma: float = 0.1, last_epoch: int = -1
    ):
        self.milestones = Counter(int(m) for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self.last_epoch not in self.milestones or self._is_initial:
            return [g["lr"] for g in groups]
        return [g["lr"] * self.gamma ** self.milestones[self.last_epoch] for g in groups]

    def _closed_form(self) -> list[float]:
        ms = sorted(self.milestones.elements())
        return [b * self.gamma ** bisect_right(ms, self.last_epoch) for b in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiply lr by ``gamma`` every epoch.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import SGD
    >>> from fastbp.optim.lr_scheduler import ExponentialLR
    >>> opt = SGD([fb.ones(1, requires_grad=True)], lr=1.0)
    >>> s = ExponentialLR(opt, 0.5); s.step(); s.step(); s.get_last_lr()
    [0.25]
    """

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self.last_epoch == 0 or self._is_initial:
            return [g["lr"] for g in groups]
        return [g["lr"] * self.gamma for g in groups]

    def _closed_form(self) -> list[float]:
        return [b * self.gamma**self.last_epoch for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the initial lr to ``eta_min`` over ``T_max`` epochs (then back up).

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import SGD
    >>> from fastbp.optim.lr_scheduler import CosineAnnealingLR
    >>> opt = SGD([fb.ones(1, requires_grad=True)], lr=1.0)
    >>> s = CosineAnnealingLR(opt, T_max=2); s.step(); round(s.get_last_lr()[0], 6)
    0.5
    """

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):  # noqa: N803
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        e, t, lo = self.last_epoch, self.T_max, self.eta_min
        if e == 0:
            return [g["lr"] for g in groups]
        if self._step_count == 1 and e > 0:
            return [lo + (b - lo) * (1 + math.cos(e * math.pi / t)) / 2 for b in self.base_lrs]
        if (e - 1 - t) % (2 * t) == 0:
            return [
                g["lr"] + (b - lo) * (1 - math.cos(math.pi / t)) / 2
                for b, g in zip(self.base_lrs, groups, strict=True)
            ]
        return [
            (1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t)) * (g["lr"] - lo)
            + lo
            for g in groups
        ]

    def _closed_form(self) -> list[float]:
        e, t, lo = self.last_epoch, self.T_max, self.eta_min
        return [lo + (b - lo) * (1 + math.cos(math.pi * e / t)) / 2 for b in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale lr linearly from ``start_factor`` to ``end_factor`` over ``total_iters`` epochs.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import SGD
    >>> from fastbp.optim.lr_scheduler import LinearLR
    >>> opt = SGD([fb.ones(1, requires_grad=True)], lr=1.0)
    >>> s = LinearLR(opt, start_factor=0.5, total_iters=2); s.get_last_lr()
    [0.5]
    """

    def __init__(
        self,
        optimizer: Any,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(
                f"LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1], got "
                f"{start_factor} and {end_factor}"
            )
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        s, f, n = self.start_factor, self.end_factor, self.total_iters
        if self.last_epoch == 0:
            return [g["lr"] * s for g in groups]
        if self._is_initial or self.last_epoch > n:
            return [g["lr"] for g in groups]
        return [
            g["lr"] * (1.0 + (f - s) / (n * s + (self.last_epoch - 1) * (f - s))) for g in groups
        ]

    def _closed_form(self) -> list[float]:
        s, f, n = self.start_factor, self.end_factor, self.total_iters
        return [b * (s + (f - s) * min(n, self.last_epoch) / n) for b in self.base_lrs]


class OneCycleLR(LRScheduler):
    """The 1cycle policy: lr warms up to ``max_lr`` then anneals far below the start.

    Momentum (SGD's ``momentum`` or Adam's ``beta1``) cycles the other way when
    ``cycle_momentum``. Step it once per batch.

    Parameters
    ----------
    optimizer : Optimizer
    max_lr : float or list of float
    total_steps : int, optional
        Or give ``epochs`` and ``steps_per_epoch``.
    epochs, steps_per_epoch : int, optional
    pct_start : float, default 0.3
    anneal_strategy : {"cos", "linear"}, default "cos"
    cycle_momentum : bool, default True
    base_momentum : float, default 0.85
        The momentum (or Adam's beta1) at the peak learning rate.
    max_momentum : float, default 0.95
        The momentum at the start and end of the cycle.
    div_factor : float, default 25
    final_div_factor : float, default 1e4
    three_phase : bool, default False
    last_epoch : int, default -1

    Raises
    ------
    ValueError
        For inconsistent step counts, an unknown strategy, stepping past
        ``total_steps``, or ``cycle_momentum`` with an optimizer without momentum.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import SGD
    >>> from fastbp.optim.lr_scheduler import OneCycleLR
    >>> opt = SGD([fb.ones(1, requires_grad=True)], lr=0.1, momentum=0.9)
    >>> s = OneCycleLR(opt, max_lr=1.0, total_steps=10); round(s.get_last_lr()[0], 6)
    0.04
    """

    def __init__(
        self,
        optimizer: Any,
        max_lr: float | Sequence[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | Sequence[float] = 0.85,
        max_momentum: float | Sequence[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ):
        who = "OneCycleLR"
        groups = _groups(optimizer, who)
        if total_steps is not None:
            if total_steps <= 0:
                raise ValueError(f"{who}: total_steps must be positive, got {total_steps}")
            self.total_steps = int(total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            if epochs <= 0 or steps_per_epoch <= 0:
                raise ValueError(f"{who}: epochs and steps_per_epoch must be positive")
            self.total_steps = int(epochs) * int(steps_per_epoch)
        else:
            raise ValueError(f"{who}: give total_steps, or epochs and steps_per_epoch")
        if not 0 <= pct_start <= 1:
            raise ValueError(f"{who}: pct_start must be in [0, 1], got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"{who}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}"
            )
        self.anneal_strategy = anneal_strategy
        n = self.total_steps
        if three_phase:
            self._schedule_phases = [
                {"end_step": float(pct_start * n) - 1, "start_lr": "initial_lr",
                 "end_lr": "max_lr", "start_momentum": "max_momentum",
                 "end_momentum": "base_momentum"},
                {"end_step": float(2 * pct_start * n) - 2, "start_lr": "max_lr",
                 "end_lr": "initial_lr", "start_momentum": "base_momentum",
                 "end_momentum": "max_momentum"},
                {"end_step": n - 1, "start_lr": "initial_lr", "end_lr": "min_lr",
                 "start_momentum": "max_momentum", "end_momentum": "max_momentum"},
            ]  # fmt: skip
        else:
            self._schedule_phases = [
                {"end_step": float(pct_start * n) - 1, "start_lr": "initial_lr",
                 "end_lr": "max_lr", "start_momentum": "max_momentum",
                 "end_momentum": "base_momentum"},
                {"end_step": n - 1, "start_lr": "max_lr", "end_lr": "min_lr",
                 "start_momentum": "base_momentum", "end_momentum": "max_momentum"},
            ]  # fmt: skip

        def per_group(value, name):
            if isinstance(value, (list, tuple)):
                if len(value) != len(groups):
                    raise ValueError(f"{who}: expected {len(groups)} values of {name}")
                return list(value)
            return [value] * len(groups)

        if last_epoch == -1:
            for lr, group in zip(per_group(max_lr, "max_lr"), groups, strict=True):
                group["initial_lr"] = lr / div_factor
                group["max_lr"] = lr
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            defaults = getattr(optimizer, "defaults", {})
            if "momentum" not in defaults and "betas" not in defaults:
                raise ValueError(
                    f"{who}: cycle_momentum=True needs an optimizer with 'momentum' or "
                    f"'betas'; pass cycle_momentum=False"
                )
            self.use_beta1 = "betas" in defaults
            bases = per_group(base_momentum, "base_momentum")
            maxes = per_group(max_momentum, "max_momentum")
            if last_epoch == -1:
                for lo, hi, group in zip(bases, maxes, groups, strict=True):
                    if self.use_beta1:
                        group["betas"] = (hi, *group["betas"][1:])
                    else:
                        group["momentum"] = hi
                    group["max_momentum"] = hi
                    group["base_momentum"] = lo
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(
                f"OneCycleLR: tried to step {step} times; total_steps is {self.total_steps}"
            )
        lrs = []
        phases = self._schedule_phases
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, phase in enumerate(phases):
                end = phase["end_step"]
                if step <= end or i == len(phases) - 1:
                    pct = (step - start) / (end - start)
                    lr = self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct)
                    if self.cycle_momentum:
                        m = self._anneal(
                            group[phase["start_momentum"]], group[phase["end_momentum"]], pct
                        )
                    break
                start = phase["end_step"]
            lrs.append(lr)
            if self.cycle_momentum:
                if self.use_beta1:
                    group["betas"] = (m, *group["betas"][1:])
                else:
                    group["momentum"] = m
        return lrs


class ReduceLROnPlateau(LRScheduler):
    """Multiply lr by ``factor`` when a metric stops improving for ``patience`` epochs.

    Call ``step(metric)`` once per epoch with the validation loss (``mode="min"``) or
    accuracy (``mode="max"``).

    Parameters
    ----------
    optimizer : Optimizer
    mode : {"min", "max"}, default "min"
    factor : float, default 0.1
    patience : int, default 10
    threshold : float, default 1e-4
    threshold_mode : {"rel", "abs"}, default "rel"
    cooldown : int, default 0
    min_lr : float or list of float, default 0
    eps : float, default 1e-8
        Changes smaller than this are ignored.

    Raises
    ------
    ValueError
        For ``factor >= 1`` or an unknown mode.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import SGD
    >>> from fastbp.optim.lr_scheduler import ReduceLROnPlateau
    >>> opt = SGD([fb.ones(1, requires_grad=True)], lr=1.0)
    >>> s = ReduceLROnPlateau(opt, patience=1)
    >>> for loss in [1.0, 1.0, 1.0]:
    ...     s.step(loss)
    >>> round(s.get_last_lr()[0], 6)
    0.1
    """

    def __init__(
        self,
        optimizer: Any,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
    ):
        who = "ReduceLROnPlateau"
        groups = _groups(optimizer, who)
        if factor >= 1.0:
            raise ValueError(f"{who}: factor should be < 1.0, got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"{who}: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"{who}: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}"
            )
        self.optimizer = optimizer
        self.factor = factor
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(groups):
                raise ValueError(f"{who}: expected {len(groups)} min_lrs, got {len(min_lr)}")
            self.min_lrs = list(min_lr)
        else:
            self.min_lrs = [min_lr] * len(groups)
        self.patience = patience
        self.cooldown = cooldown
        self.cooldown_counter = 0
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.eps = eps
        self.last_epoch = 0
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self._last_lr = [g["lr"] for g in groups]

    def _is_better(self, a: float, best: float) -> bool:
        t = self.threshold
        if self.mode == "min":
            return a < (best * (1.0 - t) if self.threshold_mode == "rel" else best - t)
        return a > (best * (t + 1.0) if self.threshold_mode == "rel" else best + t)

    def step(self, metrics: float, epoch: int | None = None) -> None:  # type: ignore[override]
        """Record this epoch's metric and reduce lr after ``patience`` bad epochs."""
        current = float(metrics)
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for i, group in enumerate(self.optimizer.param_groups):
                old = float(group["lr"])
                new = max(old * self.factor, self.min_lrs[i])
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]


class SequentialLR(LRScheduler):
    """Run ``schedulers[i]`` until ``milestones[i]``, then the next (each restarts at 0).

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import SGD
    >>> from fastbp.optim.lr_scheduler import ExponentialLR, LinearLR, SequentialLR
    >>> opt = SGD([fb.ones(1, requires_grad=True)], lr=1.0)
    >>> warm = LinearLR(opt, start_factor=0.5, total_iters=2)
    >>> s = SequentialLR(opt, [warm, ExponentialLR(opt, 0.5)], milestones=[2])
    >>> [(s.step(), round(s.get_last_lr()[0], 4))[1] for _ in range(4)]
    [0.75, 1.0, 0.5, 0.25]
    """

    def __init__(
        self,
        optimizer: Any,
        schedulers: Sequence[LRScheduler],
        milestones: Sequence[int],
        last_epoch: int = -1,
    ):
        who = "SequentialLR"
        if len(schedulers) < 1:
            raise ValueError(f"{who}: expected at least one scheduler")
        for i, s in enumerate(schedulers):
            if getattr(s, "optimizer", None) is not optimizer:
                raise ValueError(f"{who}: scheduler {i} does not belong to this optimizer")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"{who}: expected {len(schedulers) - 1} milestones for {len(schedulers)} "
                f"schedulers, got {len(milestones)}"
            )
        self._schedulers = list(schedulers)
        self._milestones = list(milestones)
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self._undo(self)
        idx = bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()
        self._last_lr = self._schedulers[idx].get_last_lr()

    def _undo(self, sched: Any) -> None:
        # Undo the initial step each scheduler took when it was built.
        if hasattr(sched, "_schedulers") and sched is not self:
            for s in sched._schedulers:
                self._undo(s)
        elif sched is self:
            for s in self._schedulers:
                self._undo(s)
        elif hasattr(sched, "last_epoch"):
            sched.last_epoch -= 1

    def step(self) -> None:  # type: ignore[override]
        """Advance one epoch, switching scheduler at the milestones."""
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        """This scheduler's counters and each inner scheduler's state dict."""
        state = super().state_dict()
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`, inner schedulers included."""
        state = dict(state_dict)
        inner = state.pop("_schedulers")
        super().load_state_dict(state)
        for s, sd in zip(self._schedulers, inner, strict=True):
            s.load_state_dict(sd)
