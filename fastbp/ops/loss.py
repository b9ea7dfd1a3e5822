"""Losses with fused gradients: softmax cross-entropy."""

from __future__ import annotations

import numpy as np

from ..compiler import JitForm
from ..kernels import dispatch, losses
from . import defop


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


def _cross_entropy_jit_forward(src, out, inputs, params):
    # The forward above as source for a compiled step (fastbp.compiler), same kernel.
    logits, labels = inputs[0], params["labels"]
    dtype = src.float_matrices("cross_entropy", logits)
    rows = src.shape(logits)[0]
    src.require(params["reduction"] in ("mean", "sum"), "cross_entropy: reduction='none'")
    src.require(
        src.dtype(labels) in (np.dtype(np.intp), np.dtype(np.int32)) and rows > 0,
        "cross_entropy: labels neither intp nor int32, or an empty batch",
    )
    losses_buffer = src.buffer(("losses", out), (rows,), dtype)
    dlogits = src.buffer(("dlogits", out), src.shape(logits), dtype)
    # Where the eager op raises (a label out of range; NaN logits when asked to check),
    # the compiled step returns 1 instead, and the call is replayed to raise the error.
    classes = src.shape(logits)[1]
    src.line(f"for label in {labels}:")
    src.line(f"    if label < 0 or label >= {classes}:")
    src.line("        return 1")
    fused = src.kernel("softmax_cross_entropy", losses._softmax_cross_entropy_loop)
    src.line(f"total, finite = {fused}({logits}, {labels}, {losses_buffer}, {dlogits})")
    if params["check_finite"]:
        src.line("if not finite:")
        src.line("    return 1")
    mean = params["reduction"] == "mean"
    src.line(f"{out}[()] = total / {rows}" if mean else f"{out}[()] = total")


def _cross_entropy_jit_vjp(src, out, inputs, params, dy, grads):
    if grads[0] is None:
        return
    dlogits = src.buffer(("dlogits", out), src.shape(inputs[0]), src.dtype(inputs[0]))
    rows = src.shape(inputs[0])[0]
    if params["reduction"] == "mean":  # the factor rounded as in the vjp above
        factor = f"np.{src.dtype(out).name}(np.float64({dy}[()]) / {rows})"
    else:
        factor = f"{dy}[()]"
    src.line(f"np.multiply({dlogits}, {factor}, {grads[0]})")


CROSS_ENTROPY = defop(
    "cross_entropy",
    _cross_entropy_forward,
    _cross_entropy_vjp,
    jit=JitForm(_cross_entropy_jit_forward, _cross_entropy_jit_vjp),
)
