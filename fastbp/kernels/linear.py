"""Dense-layer kernels: ``y = x·w + b`` and its gradients.

The matrix products go through NumPy's BLAS (``np.dot`` with ``out=``), called from these Python
wrappers; only the bias add, the column sums and the batch-of-one outer product are jitted. Calling
BLAS from Numba instead (``np.dot`` inside ``@njit``) would load SciPy's separate OpenBLAS, whose
thread pool would then compete with NumPy's on a 2-core machine, for no measured gain (see
``benchmarks/bench_kernels.py`` and the package docstring). Transposes are passed as ``.T`` views:
BLAS reads them through its transpose flags, without a copy.

``w`` is stored ``(in_features, out_features)``; ``x`` is ``(batch, in_features)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._guards import (
    FLOAT_DTYPES,
    check_float_arrays,
    check_same_dtype,
    check_shape,
    check_writable,
    describe,
    require_float_matrices,
    require_float_vectors,
    require_same_dtype,
    require_writable,
)
from ._jit import kernel_jit
from ._simd_math import nan_maximum

__all__ = [
    "bias_grad",
    "bias_grad_numpy",
    "linear_backward",
    "linear_backward_numpy",
    "linear_forward",
    "linear_forward_numpy",
    "matmul_grad",
    "matmul_grad_numpy",
]

_FLOAT32, _FLOAT64 = FLOAT_DTYPES
# xᵀ·dy through np.matmul rather than np.dot: with OpenBLAS, single thread, matmul's call is
# 4-25% faster for batches of 4 to 128 (16x784x128: 31 vs 39 us; 128x784x512: 700 vs 730 us),
# mixed from 256 up, and ~0.5 us slower on small outputs (128x256x10), so only those batches and
# outputs take it (test_weight_gradient_product in benchmarks/bench_kernels.py).
_MATMUL_MAX_BATCH = 128
_MATMUL_MIN_SIZE = 16384
# Stand-in bias for _finish_linear without one (it is never read then).
_NO_BIAS = {_FLOAT32: np.zeros(0, _FLOAT32), _FLOAT64: np.zeros(0, _FLOAT64)}


# Activation codes of _finish_linear (an int: one compiled kernel serves every activation).
_ACTIVATIONS = {None: 0, "relu": 1, "sigmoid": 2}


@kernel_jit()
def _finish_linear(matrix, vector, has_bias, activation):
    # Everything that follows the forward GEMM, in one pass over y while it is in cache:
    # + b, then max(., 0) for ReLU, or the first half of sigmoid = 0.5 * (1 + tanh(z / 2)),
    # z / 2 (the tanh itself is NumPy's SIMD one; Numba's is a scalar libm call). One loop
    # per case, chosen outside the loops, keeps every loop branch-free and vectorised.
    require_float_matrices(matrix)
    require_float_vectors(vector)
    require_same_dtype(matrix, vector)
    require_writable(matrix)
    rows, cols = matrix.shape
    if has_bias and vector.shape[0] != cols:
        raise ValueError("linear_forward: bias shape mismatch")
    zero = matrix.dtype.type(0.0)
    half = matrix.dtype.type(0.5)
    for i in range(rows):
        row = matrix[i]
        if activation == 1 and has_bias:
            for j in range(cols):
                row[j] = nan_maximum(row[j] + vector[j], zero)  # NaN stays NaN, as np.maximum
        elif activation == 1:
            for j in range(cols):
                row[j] = nan_maximum(row[j], zero)
        elif activation == 2 and has_bias:
            for j in range(cols):
                row[j] = (row[j] + vector[j]) * half
        elif activation == 2:
            for j in range(cols):
                row[j] = row[j] * half
        elif has_bias:
            for j in range(cols):
                row[j] += vector[j]


@kernel_jit()
def _finish_sigmoid(matrix):
    # Second half of sigmoid: (1 + tanh(z / 2)) / 2, the same operations in the same order as
    # the NumPy twin, hence the same bits.
    require_float_matrices(matrix)
    require_writable(matrix)
    one = matrix.dtype.type(1.0)
    half = matrix.dtype.type(0.5)
    rows, cols = matrix.shape
    for i in range(rows):
        row = matrix[i]
        for j in range(cols):
            row[j] = (row[j] + one) * half


@kernel_jit()
def _column_sums(matrix, out):
    require_float_matrices(matrix)
    require_float_vectors(out)
    require_same_dtype(matrix, out)
    require_writable(out)
    rows, cols = matrix.shape
    if out.shape[0] != cols:
        raise ValueError("bias_grad: shape mismatch")
    out[:] = matrix.dtype.type(0.0)
    # Row after row, like NumPy's sum(axis=0): same summation order, and the inner loop vectorises.
    for i in range(rows):
        for j in range(cols):
            out[j] += matrix[i, j]


@kernel_jit()
def _outer_product(left, right, out):
    # For a batch of one, x.T @ dy is an outer product; OpenBLAS's gemm with an inner dimension
    # of 1 is 3-6x slower than this loop (which is not a matrix product: no reduction).
    require_float_vectors(left, right)
    require_float_matrices(out)
    require_same_dtype(left, out)
    require_writable(out)
    if out.shape[0] != left.shape[0] or out.shape[1] != right.shape[0]:
        raise ValueError("linear_backward: shape mismatch")
    for i in range(left.shape[0]):
        scale = left[i]
        for j in range(right.shape[0]):
            out[i, j] = scale * right[j]


@kernel_jit()
def _copy_matrix(source, out):
    # A compiled step keeps a copy of its batch for the weight gradients it computes on
    # demand (fastbp.jit.compiler). This loop is cached on disk; the same copy written as a slice
    # assignment inside the step costs Numba about 2 s to compile, in every process.
    require_float_matrices(source, out)
    require_same_dtype(source, out)
    require_writable(out)
    if source.shape != out.shape:
        raise ValueError("copy: shape mismatch")
    rows, cols = out.shape
    for i in range(rows):
        for j in range(cols):
            out[i, j] = source[i, j]


def _is_float_pair(x: Any, w: Any) -> bool:
    """Fast path for the common case; identity tests on the builtin dtype singletons."""
    dtype = x.dtype
    return (dtype is _FLOAT32 or dtype is _FLOAT64) and w.dtype is dtype and x.ndim == w.ndim == 2


def _explain_linear(kernel: str, **arrays: Any) -> None:
    """Raise the descriptive error for bad dense-layer arguments, if they are at fault."""
    inputs = {name: arrays[name] for name in ("x", "w", "dy") if name in arrays}
    outputs = {name: value for name, value in arrays.items() if name not in inputs}
    for name, value in inputs.items():
        if not isinstance(value, np.ndarray) or value.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{kernel}: {name} must be a float32 or float64 array, got {describe(value)}"
            ) from None
        if value.ndim != 2:
            raise ValueError(f"{kernel}: {name} must be 2-D, got {describe(value)}") from None
    check_same_dtype(kernel, **inputs)
    if "dy" in inputs and not inputs["dy"].flags.c_contiguous:
        message = f"{kernel}: dy must be C-contiguous, got {describe(inputs['dy'])}"
        raise ValueError(message) from None
    x, w = arrays["x"], arrays["w"]
    batch, (in_features, out_features) = x.shape[0], w.shape
    expected = {"x": (batch, in_features), "w": (in_features, out_features)}
    if "dy" in arrays:
        expected["dy"] = (batch, out_features)
    if x.shape[1] != in_features or ("dy" in arrays and arrays["dy"].shape != expected["dy"]):
        listing = ", ".join(f"{name}: {describe(value)}" for name, value in inputs.items())
        raise ValueError(
            f"{kernel}: expected x (N, in), w (in, out), dy (N, out), got {listing}"
        ) from None
    expected.update(out=(batch, out_features), dx_out=x.shape, dw_out=w.shape)
    expected.update(b=(out_features,), db_out=(out_features,))
    for name, value in outputs.items():
        check_float_arrays(kernel, len(expected[name]), **{name: value})
        check_same_dtype(kernel, x=x, **{name: value})
        check_shape(kernel, name, value, expected[name])
    check_writable(kernel, **{name: value for name, value in outputs.items() if name != "b"})


def _linear_backward(
    kernel: str,
    x: np.ndarray,
    w: np.ndarray,
    dy: np.ndarray,
    need_dx: bool,
    need_dw: bool,
    need_db: bool,
    dx_out: np.ndarray | None,
    dw_out: np.ndarray | None,
    db_out: np.ndarray | None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    dx = dw = db = None
    try:
        if not _is_float_pair(x, w) or dy.dtype is not x.dtype:
            _explain_linear(kernel, x=x, w=w, dy=dy)
        if need_dx:
            dx = np.dot(dy, w.T, out=dx_out)
        if need_dw:
            if x.shape[0] == 1 and dy.shape[0] == 1 and x.flags.c_contiguous:
                if dw_out is None:
                    dw_out = np.empty(w.shape, w.dtype)
                _outer_product(x[0], dy[0], dw_out)
                dw = dw_out
            elif 1 < x.shape[0] <= _MATMUL_MAX_BATCH and w.size >= _MATMUL_MIN_SIZE:
                dw = np.matmul(x.T, dy, out=dw_out)
            else:
                dw = np.dot(x.T, dy, out=dw_out)
        if need_db:
            if db_out is None:
                db_out = np.empty(dy.shape[1], dy.dtype)
            _column_sums(dy, db_out)
            db = db_out
    except Exception:
        _explain_linear(kernel, x=x, w=w, dy=dy, dx_out=dx_out, dw_out=dw_out, db_out=db_out)
        raise
    return dx, dw, db


def linear_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    out: np.ndarray | None = None,
    activation: str | None = None,
) -> np.ndarray:
    """Dense layer forward: ``y = x·w + b``, optionally followed by ReLU or the sigmoid.

    Parameters
    ----------
    x : ndarray, shape (N, in), float32 or float64
        Input batch (any strides: BLAS or NumPy handle them).
    w : ndarray, shape (in, out), same dtype
        Weights.
    b : ndarray, shape (out,), same dtype, C-contiguous, optional
        Bias.
    out : ndarray, shape (N, out), same dtype, C-contiguous, optional
        Where to write ``y`` (saves an allocation).
    activation : {None, "relu", "sigmoid"}, optional
        Applied in the same pass as the bias: ``max(z, 0)`` (NaN stays NaN), or the sigmoid
        as ``0.5 * (1 + tanh(z / 2))``, which never overflows.

    Returns
    -------
    ndarray, shape (N, out)
        ``y``.

    Raises
    ------
    TypeError
        For non-float arrays or mixed dtypes.
    ValueError
        For wrong ranks or shapes, an unusable ``out`` or an unknown activation.

    Example
    -------
    >>> linear_forward(np.ones((1, 2)), np.ones((2, 3)), np.arange(3.0))
    array([[2., 3., 4.]])
    >>> linear_forward(np.ones((1, 2)), -np.ones((2, 2)), np.array([3.0, 1.0]), activation="relu")
    array([[1., 0.]])
    """
    code = _ACTIVATIONS.get(activation)
    if code is None:
        raise ValueError(
            f"linear_forward: activation must be None, 'relu' or 'sigmoid', got {activation!r}"
        )
    try:
        if not _is_float_pair(x, w):
            _explain_linear("linear_forward", x=x, w=w, b=b, out=out)
        y = np.dot(x, w, out=out)
        if b is not None:
            _finish_linear(y, b, True, code)
        elif code:
            _finish_linear(y, _NO_BIAS[y.dtype], False, code)
        if code == 2:
            np.tanh(y, out=y)
            _finish_sigmoid(y)
    except Exception:
        _explain_linear("linear_forward", x=x, w=w, b=b, out=out)
        raise
    return y


def linear_forward_numpy(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    out: np.ndarray | None = None,
    activation: str | None = None,
) -> np.ndarray:
    """NumPy twin of :func:`linear_forward`: ``act(x @ w + b)``.

    Parameters
    ----------
    x : ndarray, shape (N, in)
        Input batch.
    w : ndarray, shape (in, out)
        Weights.
    b : ndarray, shape (out,), optional
        Bias.
    out : ndarray, optional
        Where to write the result.
    activation : {None, "relu", "sigmoid"}, optional
        Activation applied after the bias.

    Returns
    -------
    ndarray
        ``y``.

    Example
    -------
    >>> linear_forward_numpy(np.ones((1, 2)), np.ones((2, 1)))
    array([[2.]])
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"linear_forward: activation must be None, 'relu' or 'sigmoid', got {activation!r}"
        )
    y = np.dot(x, w, out=out)
    if b is not None:
        y += b
    if activation == "relu":
        np.maximum(y, 0, out=y)
    elif activation == "sigmoid":  # 0.5 * (1 + tanh(z / 2)): never overflows
        y *= 0.5
        np.tanh(y, out=y)
        y += 1
        y *= 0.5
    return y


