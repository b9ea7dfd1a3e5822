"""Pooling over (N, C, H, W): max (argmax kept for backward), average, and their adaptive forms.

* ``max_pool2d`` runs the Numba kernel that returns each window's maximum and its flat
  ``ih * W + iw`` index; backward scatters ``dy`` to those indices (another kernel).
  ``max_pool2d_indices`` (not differentiable) returns the indices alone, for
  ``return_indices=True``.
* ``avg_pool2d`` is one strided slice-add per kernel offset (NumPy; memory-bound either way),
  divided by PyTorch's divisor (``count_include_pad``, ``divisor_override``).
* ``adaptive_avg_pool2d`` is separable: ``y = A_h @ x @ A_wᵀ`` with averaging matrices, so both
  passes are BLAS products. ``adaptive_max_pool2d`` loops over the (few) output cells.

The caller (``fastbp.nn.functional``) validates the arguments and computes the output size.
"""

from __future__ import annotations

import numpy as np

from ..core.registry import defop
from ..kernels.conv import (
    max_pool2d_backward,
    max_pool2d_forward,
    max_pool2d_forward_numpy,
)

__all__ = [
    "ADAPTIVE_AVG_POOL2D",
    "ADAPTIVE_MAX_POOL2D",
    "ADAPTIVE_MAX_POOL2D_INDICES",
    "AVG_POOL2D",
    "MAX_POOL2D",
    "MAX_POOL2D_INDICES",
    "SEPARABLE2D",
    "adaptive_bounds",
]


def _check_float(op: str, x: np.ndarray) -> None:
    if x.dtype.kind != "f":
        raise TypeError(
            f"{op}: expected a floating-point input, got {x.dtype} (shape {x.shape}); "
            f"cast it with .astype(np.float32) first"
        )


# ---- max pooling ------------------------------------------------------------------------------


def _max_pool2d_forward(x, *, kernel_size, stride, padding, dilation, out_size):
    _check_float("max_pool2d", x)
    out, idx = max_pool2d_forward(x, kernel_size, stride, padding, dilation, out_size)
    tiles = tuple(stride) == tuple(kernel_size) and not any(padding) and tuple(dilation) == (1, 1)
    return out, (idx, x.shape, tuple(kernel_size) if tiles else None)


def _max_pool2d_vjp(saved, dy, needs):
    idx, x_shape, *window = saved
    return (max_pool2d_backward(dy, idx, x_shape, window[0] if window else None),)


MAX_POOL2D = defop(
    "max_pool2d",
    _max_pool2d_forward,
    _max_pool2d_vjp,
    kernel=max_pool2d_forward,
    twin=max_pool2d_forward_numpy,
)


def _max_pool2d_indices_forward(x, *, kernel_size, stride, padding, dilation, out_size):
    _check_float("max_pool2d", x)
    return max_pool2d_forward(x, kernel_size, stride, padding, dilation, out_size)[1], None


MAX_POOL2D_INDICES = defop("max_pool2d_indices", _max_pool2d_indices_forward, None)


# ---- average pooling --------------------------------------------------------------------------


def _avg_divisor(size, k, s, p, count, include_pad):
    """Per-output-position divisor along one axis (PyTorch's rule), as (window, inside) sizes."""
    start = np.arange(count) * s - p
    end = np.minimum(start + k, size + p)
    window = end - start
    inside = np.minimum(end, size) - np.maximum(start, 0)
    return window if include_pad else inside


