"""Losses with fused gradients: softmax cross-entropy and mean squared error.

The input checks that report NaN and bad labels run inside the ops' forwards, so that a
traced step (``fb.trace``), which replays the forwards without the Python around them,
raises the same errors as an eager one.
"""

from __future__ import annotations

import numpy as np

from ..core.dtypes import result_dtype
from ..core.registry import defop
from ..kernels import dispatch, losses


class NonFiniteLogits(ValueError):
    """Raised by the forward pass when asked to check the logits and a loss would be NaN."""


class NonFiniteInput(ValueError):
    """Raised by ``mse_loss``'s forward when the prediction or the target has NaN or Inf."""


def label_range_error(labels: np.ndarray, logits_shape: tuple[int, ...]) -> ValueError | None:
    """The error naming the first label outside ``[0, C)``, or None if all are in range."""
    c = logits_shape[1]
    bad = np.flatnonzero((labels < 0) | (labels >= c))
    if not len(bad):
        return None
    return ValueError(
        f"cross_entropy: label {int(labels[bad[0]])} at position {int(bad[0])} is out of "
        f"range for {c} classes (logits shape {logits_shape}); labels must lie in "
        f"[0, {c - 1}]"
    )


def non_finite_logits_error(data: np.ndarray) -> NonFiniteLogits:
    """The error for logits that make a loss NaN: NaN, +inf, or a row of only -inf.

    -inf logits (masked classes) alone are allowed, as in PyTorch.
    """
    bad = np.isnan(data) | np.isposinf(data)
    if not bad.any():
        row = int(np.flatnonzero(np.isneginf(data).all(axis=1))[0])
        return NonFiniteLogits(
            f"cross_entropy: row {row} of the logits (shape {data.shape}) is -inf for every "
            f"class, so the loss is NaN; leave at least one class unmasked in each row"
        )
    row, col = (int(i) for i in np.argwhere(bad)[0])
    return NonFiniteLogits(
        f"cross_entropy: logits of shape {data.shape} contain {int(bad.sum())} non-finite "
        f"(NaN or +inf) values (first: {data[row, col]} at [{row}, {col}]), so the loss is NaN; "
        f"the model diverged or its input has NaN/Inf: lower the learning rate or check the "
        f"data (fb.detect_anomaly() finds the op that made them; -inf, a masked class, is "
        f"allowed)"
    )


def _cross_entropy_forward(logits, labels, reduction="mean", check_finite=False):
    # Softmax and the loss in one op, one pass over the logits: d loss / d logits is
    # softmax − onehot, cheaper and more accurate than differentiating log(softmax).
    # The same pass sums the losses (in double precision) and probes the logits for
    # NaN/Inf, so neither a reduction nor a finiteness check follows it.
    if labels.dtype != np.intp and labels.dtype != np.int32:  # the kernel's label types
        labels = labels.astype(np.intp)
    try:
        losses, dlogits, total, finite = dispatch.softmax_cross_entropy(logits, labels)
    except ValueError:
        # Explained only on failure; the kernel checks the labels in its single pass.
        error = label_range_error(labels, logits.shape) if logits.ndim == 2 else None
        if error is not None:
            raise error from None
        raise
    if check_finite and not finite:
        raise non_finite_logits_error(logits)
    if reduction == "mean":
        out = np.array(total / len(labels) if len(labels) else np.nan, logits.dtype)
    elif reduction == "sum":
        out = np.array(total, logits.dtype)
    else:
        out = losses
    return out, (dlogits, reduction)


def _cross_entropy_vjp(saved, dy, needs):
    dlogits, reduction = saved
    if reduction == "mean":
        # A Python float divided then rounded to the dtype: the same value as dy / N in
        # the dtype (double rounding is harmless for one division), at half the cost of
        # a 0-d array operation.
        return (dlogits * dlogits.dtype.type(float(dy) / len(dlogits)),)
    if reduction == "sum":
        return (dlogits * dy,)
    return (dlogits * dy[:, None],)


CROSS_ENTROPY = defop(
    "cross_entropy",
    _cross_entropy_forward,
    _cross_entropy_vjp,
    kernel=losses.softmax_cross_entropy,
    twin=losses.softmax_cross_entropy_numpy,
)


def _mse_forward(pred, target, reduction="mean"):
    for name, a in (("pred", pred), ("target", target)):
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise NonFiniteInput(
                f"mse_loss: {name} of shape {a.shape} contains NaN or Inf; the model diverged "
                f"or the data has NaN/Inf: lower the learning rate or check the data "
                f"(fb.detect_anomaly() finds the op that made them)"
            )
    if pred.dtype != target.dtype:
        dtype = result_dtype(pred, target)
        pred, target = pred.astype(dtype, copy=False), target.astype(dtype, copy=False)
    diff = pred - target
    squared = diff * diff
    if reduction == "mean":
        # The mean of no elements is NaN, as in PyTorch (without NumPy's warning).
        out = squared.mean() if squared.size else np.nan
    elif reduction == "sum":
        out = squared.sum()
    else:
        return squared, (diff, reduction)
    return np.asarray(out, dtype=squared.dtype), (diff, reduction)


def _mse_vjp(saved, dy, needs):
    diff, reduction = saved
    scale = 2.0 / diff.size if reduction == "mean" and diff.size else 2.0
    g = diff * (dy * diff.dtype.type(scale))
    return (g if needs[0] else None), (-g if needs[1] else None)


MSE_LOSS = defop("mse_loss", _mse_forward, _mse_vjp)
