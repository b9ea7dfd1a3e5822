"""Convolution -> ReLU -> 2x2 max-pool in one pass over the product, and its backward.

Each public kernel has a NumPy twin ``name_numpy`` with the same signature.
"""

from __future__ import annotations

import numpy as np

from .._jit import kernel_jit
from .common import _buffer, _check_float

# ---- conv -> ReLU -> 2x2 max-pool in one pass -------------------------------------------------
#
# relu(z + b) followed by a 2x2 / stride-2 max-pool, straight from the product: the full-size
# activation is never written, and backward writes the product-layout gradient straight from
# the pooled one. ``code`` keeps the winner's place in its window (0..3, row-major), the first
# maximum of ``z + b`` on ties, as the unfused max_pool2d after relu; a window whose maximum is
# not positive passes no gradient (ReLU's gradient at 0 is 0), whichever cell it names.


@kernel_jit()
def _window_max(v0, v1, v2, v3):
    """The maximum of a 2x2 window (row-major cells) and its place 0..3, the first on ties.

    A tournament of selects (cells 0 and 1, cells 2 and 3, then the two winners), with no
    branch, so that loops calling it vectorise. For finite values only: the callers check.

    Example
    -------
    >>> _window_max(1.0, 3.0, 3.0, 0.0)
    (3.0, 1)
    """
    upper = v1 > v0
    best_top = v1 if upper else v0
    k_top = 1 if upper else 0
    lower = v3 > v2
    best_bottom = v3 if lower else v2
    k_bottom = 3 if lower else 2
    down = best_bottom > best_top
    return (best_bottom if down else best_top), (k_bottom if down else k_top)


@kernel_jit()
def _pool_relu_channels_loop(out, bias, has_bias, out_h, out_w, pooled, code):
    # Row by row, _window_max's selects and per-column sums for the finite check: no branch
    # and no serial reduction, so LLVM vectorises over the pooled columns (2x nested ifs).
    n_batch, out_c, ph_n, pw_n = pooled.shape
    pixels = out_h * out_w
    zero = pooled.dtype.type(0.0)
    sums = np.zeros(pw_n, out.dtype)
    for o in range(out_c):
        shift = bias[o] if has_bias else zero
        for n in range(n_batch):
            for ph in range(ph_n):
                start = n * pixels + 2 * ph * out_w
                top = out[o, start : start + out_w]
                bottom = out[o, start + out_w : start + 2 * out_w]
                best_row = pooled[n, o, ph]
                code_row = code[n, o, ph]
                for pw in range(pw_n):
                    v0 = top[2 * pw] + shift
                    v1 = top[2 * pw + 1] + shift
                    v2 = bottom[2 * pw] + shift
                    v3 = bottom[2 * pw + 1] + shift
                    sums[pw] += (v0 + v1) + (v2 + v3)
                    best, k = _window_max(v0, v1, v2, v3)
                    best_row[pw] = best if best > zero else zero
                    code_row[pw] = k
    return sums.sum()


@kernel_jit()
def _pool_relu_pixels_loop(out_t, bias, has_bias, out_h, out_w, pooled, code):
    n_batch, out_c, ph_n, pw_n = pooled.shape
    zero = pooled.dtype.type(0.0)
    total = 0.0
    for n in range(n_batch):
        for ph in range(ph_n):
            for pw in range(pw_n):
                r0 = (n * out_h + 2 * ph) * out_w + 2 * pw
                a, b_, c_, d = out_t[r0], out_t[r0 + 1], out_t[r0 + out_w], out_t[r0 + out_w + 1]
                for o in range(out_c):
                    shift = bias[o] if has_bias else zero
                    v0 = a[o] + shift
                    v1 = b_[o] + shift
                    v2 = c_[o] + shift
                    v3 = d[o] + shift
                    total += v0 + v1 + v2 + v3
                    best, k = _window_max(v0, v1, v2, v3)
                    pooled[n, o, ph, pw] = best if best > zero else zero
                    code[n, o, ph, pw] = k
    return total


@kernel_jit()
def _pool_relu_channels_backward_loop(pooled, code, dy, out_h, out_w, dz, db):
    n_batch, out_c, ph_n, pw_n = dy.shape
    pixels = out_h * out_w
    zero = dz.dtype.type(0.0)
    one = dz.dtype.type(1.0)
    for o in range(out_c):
        row = dz[o]
        if out_h > 2 * ph_n or out_w > 2 * pw_n:  # cells of an odd last row/column: no window
            for i in range(row.shape[0]):
                row[i] = zero
        total = 0.0
        for n in range(n_batch):
            for ph in range(ph_n):
                for pw in range(pw_n):
                    # Multiplies by 0/1 rather than branches on random signs (mispredicted
                    # half the time: 2x slower).
                    g = dy[n, o, ph, pw] * (zero if pooled[n, o, ph, pw] <= zero else one)
                    total += g
                    k = code[n, o, ph, pw]
                    r0 = n * pixels + 2 * ph * out_w + 2 * pw
                    row[r0] = g * (one if k == 0 else zero)
                    row[r0 + 1] = g * (one if k == 1 else zero)
                    row[r0 + out_w] = g * (one if k == 2 else zero)
                    row[r0 + out_w + 1] = g * (one if k == 3 else zero)
        db[o] = total


