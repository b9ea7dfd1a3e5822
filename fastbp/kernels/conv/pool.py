"""Max-pool forward and backward, keeping each window's argmax.

The argmax is a flat ``ih * W + iw`` index into the input plane (PyTorch's
``return_indices`` convention), so the backward pass is a scatter of ``dy``. Each public
kernel has a NumPy twin ``name_numpy`` with the same signature.
"""

from __future__ import annotations

import numpy as np

from .._jit import kernel_jit
from ..dispatch import _output
from .columns import im2col_numpy
from .common import Pair, _check_float


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