def linear_backward(
    x: np.ndarray,
    w: np.ndarray,
    dy: np.ndarray,
    need_dx: bool = True,
    need_dw: bool = True,
    need_db: bool = True,
    *,
    dx_out: np.ndarray | None = None,
    dw_out: np.ndarray | None = None,
    db_out: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Dense layer backward: ``dx = dy·wᵀ``, ``dw = xᵀ·dy``, ``db = dy.sum(0)``.

    Parameters
    ----------
    x : ndarray, shape (N, in), float32 or float64
        Layer input saved by the forward pass.
    w : ndarray, shape (in, out), same dtype
        Weights.
    dy : ndarray, shape (N, out), same dtype, C-contiguous
        Gradient at the layer output (after the bias). ``x`` and ``w`` may have any strides.
    need_dx, need_dw, need_db : bool
        Which gradients to compute; the others come back as ``None``.
    dx_out, dw_out, db_out : ndarray, optional, keyword-only
        Where to write the gradients (C-contiguous, right shape and dtype), e.g. views into a flat
        gradient buffer.

    Returns
    -------
    dx : ndarray, shape (N, in), or None
    dw : ndarray, shape (in, out), or None
    db : ndarray, shape (out,), or None

    Raises
    ------
    TypeError
        For non-float arrays or mixed dtypes.
    ValueError
        For inconsistent shapes or unusable output arrays.

    Example
    -------
    >>> x, w, dy = np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4))
    >>> dx, dw, db = linear_backward(x, w, dy, need_dx=False)
    >>> dx is None, dw.shape, db
    (True, (3, 4), array([2., 2., 2., 2.]))
    """
    return _linear_backward(
        "linear_backward", x, w, dy, need_dx, need_dw, need_db, dx_out, dw_out, db_out
    )


def linear_backward_numpy(
    x: np.ndarray,
    w: np.ndarray,
    dy: np.ndarray,
    need_dx: bool = True,
    need_dw: bool = True,
    need_db: bool = True,
    *,
    dx_out: np.ndarray | None = None,
    dw_out: np.ndarray | None = None,
    db_out: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """NumPy twin of :func:`linear_backward`: ``dy @ w.T``, ``x.T @ dy``, ``dy.sum(0)``.

    Parameters
    ----------
    x, w, dy : ndarray
        Layer input, weights and output gradient.
    need_dx, need_dw, need_db : bool
        Which gradients to compute.
    dx_out, dw_out, db_out : ndarray, optional, keyword-only
        Where to write them.

    Returns
    -------
    dx, dw, db : ndarray or None
        The requested gradients.

    Example
    -------
    >>> linear_backward_numpy(np.ones((1, 1)), np.ones((1, 1)), np.ones((1, 1)))[2]
    array([1.])
    """
    dx = np.dot(dy, w.T, out=dx_out) if need_dx else None
    dw = np.dot(x.T, dy, out=dw_out) if need_dw else None
    db = dy.sum(axis=0, out=db_out) if need_db else None
    return dx, dw, db


def matmul_grad(x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``y = x·w``: ``dx = dy·wᵀ`` and ``dw = xᵀ·dy``.

    Parameters
    ----------
    x : ndarray, shape (N, K), float32 or float64
        Left factor.
    w : ndarray, shape (K, M), same dtype
        Right factor.
    dy : ndarray, shape (N, M), same dtype
        Gradient of ``y``.

    Returns
    -------
    dx : ndarray, shape (N, K)
    dw : ndarray, shape (K, M)

    Raises
    ------
    TypeError
        For non-float arrays or mixed dtypes.
    ValueError
        For inconsistent shapes.

    Example
    -------
    >>> dx, dw = matmul_grad(np.ones((1, 2)), np.ones((2, 3)), np.ones((1, 3)))
    >>> dx
    array([[3., 3.]])
    """
    dx, dw, _ = _linear_backward("matmul_grad", x, w, dy, True, True, False, None, None, None)
    return dx, dw


