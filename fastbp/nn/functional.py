"""Stateless layer functions (``import fastbp.nn.functional as F``).

The activations are those of :mod:`fastbp.functions`; ``linear`` records one op;
``cross_entropy`` validates its arguments and then records the fused softmax +
cross-entropy op; ``mse_loss`` is composed from tensor ops.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functions
from ..core.engine import apply
from ..core.tensor import Tensor, as_tensor
from ..ops.linalg import LINEAR
from ..ops.loss import CROSS_ENTROPY, NonFiniteLogits

__all__ = [
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "linear",
    "cross_entropy",
    "mse_loss",
]

_REDUCTIONS = ("mean", "sum", "none")

# The activations are the tensor functions themselves (``F.relu is fb.relu``): one
# spelling of each op, routed through the Tensor methods.
relu, sigmoid, tanh = functions.relu, functions.sigmoid, functions.tanh
softmax, log_softmax = functions.softmax, functions.log_softmax


def linear(x: Any, w: Any, b: Any = None) -> Tensor:
    """Affine map ``x @ w + b`` recorded as one fused op.

    Parameters
    ----------
    x : Tensor or array_like
        Shape ``(N, in_features)``.
    w : Tensor or array_like
        Shape ``(in_features, out_features)`` (fastbp's layout, not PyTorch's).
    b : Tensor or array_like, optional
        Shape ``(out_features,)``.

    Returns
    -------
    Tensor
        Shape ``(N, out_features)``.

    Raises
    ------
    ValueError
        If the shapes do not fit; the message names all of them.

    Example
    -------
    >>> import fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> F.linear(fb.ones(2, 3), fb.ones(3, 4), fb.zeros(4))
    tensor([[3., 3., 3., 3.],
            [3., 3., 3., 3.]])
    """
    if b is None:
        return apply(LINEAR, (as_tensor(x), as_tensor(w)))
    return apply(LINEAR, (as_tensor(x), as_tensor(w), as_tensor(b)))


def _labels_array(labels: Any, logits_shape: tuple[int, ...]) -> np.ndarray:
    """Check the dtype and shape of ``labels`` and return them as an integer array.

    Their range is checked by the kernel as it reads them; :func:`_check_label_range`
    explains a failure.
    """
    array = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    if array.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: labels must be integer class indices, got dtype {array.dtype} "
            f"(shape {array.shape}); convert them with labels.astype(np.int64)"
        )
    n = logits_shape[0]
    if array.shape != (n,):
        raise ValueError(
            f"cross_entropy: labels have shape {array.shape} but logits have shape "
            f"{logits_shape}; expected labels of shape ({n},), one class index per row"
        )
    # Cast to intp inside the op (cross_entropy's forward), so that fb.trace sees the
    # caller's array itself and replays follow it.
    return array


def _check_label_range(labels: np.ndarray, logits_shape: tuple[int, ...]) -> None:
    """Raise a ValueError naming the first label outside ``[0, C)``, if there is one."""
    c = logits_shape[1]
    bad = np.flatnonzero((labels < 0) | (labels >= c))
    if len(bad):
        raise ValueError(
            f"cross_entropy: label {int(labels[bad[0]])} at position {int(bad[0])} is out of "
            f"range for {c} classes (logits shape {logits_shape}); labels must lie in "
            f"[0, {c - 1}]"
        )


def _non_finite_error(data: np.ndarray) -> ValueError:
    bad = ~np.isfinite(data)
    row, col = (int(i) for i in np.argwhere(bad)[0])
    return ValueError(
        f"cross_entropy: logits of shape {data.shape} contain {int(bad.sum())} non-finite "
        f"values (first: {data[row, col]} at [{row}, {col}]); the model diverged or its "
        f"input has NaN/Inf: lower the learning rate or check the data "
        f"(fb.detect_anomaly() finds the op that made them)"
    )


def cross_entropy(logits: Any, labels: Any, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy between unnormalised scores and integer class labels.

    ``loss_i = -log(softmax(logits_i)[labels_i]) = logsumexp(logits_i) - logits_i[labels_i]``,
    computed in one fused, numerically stable op whose gradient is
    ``softmax(logits) - onehot(labels)`` (scaled by ``1/N`` for ``'mean'``).

    Parameters
    ----------
    logits : Tensor or array_like
        Shape ``(N, C)``, floating point, finite.
    labels : Tensor or ndarray of int
        Shape ``(N,)``, values in ``[0, C)``.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        Average over the batch, sum, or return the ``(N,)`` per-sample losses.

    Returns
    -------
    Tensor
        A scalar, or shape ``(N,)`` for ``reduction='none'``.

    Raises
    ------
    TypeError
        If the labels are not integers (e.g. float or bool) or the logits are not
        floating point.
    ValueError
        If the logits are not 2-D, the batch is empty, the labels' shape is not
        ``(N,)``, a label is outside ``[0, C)``, the logits contain NaN or Inf, or
        ``reduction`` is unknown.

    Example
    -------
    >>> import numpy as np, fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> loss = F.cross_entropy(fb.zeros(4, 10), np.array([1, 2, 3, 4]))
    >>> round(loss.item(), 4)  # log(10)
    2.3026
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}"
        )
    logits = as_tensor(logits)
    data = logits.data
    if data.ndim != 2:
        raise ValueError(
            f"cross_entropy: logits must be 2-D (batch, classes), got shape {data.shape}; "
            f"for a single sample use logits.reshape(1, -1)"
        )
    if data.dtype.kind != "f":
        raise TypeError(
            f"cross_entropy: logits must be floating point, got dtype {data.dtype} "
            f"(shape {data.shape})"
        )
    if data.shape[0] == 0:
        raise ValueError(
            f"cross_entropy: empty batch (logits shape {data.shape}); the loss of zero "
            f"samples is undefined, skip empty batches"
        )
    labels = _labels_array(labels, data.shape)
    # NOTE: the label range and the finiteness of the logits are checked by the fused
    # kernel in its single pass (check_finite); only a failure pays for the explanation.
    try:
        return apply(
            CROSS_ENTROPY, (logits,), labels=labels, reduction=reduction, check_finite=True
        )
    except ValueError as exc:
        _check_label_range(labels, data.shape)
        if isinstance(exc.__cause__, NonFiniteLogits):
            raise _non_finite_error(data) from None
        raise


def mse_loss(pred: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(pred - target)**2``, reduced over all elements.

    Parameters
    ----------
    pred : Tensor or array_like
    target : Tensor or array_like
        Same shape as ``pred`` (a shape mismatch such as ``(N, 1)`` vs ``(N,)`` would
        silently broadcast to ``(N, N)``, so it is an error).
    reduction : {'mean', 'sum', 'none'}, default 'mean'

    Returns
    -------
    Tensor
        A scalar, or the elementwise squared errors for ``reduction='none'``.

    Raises
    ------
    ValueError
        If the shapes differ, ``reduction`` is unknown, or an input holds NaN/Inf.

    Example
    -------
    >>> import fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> F.mse_loss(fb.tensor([1.0, 2.0]), fb.tensor([1.0, 4.0]))
    tensor(2.)
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"mse_loss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    pred = as_tensor(pred)
    target = pred._operand(target)
    if pred.shape != target.shape:
        raise ValueError(
            f"mse_loss: pred has shape {pred.shape} but target has shape {target.shape}; "
            f"they must match (reshape one of them, e.g. pred.reshape(-1))"
        )
    for name, t in (("pred", pred), ("target", target)):
        if t.dtype.kind in "fc" and not np.isfinite(t.data).all():
            raise ValueError(
                f"mse_loss: {name} of shape {t.shape} contains NaN or Inf; the model diverged "
                f"or the data has NaN/Inf: lower the learning rate or check the data "
                f"(fb.detect_anomaly() finds the op that made them)"
            )
    diff = pred - target
    squared = diff * diff
    if reduction == "mean":
        return squared.mean()
    if reduction == "sum":
        return squared.sum()
    return squared
