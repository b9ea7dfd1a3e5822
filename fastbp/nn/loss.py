"""Loss modules with PyTorch's names and constructor arguments; each calls its function
in :mod:`fastbp.nn.functional`."""

from __future__ import annotations

from typing import Any

from . import functional as F
from .module import Module

__all__ = [
    "CrossEntropyLoss",
    "NLLLoss",
    "MSELoss",
    "L1Loss",
    "SmoothL1Loss",
    "HuberLoss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "KLDivLoss",
]


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class CrossEntropyLoss(_Loss):
    """:func:`~fastbp.nn.functional.cross_entropy` as a module.

    Example
    -------
    >>> import numpy as np, fastbp as fb
    >>> from fastbp import nn
    >>> round(float(nn.CrossEntropyLoss(label_smoothing=0.1)(fb.zeros(2, 3), np.array([0, 1]))), 4)
    1.0986
    """

    def __init__(
        self,
        weight: Any = None,
        size_average: Any = None,
        ignore_index: int = -100,
        reduce: Any = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ):
        super().__init__(reduction)
        self.weight = weight
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Any, target: Any):  # noqa: A002
        return F.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class NLLLoss(_Loss):
    """:func:`~fastbp.nn.functional.nll_loss` as a module.

    Example
    -------
    >>> import numpy as np, fastbp as fb
    >>> from fastbp import nn
    >>> float(nn.NLLLoss(reduction="sum")(fb.tensor([[-1.0, -2.0]]), np.array([1])))
    2.0
    """

    def __init__(
        self,
        weight: Any = None,
        size_average: Any = None,
        ignore_index: int = -100,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(reduction)
        self.weight = weight
        self.ignore_index = ignore_index

    def forward(self, input: Any, target: Any):  # noqa: A002
        return F.nll_loss(
            input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction
        )


class MSELoss(_Loss):
    """:func:`~fastbp.nn.functional.mse_loss` as a module.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> float(nn.MSELoss()(fb.tensor([1.0, 3.0]), fb.tensor([0.0, 0.0])))
    5.0
    """

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean"):
        super().__init__(reduction)

    def forward(self, input: Any, target: Any):  # noqa: A002
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """:func:`~fastbp.nn.functional.l1_loss` as a module.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> float(nn.L1Loss()(fb.tensor([1.0, -3.0]), fb.zeros(2)))
    2.0
    """

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean"):
        super().__init__(reduction)

    def forward(self, input: Any, target: Any):  # noqa: A002
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """:func:`~fastbp.nn.functional.smooth_l1_loss` as a module.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> float(nn.SmoothL1Loss(beta=2.0)(fb.tensor([1.0]), fb.zeros(1)))
    0.25
    """

    def __init__(
        self,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
        beta: float = 1.0,
    ):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input: Any, target: Any):  # noqa: A002
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """:func:`~fastbp.nn.functional.huber_loss` as a module.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> float(nn.HuberLoss(delta=0.5)(fb.tensor([2.0]), fb.zeros(1)))
    0.875
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input: Any, target: Any):  # noqa: A002
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class BCELoss(_Loss):
    """:func:`~fastbp.nn.functional.binary_cross_entropy` as a module.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> round(float(nn.BCELoss()(fb.tensor([0.5]), fb.tensor([1.0]))), 4)
    0.6931
    """

    def __init__(
        self,
        weight: Any = None,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
    ):
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input: Any, target: Any):  # noqa: A002
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """:func:`~fastbp.nn.functional.binary_cross_entropy_with_logits` as a module.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> round(float(nn.BCEWithLogitsLoss(pos_weight=fb.tensor([2.0]))(fb.zeros(1), fb.ones(1))), 4)
    1.3863
    """

    def __init__(
        self,
        weight: Any = None,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
        pos_weight: Any = None,
    ):
        super().__init__(reduction)
        self.weight = weight
        self.pos_weight = pos_weight

    def forward(self, input: Any, target: Any):  # noqa: A002
        return F.binary_cross_entropy_with_logits(
            input, target, self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )


class KLDivLoss(_Loss):
    """:func:`~fastbp.nn.functional.kl_div` as a module.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> float(nn.KLDivLoss(reduction="sum")(fb.zeros(2), fb.tensor([1.0, 0.0])))
    0.0
    """

    def __init__(
        self,
        size_average: Any = None,
        reduce: Any = None,
        reduction: str = "mean",
        log_target: bool = False,
    ):
        super().__init__(reduction)
        self.log_target = log_target

    def forward(self, input: Any, target: Any):  # noqa: A002
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
