"""Convolution and pooling transforms: im2col / col2im and max-pool forward / backward.

These are the parts of a convolution BLAS does not do. A 2-D convolution becomes one matrix
product per group once the input is unfolded into columns:

    cols[c, i, j, n, oh, ow] = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]

``cols`` reshaped to ``(C*kH*kW, N*OH*OW)`` is the right operand of ``W.reshape(O, -1) @ cols``;
``col2im`` is its adjoint (a scatter-add back into the input's shape), used for ``dx``. The
``(C, kH, kW, N, OH, OW)`` layout keeps each group's rows contiguous, so grouped and depthwise
convolutions are a batched ``np.matmul`` over the same buffer, and the inner loop writes
contiguously along ``ow``.

Padding is never materialised: the loops compute, for each kernel offset, the range of output
positions that read inside the input and write zeros elsewhere.

Max pooling keeps the argmax of every window (as a flat ``ih * W + iw`` index into the input
plane, PyTorch's ``return_indices`` convention) so the backward pass is a scatter of ``dy``.

Each public kernel has a NumPy twin ``name_numpy`` with the same signature.

Example
-------
>>> import numpy as np
>>> from fastbp.kernels.conv import im2col, col2im
>>> x = np.arange(16.0).reshape(1, 1, 4, 4)
>>> cols = im2col(x, (2, 2), (2, 2), (0, 0), (1, 1), (2, 2))
>>> cols.shape
(1, 2, 2, 1, 2, 2)
>>> cols[0, 0, 0, 0]
array([[ 0.,  2.],
       [ 8., 10.]])
>>> col2im(cols, (1, 1, 4, 4), (2, 2), (0, 0), (1, 1)).sum() == x.sum()
np.True_
"""

from __future__ import annotations

import numpy as np

from ._guards import FLOAT_DTYPES
from ._jit import kernel_jit

__all__ = [
    "col2im",
    "col2im_numpy",
    "im2col",
    "im2col_numpy",
    "max_pool2d_backward",
    "max_pool2d_backward_numpy",
    "max_pool2d_forward",
    "max_pool2d_forward_numpy",
]

Pair = tuple[int, int]


def _check_float(kernel: str, **arrays: np.ndarray) -> None:
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray) or array.dtype not in FLOAT_DTYPES:
            got = getattr(array, "dtype", type(array).__name__)
            raise TypeError(f"{kernel}: {name} must be a float32/float64 array, got {got}")


# ---- jitted loops -----------------------------------------------------------------------------


