"""Matrix products: matmul, the fused Linear (affine) layer and Linear + activation.

The products and their gradients run in :mod:`fastbp.kernels` (BLAS for the GEMMs,
jitted loops for the bias and activation passes) whenever the arrays suit them.
"""

from __future__ import annotations

from ..compiler import JitForm
from ..kernels import activations, blas, dispatch, linear
from . import defop


def _check_2d(name, a, b):
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{name} takes 2-D matrices; got {a.ndim}-D and {b.ndim}-D")
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"inner dimensions differ: {a.shape} @ {b.shape} needs {a.shape[1]} == {b.shape[0]}"
        )


# ------------------------------------------------------------------ compiled forms
# The same ops written as source for a compiled step (fastbp.compiler): the same kernels in
# the same order as the forward and vjp functions below, so a compiled step gives the eager bits.


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


def _matmul_forward(a, b):
    _check_2d("matmul", a, b)
    return dispatch.linear_forward(a, b, None), (a, b)


def _matmul_vjp(saved, dy, needs):
    a, b = saved
    da, db, _ = dispatch.linear_backward(a, b, dy, needs[0], needs[1], False)
    return da, db


MATMUL = defop("matmul", _matmul_forward, _matmul_vjp, jit=_jit_linear(0))


def _check_linear(x, w, b):
    _check_2d("linear", x, w)
    if b is not None and b.shape != (w.shape[1],):
        raise ValueError(f"bias must have shape ({w.shape[1]},), got {b.shape}")


def _linear_forward(x, w, b=None):
    # One record for Y = X·W + b: its vjp sees needs[0] and skips dX = dY·Wᵀ (the
    # largest product of a first layer) when X is the data batch.
    _check_linear(x, w, b)
    return dispatch.linear_forward(x, w, b), (x, w)


def _linear_vjp(saved, dy, needs):
    x, w = saved
    has_bias = len(needs) == 3
    dx, dw, db = dispatch.linear_backward(x, w, dy, needs[0], needs[1], has_bias and needs[2])
    return (dx, dw, db) if has_bias else (dx, dw)


LINEAR = defop("linear", _linear_forward, _linear_vjp, jit=_jit_linear(0))


def _linear_activation(activation):
    """Linear followed by an activation, as one record.

    ``y = act(x·w + b)`` keeps ``x``, ``w`` and ``y`` (the activation's output is all
    its backward needs). Backward computes ``dz = dy·act'`` and ``db = dz.sum(0)`` in
    one fused pass, then the two GEMMs: one record and one pass fewer than
    ``linear`` + ``relu``.
    """

    def forward(x, w, b=None):
        _check_linear(x, w, b)
        # The bias and the activation run in one pass right after the GEMM.
        y = dispatch.linear_forward(x, w, b, activation)
        return y, (x, w, y)

    def vjp(saved, dy, needs):
        x, w, y = saved
        has_bias = len(needs) == 3
        dz, db = dispatch.activation_backward_bias(activation, y, dy)
        dx, dw, _ = dispatch.linear_backward(x, w, dz, needs[0], needs[1], False)
        return (dx, dw, db if needs[2] else None) if has_bias else (dx, dw)

    return forward, vjp


LINEAR_RELU = defop("linear_relu", *_linear_activation("relu"), jit=_jit_linear(1))
LINEAR_SIGMOID = defop("linear_sigmoid", *_linear_activation("sigmoid"))
