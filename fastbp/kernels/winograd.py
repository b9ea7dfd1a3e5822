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
from .conv import _buffer, _window_max
from .dispatch import _output

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
    "planes",
    "batched_product",
    "pool_relu_tiles",
    "pool_relu_tiles_numpy",
    "pool_relu_tiles_adjoint",
    "pool_relu_tiles_adjoint_numpy",
]

_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def tile_counts(out_size: tuple[int, int]) -> tuple[int, int]:
    """Number of 2x2 output tiles along each axis (odd sizes round up)."""
    return (out_size[0] + 1) // 2, (out_size[1] + 1) // 2


def planes(count: int, rows: int, cols: int, dtype) -> np.ndarray:
    """An uninitialised (count, rows, cols) array whose planes do not start 4 KiB apart.

    The transforms read or write all 16 planes of a tile at once. With planes a whole
    number of pages long (3136 tiles x 64 channels x 4 bytes is), those 16 streams fall on
    one set of the L1 cache and evict each other: the output adjoint ran 6x slower. One
    cache line of slack per plane spreads them over different sets. Each plane stays
    C-contiguous, so BLAS reads and writes it in place. Large arrays sit on a reused block
    (as the conv kernels' outputs): a fresh one costs a page fault per 4 KiB every step.

    Example
    -------
    >>> a = planes(16, 3136, 64, np.float32)
    >>> a.shape, a.strides[0] % 4096
    ((16, 3136, 64), 64)
    """
    item = np.dtype(dtype).itemsize
    plane = rows * cols
    stride = -(-plane * item // 4096) * 4096 + 64
    size = (count - 1) * stride // item + plane
    dtype = np.dtype(dtype)
    base = _output((size,), dtype)
    if base is None:
        base = np.empty(size, dtype)
    return np.lib.stride_tricks.as_strided(base, (count, rows, cols), (stride, cols * item, item))


def batched_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for (16, M, K) and (16, K, N) stacks through BLAS, into :func:`planes`.

    Example
    -------
    >>> batched_product(np.ones((16, 2, 3)), np.ones((16, 3, 4))).shape
    (16, 2, 4)
    """
    return np.matmul(a, b, out=planes(a.shape[0], a.shape[1], b.shape[2], a.dtype))


def _padded(x: np.ndarray, padding, out_size) -> np.ndarray:
    # Channels last and zero padded to the tiles' reach, so the tile loop has no bounds checks.
    n, c, h, w = x.shape
    th, tw = tile_counts(out_size)
    hp, wp = 2 * th + 2, 2 * tw + 2
    ph, pw = padding
    xp = _zeros((n, hp, wp, c), x.dtype)
    rows, cols = min(h, hp - ph), min(w, wp - pw)
    xp[:, ph : ph + rows, pw : pw + cols] = x[:, :, :rows, :cols].transpose(0, 2, 3, 1)
    return xp


def _zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
    # On a reused block: a fresh multi-megabyte np.zeros costs a page fault per 4 KiB.
    out = _buffer(shape, np.dtype(dtype))
    out.fill(0)
    return out


# The 1-D transforms. A tile's 2-D transform applies one along the rows, then the other way;
# the kernels below read and write array elements directly (no per-tile views: a Numba
# view costs a reference count each, and 16 or more of them per tile took half the time).


@kernel_jit()
def _bt(d0, d1, d2, d3):
    # Bᵀ d
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@kernel_jit()
def _b(e0, e1, e2, e3):
    # B e, the adjoint of _bt
    return e0, e1 - e2 + e3, e1 + e2 - e0, -e3


@kernel_jit()
def _at(m0, m1, m2, m3):
    # Aᵀ m
    return m0 + m1 + m2, m1 - m2 - m3


@kernel_jit()
def _a(g0, g1):
    # A g, the adjoint of _at
    return g0, g0 + g1, g0 - g1, -g1


@kernel_jit()
def _input_tiles_loop(xp, v, th, tw):
    # Channels innermost: every load and store runs along C, which LLVM vectorises.
    n_batch = xp.shape[0]
    channels = xp.shape[3]
    for n in range(n_batch):
        for ty in range(th):
            for tx in range(tw):
                t = (n * th + ty) * tw + tx
                r = 2 * ty
                q = 2 * tx
                for c in range(channels):
                    s00, s01, s02, s03 = _bt(
                        xp[n, r, q, c], xp[n, r, q + 1, c], xp[n, r, q + 2, c], xp[n, r, q + 3, c]
                    )
                    s10, s11, s12, s13 = _bt(
                        xp[n, r + 1, q, c],
                        xp[n, r + 1, q + 1, c],
                        xp[n, r + 1, q + 2, c],
                        xp[n, r + 1, q + 3, c],
                    )
                    s20, s21, s22, s23 = _bt(
                        xp[n, r + 2, q, c],
                        xp[n, r + 2, q + 1, c],
                        xp[n, r + 2, q + 2, c],
                        xp[n, r + 2, q + 3, c],
                    )
                    s30, s31, s32, s33 = _bt(
                        xp[n, r + 3, q, c],
                        xp[n, r + 3, q + 1, c],
                        xp[n, r + 3, q + 2, c],
                        xp[n, r + 3, q + 3, c],
                    )
                    v[0, t, c], v[4, t, c], v[8, t, c], v[12, t, c] = _bt(s00, s10, s20, s30)
                    v[1, t, c], v[5, t, c], v[9, t, c], v[13, t, c] = _bt(s01, s11, s21, s31)
                    v[2, t, c], v[6, t, c], v[10, t, c], v[14, t, c] = _bt(s02, s12, s22, s32)
                    v[3, t, c], v[7, t, c], v[11, t, c], v[15, t, c] = _bt(s03, s13, s23, s33)


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
    v = planes(16, x.shape[0] * th * tw, x.shape[1], x.dtype)
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
def _tile_outputs(m, t, o, bias):
    # The 2x2 outputs (y00, y01, y10, y11) of tile t, channel o: Aᵀ m A + b.
    u00, u10 = _at(m[0, t, o], m[4, t, o], m[8, t, o], m[12, t, o])
    u01, u11 = _at(m[1, t, o], m[5, t, o], m[9, t, o], m[13, t, o])
    u02, u12 = _at(m[2, t, o], m[6, t, o], m[10, t, o], m[14, t, o])
    u03, u13 = _at(m[3, t, o], m[7, t, o], m[11, t, o], m[15, t, o])
    y00, y01 = _at(u00, u01, u02, u03)
    y10, y11 = _at(u10, u11, u12, u13)
    b = bias[o]
    return y00 + b, y01 + b, y10 + b, y11 + b


@kernel_jit()
def _output_tiles_loop(m, bias, relu, th, tw, y, totals):
    # Channels innermost while transforming (contiguous reads of m, vectorised over O); one
    # tile row's two output rows wait in ``rows`` (in L1) and go out to NCHW row by row.
    n_batch, out_c, out_h, out_w = y.shape
    zero = y.dtype.type(0.0)
    rows = np.empty((2, 2 * tw, out_c), y.dtype)
    for n in range(n_batch):
        for ty in range(th):
            for tx in range(tw):
                t = (n * th + ty) * tw + tx
                q = 2 * tx
                for o in range(out_c):
                    y00, y01, y10, y11 = _tile_outputs(m, t, o, bias)
                    totals[o] += (y00 + y01) + (y10 + y11)  # before the ReLU: it hides a -inf
                    if relu:
                        # NOTE: a NaN stays NaN, as in the unfused relu.
                        y00 = zero if y00 < zero else y00
                        y01 = zero if y01 < zero else y01
                        y10 = zero if y10 < zero else y10
                        y11 = zero if y11 < zero else y11
                    rows[0, q, o] = y00
                    rows[0, q + 1, o] = y01
                    rows[1, q, o] = y10
                    rows[1, q + 1, o] = y11
            r = 2 * ty
            for a in range(2):
                if r + a < out_h:
                    for o in range(out_c):
                        for col in range(out_w):
                            y[n, o, r + a, col] = rows[a, col, o]


def output_tiles(m, bias, out_shape, relu: bool) -> tuple[np.ndarray, bool]:
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
    y : ndarray
        (N, O, OH, OW).
    finite : bool
        Whether every output before the ReLU is finite. A NaN or an infinity in the input
        or the weights reaches more outputs through the transforms than through the
        convolution itself (``inf - inf`` where the weights would cancel), so a caller that
        must match the direct convolution's NaN pattern recomputes when this is False.
    """
    th, tw = tile_counts(out_shape[2:])
    y = _buffer(tuple(out_shape), m.dtype)
    b = np.zeros(out_shape[1], m.dtype) if bias is None else bias
    totals = np.zeros(out_shape[1], m.dtype)
    _output_tiles_loop(m, b, relu, th, tw, y, totals)
    return y, bool(np.isfinite(totals.sum()))


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
    finite = bool(np.isfinite(y).all())
    if relu:
        y = np.where(y < 0, 0, y)
    return np.ascontiguousarray(y), finite


@kernel_jit()
def _tile_adjoint(g00, g01, g10, g11, dm, t, o):
    # dm[:, t, o] = A g Aᵀ of one tile's 2x2 gradient g, channel o.
    h00, h10, h20, h30 = _a(g00, g10)
    h01, h11, h21, h31 = _a(g01, g11)
    dm[0, t, o], dm[1, t, o], dm[2, t, o], dm[3, t, o] = _a(h00, h01)
    dm[4, t, o], dm[5, t, o], dm[6, t, o], dm[7, t, o] = _a(h10, h11)
    dm[8, t, o], dm[9, t, o], dm[10, t, o], dm[11, t, o] = _a(h20, h21)
    dm[12, t, o], dm[13, t, o], dm[14, t, o], dm[15, t, o] = _a(h30, h31)


@kernel_jit()
def _output_tiles_adjoint_loop(y, dy, relu, th, tw, dm, db):
    # dm = A g Aᵀ for the (masked) 2x2 gradient g of every tile, zero past the odd edges; the
    # bias gradient is summed in the same pass (float64 totals). One tile row of g is first
    # gathered from NCHW into ``rows``, channels last (in L1), so that the transform reads
    # and writes contiguous runs over O.
    n_batch, out_c, out_h, out_w = dy.shape
    zero = dy.dtype.type(0.0)
    rows = np.zeros((2, 2 * tw, out_c), dy.dtype)  # columns past out_w stay zero
    total = np.zeros(out_c, np.float64)
    for n in range(n_batch):
        for ty in range(th):
            r = 2 * ty
            for a in range(2):
                if r + a >= out_h:
                    rows[a] = zero
                    continue
                for o in range(out_c):
                    row_total = 0.0
                    for col in range(out_w):
                        value = dy[n, o, r + a, col]
                        if relu and not y[n, o, r + a, col] > zero:
                            value = zero
                        rows[a, col, o] = value
                        row_total += value
                    total[o] += row_total
            for tx in range(tw):
                t = (n * th + ty) * tw + tx
                q = 2 * tx
                for o in range(out_c):
                    _tile_adjoint(
                        rows[0, q, o], rows[0, q + 1, o], rows[1, q, o], rows[1, q + 1, o], dm, t, o
                    )
    for o in range(out_c):
        db[o] = total[o]


def output_tiles_adjoint(y, dy: np.ndarray, relu: bool):
    """Adjoint of :func:`output_tiles`: ``(dm, db)`` from ``dy`` (masked by ``y > 0``)."""
    n, o, oh, ow = dy.shape
    th, tw = tile_counts((oh, ow))
    dm = planes(16, n * th * tw, o, dy.dtype)
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
    # Channels innermost, as the forward transform; B dv Bᵀ is added into the patch.
    n_batch = dxp.shape[0]
    channels = dxp.shape[3]
    for n in range(n_batch):
        for ty in range(th):
            for tx in range(tw):
                t = (n * th + ty) * tw + tx
                r = 2 * ty
                q = 2 * tx
                for c in range(channels):
                    e00, e10, e20, e30 = _b(dv[0, t, c], dv[4, t, c], dv[8, t, c], dv[12, t, c])
                    e01, e11, e21, e31 = _b(dv[1, t, c], dv[5, t, c], dv[9, t, c], dv[13, t, c])
                    e02, e12, e22, e32 = _b(dv[2, t, c], dv[6, t, c], dv[10, t, c], dv[14, t, c])
                    e03, e13, e23, e33 = _b(dv[3, t, c], dv[7, t, c], dv[11, t, c], dv[15, t, c])
                    d0, d1, d2, d3 = _b(e00, e01, e02, e03)
                    dxp[n, r, q, c] += d0
                    dxp[n, r, q + 1, c] += d1
                    dxp[n, r, q + 2, c] += d2
                    dxp[n, r, q + 3, c] += d3
                    d0, d1, d2, d3 = _b(e10, e11, e12, e13)
                    dxp[n, r + 1, q, c] += d0
                    dxp[n, r + 1, q + 1, c] += d1
                    dxp[n, r + 1, q + 2, c] += d2
                    dxp[n, r + 1, q + 3, c] += d3
                    d0, d1, d2, d3 = _b(e20, e21, e22, e23)
                    dxp[n, r + 2, q, c] += d0
                    dxp[n, r + 2, q + 1, c] += d1
                    dxp[n, r + 2, q + 2, c] += d2
                    dxp[n, r + 2, q + 3, c] += d3
                    d0, d1, d2, d3 = _b(e30, e31, e32, e33)
                    dxp[n, r + 3, q, c] += d0
                    dxp[n, r + 3, q + 1, c] += d1
                    dxp[n, r + 3, q + 2, c] += d2
                    dxp[n, r + 3, q + 3, c] += d3


def _crop(dxp: np.ndarray, x_shape, padding) -> np.ndarray:
    n, c, h, w = x_shape
    ph, pw = padding
    rows, cols = min(h, dxp.shape[1] - ph), min(w, dxp.shape[2] - pw)
    # Inputs the tiles do not reach (a trailing row or column past the last output) get 0.
    dx = (
        _buffer((n, c, h, w), dxp.dtype)
        if (rows, cols) == (h, w)
        else _zeros((n, c, h, w), dxp.dtype)
    )
    dx[:, :, :rows, :cols] = dxp[:, ph : ph + rows, pw : pw + cols].transpose(0, 3, 1, 2)
    return dx


def input_tiles_adjoint(dv: np.ndarray, x_shape, padding, out_size) -> np.ndarray:
    """Adjoint of :func:`input_tiles`: sum ``B dv Bᵀ`` of every tile back into (N, C, H, W)."""
    th, tw = tile_counts(out_size)
    n, c = x_shape[0], x_shape[1]
    dxp = _zeros((n, 2 * th + 2, 2 * tw + 2, c), dv.dtype)
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
    with np.errstate(invalid="ignore"):  # an inf weight: the caller recomputes (see output_tiles)
        u = np.matmul(np.matmul(g, w), g.T)  # (O, C, 4, 4)
    return np.ascontiguousarray(u.transpose(2, 3, 1, 0)).reshape(16, w.shape[1], w.shape[0])


def weight_transform_adjoint(du: np.ndarray) -> np.ndarray:
    """Adjoint of :func:`weight_transform`: (16, C, O) back to the (O, C, 3, 3) gradient."""
    g = _G.astype(du.dtype)
    c, o = du.shape[1], du.shape[2]
    d = du.reshape(4, 4, c, o).transpose(3, 2, 0, 1)
    return np.ascontiguousarray(np.matmul(np.matmul(g.T, d), g))


# ---- Winograd output -> bias -> ReLU -> 2x2 max-pool in one pass --------------------------------
#
# With an even output, every 2x2 tile is exactly one 2x2 / stride-2 pooling window, so the
# output transform can pool as it goes: the full-size activation is never written. ``code``
# keeps the winner's place (0..3, row-major, the first maximum on ties), as
# ``fastbp.kernels.conv.conv_relu_pool``; a window whose maximum is not positive passes no
# gradient.


@kernel_jit()
def _pool_relu_tiles_loop(m, bias, th, tw, pooled, code):
    n_batch, out_c = pooled.shape[0], pooled.shape[1]
    zero = pooled.dtype.type(0.0)
    best_row = np.empty((tw, out_c), m.dtype)
    code_row = np.empty((tw, out_c), code.dtype)
    totals = np.zeros(out_c, m.dtype)
    for n in range(n_batch):
        for ty in range(th):
            for tx in range(tw):
                t = (n * th + ty) * tw + tx
                for o in range(out_c):
                    v0, v1, v2, v3 = _tile_outputs(m, t, o, bias)
                    totals[o] += (v0 + v1) + (v2 + v3)
                    best, k = _window_max(v0, v1, v2, v3)
                    best_row[tx, o] = best if best > zero else zero
                    code_row[tx, o] = k
            for o in range(out_c):
                for tx in range(tw):
                    pooled[n, o, ty, tx] = best_row[tx, o]
                    code[n, o, ty, tx] = code_row[tx, o]
    return totals.sum()


def pool_relu_tiles(m: np.ndarray, bias, out_shape) -> tuple[np.ndarray, np.ndarray, bool]:
    """``max_pool2d(relu(Aᵀ m A + b), 2)`` of every tile, for an even output.

    Parameters
    ----------
    m : ndarray
        (16, N*TH*TW, O), the Winograd-domain product.
    bias : ndarray or None
        (O,).
    out_shape : (int, int, int, int)
        (N, O, OH, OW), the convolution's output shape; OH and OW even.

    Returns
    -------
    pooled : ndarray
        (N, O, OH // 2, OW // 2).
    code : ndarray of uint8
        The winner's place (0..3, row-major) in each window.
    finite : bool
        False if an output before the ReLU was a NaN or an inf: the caller recomputes
        (see :func:`output_tiles`).

    Example
    -------
    >>> m = np.zeros((16, 1, 1)); m[5, 0, 0] = 2.0  # the (1, 1) tap of the middle sum
    >>> pooled, code, finite = pool_relu_tiles(m, None, (1, 1, 2, 2))
    >>> pooled.ravel(), code.ravel(), finite
    (array([2.]), array([0], dtype=uint8), True)
    """
    n, o, oh, ow = out_shape
    if oh % 2 or ow % 2:
        raise ValueError(f"pool_relu_tiles: the output {oh}x{ow} must be even in both sizes")
    pooled = np.empty((n, o, oh // 2, ow // 2), m.dtype)
    code = np.empty(pooled.shape, np.uint8)
    b = np.zeros(o, m.dtype) if bias is None else np.ascontiguousarray(bias)
    total = _pool_relu_tiles_loop(m, b, oh // 2, ow // 2, pooled, code)
    return pooled, code, bool(np.isfinite(total))


def pool_relu_tiles_numpy(m: np.ndarray, bias, out_shape):
    """NumPy twin of :func:`pool_relu_tiles`: the output transform, then ReLU and max-pool."""
    n, o, oh, ow = out_shape
    y, finite = output_tiles_numpy(m, bias, out_shape, False)
    windows = y.reshape(n, o, oh // 2, 2, ow // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    windows = windows.reshape(n, o, oh // 2, ow // 2, 4)
    code = np.argmax(windows, axis=-1).astype(np.uint8)  # the first maximum
    best = np.take_along_axis(windows, code[..., None].astype(np.intp), -1)[..., 0]
    return np.where(best > 0, best, 0).astype(m.dtype), code, finite


@kernel_jit()
def _pool_relu_tiles_adjoint_loop(pooled, code, dy, dm, db):
    # One tile row at a time: first the four cells of every window (the masked gradient at
    # its winner, zeros elsewhere) gathered from NCHW, channels last; then the transform.
    n_batch, out_c, th, tw = dy.shape
    zero = dy.dtype.type(0.0)
    one = dy.dtype.type(1.0)
    cells = np.empty((4, tw, out_c), dy.dtype)
    totals = np.zeros(out_c, np.float64)
    for n in range(n_batch):
        for ty in range(th):
            for o in range(out_c):
                row_total = 0.0
                for tx in range(tw):
                    # Multiplies by 0/1, not branches on random signs (see conv_relu_pool);
                    # an inf in dy then makes db non-finite and the caller recomputes.
                    g = dy[n, o, ty, tx] * (zero if pooled[n, o, ty, tx] <= zero else one)
                    k = code[n, o, ty, tx]
                    cells[0, tx, o] = g * (one if k == 0 else zero)
                    cells[1, tx, o] = g * (one if k == 1 else zero)
                    cells[2, tx, o] = g * (one if k == 2 else zero)
                    cells[3, tx, o] = g * (one if k == 3 else zero)
                    row_total += g
                totals[o] += row_total
            for tx in range(tw):
                t = (n * th + ty) * tw + tx
                for o in range(out_c):
                    _tile_adjoint(
                        cells[0, tx, o], cells[1, tx, o], cells[2, tx, o], cells[3, tx, o], dm, t, o
                    )
    for o in range(out_c):
        db[o] = totals[o]


def pool_relu_tiles_adjoint(pooled: np.ndarray, code: np.ndarray, dy: np.ndarray):
    """Adjoint of :func:`pool_relu_tiles`: ``(dm, db)`` from the pooled gradient ``dy``.

    ``dy`` reaches each window's winner when the window's maximum was positive, and then the
    output transform's adjoint takes it to the Winograd domain; ``db`` sums it (float64).

    Example
    -------
    >>> pooled, code = np.array([[[[2.0]]]]), np.array([[[[3]]]], np.uint8)
    >>> dm, db = pool_relu_tiles_adjoint(pooled, code, np.array([[[[1.0]]]]))
    >>> dm[15, 0, 0], db
    (np.float64(1.0), array([1.]))
    """
    n, o, th, tw = dy.shape
    dm = planes(16, n * th * tw, o, dy.dtype)
    db = np.empty(o, dy.dtype)
    _pool_relu_tiles_adjoint_loop(pooled, code, np.ascontiguousarray(dy), dm, db)
    return dm, db


def pool_relu_tiles_adjoint_numpy(pooled: np.ndarray, code: np.ndarray, dy: np.ndarray):
    """NumPy twin of :func:`pool_relu_tiles_adjoint`."""
    n, o, th, tw = dy.shape
    g = np.where(pooled > 0, dy, 0)
    cells = (code[..., None] == np.arange(4)) * g[..., None]  # (N, O, TH, TW, 4)
    full = (
        cells.reshape(n, o, th, tw, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, o, 2 * th, 2 * tw)
    )
    dm, db = output_tiles_adjoint_numpy(None, full.astype(dy.dtype), False)
    return dm, db