@kernel_jit()
def _range_loop(start, step, size, count):
    lo = 0 if start >= 0 else (-start + step - 1) // step
    last = size - 1 - start
    hi = 0 if last < 0 else min(count, last // step + 1)
    return lo, max(lo, hi)


@kernel_jit()
def _im2col_loop(x, cols, sh, sw, ph, pw, dh, dw):
    n_batch, channels, height, width = x.shape
    kh, kw, out_h, out_w = cols.shape[1], cols.shape[2], cols.shape[4], cols.shape[5]
    zero = cols.dtype.type(0.0)
    for c in range(channels):
        for i in range(kh):
            oh_lo, oh_hi = _range_loop(i * dh - ph, sh, height, out_h)
            for j in range(kw):
                ow_lo, ow_hi = _range_loop(j * dw - pw, sw, width, out_w)
                for n in range(n_batch):
                    for oh in range(out_h):
                        row = cols[c, i, j, n, oh]
                        if oh < oh_lo or oh >= oh_hi:
                            row[:] = zero
                            continue
                        src = x[n, c, oh * sh + i * dh - ph]
                        for ow in range(ow_lo):
                            row[ow] = zero
                        base = j * dw - pw
                        for ow in range(ow_lo, ow_hi):
                            row[ow] = src[ow * sw + base]
                        for ow in range(ow_hi, out_w):
                            row[ow] = zero


@kernel_jit()
def _col2im_loop(cols, dx, sh, sw, ph, pw, dh, dw):
    n_batch, channels, height, width = dx.shape
    kh, kw, out_h, out_w = cols.shape[1], cols.shape[2], cols.shape[4], cols.shape[5]
    for c in range(channels):
        for i in range(kh):
            oh_lo, oh_hi = _range_loop(i * dh - ph, sh, height, out_h)
            for j in range(kw):
                ow_lo, ow_hi = _range_loop(j * dw - pw, sw, width, out_w)
                base = j * dw - pw
                for n in range(n_batch):
                    for oh in range(oh_lo, oh_hi):
                        row = cols[c, i, j, n, oh]
                        dst = dx[n, c, oh * sh + i * dh - ph]
                        for ow in range(ow_lo, ow_hi):
                            dst[ow * sw + base] += row[ow]


@kernel_jit()
def _max_pool_loop(x, out, idx, kh, kw, sh, sw, ph, pw, dh, dw):
    n_batch, channels, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for n in range(n_batch):
        for c in range(channels):
            plane = x[n, c]
            for oh in range(out_h):
                h0 = oh * sh - ph
                for ow in range(out_w):
                    w0 = ow * sw - pw
                    best = -np.inf
                    where = -1
                    inside = (
                        h0 >= 0
                        and w0 >= 0
                        and h0 + (kh - 1) * dh < height
                        and w0 + (kw - 1) * dw < width
                    )
                    if inside:
                        # The common case (no padding in the window): no bounds checks.
                        best = plane[h0, w0]
                        where = h0 * width + w0
                        for i in range(kh):
                            ih = h0 + i * dh
                            for j in range(kw):
                                iw = w0 + j * dw
                                value = plane[ih, iw]
                                if value > best or value != value:
                                    best = value
                                    where = ih * width + iw
                        out[n, c, oh, ow] = best
                        idx[n, c, oh, ow] = where
                        continue
                    for i in range(kh):
                        ih = h0 + i * dh
                        if ih < 0 or ih >= height:
                            continue
                        for j in range(kw):
                            iw = w0 + j * dw
                            if iw < 0 or iw >= width:
                                continue
                            value = plane[ih, iw]
                            # NOTE: the first maximum wins ties; a NaN wins over everything
                            # (the last NaN of the window, as in PyTorch), so NaN propagates.
                            if where < 0 or value > best or value != value:
                                best = value
                                where = ih * width + iw
                    out[n, c, oh, ow] = best
                    idx[n, c, oh, ow] = where


@kernel_jit()
def _max_pool_2x2_loop(x, out, idx):
    # 2x2 windows, stride 2, no padding: unrolled and free of NaN branches, which LLVM then
    # vectorises (10x the generic loop). The caller runs the generic loop if x holds a NaN.
    n_batch, channels, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for n in range(n_batch):
        for c in range(channels):
            for oh in range(out_h):
                h0 = 2 * oh
                for ow in range(out_w):
                    w0 = 2 * ow
                    best = x[n, c, h0, w0]
                    where = h0 * width + w0
                    value = x[n, c, h0, w0 + 1]
                    if value > best:
                        best = value
                        where = h0 * width + w0 + 1
                    value = x[n, c, h0 + 1, w0]
                    if value > best:
                        best = value
                        where = (h0 + 1) * width + w0
                    value = x[n, c, h0 + 1, w0 + 1]
                    if value > best:
                        best = value
                        where = (h0 + 1) * width + w0 + 1
                    out[n, c, oh, ow] = best
                    idx[n, c, oh, ow] = where


@kernel_jit()
def _max_pool_backward_loop(dy, idx, dx):
    n_batch, channels, out_h, out_w = dy.shape
    width = dx.shape[3]
    for n in range(n_batch):
        for c in range(channels):
            for oh in range(out_h):
                for ow in range(out_w):
                    where = idx[n, c, oh, ow]
                    dx[n, c, where // width, where % width] += dy[n, c, oh, ow]


# ---- public kernels ---------------------------------------------------------------------------


def im2col(
    x: np.ndarray, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair, out_size: Pair
) -> np.ndarray:
    """Unfold ``x`` (N, C, H, W) into columns of shape (C, kH, kW, N, OH, OW).

    Parameters
    ----------
    x : ndarray
        float32/float64, shape (N, C, H, W) (made C-contiguous if it is not).
    kernel_size, stride, padding, dilation : (int, int)
        Per spatial axis; ``padding`` is the zero padding before the first row / column
        (padding after the last one is implied by ``out_size``).
    out_size : (int, int)
        (OH, OW), the output's spatial size.

    Returns
    -------
    ndarray
        ``cols[c, i, j, n, oh, ow] = x[n, c, oh*sh + i*dh - ph, ow*sw + j*dw - pw]`` (0 outside).

    Raises
    ------
    TypeError
        If ``x`` is not a float32/float64 array.

    Example
    -------
    >>> import numpy as np
    >>> im2col(np.ones((2, 3, 5, 5)), (3, 3), (1, 1), (1, 1), (1, 1), (5, 5)).shape
    (3, 3, 3, 2, 5, 5)
    """
    _check_float("im2col", x=x)
    x = np.ascontiguousarray(x)
    n, c = x.shape[:2]
    cols = np.empty((c, kernel_size[0], kernel_size[1], n, out_size[0], out_size[1]), x.dtype)
    _im2col_loop(x, cols, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1])
    return cols


def im2col_numpy(
    x: np.ndarray, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair, out_size: Pair
) -> np.ndarray:
    """NumPy twin of :func:`im2col`: pad, then one strided slice per kernel offset.

    Example
    -------
    >>> import numpy as np
    >>> im2col_numpy(np.ones((2, 3, 5, 5)), (3, 3), (1, 1), (1, 1), (1, 1), (5, 5)).shape
    (3, 3, 3, 2, 5, 5)
    """
    _check_float("im2col_numpy", x=x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = (
        kernel_size,
        stride,
        padding,
        dilation,
        out_size,
    )
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, max(0, need_h - ph - h)), (pw, max(0, need_w - pw - w))))
    cols = np.empty((c, kh, kw, n, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = xp[:, :, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw :: sw][..., :ow]
            cols[:, i, j] = window.transpose(1, 0, 2, 3)
    return cols


def col2im(
    cols: np.ndarray, x_shape: tuple[int, ...], stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """Adjoint of :func:`im2col`: scatter-add columns (C, kH, kW, N, OH, OW) into (N, C, H, W).

    Parameters
    ----------
    cols : ndarray
        float32/float64, shape (C, kH, kW, N, OH, OW).
    x_shape : tuple of int
        (N, C, H, W) of the result.
    stride, padding, dilation : (int, int)
        As given to :func:`im2col`.

    Returns
    -------
    ndarray
        A fresh array of shape ``x_shape``; contributions from padding positions are dropped.

    Raises
    ------
    TypeError
        If ``cols`` is not a float32/float64 array.

    Example
    -------
    >>> import numpy as np
    >>> col2im(np.ones((1, 3, 3, 1, 2, 2)), (1, 1, 4, 4), (1, 1), (0, 0), (1, 1))[0, 0, 1]
    array([2., 4., 4., 2.])
    """
    _check_float("col2im", cols=cols)
    cols = np.ascontiguousarray(cols)
    dx = np.zeros(tuple(x_shape), cols.dtype)
    _col2im_loop(cols, dx, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1])
    return dx


def col2im_numpy(
    cols: np.ndarray, x_shape: tuple[int, ...], stride: Pair, padding: Pair, dilation: Pair
) -> np.ndarray:
    """NumPy twin of :func:`col2im`: one strided slice-add per kernel offset into a padded array.

    Example
    -------
    >>> import numpy as np
    >>> col2im_numpy(np.ones((1, 3, 3, 1, 2, 2)), (1, 1, 4, 4), (1, 1), (0, 0), (1, 1))[0, 0, 1]
    array([2., 4., 4., 2.])
    """
    _check_float("col2im_numpy", cols=cols)
    n, c, h, w = x_shape
    _, kh, kw, _, oh, ow = cols.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    padded = np.zeros((n, c, max(h + ph, need_h), max(w + pw, need_w)), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + (oh - 1) * sh + 1, sh)
            columns = slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)
            padded[:, :, rows, columns] += cols[:, i, j].transpose(1, 0, 2, 3)
    return np.ascontiguousarray(padded[:, :, ph : ph + h, pw : pw + w])


def max_pool2d_forward(
    x: np.ndarray, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair, out_size: Pair
) -> tuple[np.ndarray, np.ndarray]:
    """Max over each window of ``x`` (N, C, H, W), with the flat index of the winner.

    Parameters
    ----------
    x : ndarray
        float32/float64, shape (N, C, H, W).
    kernel_size, stride, padding, dilation : (int, int)
        Per spatial axis; padding counts as -inf (it never wins).
    out_size : (int, int)
        (OH, OW); every window must hold at least one input element.

    Returns
    -------
    out : ndarray
        Shape (N, C, OH, OW).
    indices : ndarray of int64
        ``ih * W + iw`` of each window's maximum (the first one on ties, the last NaN if any,
        as PyTorch).

    Raises
    ------
    TypeError
        If ``x`` is not a float32/float64 array.

    Example
    -------
    >>> import numpy as np
    >>> out, idx = max_pool2d_forward(np.arange(16.0).reshape(1, 1, 4, 4), (2, 2), (2, 2),
    ...                               (0, 0), (1, 1), (2, 2))
    >>> out[0, 0], idx[0, 0]
    (array([[ 5.,  7.],
           [13., 15.]]), array([[ 5,  7],
           [13, 15]]))
    """
    _check_float("max_pool2d_forward", x=x)
    x = np.ascontiguousarray(x)
    shape = (x.shape[0], x.shape[1], out_size[0], out_size[1])
    out = np.empty(shape, x.dtype)
    idx = np.empty(shape, np.int64)
    common = (
        tuple(kernel_size) == (2, 2)
        and tuple(stride) == (2, 2)
        and tuple(padding) == (0, 0)
        and tuple(out_size) == (x.shape[2] // 2, x.shape[3] // 2)
    )
    # One SIMD sum tells whether x may hold a NaN (inf - inf also lands on the generic loop).
    if common and np.isfinite(np.sum(x)):
        _max_pool_2x2_loop(x, out, idx)
    else:
        _max_pool_loop(x, out, idx, *kernel_size, *stride, *padding, *dilation)
    return out, idx


def max_pool2d_forward_numpy(
    x: np.ndarray, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair, out_size: Pair
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`max_pool2d_forward`: im2col with -inf padding, then argmax.

    Example
    -------
    >>> import numpy as np
    >>> out, idx = max_pool2d_forward_numpy(np.arange(16.0).reshape(1, 1, 4, 4), (2, 2), (2, 2),
    ...                                     (0, 0), (1, 1), (2, 2))
    >>> idx[0, 0]
    array([[ 5,  7],
           [13, 15]])
    """
    _check_float("max_pool2d_forward_numpy", x=x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = (
        kernel_size,
        stride,
        padding,
        dilation,
        out_size,
    )
    # Pool the values and their flat positions with the same unfolding; padding is "outside".
    flat = np.broadcast_to(np.arange(h * w, dtype=x.dtype).reshape(1, 1, h, w), x.shape)
    windows = im2col_numpy(x, kernel_size, stride, padding, dilation, out_size)
    inside = im2col_numpy(np.ones_like(x), kernel_size, stride, padding, dilation, out_size) > 0
    positions = im2col_numpy(flat + 0, kernel_size, stride, padding, dilation, out_size)
    del sh, sw, ph, pw, dh, dw
    split = (c, kh * kw, n, oh, ow)
    score = np.where(inside, windows, -np.inf).reshape(split)
    # np.argmax returns the first maximum; a NaN wins, the last one of the window (PyTorch).
    best = np.argmax(score, axis=1)
    is_nan = np.isnan(score)
    last_nan = kh * kw - 1 - np.argmax(is_nan[:, ::-1], axis=1)
    best = np.where(is_nan.any(axis=1), last_nan, best)
    # A window of only -inf: the kernel keeps its first inside cell, never a padding cell.
    first_inside = np.argmax(inside.reshape(split), axis=1)
    best = np.where(np.all(score == -np.inf, axis=1), first_inside, best)
    pos = np.take_along_axis(positions.reshape(split), best[:, None], 1)[:, 0]
    idx = pos.astype(np.int64).transpose(1, 0, 2, 3)
    out = np.take_along_axis(x.reshape(n, c, h * w), idx.reshape(n, c, -1), 2).reshape(idx.shape)
    return np.ascontiguousarray(out), np.ascontiguousarray(idx)


def max_pool2d_backward(
    dy: np.ndarray, indices: np.ndarray, x_shape: tuple[int, ...]
) -> np.ndarray:
    """Scatter-add ``dy`` (N, C, OH, OW) to the argmax positions in a zero (N, C, H, W) array.

    Parameters
    ----------
    dy : ndarray
        float32/float64 upstream gradient.
    indices : ndarray of int64
        From :func:`max_pool2d_forward`, same shape as ``dy``.
    x_shape : tuple of int
        (N, C, H, W) of the pooled input.

    Returns
    -------
    ndarray
        ``dx``; a position that won several (overlapping) windows receives the sum.

    Raises
    ------
    TypeError
        If ``dy`` is not a float32/float64 array.

    Example
    -------
    >>> import numpy as np
    >>> max_pool2d_backward(np.ones((1, 1, 1, 1)), np.array([[[[3]]]]), (1, 1, 2, 2))[0, 0]
    array([[0., 0.],
           [0., 1.]])
    """
    _check_float("max_pool2d_backward", dy=dy)
    dx = np.zeros(tuple(x_shape), dy.dtype)
    _max_pool_backward_loop(
        np.ascontiguousarray(dy), np.ascontiguousarray(indices, dtype=np.int64), dx
    )
    return dx


def max_pool2d_backward_numpy(
    dy: np.ndarray, indices: np.ndarray, x_shape: tuple[int, ...]
) -> np.ndarray:
    """NumPy twin of :func:`max_pool2d_backward` (``np.add.at`` per (n, c) plane).

    Example
    -------
    >>> import numpy as np
    >>> max_pool2d_backward_numpy(np.ones((1, 1, 1, 1)), np.array([[[[3]]]]), (1, 1, 2, 2))[0, 0]
    array([[0., 0.],
           [0., 1.]])
    """
    _check_float("max_pool2d_backward_numpy", dy=dy)
    n, c, h, w = x_shape
    dx = np.zeros((n * c, h * w), dy.dtype)
    rows = np.repeat(np.arange(n * c), dy[0, 0].size if dy.size else 0)
    np.add.at(dx, (rows, indices.reshape(-1)), dy.reshape(-1))
    return dx.reshape(x_shape)