@kernel_jit()
def _pool_relu_pixels_backward_loop(pooled, code, dy, out_h, out_w, dz_t, db):
    n_batch, out_c, ph_n, pw_n = dy.shape
    zero = dz_t.dtype.type(0.0)
    one = dz_t.dtype.type(1.0)
    if out_h > 2 * ph_n or out_w > 2 * pw_n:
        for r in range(dz_t.shape[0]):
            for o in range(out_c):
                dz_t[r, o] = zero
    for o in range(out_c):
        db[o] = 0.0
    for n in range(n_batch):
        for ph in range(ph_n):
            for pw in range(pw_n):
                r0 = (n * out_h + 2 * ph) * out_w + 2 * pw
                a, b_, c_, d = dz_t[r0], dz_t[r0 + 1], dz_t[r0 + out_w], dz_t[r0 + out_w + 1]
                for o in range(out_c):
                    g = dy[n, o, ph, pw] * (zero if pooled[n, o, ph, pw] <= zero else one)
                    db[o] += g
                    k = code[n, o, ph, pw]
                    a[o] = g * (one if k == 0 else zero)
                    b_[o] = g * (one if k == 1 else zero)
                    c_[o] = g * (one if k == 2 else zero)
                    d[o] = g * (one if k == 3 else zero)


