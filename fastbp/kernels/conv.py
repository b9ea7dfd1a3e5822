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
from .dispatch import _output

__all__ = [
    "col2im",
    "col2im_numpy",
    "col2im_pixels",
    "col2im_pixels_numpy",
    "conv_bias_act",
    "conv_bias_act_backward",
    "conv_bias_act_backward_numpy",
    "conv_bias_act_channels",
    "conv_bias_act_channels_backward",
    "conv_bias_act_channels_backward_numpy",
    "conv_bias_act_channels_numpy",
    "conv_bias_act_numpy",
    "conv_relu_pool",
    "conv_relu_pool_backward",
    "conv_relu_pool_backward_numpy",
    "conv_relu_pool_numpy",
    "im2col",
    "im2col_numpy",
    "im2col_pixels",
    "im2col_pixels_numpy",
    "matmul_into",
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
    # vectorises (10x the generic loop). It returns the sum of the windows' values, so the
    # caller learns in the same pass whether x may hold a NaN (or an inf), and then runs the
    # generic loop instead (a separate np.sum pass cost about a third of this loop).
    n_batch, channels, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    total = 0.0
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
                    total += x[n, c, h0, w0] + x[n, c, h0, w0 + 1] + x[n, c, h0 + 1, w0] + value
                    out[n, c, oh, ow] = best
                    idx[n, c, oh, ow] = where
    return total


@kernel_jit()
def _max_pool_2x2_backward_loop(dy, idx, dx):
    # 2x2 windows, stride 2, no padding: the windows tile dx, so every cell of dx is written
    # here (dy at the window's argmax, 0 elsewhere) and dx needs no zero-filled pass first.
    n_batch, channels, out_h, out_w = dy.shape
    height, width = dx.shape[2], dx.shape[3]
    zero = dx.dtype.type(0.0)
    for n in range(n_batch):
        for c in range(channels):
            for ih in range(2 * out_h, height):  # an odd last row/column no window reads
                for iw in range(width):
                    dx[n, c, ih, iw] = zero
            for ih in range(2 * out_h):
                for iw in range(2 * out_w, width):
                    dx[n, c, ih, iw] = zero
            for oh in range(out_h):
                for ow in range(out_w):
                    where = idx[n, c, oh, ow]
                    g = dy[n, c, oh, ow]
                    h0 = 2 * oh
                    w0 = 2 * ow
                    dx[n, c, h0, w0] = g if where == h0 * width + w0 else zero
                    dx[n, c, h0, w0 + 1] = g if where == h0 * width + w0 + 1 else zero
                    dx[n, c, h0 + 1, w0] = g if where == (h0 + 1) * width + w0 else zero
                    dx[n, c, h0 + 1, w0 + 1] = g if where == (h0 + 1) * width + w0 + 1 else zero


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
    cols = _buffer((c, kernel_size[0], kernel_size[1], n, out_size[0], out_size[1]), x.dtype)
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
    # The fast loop's sum tells whether x may hold a NaN (inf - inf also lands on the generic
    # loop, which then overwrites everything).
    if not common or not np.isfinite(_max_pool_2x2_loop(x, out, idx)):
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
    dy: np.ndarray,
    indices: np.ndarray,
    x_shape: tuple[int, ...],
    window: tuple[int, ...] | None = None,
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
    window : (int, int), optional
        The pooling's kernel size if its stride equals it and it has no padding or dilation
        (non-overlapping windows); ``(2, 2)`` then takes a one-pass path.

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
    dy = np.ascontiguousarray(dy)
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    n, c, h, w = x_shape
    if dy.shape[2:] == (h // 2, w // 2) and window == (2, 2):
        # Non-overlapping 2x2 windows: written in one pass, on a reused block (no page faults).
        dx = _output(tuple(x_shape), dy.dtype)
        if dx is None:
            dx = np.empty(tuple(x_shape), dy.dtype)
        _max_pool_2x2_backward_loop(dy, indices, dx)
        return dx
    dx = np.zeros(tuple(x_shape), dy.dtype)
    _max_pool_backward_loop(dy, indices, dx)
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


# ---- the pixel-major layout of the groups == 1 convolution ------------------------------------
#
# ``cols[(n*OH + oh)*OW + ow, (i*kW + j)*C + c] = x[n, c, oh*sh + i*dh - ph, ow*sw + j*dw - pw]``
#
# One row per output pixel, the channels innermost. With that layout the three products of a
# convolution run on OpenBLAS's best operand orders (measured on one core, 64x288 by 288x12544:
# ``cols @ w2ᵀ`` 5.9 ms against 9-10 ms for ``w @ cols`` in the channel-major layout), and the
# product's (N*OH*OW, O) result is the transpose that the fused bias + activation pass writes
# into NCHW anyway. The inner copies move ``C`` contiguous values, which LLVM vectorises.


@kernel_jit()
def _im2col_pixels_loop(xh, cols, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    n_batch, height, width, channels = xh.shape
    zero = cols.dtype.type(0.0)
    for n in range(n_batch):
        for oh in range(out_h):
            for ow in range(out_w):
                row = cols[(n * out_h + oh) * out_w + ow]
                for i in range(kh):
                    ih = oh * sh + i * dh - ph
                    for j in range(kw):
                        iw = ow * sw + j * dw - pw
                        base = (i * kw + j) * channels
                        if ih < 0 or ih >= height or iw < 0 or iw >= width:
                            for c in range(channels):
                                row[base + c] = zero
                        else:
                            src = xh[n, ih, iw]
                            for c in range(channels):
                                row[base + c] = src[c]


@kernel_jit()
def _source_index(size, k, s, p, d, out):
    # src[i, a] = the output position whose tap i reads input position a, or -1: computed once
    # per call, so the gather below does no integer division per pixel.
    src = np.full((k, size), -1, np.int64)
    for i in range(k):
        for o in range(out):
            a = o * s + i * d - p
            if 0 <= a < size:
                src[i, a] = o
    return src


@kernel_jit()
def _col2im_pixels_loop(dcols, dxh, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    # A gather, not a scatter: every input pixel sums the columns that read it straight into
    # its channels-last row of dxh, written once, so dxh needs no zero-filled pass of its own.
    n_batch, height, width, channels = dxh.shape
    rows_of = _source_index(height, kh, sh, ph, dh, out_h)
    cols_of = _source_index(width, kw, sw, pw, dw, out_w)
    zero = dcols.dtype.type(0.0)
    for n in range(n_batch):
        for ih in range(height):
            for iw in range(width):
                acc = dxh[n, ih, iw]
                for c in range(channels):
                    acc[c] = zero
                for i in range(kh):
                    oh = rows_of[i, ih]
                    if oh < 0:
                        continue
                    for j in range(kw):
                        ow = cols_of[j, iw]
                        if ow < 0:
                            continue
                        row = dcols[(n * out_h + oh) * out_w + ow]
                        base = (i * kw + j) * channels
                        for c in range(channels):
                            acc[c] += row[base + c]


@kernel_jit()
def _bias_act_loop(out_t, bias, has_bias, relu, y):
    # y[n, o, p] = act(out_t[n*P + p, o] + b[o]): the bias, the activation and the transpose to
    # NCHW in one pass. The writes are the contiguous side: measured interleaved on one core,
    # strided writes (or a tiled loop) cost 1.5x this order.
    n_batch, out_c, pixels = y.shape
    zero = y.dtype.type(0.0)
    for n in range(n_batch):
        for o in range(out_c):
            shift = bias[o] if has_bias else zero
            if relu:
                for p in range(pixels):
                    value = out_t[n * pixels + p, o] + shift
                    # NOTE: ReLU(0) = 0, and a NaN stays NaN as in the unfused relu. One
                    # comparison and a select: LLVM vectorises it (branches on random signs
                    # mispredict half the time).
                    y[n, o, p] = zero if value <= zero else value
            else:
                for p in range(pixels):
                    y[n, o, p] = out_t[n * pixels + p, o] + shift


@kernel_jit()
def _bias_act_backward_loop(y, dy, relu, dy_t, db):
    # dz = dy * (y > 0) written in the product's (N*P, O) layout, with its sum over N and P
    # (the bias gradient) in the same pass. Here too the writes are contiguous (rows of dz_t),
    # 2x faster than contiguous reads; per-sample sums are added up in float64.
    n_batch, out_c, pixels = dy.shape
    zero = dy.dtype.type(0.0)
    one = dy.dtype.type(1.0)
    acc = np.zeros(out_c, dy.dtype)
    total = np.zeros(out_c, np.float64)
    for n in range(n_batch):
        acc[:] = zero
        for p in range(pixels):
            row = dy_t[n * pixels + p]
            if relu:
                for o in range(out_c):
                    # dy * (0 or 1), as the unfused relu backward: the same values (NaN
                    # included), and a multiply LLVM vectorises where a branch would not be.
                    value = dy[n, o, p] * (zero if y[n, o, p] <= zero else one)
                    row[o] = value
                    acc[o] += value
            else:
                for o in range(out_c):
                    value = dy[n, o, p]
                    row[o] = value
                    acc[o] += value
        for o in range(out_c):
            total[o] += acc[o]
    for o in range(out_c):
        db[o] = total[o]


@kernel_jit()
def _bias_act_channels_loop(out, bias, has_bias, relu, y):
    # y[n, o, :] = act(out[o, n*P : (n+1)*P] + b[o]): contiguous runs on both sides.
    n_batch, out_c, pixels = y.shape
    zero = y.dtype.type(0.0)
    for n in range(n_batch):
        for o in range(out_c):
            shift = bias[o] if has_bias else zero
            src = out[o, n * pixels : (n + 1) * pixels]
            dst = y[n, o]
            if relu:
                for p in range(pixels):
                    value = src[p] + shift
                    dst[p] = zero if value <= zero else value
            else:
                for p in range(pixels):
                    dst[p] = src[p] + shift


@kernel_jit()
def _bias_act_channels_backward_loop(y, dy, relu, dz, db):
    # dz[o, n*P + p] = dy[n, o, p] * (y > 0), and its row sums: contiguous runs again.
    n_batch, out_c, pixels = dy.shape
    zero = dy.dtype.type(0.0)
    one = dy.dtype.type(1.0)
    for o in range(out_c):
        db[o] = 0.0
    for n in range(n_batch):
        for o in range(out_c):
            src = dy[n, o]
            dst = dz[o, n * pixels : (n + 1) * pixels]
            total = zero
            if relu:
                mask = y[n, o]
                for p in range(pixels):
                    value = src[p] * (zero if mask[p] <= zero else one)
                    dst[p] = value
                    total += value
            else:
                for p in range(pixels):
                    value = src[p]
                    dst[p] = value
                    total += value
            db[o] += total


def _buffer(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array, on a reused block when it is large.

    A fresh multi-megabyte array costs a page fault per 4 KiB page on every step (glibc maps
    and unmaps such blocks); the conv passes and products write every element anyway.
    """
    out = _output(shape, dtype)
    return np.empty(shape, dtype) if out is None else out


def matmul_into(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (2-D, one float dtype) through BLAS, into a reused block when it is large.

    Parameters
    ----------
    a, b : ndarray
        2-D float32/float64 operands of one dtype (transposed views are fine: BLAS reads them
        in place).

    Returns
    -------
    ndarray
        The C-contiguous product.

    Example
    -------
    >>> import numpy as np
    >>> matmul_into(np.ones((2, 3)), np.ones((3, 1))).ravel()
    array([3., 3.])
    """
    out = _output((a.shape[0], b.shape[1]), a.dtype)
    if out is None or a.dtype != b.dtype:
        return np.dot(a, b)
    return np.dot(a, b, out=out)


def _pixels_shape(x_shape, kernel_size, out_size):
    n, c = x_shape[0], x_shape[1]
    return (n * out_size[0] * out_size[1], kernel_size[0] * kernel_size[1] * c)


def im2col_pixels(
    x: np.ndarray, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair, out_size: Pair
) -> np.ndarray:
    """Unfold ``x`` (N, C, H, W) into one row per output pixel, channels innermost.

    Parameters
    ----------
    x : ndarray
        float32/float64, shape (N, C, H, W).
    kernel_size, stride, padding, dilation, out_size : (int, int)
        As :func:`im2col`.

    Returns
    -------
    ndarray
        Shape (N*OH*OW, kH*kW*C):
        ``cols[(n*OH + oh)*OW + ow, (i*kW + j)*C + c] = x[n, c, oh*sh + i*dh - ph, ...]``
        (0 in the padding). Large results live on a reused block (no page faults per step).

    Raises
    ------
    TypeError
        If ``x`` is not a float32/float64 array.

    Example
    -------
    >>> import numpy as np
    >>> x = np.arange(8.0).reshape(1, 2, 2, 2)
    >>> im2col_pixels(x, (1, 1), (1, 1), (0, 0), (1, 1), (2, 2))
    array([[0., 4.],
           [1., 5.],
           [2., 6.],
           [3., 7.]])
    """
    _check_float("im2col_pixels", x=x)
    # Channels last, so the inner copy is contiguous; free when C == 1.
    if x.shape[1] == 1:
        xh = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[2], x.shape[3], 1)
    else:
        xh = _buffer((x.shape[0], x.shape[2], x.shape[3], x.shape[1]), x.dtype)
        np.copyto(xh, x.transpose(0, 2, 3, 1))
    shape = _pixels_shape(x.shape, kernel_size, out_size)
    cols = _buffer(shape, x.dtype)
    _im2col_pixels_loop(xh, cols, *kernel_size, *stride, *padding, *dilation, *out_size)
    return cols


def im2col_pixels_numpy(
    x: np.ndarray, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair, out_size: Pair
) -> np.ndarray:
    """NumPy twin of :func:`im2col_pixels`: :func:`im2col_numpy`, transposed.

    Example
    -------
    >>> import numpy as np
    >>> im2col_pixels_numpy(np.ones((2, 3, 5, 5)), (3, 3), (1, 1), (1, 1), (1, 1), (5, 5)).shape
    (50, 27)
    """
    _check_float("im2col_pixels_numpy", x=x)
    cols = im2col_numpy(x, kernel_size, stride, padding, dilation, out_size)  # (C,kh,kw,N,OH,OW)
    shape = _pixels_shape(x.shape, kernel_size, out_size)
    return np.ascontiguousarray(cols.transpose(3, 4, 5, 1, 2, 0)).reshape(shape)


def col2im_pixels(
    dcols: np.ndarray,
    x_shape: tuple[int, ...],
    kernel_size: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    out_size: Pair,
) -> np.ndarray:
    """Adjoint of :func:`im2col_pixels`: sum the columns back into an (N, C, H, W) array.

    Parameters
    ----------
    dcols : ndarray
        float32/float64, shape (N*OH*OW, kH*kW*C).
    x_shape : tuple of int
        (N, C, H, W) of the result.
    kernel_size, stride, padding, dilation, out_size : (int, int)
        As given to :func:`im2col_pixels`.

    Returns
    -------
    ndarray
        A fresh C-contiguous array of shape ``x_shape``.

    Raises
    ------
    TypeError
        If ``dcols`` is not a float32/float64 array.
    ValueError
        If ``dcols`` does not have the shape the geometry implies.

    Example
    -------
    >>> import numpy as np
    >>> col2im_pixels(np.ones((4, 9)), (1, 1, 2, 2), (3, 3), (1, 1), (1, 1), (1, 1), (2, 2))[0, 0]
    array([[4., 4.],
           [4., 4.]])
    """
    _check_float("col2im_pixels", dcols=dcols)
    shape = _pixels_shape(x_shape, kernel_size, out_size)
    if dcols.shape != shape:
        raise ValueError(
            f"col2im_pixels: dcols of shape {dcols.shape} does not match x shape "
            f"{tuple(x_shape)}, kernel {tuple(kernel_size)} and output {tuple(out_size)} "
            f"(expected {shape})"
        )
    dcols = np.ascontiguousarray(dcols)
    n, c, h, w = x_shape
    # Channels-last first (contiguous writes), then one NumPy transpose to NCHW: measured,
    # writing NCHW from the gather (C strided stores per pixel) was 1.5-2x slower.
    dxh = _buffer((n, h, w, c), dcols.dtype)
    _col2im_pixels_loop(dcols, dxh, *kernel_size, *stride, *padding, *dilation, *out_size)
    return np.ascontiguousarray(dxh.transpose(0, 3, 1, 2))


def col2im_pixels_numpy(
    dcols: np.ndarray,
    x_shape: tuple[int, ...],
    kernel_size: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    out_size: Pair,
) -> np.ndarray:
    """NumPy twin of :func:`col2im_pixels`: transpose, then :func:`col2im_numpy`.

    Example
    -------
    >>> import numpy as np
    >>> dx = col2im_pixels_numpy(np.ones((4, 9)), (1, 1, 2, 2), (3, 3), (1, 1), (1, 1), (1, 1),
    ...                          (2, 2))
    >>> float(dx.sum())
    16.0
    """
    _check_float("col2im_pixels_numpy", dcols=dcols)
    n, c = x_shape[0], x_shape[1]
    (kh, kw), (oh, ow) = kernel_size, out_size
    cols = dcols.reshape(n, oh, ow, kh, kw, c).transpose(5, 3, 4, 0, 1, 2)
    return col2im_numpy(cols, x_shape, stride, padding, dilation)


def _bias_act(name, argument, loop, product, bias, out_shape, relu) -> np.ndarray:
    """The checks and buffers of :func:`conv_bias_act` and :func:`conv_bias_act_channels`:
    ``loop`` reads the product in its layout and writes NCHW."""
    _check_float(name, **{argument: product})
    if bias is not None and bias.dtype != product.dtype:
        raise TypeError(
            f"{name}: bias dtype {bias.dtype} differs from the product's {product.dtype}"
        )
    n, o, oh, ow = out_shape
    y = _buffer((n, o, oh * ow), product.dtype)
    has_bias = bias is not None
    b = np.ascontiguousarray(bias) if has_bias else np.zeros(o, product.dtype)
    loop(np.ascontiguousarray(product), b, has_bias, bool(relu), y)
    return y.reshape(out_shape)


def _bias_act_backward(
    name, loop, y, dy, relu, channel_major: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The checks and buffers of the two ``conv_bias_act*_backward``: ``loop`` writes ``dz``
    in the layout of its product, (N*OH*OW, O) or (O, N*OH*OW), and the float64 ``db``."""
    _check_float(name, dy=dy)
    n, o, oh, ow = dy.shape
    dy3 = np.ascontiguousarray(dy).reshape(n, o, oh * ow)
    if relu:
        if y is None or y.dtype != dy.dtype or y.shape != dy.shape:
            raise TypeError(
                f"{name}: y must match dy ({dy.shape}, {dy.dtype}), got "
                f"{getattr(y, 'shape', None)}, {getattr(y, 'dtype', None)}"
            )
        y3 = np.ascontiguousarray(y).reshape(dy3.shape)
    else:
        y3 = dy3
    shape = (o, n * oh * ow) if channel_major else (n * oh * ow, o)
    dz = _output(shape, dy.dtype)
    if dz is None:
        dz = np.empty(shape, dy.dtype)
    db = np.empty(o, np.float64)
    loop(y3, dy3, bool(relu), dz, db)
    return dz, db.astype(dy.dtype)


def conv_bias_act(
    out_t: np.ndarray, bias: np.ndarray | None, out_shape: tuple[int, ...], relu: bool
) -> np.ndarray:
    """``act(out_t + bias)`` of a convolution's (N*OH*OW, O) product, written as NCHW.

    Parameters
    ----------
    out_t : ndarray
        float32/float64, shape (N*OH*OW, O): the product ``cols @ w2ᵀ``.
    bias : ndarray or None
        Shape (O,), same dtype.
    out_shape : tuple of int
        (N, O, OH, OW).
    relu : bool
        Apply ReLU (``max(v, 0)``; NaN stays NaN) after the bias.

    Returns
    -------
    ndarray
        Shape ``out_shape``, C-contiguous.

    Raises
    ------
    TypeError
        If the arrays are not float32/float64 of one dtype.

    Example
    -------
    >>> import numpy as np
    >>> conv_bias_act(np.array([[1.0, -2.0], [3.0, 4.0]]), np.array([0.5, 1.0]), (1, 2, 1, 2),
    ...               True)[0]
    array([[[1.5, 3.5]],
    <BLANKLINE>
           [[0. , 5. ]]])
    """
    return _bias_act("conv_bias_act", "out_t", _bias_act_loop, out_t, bias, out_shape, relu)


def conv_bias_act_numpy(
    out_t: np.ndarray, bias: np.ndarray | None, out_shape: tuple[int, ...], relu: bool
) -> np.ndarray:
    """NumPy twin of :func:`conv_bias_act`.

    Example
    -------
    >>> import numpy as np
    >>> conv_bias_act_numpy(np.array([[-1.0]]), None, (1, 1, 1, 1), True).ravel()
    array([0.])
    """
    n, o, oh, ow = out_shape
    z = out_t if bias is None else out_t + bias
    if relu:
        z = np.where(z > 0, z, np.where(np.isnan(z), z, 0)).astype(out_t.dtype)
    return np.ascontiguousarray(z.reshape(n, oh, ow, o).transpose(0, 3, 1, 2))


def conv_bias_act_backward(
    y: np.ndarray | None, dy: np.ndarray, relu: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``dz = dy * (y > 0)`` in the (N*OH*OW, O) layout of the products, and its channel sums.

    Parameters
    ----------
    y : ndarray or None
        The activation's output (N, O, OH, OW); ignored (may be None) without ReLU.
    dy : ndarray
        float32/float64 gradient at the output, (N, O, OH, OW).
    relu : bool
        Mask by ``y > 0`` (the gradient of ReLU at 0 is 0).

    Returns
    -------
    dz_t : ndarray
        Shape (N*OH*OW, O).
    db : ndarray
        Shape (O,): ``dz`` summed over N, OH and OW (accumulated in float64).

    Raises
    ------
    TypeError
        If ``dy`` is not a float32/float64 array or ``y`` has another dtype.

    Example
    -------
    >>> import numpy as np
    >>> dz_t, db = conv_bias_act_backward(np.array([[[[0.0, 2.0]]]]), np.ones((1, 1, 1, 2)), True)
    >>> dz_t.ravel(), db
    (array([0., 1.]), array([1.]))
    """
    return _bias_act_backward(
        "conv_bias_act_backward", _bias_act_backward_loop, y, dy, relu, channel_major=False
    )


def conv_bias_act_backward_numpy(
    y: np.ndarray | None, dy: np.ndarray, relu: bool
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`conv_bias_act_backward`.

    Example
    -------
    >>> import numpy as np
    >>> conv_bias_act_backward_numpy(None, np.ones((1, 1, 1, 2)), False)[1]
    array([2.])
    """
    dz = dy * (~(y <= 0)).astype(dy.dtype) if relu else dy
    n, o, oh, ow = dy.shape
    dz_t = np.ascontiguousarray(dz.transpose(0, 2, 3, 1)).reshape(n * oh * ow, o)
    return dz_t, dz.sum(axis=(0, 2, 3), dtype=np.float64).astype(dy.dtype)


def conv_bias_act_channels(
    out: np.ndarray, bias: np.ndarray | None, out_shape: tuple[int, ...], relu: bool
) -> np.ndarray:
    """:func:`conv_bias_act` for a product in the channel-major (O, N*OH*OW) layout.

    Parameters
    ----------
    out : ndarray
        float32/float64, shape (O, N*OH*OW): the product ``w2 @ cols``.
    bias : ndarray or None
        Shape (O,), same dtype.
    out_shape : tuple of int
        (N, O, OH, OW).
    relu : bool
        Apply ReLU after the bias.

    Returns
    -------
    ndarray
        Shape ``out_shape``, C-contiguous.

    Raises
    ------
    TypeError
        If the arrays are not float32/float64 of one dtype.

    Example
    -------
    >>> import numpy as np
    >>> conv_bias_act_channels(np.array([[1.0, -2.0]]), np.array([0.5]), (2, 1, 1, 1),
    ...                        True).ravel()
    array([1.5, 0. ])
    """
    return _bias_act(
        "conv_bias_act_channels", "out", _bias_act_channels_loop, out, bias, out_shape, relu
    )


def conv_bias_act_channels_numpy(
    out: np.ndarray, bias: np.ndarray | None, out_shape: tuple[int, ...], relu: bool
) -> np.ndarray:
    """NumPy twin of :func:`conv_bias_act_channels`.

    Example
    -------
    >>> import numpy as np
    >>> conv_bias_act_channels_numpy(np.array([[-1.0]]), None, (1, 1, 1, 1), True).ravel()
    array([0.])
    """
    return conv_bias_act_numpy(np.ascontiguousarray(out.T), bias, out_shape, relu)


def conv_bias_act_channels_backward(
    y: np.ndarray | None, dy: np.ndarray, relu: bool
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`conv_bias_act_backward` with ``dz`` in the channel-major (O, N*OH*OW) layout.

    Parameters
    ----------
    y : ndarray or None
        The activation's output (N, O, OH, OW); ignored (may be None) without ReLU.
    dy : ndarray
        float32/float64 gradient at the output, (N, O, OH, OW).
    relu : bool
        Mask by ``y > 0``.

    Returns
    -------
    dz : ndarray
        Shape (O, N*OH*OW).
    db : ndarray
        Shape (O,), the sums of ``dz``'s rows (per-sample sums added in float64).

    Raises
    ------
    TypeError
        If ``dy`` is not a float32/float64 array or ``y`` does not match it.

    Example
    -------
    >>> import numpy as np
    >>> dz, db = conv_bias_act_channels_backward(np.array([[[[0.0, 2.0]]]]), np.ones((1, 1, 1, 2)),
    ...                                          True)
    >>> dz, db
    (array([[0., 1.]]), array([1.]))
    """
    return _bias_act_backward(
        "conv_bias_act_channels_backward", _bias_act_channels_backward_loop, y, dy, relu, True
    )


def conv_bias_act_channels_backward_numpy(
    y: np.ndarray | None, dy: np.ndarray, relu: bool
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`conv_bias_act_channels_backward`.

    Example
    -------
    >>> import numpy as np
    >>> conv_bias_act_channels_backward_numpy(None, np.ones((2, 1, 1, 1)), False)[0]
    array([[1., 1.]])
    """
    dz_t, db = conv_bias_act_backward_numpy(y, dy, relu)
    n, o, oh, ow = dy.shape
    dz = np.ascontiguousarray(dz_t.reshape(n, oh * ow, o).transpose(2, 0, 1)).reshape(o, -1)
    return dz, db


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
