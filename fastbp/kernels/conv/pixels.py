"""The pixel-major layout of the groups == 1 convolution, and its bias + activation passes.

See the comment below for the layout and why the products prefer it. Each public kernel has a
NumPy twin ``name_numpy`` with the same signature.
"""

from __future__ import annotations

import numpy as np

from .._jit import kernel_jit
from ..dispatch import _output
from .columns import col2im_numpy, im2col_numpy
from .common import Pair, _buffer, _check_float

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
