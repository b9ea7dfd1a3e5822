"""2-D convolution as im2col + BLAS products (``conv2d``, ``conv2d_relu``, ``conv2d_relu_pool2``).

Forward, for ``x`` (N, C, H, W) and ``w`` (O, C, kH, kW) (``groups == 1``)::

    cols  = im2col_pixels(x)                  # (N*OH*OW, kH*kW*C), one row per output pixel
    out_t = cols @ w2ᵀ                        # w2 = w as (O, kH*kW*C), channels innermost
    y     = act(out_t + b) written as NCHW    # one pass: conv_bias_act

Backward reuses the saved ``cols``: one pass lays ``dy`` out as ``dz_t`` (N*OH*OW, O), masked
by ``y > 0`` for ``conv2d_relu``, and sums the bias gradient; then ``dwᵀ = colsᵀ @ dz_t``,
``dcols = dz_t @ w2`` and ``dx = col2im_pixels(dcols)``. With fewer than 8 input channels (a
first layer) the pixel-major copies would be too short: the unfolding, the product and the
fused passes are channel-major instead (``im2col``: (C*kH*kW, N*OH*OW), ``out = w2 @ cols``).
Grouped convolutions use that layout with one batched ``np.matmul`` per pass.
``conv2d_relu_pool2`` (groups == 1) replaces the bias + ReLU pass by one that also max-pools
2x2 (``conv_relu_pool``), so the full-size activation is never written.
A 3x3 convolution with stride 1, no dilation, no groups, at least 16 input and output
channels and enough output pixels (1500 2x2 tiles in the batch) takes Winograd's F(2x2, 3x3)
instead (``fastbp.kernels.winograd``): 16 products of (tiles, C) x (C, O) do the work of the
one (pixels, 9C) x (9C, O), with 2.25x fewer multiplies and no unfolded copy of the input;
its backward is the same products transposed, and ``conv2d_relu_pool2`` pools each 2x2 output
tile in the output transform. When a NaN or an infinity appears (the transforms would spread
it to more outputs than the convolution does), forward or backward recompute through im2col.
The caller (``fastbp.nn.functional.conv2d``) validates the shapes and resolves the padding into
the leading pads and the output size, so trailing padding (asymmetric ``'same'``) is implied.
"""

from __future__ import annotations

import numpy as np

from ..core.registry import defop
from ..kernels import winograd
from ..kernels.conv import (
    col2im,
    col2im_numpy,
    col2im_pixels,
    conv_bias_act,
    conv_bias_act_backward,
    conv_bias_act_channels,
    conv_bias_act_channels_backward,
    conv_bias_act_numpy,
    conv_relu_pool,
    conv_relu_pool_backward,
    conv_relu_pool_numpy,
    im2col,
    im2col_pixels,
    im2col_pixels_numpy,
    matmul_into,
    max_pool2d_backward,
    max_pool2d_forward,
)

__all__ = ["CONV2D", "CONV2D_RELU", "CONV2D_RELU_POOL2", "CONV_TRANSPOSE2D", "EMBEDDING"]


# Below this many input channels the pixel-major unfolding's inner copies are too short.
_PIXELS_MIN_CHANNELS = 8
# Winograd F(2x2, 3x3) from this many input and output channels, and this many 2x2 output
# tiles in the batch: below, its 16 products are too thin for BLAS and the transforms cost
# more than the multiplies they save. Measured on the MNIST CNN's training step (32 -> 64
# channels, 14x14): 1.5x slower than im2col at batch 1, 1.05x at 16 (784 tiles), even at 24,
# 0.98x at 32 (1568 tiles), 0.90-0.95x at 64 and 0.88-0.93x at 256.
_WINOGRAD_MIN_CHANNELS = 16
_WINOGRAD_MIN_TILES = 1500


