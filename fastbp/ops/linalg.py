"""Matrix products: matmul, the fused Linear (affine) layer and Linear + activation.

The products and their gradients run in :mod:`fastbp.kernels` (BLAS for the GEMMs,
jitted loops for the bias and activation passes) whenever the arrays suit them.
"""

from __future__ import annotations

from ..core.registry import defop
from ..kernels import dispatch, linear


def _check_dtypes(name, a, b, labels=("a", "b")):
    """Integer or bool data against float weights raises, as in PyTorch.

    ``torch.nn.Linear`` on uint8 input raises "mat1 and mat2 must have the same dtype, but
    got Byte and Float"; accepting it here would silently train on unscaled 0..255 pixels.
    """
    kinds = (a.dtype.kind, b.dtype.kind)
    if ("f" in kinds or "c" in kinds) and any(k in "biu" for k in kinds):
        ints = [(lab, x) for lab, x in zip(labels, (a, b), strict=True) if x.dtype.kind in "biu"]
        hint = ""
        if any(x.dtype == "uint8" for _, x in ints):
            hint = " Raw uint8 pixels? Scale them first: x.astype(np.float32) / 255."
        raise TypeError(
            f"{name}: expected {labels[0]} and {labels[1]} of the same dtype, but got "
            f"{a.dtype} {labels[0]} {a.shape} and {b.dtype} {labels[1]} {b.shape}; convert "
            f"{ints[0][0]} to {(b if ints[0][1] is a else a).dtype} first.{hint}"
        )


def _check_float_dtypes(name, a, b, labels):
    if a.dtype is not b.dtype and a.dtype != b.dtype:
        # float64 data into a float32 layer: PyTorch raises ("mat1 and mat2 must have the
        # same dtype"); NumPy would silently run the float32 model in float64, off its kernels.
        raise TypeError(
            f"{name}: mat1 and mat2 must have the same dtype, but got {a.dtype} {labels[0]} "
            f"{a.shape} and {b.dtype} {labels[1]} {b.shape}; convert {labels[0]} with "
            f".astype(np.{b.dtype}) (or the model with .to(np.{a.dtype}))"
        )


def _check_2d(name, a, b, labels=("a", "b")):
    _check_dtypes(name, a, b, labels)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{name} takes 2-D matrices; got {a.ndim}-D and {b.ndim}-D")
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"inner dimensions differ: {a.shape} @ {b.shape} needs {a.shape[1]} == {b.shape[0]}"
        )
    _check_float_dtypes(name, a, b, labels)


def _matmul_forward(a, b):
    _check_2d("matmul", a, b)
    return dispatch.linear_forward(a, b, None), (a, b)


def _matmul_vjp(saved, dy, needs):
    a, b = saved
    da, db, _ = dispatch.linear_backward(a, b, dy, needs[0], needs[1], False)
    return da, db


MATMUL = defop(
    "matmul",
    _matmul_forward,
    _matmul_vjp,
    kernel=linear.linear_forward,
    twin=linear.linear_forward_numpy,
)


def _check_linear(x, w, b):
    _check_2d("linear", x, w, ("input", "weight"))
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


LINEAR = defop(
    "linear",
    _linear_forward,
    _linear_vjp,
    kernel=linear.linear_forward,
    twin=linear.linear_forward_numpy,
)


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


LINEAR_RELU = defop(
    "linear_relu",
    *_linear_activation("relu"),
    kernel=linear.linear_forward,
    twin=linear.linear_forward_numpy,
)
LINEAR_SIGMOID = defop("linear_sigmoid", *_linear_activation("sigmoid"))
