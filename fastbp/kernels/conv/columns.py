"""im2col / col2im: the unfolded input of a convolution, in the channel-major layout.

A 2-D convolution becomes one matrix product per group once the input is unfolded into
columns:

    cols[c, i, j, n, oh, ow] = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]

``cols`` reshaped to ``(C*kH*kW, N*OH*OW)`` is the right operand of ``W.reshape(O, -1) @ cols``;
``col2im`` is its adjoint (a scatter-add back into the input's shape), used for ``dx``. The
``(C, kH, kW, N, OH, OW)`` layout keeps each group's rows contiguous, so grouped and depthwise
convolutions are a batched ``np.matmul`` over the same buffer, and the inner loop writes
contiguously along ``ow``.

Padding is never materialised: the loops compute, for each kernel offset, the range of output
positions that read inside the input and write zeros elsewhere.

Each public kernel has a NumPy twin ``name_numpy`` with the same signature.
"""

from __future__ import annotations

import numpy as np

from .._jit import kernel_jit
from .common import Pair, _buffer, _check_float


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