def _winograd_suits(x, w, stride, dilation, groups, out_size) -> bool:
    """Whether a convolution takes the Winograd layout (3x3, stride 1, undilated, dense)."""
    out_c, cg, kh, kw = w.shape
    tiles = x.shape[0] * ((out_size[0] + 1) // 2) * ((out_size[1] + 1) // 2)
    return (
        tiles >= _WINOGRAD_MIN_TILES
        and kh == 3
        and kw == 3
        and groups == 1
        and stride == (1, 1)
        and dilation == (1, 1)
        and cg >= _WINOGRAD_MIN_CHANNELS
        and out_c >= _WINOGRAD_MIN_CHANNELS
        and x.dtype in (np.float32, np.float64)
    )


def _check_dtypes(op, x, w, b):
    if x.dtype != w.dtype or (b is not None and b.dtype != x.dtype):
        raise TypeError(
            f"{op}: input, weight and bias must share a dtype, got {x.dtype}, {w.dtype}"
            + (f", {b.dtype}" if b is not None else "")
            + "; cast them with .astype(...) first"
        )


def _im2col_forward(x, w, b, stride, padding, dilation, groups, out_size, relu):
    """The unfolded layouts' forward: ``(y, (cols, w or w2, layout))``."""
    n = x.shape[0]
    out_c, cg, kh, kw = w.shape
    if groups == 1 and cg >= _PIXELS_MIN_CHANNELS:
        # One row per output pixel (see fastbp.kernels.conv.pixels): the products' best layout.
        cols = im2col_pixels(x, (kh, kw), stride, padding, dilation, out_size)
        w2 = _pixels_weight(w)
        out_t = matmul_into(cols, w2.T)
        y = conv_bias_act(out_t, b, (n, out_c, *out_size), relu)
        saved = (cols, w2, "pixels")
    elif groups == 1:
        # Few channels (a first layer): the channel-major unfolding copies whole output rows,
        # where the pixel-major one would copy C values at a time. BLAS reads it transposed.
        # The product stays channel-major too, (O, N*OH*OW): every pass then moves contiguous
        # runs of OH*OW values.
        k = cg * kh * kw
        cols = im2col(x, (kh, kw), stride, padding, dilation, out_size).reshape(k, -1)
        w2 = w.reshape(out_c, k)
        out = matmul_into(w2, cols)
        y = conv_bias_act_channels(out, b, (n, out_c, *out_size), relu)
        saved = (cols, w2, "channels")
    else:
        cols = im2col(x, (kh, kw), stride, padding, dilation, out_size)
        k = cg * kh * kw
        m = n * out_size[0] * out_size[1]
        out = np.matmul(w.reshape(groups, out_c // groups, k), cols.reshape(groups, k, m))
        out = out.reshape(out_c, m)
        if b is not None:
            out += b[:, None]
        if relu:
            np.maximum(out, 0, out=out, where=~np.isnan(out))
        y = np.ascontiguousarray(out.reshape(out_c, n, *out_size).transpose(1, 0, 2, 3))
        saved = (cols, w, "groups")
    return y, saved


def _pixels_weight(w):
    """``w`` (O, C, kH, kW) as (O, kH*kW*C), channels innermost: the pixel-major rows."""
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(w.shape[0], -1)


def _conv_forward(x, w, b, stride, padding, dilation, groups, out_size, relu):
    out_c, cg, kh, kw = w.shape
    _check_dtypes("conv2d_relu" if relu else "conv2d", x, w, b)
    fast = _winograd_suits(x, w, stride, dilation, groups, out_size)
    if fast:
        # 16 products of (tiles, C) x (C, O) in place of one of (pixels, 9C) x (9C, O):
        # 2.25x fewer multiplies, and no 9x unfolded copy of the input.
        u = winograd.weight_transform(w)
        y, _, fast, xs = winograd.conv_forward(x, u, b, padding, out_size, relu)
        # A NaN or inf reaches more outputs through the transforms than through the
        # convolution; the im2col path below then gives PyTorch's NaN pattern.
        saved = (xs, u, "winograd")
    if not fast:
        y, saved = _im2col_forward(x, w, b, stride, padding, dilation, groups, out_size, relu)
    meta = (x.shape, (kh, kw), stride, padding, dilation, groups, out_size, b is not None)
    # ``w`` itself rides along: the tape's guard then sees a raw write or an optimizer step
    # on the weight (``w2`` may be a copy, or a view the guard cannot match to the weight
    # tensor). With ``x``, the Winograd layout's backward can unfold the input after all
    # when ``dy`` holds a NaN or an inf.
    return y, (*saved[:2], y if relu else None, (*meta, saved[2]), w, x if fast else None)


def _conv_vjp(saved, dy, needs):
    cols, w_saved, y, meta, w, x = saved
    x_shape, kernel, stride, padding, dilation, groups, out_size, has_bias, layout = meta
    relu = y is not None
    c_in = x_shape[1]
    dx = dw = db = None
    if layout == "winograd":
        dx, du, db, finite = winograd.conv_backward(
            cols, x_shape, w_saved, y, None, dy, padding, out_size, relu, False, needs[:2]
        )
        if finite:
            dw = None if du is None else winograd.weight_transform_adjoint(du)
        else:  # a NaN or inf in dy: PyTorch's NaN pattern, from the im2col products
            layout = "pixels"
            cols = im2col_pixels(x, kernel, stride, padding, dilation, out_size)
            w_saved = _pixels_weight(w)
    if layout == "pixels":
        # Pixel-major cols (N*OH*OW, kH*kW*C).
        w2 = w_saved
        out_c = w2.shape[0]
        # dz = dy * (y > 0) in the products' (N*OH*OW, O) layout, with the bias gradient.
        dz_t, db = conv_bias_act_backward(y, dy, relu)
        if needs[1]:
            dw_t = np.dot(cols.T, dz_t)  # (kH*kW*C, O)
            dw = dw_t.T.reshape(out_c, kernel[0], kernel[1], c_in).transpose(0, 3, 1, 2)
            dw = np.ascontiguousarray(dw)
        if needs[0]:
            dcols = matmul_into(dz_t, w2)
            dx = col2im_pixels(dcols, x_shape, kernel, stride, padding, dilation, out_size)
    elif layout == "channels":
        # Channel-major cols (C*kH*kW, N*OH*OW), few channels.
        w2 = w_saved
        dz, db = conv_bias_act_channels_backward(y, dy, relu)
        if needs[1]:
            dw = np.dot(dz, cols.T).reshape(w2.shape[0], c_in, *kernel)
        if needs[0]:
            dcols = matmul_into(w2.T, dz)
            n = x_shape[0]
            dcols = dcols.reshape(c_in, *kernel, n, *out_size)
            dx = col2im(dcols, x_shape, stride, padding, dilation)
    elif layout == "groups":
        w = w_saved
        out_c, cg, kh, kw = w.shape
        k = cg * kh * kw
        og = out_c // groups
        m = cols.shape[3] * cols.shape[4] * cols.shape[5]
        if relu:
            dy = np.where(y > 0, dy, 0).astype(dy.dtype)
        # The gradient in the product's (O, N*OH*OW) layout, one copy shared by dw and dx.
        dy_t = np.ascontiguousarray(dy.transpose(1, 0, 2, 3)).reshape(groups, og, m)
        cols_g = cols.reshape(groups, k, m)
        if needs[1]:
            dw = np.matmul(dy_t, cols_g.transpose(0, 2, 1)).reshape(w.shape)
        if needs[0]:
            dcols = np.matmul(w.reshape(groups, og, k).transpose(0, 2, 1), dy_t)
            dx = col2im(dcols.reshape(cols.shape), x_shape, stride, padding, dilation)
        if has_bias and needs[2]:
            db = dy.sum(axis=(0, 2, 3))
    if not has_bias:
        return (dx, dw)
    return (dx, dw, db if needs[2] else None)


def _conv2d_forward(x, w, b=None, *, stride, padding, dilation, groups, out_size):
    return _conv_forward(x, w, b, stride, padding, dilation, groups, out_size, False)


def _conv2d_relu_forward(x, w, b=None, *, stride, padding, dilation, groups, out_size):
    return _conv_forward(x, w, b, stride, padding, dilation, groups, out_size, True)


CONV2D = defop("conv2d", _conv2d_forward, _conv_vjp, kernel=im2col_pixels, twin=im2col_pixels_numpy)

# ``relu(conv2d(x, w, b))`` as one record: the bias and the ReLU are applied in the pass that
# writes the product out as NCHW, and backward masks ``dy`` and sums the bias gradient in the
# pass that lays ``dy`` out for the products. ``nn.Sequential`` records Conv2d -> ReLU this way.
CONV2D_RELU = defop(
    "conv2d_relu",
    _conv2d_relu_forward,
    _conv_vjp,
    kernel=conv_bias_act,
    twin=conv_bias_act_numpy,
)


def _conv_products_backward(cols, w2, layout, dz, meta, needs):
    """dw and dx of a groups == 1 convolution from ``dz`` in the product's layout."""
    x_shape, kernel, stride, padding, dilation, _, out_size = meta
    c_in = x_shape[1]
    dx = dw = None
    if layout == "pixels":
        if needs[1]:
            dw_t = np.dot(cols.T, dz)
            dw = dw_t.T.reshape(w2.shape[0], kernel[0], kernel[1], c_in).transpose(0, 3, 1, 2)
            dw = np.ascontiguousarray(dw)
        if needs[0]:
            dcols = matmul_into(dz, w2)
            dx = col2im_pixels(dcols, x_shape, kernel, stride, padding, dilation, out_size)
    else:
        if needs[1]:
            dw = np.dot(dz, cols.T).reshape(w2.shape[0], c_in, *kernel)
        if needs[0]:
            dcols = matmul_into(w2.T, dz).reshape(c_in, *kernel, x_shape[0], *out_size)
            dx = col2im(dcols, x_shape, stride, padding, dilation)
    return dx, dw


def _conv2d_relu_pool2_forward(x, w, b=None, *, stride, padding, dilation, groups, out_size):
    # groups == 1 only (nn.Sequential fuses nothing else).
    n = x.shape[0]
    out_c, cg, kh, kw = w.shape
    _check_dtypes("conv2d_relu_pool2", x, w, b)
    shape = (n, out_c, *out_size)
    meta = (x.shape, (kh, kw), stride, padding, dilation, groups, out_size)
    has_bias = b is not None
    if _winograd_suits(x, w, stride, dilation, groups, out_size) and not (
        out_size[0] % 2 or out_size[1] % 2
    ):
        # Every 2x2 output tile is one pooling window: the output transform pools as it goes.
        u = winograd.weight_transform(w)
        pooled, code, finite, xs = winograd.conv_forward(x, u, b, padding, out_size, True, True)
        if finite:  # else the im2col path below, with its NaN rules
            return pooled, (xs, u, "winograd", meta, has_bias, pooled, code, None, w, x)
    pixels = cg >= _PIXELS_MIN_CHANNELS
    layout = "pixels" if pixels else "channels"
    if pixels:
        cols = im2col_pixels(x, (kh, kw), stride, padding, dilation, out_size)
        w2 = _pixels_weight(w)
        product = matmul_into(cols, w2.T)
    else:
        k = cg * kh * kw
        cols = im2col(x, (kh, kw), stride, padding, dilation, out_size).reshape(k, -1)
        w2 = w.reshape(out_c, k)
        product = matmul_into(w2, cols)
    pooled, code, finite = conv_relu_pool(product, b, shape, pixels)
    if finite:
        return pooled, (cols, w2, layout, meta, has_bias, pooled, code, None, w, None)
    # A NaN or inf: the unfused passes, with their NaN rules (a NaN wins the pool).
    act = conv_bias_act if pixels else conv_bias_act_channels
    y = act(product, b, shape, True)
    pooled, idx = max_pool2d_forward(
        y, (2, 2), (2, 2), (0, 0), (1, 1), (out_size[0] // 2, out_size[1] // 2)
    )
    return pooled, (cols, w2, layout, meta, has_bias, y, None, idx, w, None)  # w: see conv2d


def _conv2d_relu_pool2_vjp(saved, dy, needs):
    cols, w2, layout, meta, has_bias, kept, code, idx, w, x = saved
    x_shape, kernel, stride, padding, dilation, _, out_size = meta
    shape = (x_shape[0], w.shape[0], *out_size)
    dx = dw = None
    if layout == "winograd":
        dx, du, db, finite = winograd.conv_backward(
            cols, x_shape, w2, kept, code, dy, padding, out_size, True, True, needs[:2]
        )
        if finite:
            dw = None if du is None else winograd.weight_transform_adjoint(du)
        else:  # a NaN or inf in dy: the im2col products, with PyTorch's NaN pattern
            layout = "pixels"
            cols = im2col_pixels(x, kernel, stride, padding, dilation, out_size)
            w2 = _pixels_weight(w)
    if layout != "winograd":
        pixels = layout == "pixels"
        if idx is None:
            dz, db = conv_relu_pool_backward(kept, code, np.ascontiguousarray(dy), shape, pixels)
        else:
            dpool = max_pool2d_backward(dy, idx, shape, (2, 2))
            back = conv_bias_act_backward if pixels else conv_bias_act_channels_backward
            dz, db = back(kept, dpool, True)
        dx, dw = _conv_products_backward(cols, w2, layout, dz, meta, needs)
    if not has_bias:
        return (dx, dw)
    return (dx, dw, db if needs[2] else None)


# ``max_pool2d(relu(conv2d(x, w, b)), 2)`` as one record (groups == 1): the pooled output is
# written straight from the product, so the full-size activation is never stored, and backward
# writes the product-layout gradient straight from the pooled one. ``nn.Sequential`` records
# Conv2d -> ReLU -> MaxPool2d(2) this way.
CONV2D_RELU_POOL2 = defop(
    "conv2d_relu_pool2",
    _conv2d_relu_pool2_forward,
    _conv2d_relu_pool2_vjp,
    kernel=conv_relu_pool,
    twin=conv_relu_pool_numpy,
)


def _conv_transpose2d_forward(x, w, b=None, *, stride, padding, dilation, groups, out_size):
    # The adjoint of conv2d's input gradient: columns from one product per group, then col2im.
    n, c_in, h, wd = x.shape
    _, og, kh, kw = w.shape
    if x.dtype != w.dtype or (b is not None and b.dtype != x.dtype):
        raise TypeError(
            f"conv_transpose2d: input, weight and bias must share a dtype, got {x.dtype}, "
            f"{w.dtype}; cast them with .astype(...) first"
        )
    cg = c_in // groups
    m = n * h * wd
    x_t = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(groups, cg, m)
    w_g = w.reshape(groups, cg, og * kh * kw)
    cols = np.matmul(w_g.transpose(0, 2, 1), x_t).reshape(og * groups, kh, kw, n, h, wd)
    y = col2im(cols, (n, og * groups, *out_size), stride, padding, dilation)
    if b is not None:
        y += b[None, :, None, None]
    return y, (x_t, w, x.shape, stride, padding, dilation, groups, b is not None)


def _conv_transpose2d_vjp(saved, dy, needs):
    x_t, w, x_shape, stride, padding, dilation, groups, has_bias = saved
    n, c_in, h, wd = x_shape
    _, og, kh, kw = w.shape
    cg = c_in // groups
    dcols = im2col(dy, (kh, kw), stride, padding, dilation, (h, wd))
    dcols = dcols.reshape(groups, og * kh * kw, n * h * wd)
    dx = dw = db = None
    if needs[0]:
        dx_t = np.matmul(w.reshape(groups, cg, og * kh * kw), dcols)
        dx = np.ascontiguousarray(dx_t.reshape(c_in, n, h, wd).transpose(1, 0, 2, 3))
    if needs[1]:
        dw = np.matmul(x_t, dcols.transpose(0, 2, 1)).reshape(w.shape)
    if has_bias and needs[2]:
        db = dy.sum(axis=(0, 2, 3))
    return (dx, dw, db) if has_bias else (dx, dw)


CONV_TRANSPOSE2D = defop(
    "conv_transpose2d",
    _conv_transpose2d_forward,
    _conv_transpose2d_vjp,
    kernel=col2im,
    twin=col2im_numpy,
)


def _embedding_forward(w, *, indices, padding_idx):
    return w[indices], (indices, w.shape, padding_idx)


def _embedding_vjp(saved, dy, needs):
    indices, shape, padding_idx = saved
    dw = np.zeros(shape, dy.dtype)
    # NOTE: np.add.at accumulates rows picked several times (a plain dw[indices] += dy would not).
    np.add.at(dw, indices.reshape(-1), dy.reshape(-1, shape[1]))
    if padding_idx is not None:
        dw[padding_idx] = 0
    return (dw,)


EMBEDDING = defop("embedding", _embedding_forward, _embedding_vjp)