def _avg_pool2d_forward(
    x, *, kernel_size, stride, padding, out_size, count_include_pad, divisor_override
):
    _check_float("avg_pool2d", x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel_size, stride, padding, out_size
    need_h = (oh - 1) * sh + kh
    need_w = (ow - 1) * sw + kw
    padded = np.zeros((n, c, max(need_h, h + ph), max(need_w, w + pw)), x.dtype)
    padded[:, :, ph : ph + h, pw : pw + w] = x
    total = np.zeros((n, c, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            total += padded[:, :, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw]
    if divisor_override is not None:
        divisor = np.full((oh, ow), divisor_override, dtype=x.dtype)
    else:
        div_h = _avg_divisor(h, kh, sh, ph, oh, count_include_pad)
        div_w = _avg_divisor(w, kw, sw, pw, ow, count_include_pad)
        divisor = np.multiply.outer(div_h, div_w).astype(x.dtype)
    total /= divisor
    return total, (x.shape, padded.shape, divisor, kernel_size, stride, padding)


def _avg_pool2d_vjp(saved, dy, needs):
    x_shape, padded_shape, divisor, (kh, kw), (sh, sw), (ph, pw) = saved
    n, c, h, w = x_shape
    oh, ow = dy.shape[2:]
    share = dy / divisor
    padded = np.zeros(padded_shape, dy.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, :, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw] += share
    return (np.ascontiguousarray(padded[:, :, ph : ph + h, pw : pw + w]),)


AVG_POOL2D = defop("avg_pool2d", _avg_pool2d_forward, _avg_pool2d_vjp)


# ---- adaptive pooling -------------------------------------------------------------------------


def adaptive_bounds(size: int, count: int) -> list[tuple[int, int]]:
    """Window ``[floor(i*size/count), ceil((i+1)*size/count))`` of each of ``count`` outputs.

    Parameters
    ----------
    size : int
        Input length along the axis.
    count : int
        Output length.

    Returns
    -------
    list of (int, int)
        Start and end (exclusive) of every window.

    Example
    -------
    >>> adaptive_bounds(5, 3)
    [(0, 2), (1, 4), (3, 5)]
    """
    return [((i * size) // count, -((-(i + 1) * size) // count)) for i in range(count)]


def _averaging_matrix(size: int, count: int, dtype) -> np.ndarray:
    a = np.zeros((count, size), dtype)
    for i, (lo, hi) in enumerate(adaptive_bounds(size, count)):
        a[i, lo:hi] = 1.0 / (hi - lo)
    return a


def _adaptive_avg_pool2d_forward(x, *, out_size):
    _check_float("adaptive_avg_pool2d", x)
    a_h = _averaging_matrix(x.shape[2], out_size[0], x.dtype)
    a_w = _averaging_matrix(x.shape[3], out_size[1], x.dtype)
    return np.matmul(np.matmul(a_h, x), a_w.T), (a_h, a_w)


def _adaptive_avg_pool2d_vjp(saved, dy, needs):
    a_h, a_w = saved
    return (np.matmul(np.matmul(a_h.T, dy), a_w),)


ADAPTIVE_AVG_POOL2D = defop(
    "adaptive_avg_pool2d", _adaptive_avg_pool2d_forward, _adaptive_avg_pool2d_vjp
)


def _adaptive_max(x, out_size):
    _check_float("adaptive_max_pool2d", x)
    n, c, h, w = x.shape
    out = np.empty((n, c, *out_size), x.dtype)
    idx = np.empty((n, c, *out_size), np.int64)
    for i, (h0, h1) in enumerate(adaptive_bounds(h, out_size[0])):
        for j, (w0, w1) in enumerate(adaptive_bounds(w, out_size[1])):
            window = x[:, :, h0:h1, w0:w1].reshape(n, c, -1)
            # The first maximum on ties; a NaN wins, the last one of the window (as PyTorch).
            best = np.argmax(window, axis=2)
            is_nan = np.isnan(window)
            last_nan = window.shape[2] - 1 - np.argmax(is_nan[..., ::-1], axis=2)
            best = np.where(is_nan.any(axis=2), last_nan, best)
            out[:, :, i, j] = np.take_along_axis(window, best[..., None], 2)[..., 0]
            idx[:, :, i, j] = (h0 + best // (w1 - w0)) * w + w0 + best % (w1 - w0)
    return out, idx


def _adaptive_max_pool2d_forward(x, *, out_size):
    out, idx = _adaptive_max(x, out_size)
    return out, (idx, x.shape)


ADAPTIVE_MAX_POOL2D = defop("adaptive_max_pool2d", _adaptive_max_pool2d_forward, _max_pool2d_vjp)
ADAPTIVE_MAX_POOL2D_INDICES = defop(
    "adaptive_max_pool2d_indices",
    lambda x, *, out_size: (_adaptive_max(x, out_size)[1], None),
    None,
)


# ---- separable linear resampling (interpolate) -------------------------------------------------


def _separable_forward(x, *, a_h, a_w):
    _check_float("interpolate", x)
    return np.matmul(np.matmul(a_h.astype(x.dtype), x), a_w.T.astype(x.dtype)), (a_h, a_w)


def _separable_vjp(saved, dy, needs):
    a_h, a_w = saved
    return (np.matmul(np.matmul(a_h.T.astype(dy.dtype), dy), a_w.astype(dy.dtype)),)


# ``y = A_h @ x @ A_wᵀ`` per (n, c) plane: nearest and bilinear resizing are both of this form.
SEPARABLE2D = defop("resample2d", _separable_forward, _separable_vjp)
