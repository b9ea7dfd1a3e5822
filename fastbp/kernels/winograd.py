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
from .conv.common import _buffer
from .conv.fused import _window_max

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
    "conv_forward",
    "conv_backward",
]

_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)
_GG = np.kron(_G, _G)  # (16, 9): [4i + j, 3a + b] = G[i, a] G[j, b]


def tile_counts(out_size: tuple[int, int]) -> tuple[int, int]:
    """Number of 2x2 output tiles along each axis (odd sizes round up)."""
    return (out_size[0] + 1) // 2, (out_size[1] + 1) // 2


def planes(count: int, rows: int, cols: int, dtype) -> np.ndarray:
    """An uninitialised (count, rows, cols) array whose planes do not start 4 KiB apart.

    The transforms stream several planes side by side (the same row of 3 or 4 planes per
    loop). With planes a whole number of pages long (3136 tiles x 64 channels x 4 bytes
    is), those streams fall on one set of the L1 cache and evict each other: the output
    adjoint once ran 6x slower. One cache line of slack per plane spreads them over sets.
    Each plane stays C-contiguous, so BLAS reads and writes it in place. Large arrays sit
    on a reused block (as the conv kernels' outputs): a fresh one costs a page fault per
    4 KiB every step.

    Example
    -------
    >>> a = planes(16, 3136, 64, np.float32)
    >>> a.shape, a.strides[0] % 4096
    ((16, 3136, 64), 64)
    """
    item = np.dtype(dtype).itemsize
    plane = rows * cols
    stride = -(-plane * item // 4096) * 4096 + 64
    size = count * stride // item  # the last plane's slack too: see _rows_view
    dtype = np.dtype(dtype)
    base = _buffer((size,), dtype)
    # np.ndarray over the block: its .base is the block, which _rows_view reads back.
    return np.ndarray((count, rows, cols), dtype, buffer=base, strides=(stride, cols * item, item))


def batched_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for (16, M, K) and (16, K, N) stacks through BLAS, into :func:`planes`.

    Example
    -------
    >>> batched_product(np.ones((16, 2, 3)), np.ones((16, 3, 4))).shape
    (16, 2, 4)
    """
    return np.matmul(a, b, out=planes(a.shape[0], a.shape[1], b.shape[2], a.dtype))


def _padded(x: np.ndarray, padding, out_size) -> np.ndarray:
    # Channels last and zero padded to the tiles' reach: the NumPy twins' layout (the kernels
    # take _split_padded's).
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


# ---- How the transform kernels are laid out ---------------------------------------------------
#
# Every transform works on one tile row at a time, and on one output row of that tile row per
# inner loop: a contiguous run of TW*C values (TW tiles, C channels innermost) that the
# planes hold back to back. Three things make those loops vectorise:
#
# * Indices are unsigned (``uint64``). Numba wraps a negative signed index around, and the
#   select that does it on a computed index (``base + e``) keeps LLVM from knowing the
#   addresses are consecutive, so it would not vectorise at all.
# * Each loop writes one row and reads at most four: LLVM must check at run time that the
#   row it writes overlaps none it reads, and gives up beyond eight checks (a loop writing
#   all 16 planes of a tile needs hundreds).
# * The padded input keeps even and odd columns apart, (N, HP, 2, WP/2, C): patch column
#   ``b`` of tile ``tx`` is then column ``tx + b // 2`` of parity ``b % 2``, so a tile row's
#   patch column is one contiguous run as well.
#
# A 2-D transform is a 1-D transform along the columns of each row, then along the rows;
# the loops below do exactly the additions of that order, so the results are the same bits
# as transforming one tile at a time. Rows of a transform that are one term (``x`` or
# ``-x``) are copies; ``x + s*y`` with ``s = ±1`` is ``x ± y`` exactly.

_U = np.uint64

# Bᵀ's rows as (first, second, sign): row i of Bᵀ d is d[first] + sign * d[second].
_BT_ROWS = np.array([[0, 2, -1], [1, 2, 1], [2, 1, -1], [1, 3, -1]], np.int64)


@kernel_jit()
def _two_by_two(src, a1, a2, b1, b2, sign_in, sign_out, dst, row, offset, n):
    # dst[row, offset + e] = (s[a1] + si*s[a2]) + so*(s[b1] + si*s[b2]), s[k] = src[k + e]
    for e in range(n):
        first = src[a1 + e] + sign_in * src[a2 + e]
        second = src[b1 + e] + sign_in * src[b2 + e]
        dst[row, offset + e] = first + sign_out * second


@kernel_jit()
def _input_tiles_loop(xs, v, n_batch, hp, wh, channels, th, tw, rows):
    # xs: the split padded input, flat; v: (16, S) planes, element (k, t*C + c).
    c, wh, hp, th, tw = _U(channels), _U(wh), _U(hp), _U(th), _U(tw)
    half = wh * c  # one parity of one padded row
    row = _U(2) * half
    length = tw * c
    for n in range(_U(n_batch)):
        for ty in range(th):
            top = (n * hp + _U(2) * ty) * row
            out = (n * th + ty) * length
            for i in range(4):
                r1 = top + _U(rows[i, 0]) * row
                r2 = top + _U(rows[i, 1]) * row
                sign_i = v.dtype.type(rows[i, 2])
                for j in range(4):
                    b1, b2 = _U(rows[j, 0]), _U(rows[j, 1])
                    c1 = (b1 % _U(2)) * half + (b1 // _U(2)) * c
                    c2 = (b2 % _U(2)) * half + (b2 // _U(2)) * c
                    sign_j = v.dtype.type(rows[j, 2])
                    _two_by_two(
                        xs,
                        r1 + c1,
                        r1 + c2,
                        r2 + c1,
                        r2 + c2,
                        sign_j,
                        sign_i,
                        v,
                        4 * i + j,
                        out,
                        length,
                    )


def _rows_view(a: np.ndarray) -> np.ndarray:
    # (count, S) view of planes whose rows are contiguous (S elements apart: see planes()),
    # the C-contiguous type the kernels index as (k, t*cols + c).
    if a.flags.c_contiguous:
        return a.reshape(a.shape[0], -1)
    base, item = a.base, a.itemsize
    if (
        isinstance(base, np.ndarray)
        and base.flags.c_contiguous
        and base.ctypes.data == a.ctypes.data
        and a.strides[1:] == (a.shape[2] * item, item)
        and a.strides[0] % item == 0
        and base.size * base.itemsize >= a.shape[0] * a.strides[0]
    ):  # from planes(): the block holds every plane's slack
        stride = a.strides[0] // item
        return np.ndarray((a.shape[0], stride), a.dtype, buffer=base, strides=(stride * item, item))
    # Any other layout: a copy, which only an array the kernel reads may be (every plane a
    # kernel writes comes from planes()).
    return np.ascontiguousarray(a).reshape(a.shape[0], -1)


def _bias_row(bias, channels: int, tw: int, dtype) -> np.ndarray:
    # The bias of every (tile, channel) of a tile row, as the output kernels read it.
    b = np.zeros(channels, dtype) if bias is None else np.asarray(bias, dtype)
    return np.tile(b, tw)


def _split_shape(x_shape, out_size) -> tuple[int, ...]:
    th, tw = tile_counts(out_size)
    return (x_shape[0], 2 * th + 2, 2, tw + 1, x_shape[1])


def _placement(x_shape, split_shape, padding) -> tuple[int, list[tuple[int, int, int, int]]]:
    # Where the input lands in the split padded layout: the rows it fills, and per parity
    # (parity, first input column, its split column, how many columns). Input column w sits
    # at padded column w + pw, i.e. split column (w + pw) // 2 of parity (w + pw) % 2.
    h, w = x_shape[2], x_shape[3]
    ph, pw = padding
    rows = max(0, min(h, split_shape[1] - ph))
    columns = []
    for parity in range(2):
        first = (parity - pw) % 2
        j0 = (first + pw) // 2
        count = max(0, min((w - first + 1) // 2, split_shape[3] - j0))
        columns.append((parity, first, j0, count))
    return rows, columns


def _split_padded(x: np.ndarray, padding, out_size, out=None) -> np.ndarray:
    # (N, HP, 2, WP/2, C): channels last, zero padded to the tiles' reach, columns split by
    # parity (see above).
    shape = _split_shape(x.shape, out_size)
    if out is None:
        xs = _zeros(shape, x.dtype)
    else:
        xs = out
        xs.fill(0)
    ph = padding[0]
    rows, columns = _placement(x.shape, shape, padding)
    for parity, first, j0, count in columns:
        if count and rows:
            xs[:, ph : ph + rows, parity, j0 : j0 + count] = x[
                :, :, :rows, first : first + 2 * count : 2
            ].transpose(0, 2, 3, 1)
    return xs


def _split_crop(dxs: np.ndarray, x_shape, padding, out=None) -> np.ndarray:
    # The inverse of _split_padded's placement: (N, C, H, W) from the split padded gradient;
    # inputs past the tiles' reach get 0.
    ph = padding[0]
    rows, columns = _placement(x_shape, dxs.shape, padding)
    covered = rows == x_shape[2] and sum(col[3] for col in columns) == x_shape[3]
    if out is None:
        dx = _buffer(tuple(x_shape), dxs.dtype) if covered else _zeros(tuple(x_shape), dxs.dtype)
    else:
        dx = out
        if not covered:
            dx.fill(0)
    for parity, first, j0, count in columns:
        if count and rows:
            dx[:, :, :rows, first : first + 2 * count : 2] = dxs[
                :, ph : ph + rows, parity, j0 : j0 + count
            ].transpose(0, 3, 1, 2)
    return dx


@kernel_jit()
def _one(src, k, src_at, sign, dst, row, dst_at, n):
    # dst[row, dst_at + e] = sign * src[k, src_at + e]  (sign ±1: a copy or a negation)
    for e in range(n):
        dst[row, dst_at + e] = sign * src[k, src_at + e]


@kernel_jit()
def _two(src, k1, k2, src_at, sign, dst, row, dst_at, n):
    # dst[row, dst_at + e] = s[k1] + sign * s[k2], s[k] = src[k, src_at + e]
    for e in range(n):
        dst[row, dst_at + e] = src[k1, src_at + e] + sign * src[k2, src_at + e]


@kernel_jit()
def _three(src, k1, k2, k3, src_at, sign2, sign3, dst, row, dst_at, n):
    # dst[row, dst_at + e] = (s[k1] + sign2 * s[k2]) + sign3 * s[k3]
    for e in range(n):
        i = src_at + e
        dst[row, dst_at + e] = (src[k1, i] + sign2 * src[k2, i]) + sign3 * src[k3, i]


@kernel_jit()
def _a_rows(src, k0, k1, src_at, dst, first, dst_at, n):
    # The four rows of A g for g = (src[k0], src[k1]): g0, g0 + g1, g0 - g1, -g1.
    one = dst.dtype.type(1.0)
    _one(src, k0, src_at, one, dst, first, dst_at, n)
    _two(src, k0, k1, src_at, one, dst, first + 1, dst_at, n)
    _two(src, k0, k1, src_at, -one, dst, first + 2, dst_at, n)
    _one(src, k1, src_at, -one, dst, first + 3, dst_at, n)


@kernel_jit()
def _b_rows(src, k0, k1, k2, k3, src_at, dst, first, n):
    # The four rows of B e for e = src[k0..k3]: e0, (e1 - e2) + e3, (e1 + e2) - e0, -e3.
    one = dst.dtype.type(1.0)
    zero = _U(0)
    _one(src, k0, src_at, one, dst, first, zero, n)
    _three(src, k1, k2, k3, src_at, -one, one, dst, first + 1, zero, n)
    _three(src, k1, k2, k0, src_at, one, -one, dst, first + 2, zero, n)
    _one(src, k3, src_at, -one, dst, first + 3, zero, n)


@kernel_jit()
def _three_bias(src, k1, k2, k3, sign, bias_row, relu, dst, row, n):
    # dst[row, e] = act((src[k1] + s*src[k2]) + s*src[k3] + bias); returns how many values
    # before the ReLU were not finite (x - x is NaN only for inf and NaN).
    zero = dst.dtype.type(0.0)
    bad = 0
    for e in range(n):
        value = (src[k1, e] + sign * src[k2, e]) + sign * src[k3, e] + bias_row[e]
        bad += value - value != zero
        if relu:
            # NOTE: a NaN stays NaN, as in the unfused relu.
            value = zero if value < zero else value
        dst[row, e] = value
    return bad


@kernel_jit()
def _tile_row_outputs(m, offset, bias_row, relu, u, out, length):
    # The 2x2 outputs of one tile row, act(Aᵀ m A + b), as rows of ``out`` (by output row a
    # and parity b): first the two rows of Aᵀ m for each of the 4 columns (``u``), then Aᵀ
    # along them. Returns how many were not finite.
    one = m.dtype.type(1.0)
    for j in range(4):
        _three(m, j, 4 + j, 8 + j, offset, one, one, u, j, _U(0), length)
        _three(m, 4 + j, 8 + j, 12 + j, offset, -one, -one, u, 4 + j, _U(0), length)
    bad = 0
    for a in range(2):
        bad += _three_bias(u, 4 * a, 4 * a + 1, 4 * a + 2, one, bias_row, relu, out, 2 * a, length)
        bad += _three_bias(
            u, 4 * a + 1, 4 * a + 2, 4 * a + 3, -one, bias_row, relu, out, 2 * a + 1, length
        )
    return bad


@kernel_jit()
def _output_tiles_loop(m, bias_row, relu, th, tw, y):
    # Aᵀ m A + b, per tile row: first the two rows of Aᵀ m for each of the 4 columns (u),
    # then the 2x2 outputs (rows, by output row a and parity b), then out to NCHW.
    n_batch, out_c, out_h, out_w = y.shape
    length = _U(tw) * _U(out_c)
    u = np.empty((8, length), m.dtype)
    rows = np.empty((4, length), m.dtype)
    bad = 0
    for n in range(n_batch):
        for ty in range(th):
            offset = _U(n * th + ty) * length
            bad += _tile_row_outputs(m, offset, bias_row, relu, u, rows, length)
            r = 2 * ty
            for a in range(2):
                if r + a < out_h:
                    _rows_to_nchw(rows, 2 * a, y, n, r + a, tw)
    return bad


@kernel_jit()
def _rows_to_nchw(rows, first, y, n, r, tw):
    # y[n, o, r, 2*tx + b] = rows[first + b, tx*O + o]: a transpose, so one side is strided;
    # channels innermost (contiguous reads, scattered writes) measured 2.7x faster.
    out_c, out_w = _U(y.shape[1]), _U(y.shape[3])
    for tx in range(_U(tw)):
        col = _U(2) * tx
        base = tx * out_c
        if col + _U(1) < out_w:
            for o in range(out_c):
                y[n, o, r, col] = rows[first, base + o]
                y[n, o, r, col + _U(1)] = rows[first + 1, base + o]
        else:
            for o in range(out_c):
                y[n, o, r, col] = rows[first, base + o]


@kernel_jit()
def _tile_row_adjoint(g, h, dm, offset, length):
    # dm = A g Aᵀ for one tile row's 2x2 gradients (rows of ``g`` by output row a and parity
    # b): h = A g along the columns (h[4b + i] = (A g)[i, b]), then dm[4i + j] along the rows.
    for b in range(2):
        _a_rows(g, b, 2 + b, _U(0), h, 4 * b, _U(0), length)
    for i in range(4):
        _a_rows(h, i, 4 + i, _U(0), dm, 4 * i, offset, length)


@kernel_jit()
def _nchw_to_rows(dy, y, relu, n, r, g, first, tw):
    # g[first + b, tx*O + o] = dy[n, o, r, 2*tx + b], zero where y <= 0 (relu) and past the
    # last column (the other half of _rows_to_nchw).
    zero = dy.dtype.type(0.0)
    out_c, out_w = _U(dy.shape[1]), _U(dy.shape[3])
    for tx in range(_U(tw)):
        for b in range(_U(2)):
            col = _U(2) * tx + b
            base = tx * out_c
            if col >= out_w:
                for o in range(out_c):
                    g[first + b, base + o] = zero
            elif relu:
                for o in range(out_c):
                    value = dy[n, o, r, col]
                    g[first + b, base + o] = value if y[n, o, r, col] > zero else zero
            else:
                for o in range(out_c):
                    g[first + b, base + o] = dy[n, o, r, col]


@kernel_jit()
def _output_tiles_adjoint_loop(y, dy, relu, th, tw, dm, db):
    # dm = A g Aᵀ for the (masked) 2x2 gradient g of every tile, zero past the odd edges; the
    # bias gradient is summed in the same pass (float64 totals). A tile row of g is first
    # gathered from NCHW into ``g`` (by output row a and parity b, channels last), then
    # transformed a row at a time: h = A g by columns, then dm = h Aᵀ.
    n_batch, out_c, out_h, out_w = dy.shape
    zero = dy.dtype.type(0.0)
    length = _U(tw) * _U(out_c)
    g = np.zeros((4, length), dy.dtype)
    h = np.empty((8, length), dy.dtype)
    total = np.zeros(length, np.float64)  # per (tile column, channel): summed in vectors
    for n in range(n_batch):
        for ty in range(th):
            r = 2 * ty
            for a in range(2):
                if r + a >= out_h:
                    g[2 * a] = zero
                    g[2 * a + 1] = zero
                    continue
                _nchw_to_rows(dy, y, relu, n, r + a, g, 2 * a, tw)
            for k in range(4):
                for e in range(length):
                    total[e] += g[k, e]
            _tile_row_adjoint(g, h, dm, _U(n * th + ty) * length, length)
    _channel_sums(total, tw, db)


@kernel_jit()
def _channel_sums(total, tw, db):
    # db[o] = the sum over tile columns of total[tx*O + o] (per-(tile, channel) sums).
    out_c = db.shape[0]
    for o in range(out_c):
        column_sum = 0.0
        for tx in range(tw):
            column_sum += total[tx * out_c + o]
        db[o] = column_sum


@kernel_jit()
def _add_into(dst, offset, src, k, n):
    # dst[offset + e] += src[k, e]
    for e in range(n):
        dst[offset + e] += src[k, e]


@kernel_jit()
def _input_tiles_adjoint_loop(dv, n_batch, hp, wh, channels, th, tw, dxs):
    # The adjoint of _input_tiles_loop: B dv Bᵀ of each tile, added into its patch of the
    # split padded gradient. Per tile row: e = B dv along the patch rows (e[4j + a] from
    # planes j, 4+j, 8+j, 12+j), then d = e Bᵀ along the columns (f[4a + b]), then each of
    # the 16 rows of d is added into patch row a, column b.
    c, wh, hp, th, tw = _U(channels), _U(wh), _U(hp), _U(th), _U(tw)
    half = wh * c
    row = _U(2) * half
    length = tw * c
    e = np.empty((16, length), dxs.dtype)
    f = np.empty((16, length), dxs.dtype)
    for n in range(_U(n_batch)):
        for ty in range(th):
            offset = (n * th + ty) * length
            for j in range(4):
                _b_rows(dv, j, 4 + j, 8 + j, 12 + j, offset, e, 4 * j, length)
            for a in range(4):
                _b_rows(e, a, 4 + a, 8 + a, 12 + a, _U(0), f, 4 * a, length)
            top = (n * hp + _U(2) * ty) * row
            for a in range(4):
                # Patch columns 2 and 3 of tile tx are columns 0 and 1 of tile tx + 1: adding
                # those first keeps the order of a tile-by-tile loop, so the same sums.
                for b in (2, 3, 0, 1):
                    column = _U(b % 2) * half + _U(b // 2) * c
                    _add_into(dxs, top + _U(a) * row + column, f, 4 * a + b, length)


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
    return _split_tiles(_split_padded(x, padding, out_size), out_size)


def _split_tiles(xs: np.ndarray, out_size) -> np.ndarray:
    # input_tiles from the split padded input.
    th, tw = tile_counts(out_size)
    n, c = xs.shape[0], xs.shape[4]
    v = planes(16, n * th * tw, c, xs.dtype)
    _input_tiles_loop(xs.reshape(-1), _rows_view(v), n, xs.shape[1], tw + 1, c, th, tw, _BT_ROWS)
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
    bias_row = _bias_row(bias, out_shape[1], tw, m.dtype)
    bad = _output_tiles_loop(_rows_view(m), bias_row, relu, th, tw, y)
    return y, bad == 0


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


def output_tiles_adjoint(y, dy: np.ndarray, relu: bool):
    """Adjoint of :func:`output_tiles`: ``(dm, db)`` from ``dy`` (masked by ``y > 0``)."""
    n, o, oh, ow = dy.shape
    th, tw = tile_counts((oh, ow))
    dm = planes(16, n * th * tw, o, dy.dtype)
    db = np.empty(o, dy.dtype)
    y_arg = dy if y is None else y
    _output_tiles_adjoint_loop(y_arg, np.ascontiguousarray(dy), relu, th, tw, _rows_view(dm), db)
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


def input_tiles_adjoint(dv: np.ndarray, x_shape, padding, out_size) -> np.ndarray:
    """Adjoint of :func:`input_tiles`: sum ``B dv Bᵀ`` of every tile back into (N, C, H, W)."""
    th, tw = tile_counts(out_size)
    n, c = x_shape[0], x_shape[1]
    dxs = _zeros((n, 2 * th + 2, 2, tw + 1, c), dv.dtype)
    _input_tiles_adjoint_loop(_rows_view(dv), n, dxs.shape[1], tw + 1, c, th, tw, dxs.reshape(-1))
    return _split_crop(dxs, x_shape, padding)


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
    h, w = x_shape[2], x_shape[3]
    ph, pw = padding
    dx = np.zeros(x_shape, dv.dtype)  # inputs past the tiles' reach get 0
    rows, cols = min(h, dxp.shape[1] - ph), min(w, dxp.shape[2] - pw)
    dx[:, :, :rows, :cols] = dxp[:, ph : ph + rows, pw : pw + cols].transpose(0, 3, 1, 2)
    return dx


def weight_transform(w: np.ndarray) -> np.ndarray:
    """``G g Gᵀ`` of every (O, C) 3x3 filter, as (16, C, O) for the batched products.

    One product with ``G ⊗ G`` (16 x 9) for all filters at once: NumPy's broadcast matmul
    of the two 4x3 factors per filter took 7x longer.
    """
    o, c = w.shape[0], w.shape[1]
    with np.errstate(invalid="ignore"):  # an inf weight: the caller recomputes (see output_tiles)
        u = np.dot(_GG.astype(w.dtype), w.reshape(o * c, 9).T)  # (16, O*C)
    return np.ascontiguousarray(u.reshape(16, o, c).transpose(0, 2, 1))


def weight_transform_adjoint(du: np.ndarray) -> np.ndarray:
    """Adjoint of :func:`weight_transform`: (16, C, O) back to the (O, C, 3, 3) gradient."""
    c, o = du.shape[1], du.shape[2]
    d = np.dot(_GG.T.astype(du.dtype), du.reshape(16, c * o))  # (9, C*O)
    return np.ascontiguousarray(d.reshape(3, 3, c, o).transpose(3, 2, 0, 1))


# ---- Winograd output -> bias -> ReLU -> 2x2 max-pool in one pass --------------------------------
#
# With an even output, every 2x2 tile is exactly one 2x2 / stride-2 pooling window, so the
# output transform can pool as it goes: the full-size activation is never written. ``code``
# keeps the winner's place (0..3, row-major, the first maximum on ties), as
# ``fastbp.kernels.conv.conv_relu_pool``; a window whose maximum is not positive passes no
# gradient.


@kernel_jit()
def _pool_windows(cells, best, where, n):
    # Each window's ReLU'd maximum and its place, from its four cells (rows of ``cells``);
    # two loops, so that each writes one array (see the layout notes above).
    zero = best.dtype.type(0.0)
    for e in range(n):
        value, _ = _window_max(cells[0, e], cells[1, e], cells[2, e], cells[3, e])
        best[e] = value if value > zero else zero
    for e in range(n):
        _, k = _window_max(cells[0, e], cells[1, e], cells[2, e], cells[3, e])
        where[e] = k


@kernel_jit()
def _pool_relu_tiles_loop(m, bias_row, th, tw, pooled, code):
    # Per tile row, as _output_tiles_loop up to the four outputs of every tile (its pooling
    # window, relu off), then the window maxima, then out to NCHW.
    n_batch, out_c = pooled.shape[0], pooled.shape[1]
    length = _U(tw) * _U(out_c)
    u = np.empty((8, length), m.dtype)
    cells = np.empty((4, length), m.dtype)
    best = np.empty(length, m.dtype)
    where = np.empty(length, code.dtype)
    bad = 0
    for n in range(n_batch):
        for ty in range(th):
            offset = _U(n * th + ty) * length
            bad += _tile_row_outputs(m, offset, bias_row, False, u, cells, length)
            _pool_windows(cells, best, where, length)
            for tx in range(tw):  # channels innermost, as _rows_to_nchw
                for o in range(out_c):
                    pooled[n, o, ty, tx] = best[tx * out_c + o]
                    code[n, o, ty, tx] = where[tx * out_c + o]
    return bad


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
    bias_row = _bias_row(bias, o, ow // 2, m.dtype)
    bad = _pool_relu_tiles_loop(_rows_view(m), bias_row, oh // 2, ow // 2, pooled, code)
    return pooled, code, bad == 0


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
    # Per tile row: the masked gradient and each window's winner gathered from NCHW
    # (channels last), the four cells of every window (the gradient at its winner, zeros
    # elsewhere), then the transform as in _output_tiles_adjoint_loop.
    n_batch, out_c, th, tw = dy.shape
    zero = dy.dtype.type(0.0)
    one = dy.dtype.type(1.0)
    length = _U(tw) * _U(out_c)
    g = np.empty(length, dy.dtype)
    winner = np.empty(length, code.dtype)
    cells = np.empty((4, length), dy.dtype)
    h = np.empty((8, length), dy.dtype)
    total = np.zeros(length, np.float64)
    for n in range(n_batch):
        for ty in range(th):
            for tx in range(tw):  # channels innermost, as _rows_to_nchw
                for o in range(out_c):
                    # Multiplies by 0/1, not branches on random signs (see conv_relu_pool);
                    # an inf in dy then makes db non-finite and the caller recomputes.
                    e = tx * out_c + o
                    g[e] = dy[n, o, ty, tx] * (zero if pooled[n, o, ty, tx] <= zero else one)
                    winner[e] = code[n, o, ty, tx]
            for k in range(4):
                _winner_cells(g, winner, k, cells, length)
            for e in range(length):
                total[e] += g[e]
            _tile_row_adjoint(cells, h, dm, _U(n * th + ty) * length, length)
    _channel_sums(total, tw, db)


@kernel_jit()
def _winner_cells(g, winner, k, cells, n):
    # cells[k, e] = g[e] where cell k won the window, else 0 (a multiply: no branch).
    zero, one = g.dtype.type(0.0), g.dtype.type(1.0)
    for e in range(n):
        cells[k, e] = g[e] * (one if winner[e] == k else zero)


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
    _pool_relu_tiles_adjoint_loop(pooled, code, np.ascontiguousarray(dy), _rows_view(dm), db)
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


# ---- Whole convolutions, a block of images at a time -------------------------------------------
#
# The Winograd planes of a whole batch are 4x the size of the output (16 planes per 2x2
# tile): at batch 64, 32 -> 64 channels, 14x14, the input's planes take 6.4 MB and the
# product's 12.8 MB, so one layer's passes went through 45 MB, more than the L3 cache, and
# every transform and product waited on memory. Taking a few images at a time keeps each
# block's planes (about _BLOCK_BYTES) in cache from the transform to the product and back;
# the planes are never whole, and backward transforms the split padded input that forward
# kept again (the input transform is the cheapest pass) instead of keeping its planes.

_BLOCK_BYTES = 2 * 2**20


def _image_blocks(n: int, per_image_bytes: int):
    step = max(1, _BLOCK_BYTES // max(1, per_image_bytes))
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def _block_bytes(c: int, o: int, out_size, itemsize: int) -> int:
    th, tw = tile_counts(out_size)
    return 16 * th * tw * (c + o) * itemsize


def _block_planes(n: int, c: int, o: int, out_size, dtype):
    # The blocks of images, and one pair of block-sized planes ((16, T, C) and (16, T, O))
    # that every block uses (the last may use fewer rows), with their row views: the
    # kernels get them once per call, not a fresh allocation per block.
    blocks = _image_blocks(n, _block_bytes(c, o, out_size, dtype.itemsize))
    th, tw = tile_counts(out_size)
    tiles = max(hi - lo for lo, hi in blocks) * th * tw
    narrow, wide = planes(16, tiles, c, dtype), planes(16, tiles, o, dtype)
    return blocks, narrow, wide, _rows_view(narrow), _rows_view(wide)


def conv_forward(x, u, bias, padding, out_size, relu: bool, pool: bool = False):
    """The Winograd convolution of ``x`` with transformed weights ``u``, block by block.

    Parameters
    ----------
    x : ndarray
        (N, C, H, W), float32/float64.
    u : ndarray
        (16, C, O), :func:`weight_transform` of the weights.
    bias : ndarray or None
        (O,).
    padding, out_size : (int, int)
        As :func:`input_tiles`.
    relu : bool
        Apply ReLU (always applied with ``pool``).
    pool : bool
        Also 2x2 max-pool (even ``out_size``), as :func:`pool_relu_tiles`.

    Returns
    -------
    out : ndarray
        (N, O, OH, OW), or the pooled (N, O, OH/2, OW/2).
    code : ndarray or None
        With ``pool``, each window's winner (see :func:`pool_relu_tiles`).
    finite : bool
        Whether every output before the ReLU was finite (else the caller recomputes).
    xs : ndarray
        The split padded input, for :func:`conv_backward` (a third of the input planes'
        size; padding and splitting the input again cost more than the input transform).

    Example
    -------
    >>> x, w = np.ones((2, 1, 4, 4)), np.ones((1, 1, 3, 3))
    >>> y, _, finite, _ = conv_forward(x, weight_transform(w), None, (1, 1), (4, 4), False)
    >>> y[0, 0], finite
    (array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]]), True)
    """
    n, c = x.shape[0], x.shape[1]
    o = u.shape[2]
    oh, ow = out_size
    if pool:
        out = np.empty((n, o, oh // 2, ow // 2), x.dtype)
        code = np.empty(out.shape, np.uint8)
    else:
        out, code = _buffer((n, o, oh, ow), x.dtype), None
    xs = _buffer(_split_shape(x.shape, out_size), x.dtype)
    blocks, v, m, v_rows, m_rows = _block_planes(n, c, o, out_size, x.dtype)
    th, tw = tile_counts(out_size)
    bias_row = _bias_row(bias, o, tw, x.dtype)
    bad = 0
    for lo, hi in blocks:
        block = _split_padded(x[lo:hi], padding, out_size, out=xs[lo:hi])
        _input_tiles_loop(
            block.reshape(-1), v_rows, hi - lo, xs.shape[1], tw + 1, c, th, tw, _BT_ROWS
        )
        t = (hi - lo) * th * tw
        np.matmul(v[:, :t], u, out=m[:, :t])
        if pool:
            bad += _pool_relu_tiles_loop(m_rows, bias_row, th, tw, out[lo:hi], code[lo:hi])
        else:
            bad += _output_tiles_loop(m_rows, bias_row, relu, th, tw, out[lo:hi])
    return out, code, bad == 0, xs


def conv_backward(xs, x_shape, u, kept, code, dy, padding, out_size, relu, pool, needs):
    """Gradients of :func:`conv_forward`: ``(dx, du, db, finite)``, block by block.

    Parameters
    ----------
    xs : ndarray
        The split padded input :func:`conv_forward` returned.
    x_shape : tuple of int
        The input's shape.
    u, padding, out_size, relu, pool
        As given to :func:`conv_forward`.
    kept : ndarray or None
        Its output (needed with ``relu`` or ``pool``).
    code : ndarray or None
        Its ``code`` (with ``pool``).
    dy : ndarray
        The gradient of its output.
    needs : (bool, bool)
        Whether ``dx`` and ``du`` are wanted (else None).

    Returns
    -------
    dx : ndarray or None
        (N, C, H, W).
    du : ndarray or None
        (16, C, O), for :func:`weight_transform_adjoint`.
    db : ndarray
        (O,), summed in float64.
    finite : bool
        Whether ``db`` is finite; a NaN or inf in ``dy`` spreads differently through the
        transforms than through the convolution, so the caller recomputes when it is not.
    """
    n, c = x_shape[0], x_shape[1]
    o = u.shape[2]
    dtype = dy.dtype
    dx = _buffer(tuple(x_shape), dtype) if needs[0] else None
    du = np.zeros((16, c, o), dtype) if needs[1] else None
    part = np.empty((16, c, o), dtype)
    db = np.zeros(o, np.float64)
    db_block = np.empty(o, dtype)
    ut = u.transpose(0, 2, 1)
    blocks, v, dm, v_rows, dm_rows = _block_planes(n, c, o, out_size, dtype)
    th, tw = tile_counts(out_size)
    most_images = max(hi - lo for lo, hi in blocks)
    dxs = _buffer((most_images, *xs.shape[1:]), dtype) if needs[0] else None
    for lo, hi in blocks:
        images, t = hi - lo, (hi - lo) * th * tw
        dy_block = np.ascontiguousarray(dy[lo:hi])
        if pool:
            _pool_relu_tiles_adjoint_loop(kept[lo:hi], code[lo:hi], dy_block, dm_rows, db_block)
        else:
            y_block = kept[lo:hi] if relu else dy_block
            _output_tiles_adjoint_loop(y_block, dy_block, relu, th, tw, dm_rows, db_block)
        db += db_block
        if needs[1]:
            _input_tiles_loop(
                xs[lo:hi].reshape(-1), v_rows, images, xs.shape[1], tw + 1, c, th, tw, _BT_ROWS
            )
            du += np.matmul(v[:, :t].transpose(0, 2, 1), dm[:, :t], out=part)
        if needs[0]:
            np.matmul(dm[:, :t], ut, out=v[:, :t])  # dv, in v's place
            block = dxs[:images]
            block.fill(0)
            _input_tiles_adjoint_loop(
                v_rows, images, xs.shape[1], tw + 1, c, th, tw, block.reshape(-1)
            )
            _split_crop(block, (images, *x_shape[1:]), padding, out=dx[lo:hi])
    return dx, du, db.astype(dtype), bool(np.isfinite(db).all())
