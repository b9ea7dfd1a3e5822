"""2-D convolution as im2col + one BLAS product per group (op ``conv2d``).

Forward, for ``x`` (N, C, H, W) and ``w`` (O, C/g, kH, kW) in ``g`` groups::

    cols = im2col(x)                          # (C*kH*kW, N*OH*OW), rows grouped by channel
    out  = w.reshape(g, O/g, -1) @ cols.reshape(g, -1, N*OH*OW)   # (O, N*OH*OW)
    y    = out.reshape(O, N, OH, OW).transpose(1, 0, 2, 3) + b

Backward reuses the saved ``cols``: ``dw = dy_t @ colsᵀ``, ``dcols = wᵀ @ dy_t`` and
``dx = col2im(dcols)``, with ``dy_t`` the gradient in the (O, N*OH*OW) layout; ``db`` is a sum.
The caller (``fastbp.nn.functional.conv2d``) validates the shapes and resolves the padding into
the leading pads and the output size, so trailing padding (asymmetric ``'same'``) is implied.
"""

from __future__ import annotations

import numpy as np

from ..core.registry import defop
from ..kernels.conv import col2im, col2im_numpy, im2col, im2col_numpy

__all__ = ["CONV2D", "CONV_TRANSPOSE2D", "EMBEDDING"]


def _conv2d_forward(x, w, b=None, *, stride, padding, dilation, groups, out_size):
    n = x.shape[0]
    out_c, cg, kh, kw = w.shape
    if x.dtype != w.dtype or (b is not None and b.dtype != x.dtype):
        raise TypeError(
            f"conv2d: input, weight and bias must share a dtype, got {x.dtype}, {w.dtype}"
            + (f", {b.dtype}" if b is not None else "")
            + "; cast them with .astype(...) first"
        )
    cols = im2col(x, (kh, kw), stride, padding, dilation, out_size)
    k = cg * kh * kw
    m = n * out_size[0] * out_size[1]
    if groups == 1:
        out = np.dot(w.reshape(out_c, k), cols.reshape(k, m))
    else:
        out = np.matmul(w.reshape(groups, out_c // groups, k), cols.reshape(groups, k, m))
        out = out.reshape(out_c, m)
    if b is not None:
        out += b[:, None]
    y = np.ascontiguousarray(out.reshape(out_c, n, *out_size).transpose(1, 0, 2, 3))
    return y, (cols, w, x.shape, stride, padding, dilation, groups, b is not None)


def _conv2d_vjp(saved, dy, needs):
    cols, w, x_shape, stride, padding, dilation, groups, has_bias = saved
    out_c, cg, kh, kw = w.shape
    k = cg * kh * kw
    og = out_c // groups
    m = cols.shape[3] * cols.shape[4] * cols.shape[5]
    # The gradient in the product's (O, N*OH*OW) layout, one copy shared by dw and dx.
    dy_t = np.ascontiguousarray(dy.transpose(1, 0, 2, 3)).reshape(groups, og, m)
    cols_g = cols.reshape(groups, k, m)
    dx = dw = db = None
    if needs[1]:
        dw = np.matmul(dy_t, cols_g.transpose(0, 2, 1)).reshape(w.shape)
    if needs[0]:
        dcols = np.matmul(w.reshape(groups, og, k).transpose(0, 2, 1), dy_t)
        dx = col2im(dcols.reshape(cols.shape), x_shape, stride, padding, dilation)
    if has_bias and needs[2]:
        db = dy.sum(axis=(0, 2, 3))
    return (dx, dw, db) if has_bias else (dx, dw)


CONV2D = defop("conv2d", _conv2d_forward, _conv2d_vjp, kernel=im2col, twin=im2col_numpy)


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
