"""Winograd F(2x2, 3x3) transforms for stride-1, dilation-1, groups-1 3x3 convolutions.

The output is cut into 2x2 tiles; tile ``t`` reads a 4x4 input patch ``d`` and
``y_t = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A``, so the products become 16 batched GEMMs
(tiles, C) x (C, O) through BLAS, 2.25x fewer multiplies than im2col. The transforms are
additions only (and halves in ``G``). Layouts: ``v`` is (16, N*TH*TW, C), the product ``m``
is (16, N*TH*TW, O), with ``k = 4*row + col`` over the 4x4 patch.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel_jit

__all__ = [
    "input_tiles",
    "input_tiles_numpy",
    "input_tiles_adjoint",
    "input_tiles_adjoint_numpy",
    "output_tiles",
    "output_tiles_numpy",
    "output_tiles_adjoint",
    "output_tiles_adjoint_numpy",
    "weight_transform",
    "weight_transform_adjoint",
    "tile_counts",
]

_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def tile_counts(out_size: tuple[int, int]) -> tuple[int, int]:
    """Number of 2x2 output tiles along each axis (odd sizes round up)."""
    return (out_size[0] + 1) // 2, (out_size[1] + 1) // 2


def _padded(x: np.ndarray, padding, out_size) -> np.ndarray:
    # Channels last and zero padded to the tiles' reach, so the tile loop has no bounds checks.
    n, c, h, w = x.shape
    th, tw = tile_counts(out_size)
    hp, wp = 2 * th + 2, 2 * tw + 2
    ph, pw = padding
    xp = np.zeros((n, hp, wp, c), x.dtype)
    rows, cols = min(h, hp - ph), min(w, wp - pw)
    xp[:, ph : ph + rows, pw : pw + cols] = x[:, :, :rows, :cols].transpose(0, 2, 3, 1)
    return xp


@kernel_jit()
def _input_tiles_loop(xp, v, th, tw):
    # Channels innermost in every statement: contiguous, and LLVM vectorises over C.
    n_batch = xp.shape[0]
    channels = xp.shape[3]
    s = np.empty((4, 4, channels), xp.dtype)
    for n in range(n_batch):
        for ty in range(th):
            for tx in range(tw):
                t = (n * th + ty) * tw + tx
                r = 2 * ty
                q = 2 * tx
                for a in range(4):
                    d0 = xp[n, r + a, q]
                    d1 = xp[n, r + a, q + 1]
                    d2 = xp[n, r + a, q + 2]
                    d3 = xp[n, r + a, q + 3]
                    for c in range(channels):
                        s[a, 0, c] = d0[c] - d2[c]
                        s[a, 1, c] = d1[c] + d2[c]
                        s[a, 2, c] = d2[c] - d1[c]
                        s[a, 3, c] = d1[c] - d3[c]
                for k in range(4):
                    for c in range(channels):
                        v[k, t, c] = s[0, k, c] - s[2, k, c]
                        v[4 + k, t, c] = s[1, k, c] + s[2, k, c]
                        v[8 + k, t, c] = s[2, k, c] - s[1, k, c]
                        v[12 + k, t, c] = s[1, k, c] - s[3, k, c]


def input_tiles(x: np.ndarray, padding, out_size) -> np.ndarray:
    """``Bᵀ d B`` of every 4x4 input patch.

    Parameters
    ----------
    x : ndarray
        float32/float64, (N, C, H, W), any strides.
    padding : (int, int)
        Leading zero padding (trailing padding is implied by ``out_size``).
    out_size : (int, int)
        The convolution's output size.

    Returns
    -------
    ndarray
        (16, N*TH*TW, C), ``TH, TW = tile_counts(out_size)``.
    """
    th, tw = tile_counts(out_size)
    xp = _padded(x, padding, out_size)
    v = np.empty((16, x.shape[0] * th * tw, x.shape[1]), x.dtype)
    _input_tiles_loop(xp, v, th, tw)
    return v


def _patches(xp: np.ndarray, th: int, tw: int) -> np.ndarray:
    # (N, TH, TW, 4, 4, C) views of the overlapping patches (stride 2).
    n, _, _, c = xp.shape
    s = xp.strides
    shape = (n, th, tw, 4, 4, c)
    strides = (s[0], 2 * s[1], 2 * s[2], s[1], s[2], s[3])
    return np.lib.stride_tricks.as_strided(xp, shape, strides, writeable=False)


def input_tiles_numpy(x: np.ndarray, padding, out_size) -> np.ndarray:
    """NumPy twin of :func:`input_tiles`."""
    th, tw = tile_counts(out_size)
    p = _patches(_padded(x, padding, out_size), th, tw)
    bt = _BT.astype(x.dtype)
    v = np.einsum("ai,ntsijc,bj->abntsc", bt, p, bt)
    return np.ascontiguousarray(v).reshape(16, -1, x.shape[1])


@kernel_jit()
def _output_tiles_loop(m, bias, has_bias, relu, th, tw, y):
    n_batch, out_c, out_h, out_w = y.shape
    zero = y.dtype.type(0.0)
    u = np.empty((2, 4), y.dtype)
    for n in range(n_batch):
        for ty in range(th):
            for tx in range(tw):
                t = (n * th + ty) * tw + tx
                r = 2 * ty
                q = 2 * tx
                for o in range(out_c):
                    for k in range(4):
                        u[0, k] = m[k, t, o] + m[4 + k, t, o] + m[8 + k, t, o]
                        u[1, k] = m[4 + k, t, o] - m[8 + k, t, o] - m[12 + k, t, o]
                    shift = bias[o] if has_bias else zero
                    for a in range(2):
                        if r + a >= out_h:
                            continue
                        v0 = u[a, 0] + u[a, 1] + u[a, 2] + shift
                        v1 = u[a, 1] - u[a, 2] - u[a, 3] + shift
                        if relu:
                            # NOTE: a NaN stays NaN, as in the unfused relu.
                            v0 = zero if v0 < zero else v0
                            v1 = zero if v1 < zero else v1
                        y[n, o, r + a, q] = v0
                        if q + 1 < out_w:
                            y[n, o, r + a, q + 1] = v1


def output_tiles(m, bias, out_shape, relu: bool) -> np.ndarray:
    """``act(Aᵀ m A + b)`` of every tile, written as NCHW (odd edges cropped).

    Parameters
    ----------
    m : ndarray
        (16, N*TH*TW, O), the Winograd-domain product.
    bias : ndarray or None
        (O,).
    out_shape : (int, int, int, int)
        (N, O, OH, OW).
    relu : bool
        Apply ReLU.

    Returns
    -------
    ndarray
        (N, O, OH, OW).
    """
    th, tw = tile_counts(out_shape[2:])
    y = np.empty(out_shape, m.dtype)
    b = np.zeros(1, m.dtype) if bias is None else bias
    _output_tiles_loop(m, b, bias is not None, relu, th, tw, y)
    return y


def output_tiles_numpy(m, bias, out_shape, relu: bool) -> np.ndarray:
    """NumPy twin of :func:`output_tiles`."""
    n, o, oh, ow = out_shape
    th, tw = tile_counts((oh, ow))
    at = _AT.astype(m.dtype)
    mt = m.reshape(4, 4, n, th, tw, o)
    yt = np.einsum("ia,abntso,jb->ntisjo", at, mt, at).reshape(n, 2 * th, 2 * tw, o)
    y = yt[:, :oh, :ow].transpose(0, 3, 1, 2)
    if bias is not None:
        y = y + bias[None, :, None, None]
    if relu:
        y = np.where(y < 0, 0, y)
    return np.ascontiguousarray(y)


@kernel_jit()
def _output_tiles_adjoint_loop(y, dy, relu, th, tw, dm, db):
    # dm = A g Aᵀ for the (masked) 2x2 gradient g of every tile, zero past the odd edges; the
    # bias gradient is summed in the same pass (float64 totals).
    n_batch, out_c, out_h, out_w = dy.shape
    zero = dy.dtype.type(0.0)
    g = np.zeros((2, 2), dy.dtype)
    h = np.empty((4, 2), dy.dtype)
    total = np.zeros(out_c, np.float64)
    for n in range(n_batch):
        for ty in range(th):
            for tx in range(tw):
                t = (n * th + ty) * tw + tx
                r = 2 * ty
                q = 2 * tx
                for o in range(out_c):
                    for a in range(2):
                        for b in range(2):
                            if r + a < out_h and q + b < out_w:
                                value = dy[n, o, r + a, q + b]
                                if relu and not y[n, o, r + a, q + b] > zero:
                                    value = zero
                                g[a, b] = value
                                total[o] += value
                            else:
                                g[a, b] = zero
                    for b in range(2):
                        h[0, b] = g[0, b]
                        h[1, b] = g[0, b] + g[1, b]
                        h[2, b] = g[0, b] - g[1, b]
                        h[3, b] = -g[1, b]
                    for i in range(4):
                        dm[4 * i, t, o] = h[i, 0]
                        dm[4 * i + 1, t, o] = h[i, 0] + h[i, 1]
                        dm[4 * i + 2, t, o] = h[i, 0] - h[i, 1]
                        dm[4 * i + 3, t, o] = -h[i, 1]
    for o in range(out_c):
        db[o] = total[o]


def output_tiles_adjoint(y, dy: np.ndarray, relu: bool):
    """Adjoint of :func:`output_tiles`: ``(dm, db)`` from ``dy`` (masked by ``y > 0``)."""
    n, o, oh, ow = dy.shape
    th, tw = tile_counts((oh, ow))
    dm = np.empty((16, n * th * tw, o), dy.dtype)
    db = np.empty(o, dy.dtype)
    y_arg = dy if y is None else y
    _output_tiles_adjoint_loop(y_arg, np.ascontiguousarray(dy), relu, th, tw, dm, db)
    return dm, db


def output_tiles_adjoint_numpy(y, dy: np.ndarray, relu: bool):
    """NumPy twin of :func:`output_tiles_adjoint`."""
    n, o, oh, ow = dy.shape
    th, tw = tile_counts((oh, ow))
    g = np.where(y > 0, dy, 0) if relu else dy
    gp = np.zeros((n, o, 2 * th, 2 * tw), dy.dtype)
    gp[:, :, :oh, :ow] = g
    gt = gp.reshape(n, o, th, 2, tw, 2)
    at = _AT.astype(dy.dtype)
    dm = np.einsum("ai,noxayb,bj->ijnxyo", at, gt, at)
    return np.ascontiguousarray(dm).reshape(16, -1, o), g.sum(
        axis=(0, 2, 3), dtype=np.float64
    ).astype(dy.dtype)


@kernel_jit()
def _input_tiles_adjoint_loop(dv, th, tw, dxp):
    n_batch = dxp.shape[0]
    channels = dxp.shape[3]
    e = np.empty((4, 4), dxp.dtype)
    for n in range(n_batch):
        for ty in range(th):
            for tx in range(tw):
                t = (n * th + ty) * tw + tx
                r = 2 * ty
                q = 2 * tx
                for c in range(channels):
                    for k in range(4):
                        v0 = dv[k, t, c]
                        v1 = dv[4 + k, t, c]
                        v2 = dv[8 + k, t, c]
                        v3 = dv[12 + k, t, c]
                        e[0, k] = v0
                        e[1, k] = v1 - v2 + v3
                        e[2, k] = v1 + v2 - v0
                        e[3, k] = -v3
                    for a in range(4):
                        dxp[n, r + a, q, c] += e[a, 0]
                        dxp[n, r + a, q + 1, c] += e[a, 1] - e[a, 2] + e[a, 3]
                        dxp[n, r + a, q + 2, c] += e[a, 1] + e[a, 2] - e[a, 0]
                        dxp[n, r + a, q + 3, c] -= e[a, 3]


def _crop(dxp: np.ndarray, x_shape, padding) -> np.ndarray:
    n, c, h, w = x_shape
    ph, pw = padding
    dx = np.zeros((n, c, h, w), dxp.dtype)
    rows, cols = min(h, dxp.shape[1] - ph), min(w, dxp.shape[2] - pw)
    dx[:, :, :rows, :cols] = dxp[:, ph : ph + rows, pw : pw + cols].transpose(0, 3, 1, 2)
    return dx


def input_tiles_adjoint(dv: np.ndarray, x_shape, padding, out_size) -> np.ndarray:
    """Adjoint of :func:`input_tiles`: sum ``B dv Bᵀ`` of every tile back into (N, C, H, W)."""
    th, tw = tile_counts(out_size)
    n, c = x_shape[0], x_shape[1]
    dxp = np.zeros((n, 2 * th + 2, 2 * tw + 2, c), dv.dtype)
    _input_tiles_adjoint_loop(dv, th, tw, dxp)
    return _crop(dxp, x_shape, padding)


def input_tiles_adjoint_numpy(dv: np.ndarray, x_shape, padding, out_size) -> np.ndarray:
    """NumPy twin of :func:`input_tiles_adjoint`."""
    th, tw = tile_counts(out_size)
    n, c = x_shape[0], x_shape[1]
    bt = _BT.astype(dv.dtype)
    d = np.einsum("ai,abntsc,bj->ntsijc", bt, dv.reshape(4, 4, n, th, tw, c), bt)
    dxp = np.zeros((n, 2 * th + 2, 2 * tw + 2, c), dv.dtype)
    for i in range(4):
        for j in range(4):
            dxp[:, i : i + 2 * th : 2, j : j + 2 * tw : 2] += d[:, :, :, i, j]
    return _crop(dxp, x_shape, padding)


def weight_transform(w: np.ndarray) -> np.ndarray:
    """``G g Gᵀ`` of every (O, C) 3x3 filter, as (16, C, O) for the batched products."""
    g = _G.astype(w.dtype)
    u = np.matmul(np.matmul(g, w), g.T)  # (O, C, 4, 4)
    return np.ascontiguousarray(u.transpose(2, 3, 1, 0)).reshape(16, w.shape[1], w.shape[0])


def weight_transform_adjoint(du: np.ndarray) -> np.ndarray:
    """Adjoint of :func:`weight_transform`: (16, C, O) back to the (O, C, 3, 3) gradient."""
    g = _G.astype(du.dtype)
    c, o = du.shape[1], du.shape[2]
    d = du.reshape(4, 4, c, o).transpose(3, 2, 0, 1)
    return np.ascontiguousarray(np.matmul(np.matmul(g.T, d), g))