def matmul_grad_numpy(
    x: np.ndarray, w: np.ndarray, dy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`matmul_grad`: ``dy @ w.T`` and ``x.T @ dy``.

    Parameters
    ----------
    x, w, dy : ndarray
        Factors of ``y = x·w`` and the gradient of ``y``.

    Returns
    -------
    dx, dw : ndarray
        The gradients.

    Example
    -------
    >>> matmul_grad_numpy(np.ones((1, 2)), np.ones((2, 1)), np.ones((1, 1)))[1]
    array([[1.],
           [1.]])
    """
    return dy @ w.T, x.T @ dy


def bias_grad(dy: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Bias gradient: column sums ``dy.sum(0)``.

    Parameters
    ----------
    dy : ndarray, shape (N, M), float32 or float64, C-contiguous
        Gradient at the output of ``x·w + b``.
    out : ndarray, shape (M,), same dtype, optional
        Where to write the sums.

    Returns
    -------
    ndarray, shape (M,)
        ``db``.

    Raises
    ------
    TypeError
        For a non-float array or a mismatched ``out`` dtype.
    ValueError
        For a non-2-D or non-C-contiguous ``dy`` or a wrong ``out`` shape.

    Example
    -------
    >>> bias_grad(np.ones((3, 2)))
    array([3., 3.])
    """
    try:
        if out is None:
            out = np.empty(dy.shape[1], dy.dtype)
        _column_sums(dy, out)
    except Exception:
        check_float_arrays("bias_grad", 2, dy=dy)
        check_float_arrays("bias_grad", 1, out=out)
        check_same_dtype("bias_grad", dy=dy, out=out)
        check_shape("bias_grad", "out", out, dy.shape[1:])
        check_writable("bias_grad", out=out)
        raise
    return out


def bias_grad_numpy(dy: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """NumPy twin of :func:`bias_grad`: ``dy.sum(0)``.

    Parameters
    ----------
    dy : ndarray, shape (N, M)
        Output gradient.
    out : ndarray, optional
        Where to write the sums.

    Returns
    -------
    ndarray, shape (M,)
        Column sums.

    Example
    -------
    >>> bias_grad_numpy(np.ones((2, 2)))
    array([2., 2.])
    """
    return dy.sum(axis=0, out=out)
