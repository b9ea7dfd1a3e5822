"""Compiled forms: the ops the compiler can write out as source, keyed by op name.

Each :class:`~fastbp.jit.compiler.JitForm` writes an op's forward and vjp as lines of a
compiled step, calling the same kernels in the same order as the op's own forward and
vjp (:mod:`fastbp.ops`), so a compiled step gives the eager bits. The op modules do
not know this table exists; the compiler looks ops up in it by name, and a step with
an op that is not here is replayed instead.
"""

from __future__ import annotations

import numpy as np

from ..kernels import activations, linear, losses
from . import blas
from .source import JitForm

__all__ = ["FORMS"]


def _jit_linear(activation: int) -> JitForm:
    """The compiled form of ``linear`` (0), ``linear_relu`` (1) and ``matmul`` (0, no bias)."""

    def forward(src, out, inputs, params):
        x, w = inputs[0], inputs[1]
        dtype = src.float_matrices("linear", x, w, out)
        # np.dot takes other BLAS routines (gemv, dot, a scalar product) when a layer has
        # width 1; blas.gemm mirrors only the batch-of-one case, the one that matters.
        src.require(min(src.shape(w)) > 1, "linear: a layer of width 1")
        gemm = src.kernel("gemm", blas.gemm)
        src.line(f"{gemm}({x}, False, {w}, False, {out}, 1.0, 0.0)")
        has_bias = len(inputs) == 3
        if has_bias:
            src.require(src.dtype(inputs[2]) == dtype, "linear: bias of another dtype")
        if has_bias or activation:
            bias = inputs[2] if has_bias else src.buffer(("no bias", dtype), (0,), dtype)
            finish = src.kernel("finish_linear", linear._finish_linear)
            src.line(f"{finish}({out}, {bias}, {has_bias}, {activation})")

    def vjp(src, out, inputs, params, dy, grads):
        x, w = inputs[0], inputs[1]
        dx, dw = grads[0], grads[1]
        db = grads[2] if len(grads) == 3 else None
        dz = dy
        if activation:
            # dz = dy·(y > 0) and db = dz.sum(0) in one pass, as activation_backward_bias;
            # into dy itself when nothing else reads it (a buffer fewer to stream through).
            if dy in src.private_gradients:
                dz = dy
            else:
                dz = src.buffer(("dz", out), src.shape(out), src.dtype(out))
            if db is None:
                db = src.buffer(("db", out), src.shape(out)[1:], src.dtype(out))
            fused = src.kernel("relu_backward_bias", activations._relu_backward_bias_loop)
            src.line(f"{fused}({out}, {dy}, {dz}, {db})")
        elif db is not None:
            src.line(f"{src.kernel('column_sums', linear._column_sums)}({dy}, {db})")
        gemm = src.kernel("gemm", blas.gemm)
        if dx is not None:
            src.line(f"{gemm}({dz}, False, {w}, True, {dx}, 1.0, 0.0)")
        if dw is not None:
            if src.shape(x)[0] == 1:  # a batch of one: the outer product, as eagerly
                outer = src.kernel("outer_product", linear._outer_product)
                src.line(f"{outer}({x}[0], {dz}[0], {dw})")
            else:
                src.weight_gradient(x, dz, dw)

    return JitForm(forward, vjp)


def _cross_entropy_jit_forward(src, out, inputs, params):
    # The forward above as source for a compiled step (fastbp.jit.compiler), same kernel.
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


FORMS: dict[str, JitForm] = {
    "matmul": _jit_linear(0),
    "linear": _jit_linear(0),
    "linear_relu": _jit_linear(1),
    "cross_entropy": JitForm(_cross_entropy_jit_forward, _cross_entropy_jit_vjp),
}
