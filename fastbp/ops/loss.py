"""Losses with fused gradients: softmax cross-entropy."""

from __future__ import annotations

import numpy as np

from ..core.registry import defop
from ..kernels import dispatch, losses


class NonFiniteLogits(ValueError):
    """Raised by the forward pass when asked to check the logits and one is NaN or infinite."""


def _cross_entropy_forward(logits, labels, reduction="mean", check_finite=False):
    # Softmax and the loss in one op, one pass over the logits: d loss / d logits is
    # softmax − onehot, cheaper and more accurate than differentiating log(softmax).
    # The same pass sums the losses (in double precision) and probes the logits for
    # NaN/Inf, so neither a reduction nor a finiteness check follows it.
    if labels.dtype != np.intp and labels.dtype != np.int32:  # the kernel's label types
        labels = labels.astype(np.intp)
    losses, dlogits, total, finite = dispatch.softmax_cross_entropy(logits, labels)
    if check_finite and not finite:
        raise NonFiniteLogits("cross_entropy: the logits contain NaN or Inf")
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