def conv_relu_pool(
    product: np.ndarray,
    bias: np.ndarray | None,
    out_shape: tuple[int, ...],
    pixels_major: bool,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``max_pool2d(relu(conv + bias), 2)`` straight from a convolution's product.

    Parameters
    ----------
    product : ndarray
        float32/float64: (N*OH*OW, O) if ``pixels_major``, else (O, N*OH*OW).
    bias : ndarray or None
        Shape (O,), same dtype.
    out_shape : tuple of int
        (N, O, OH, OW), the convolution's output shape.
    pixels_major : bool
        The product's layout.

    Returns
    -------
    pooled : ndarray
        (N, O, OH // 2, OW // 2).
    code : ndarray of uint8
        The winner's place (0..3, row-major) in each 2x2 window.
    finite : bool
        False if the windows held a NaN or an inf (the caller then takes the unfused path,
        whose NaN rules this loop does not follow).

    Raises
    ------
    TypeError
        If the arrays are not float32/float64 of one dtype.

    Example
    -------
    >>> import numpy as np
    >>> pooled, code, finite = conv_relu_pool(np.array([[1.0, 3.0, -1.0, 2.0]]), None,
    ...                                       (1, 1, 2, 2), False)
    >>> pooled.ravel(), code.ravel(), finite
    (array([3.]), array([1], dtype=uint8), True)
    """
    _check_float("conv_relu_pool", product=product)
    if bias is not None and bias.dtype != product.dtype:
        raise TypeError(
            f"conv_relu_pool: bias dtype {bias.dtype} differs from the product's {product.dtype}"
        )
    n, o, oh, ow = out_shape
    pooled = np.empty((n, o, oh // 2, ow // 2), product.dtype)
    code = np.empty(pooled.shape, np.uint8)
    has_bias = bias is not None
    b = np.ascontiguousarray(bias) if has_bias else np.zeros(o, product.dtype)
    loop = _pool_relu_pixels_loop if pixels_major else _pool_relu_channels_loop
    total = loop(np.ascontiguousarray(product), b, has_bias, oh, ow, pooled, code)
    return pooled, code, bool(np.isfinite(total))


def conv_relu_pool_numpy(
    product: np.ndarray,
    bias: np.ndarray | None,
    out_shape: tuple[int, ...],
    pixels_major: bool,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """NumPy twin of :func:`conv_relu_pool`: the unfused bias + ReLU, then max-pool.

    Example
    -------
    >>> import numpy as np
    >>> conv_relu_pool_numpy(np.array([[1.0, 3.0, -1.0, 2.0]]), None, (1, 1, 2, 2), False)[0]
    array([[[[3.]]]])
    """
    n, o, oh, ow = out_shape
    z = product if pixels_major else product.T
    z = (z if bias is None else z + bias).reshape(n, oh, ow, o).transpose(0, 3, 1, 2)
    z = z[:, :, : oh // 2 * 2, : ow // 2 * 2]
    windows = z.reshape(n, o, oh // 2, 2, ow // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    windows = windows.reshape(n, o, oh // 2, ow // 2, 4)
    code = np.argmax(windows, axis=-1).astype(np.uint8)  # the first maximum
    best = np.take_along_axis(windows, code[..., None].astype(np.intp), -1)[..., 0]
    pooled = np.where(best > 0, best, 0).astype(product.dtype)
    return pooled, code, bool(np.isfinite(windows).all())


def conv_relu_pool_backward(
    pooled: np.ndarray,
    code: np.ndarray,
    dy: np.ndarray,
    out_shape: tuple[int, ...],
    pixels_major: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of :func:`conv_relu_pool` at the product, in its layout, and the bias gradient.

    Parameters
    ----------
    pooled, code : ndarray
        From :func:`conv_relu_pool`.
    dy : ndarray
        Gradient at ``pooled``, same shape.
    out_shape : tuple of int
        (N, O, OH, OW).
    pixels_major : bool
        The layout of the returned ``dz``.

    Returns
    -------
    dz : ndarray
        (N*OH*OW, O) if ``pixels_major``, else (O, N*OH*OW): ``dy`` at each window's winner
        where the pooled value is positive, 0 elsewhere.
    db : ndarray
        Shape (O,), the sum of ``dz`` per channel.

    Raises
    ------
    TypeError
        If ``dy`` is not float32/float64 or does not match ``pooled``.

    Example
    -------
    >>> import numpy as np
    >>> dz, db = conv_relu_pool_backward(np.array([[[[3.0]]]]), np.array([[[[1]]]], np.uint8),
    ...                                  np.array([[[[5.0]]]]), (1, 1, 2, 2), False)
    >>> dz, db
    (array([[0., 5., 0., 0.]]), array([5.]))
    """
    _check_float("conv_relu_pool_backward", dy=dy)
    if dy.shape != pooled.shape or dy.dtype != pooled.dtype:
        raise TypeError(
            f"conv_relu_pool_backward: dy ({dy.shape}, {dy.dtype}) must match the pooled "
            f"output ({pooled.shape}, {pooled.dtype})"
        )
    n, o, oh, ow = out_shape
    shape = (n * oh * ow, o) if pixels_major else (o, n * oh * ow)
    dz = _buffer(shape, dy.dtype)
    db = np.empty(o, np.float64)
    loop = _pool_relu_pixels_backward_loop if pixels_major else _pool_relu_channels_backward_loop
    loop(pooled, np.ascontiguousarray(code), np.ascontiguousarray(dy), oh, ow, dz, db)
    if not np.isfinite(db).all():
        # The loops mask by multiplying with 0/1 (branch-free, 2x faster than selects in the
        # channel-major one), and an inf times 0 is a NaN where PyTorch passes 0: a NaN or
        # inf in dy takes the twin, whose np.where masks exactly.
        return conv_relu_pool_backward_numpy(pooled, code, dy, out_shape, pixels_major)
    return dz, db.astype(dy.dtype)


def conv_relu_pool_backward_numpy(
    pooled: np.ndarray,
    code: np.ndarray,
    dy: np.ndarray,
    out_shape: tuple[int, ...],
    pixels_major: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`conv_relu_pool_backward`.

    Example
    -------
    >>> import numpy as np
    >>> conv_relu_pool_backward_numpy(np.array([[[[0.0]]]]), np.array([[[[1]]]], np.uint8),
    ...                               np.array([[[[5.0]]]]), (1, 1, 2, 2), True)[0].ravel()
    array([0., 0., 0., 0.])
    """
    n, o, oh, ow = out_shape
    g = np.where(pooled > 0, dy, 0).astype(dy.dtype)
    onehot = code[..., None] == np.arange(4)  # (n, o, ph, pw, 4)
    cells = np.where(onehot, g[..., None], 0).astype(dy.dtype)
    cells = cells.reshape(n, o, oh // 2, ow // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    dz = np.zeros((n, o, oh, ow), dy.dtype)
    dz[:, :, : oh // 2 * 2, : ow // 2 * 2] = cells.reshape(n, o, oh // 2 * 2, ow // 2 * 2)
    db = g.sum(axis=(0, 2, 3), dtype=np.float64).astype(dy.dtype)
    if pixels_major:
        return np.ascontiguousarray(dz.transpose(0, 2, 3, 1)).reshape(-1, o), db
    return np.ascontiguousarray(dz.transpose(1, 0, 2, 3)).reshape(o, -1), db
