"""Losses with fused gradients: softmax cross-entropy."""

from __future__ import annotations

import numpy as np

from ..kernels import dispatch
from . import defop


def _cross_entropy_forward(logits, labels, reduction="mean"):
    # Softmax and the loss in one op, one pass over the logits: d loss / d logits is
    # softmax − onehot, cheaper and more accurate than differentiating log(softmax).
    losses, dlogits = dispatch.softmax_cross_entropy(logits, labels)
    if reduction == "mean":
        out = losses.mean() if len(labels) else np.array(np.nan, logits.dtype)
    elif reduction == "sum":
        out = losses.sum()
    else:
        out = losses
    return np.asarray(out, dtype=logits.dtype), (dlogits, reduction)


def _cross_entropy_vjp(saved, dy, needs):
    dlogits, reduction = saved
    if reduction == "mean":
        return (dlogits * (dy / len(dlogits)),)
    if reduction == "sum":
        return (dlogits * dy,)
    return (dlogits * dy[:, None],)


CROSS_ENTROPY = defop("cross_entropy", _cross_entropy_forward, _cross_entropy_vjp)
