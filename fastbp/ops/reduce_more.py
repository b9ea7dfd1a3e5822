"""More reductions and scans: var, prod, any/all, argmax/argmin, cumsum, cumprod,
logcumsumexp, norm, and ``take_along_axis`` (the differentiable gather that sort,
topk, cummax/cummin and median use to pick their values at indices found in NumPy).
"""

from __future__ import annotations

import numpy as np

from ..core.registry import defop
from .reduce import normalize_axis


def _squeeze(out, axes, keepdims):
    return out if keepdims else out.reshape([n for i, n in enumerate(out.shape) if i not in axes])


def _expand(dy, shape, axes, keepdims):
    return dy if keepdims else dy.reshape([1 if i in axes else n for i, n in enumerate(shape)])


# ----------------------------------------------------------------------------- var


def _var_forward(x, axis=None, correction=1.0, keepdims=False):
    axes = normalize_axis(axis, x.ndim)
    count = int(np.prod([x.shape[a] for a in axes]))
    mean = x.mean(axis=axes, keepdims=True) if count else np.zeros_like(x.sum(axes, keepdims=True))
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, as in torch
        centred = x - mean
    # NOTE: count - correction <= 0 gives inf or NaN, as in torch (with no warning here).
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (centred * centred).sum(axis=axes, keepdims=True) / (count - correction)
    return _squeeze(out, axes, keepdims), (centred, axes, keepdims, np.float64(count - correction))


def _var_vjp(saved, dy, needs):
    centred, axes, keepdims, dof = saved
    with np.errstate(divide="ignore", invalid="ignore"):
        return (_expand(dy, centred.shape, axes, keepdims) * (2 / dof) * centred,)


VAR = defop("var", _var_forward, _var_vjp)

# ---------------------------------------------------------------------------- prod


def _to_last(x, axes):
    """Move ``axes`` to the end and flatten them into one: shape (..., K)."""
    rest = [i for i in range(x.ndim) if i not in axes]
    moved = np.transpose(x, rest + list(axes))
    return moved.reshape(moved.shape[: len(rest)] + (-1,)), rest


def _prod_forward(x, axis=None, keepdims=False):
    axes = normalize_axis(axis, x.ndim)
    out = np.prod(x, axis=axes, keepdims=True)
    return _squeeze(out, axes, keepdims), (x, axes, keepdims)


def _prod_vjp(saved, dy, needs):
    # d prod / d x_k = the product of all the other elements: the product of the
    # elements before k times those after it (exclusive scans), exact with zeros.
    x, axes, keepdims = saved
    if x.size == 0:
        return (np.zeros(x.shape, dtype=dy.dtype),)
    flat, rest = _to_last(x, axes)
    ones = np.ones(flat.shape[:-1] + (1,), dtype=flat.dtype)
    before = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    after = np.cumprod(np.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = (before * after).reshape([x.shape[i] for i in rest] + [x.shape[a] for a in axes])
    others = np.transpose(others, np.argsort(rest + list(axes)))
    return (_expand(dy, x.shape, axes, keepdims) * others,)


PROD = defop("prod", _prod_forward, _prod_vjp)

# -------------------------------------------------------- not differentiable: tests


def _bool_reduce_forward(x, ufunc, axis=None, keepdims=False):
    axes = normalize_axis(axis, x.ndim)
    return ufunc.reduce(x.astype(bool), axis=axes, keepdims=keepdims), None


BOOL_REDUCE = defop("bool_reduce", _bool_reduce_forward, None)


def _arg_forward(x, which, axis=None, keepdims=False):
    if x.size == 0:
        raise ValueError(f"{which.__name__}: the tensor is empty (shape {x.shape})")
    if axis is None:
        out = np.asarray(which(x.reshape(-1)))
        return (out.reshape([1] * x.ndim) if keepdims else out).astype(np.int64), None
    return which(x, axis=axis, keepdims=keepdims).astype(np.int64), None


ARG_REDUCE = defop("arg_reduce", _arg_forward, None)

# --------------------------------------------------------------------------- scans


def _cumsum_forward(x, axis):
    return np.cumsum(x, axis=axis), axis


def _cumsum_vjp(axis, dy, needs):
    # Each x_i feeds every later output: dx_i = Σ_{k ≥ i} dy_k, a reversed cumsum.
    return (np.flip(np.cumsum(np.flip(dy, axis), axis=axis), axis),)


CUMSUM = defop("cumsum", _cumsum_forward, _cumsum_vjp)


def _cumprod_forward(x, axis):
    out = np.cumprod(x, axis=axis)
    return out, (x, out, axis)


def _cumprod_vjp(saved, dy, needs):
    x, out, axis = saved
    if np.all(x != 0):
        # dx_i = Σ_{k ≥ i} dy_k · out_k / x_i.
        return (np.flip(np.cumsum(np.flip(dy * out, axis), axis=axis), axis) / x,)
    # With zeros, out / x is 0/0: build each Σ_{k ≥ i} dy_k Π_{j ≤ k, j ≠ i} x_j directly
    # (quadratic in the length of the axis, only for slices that hold a zero).
    xm = np.moveaxis(x, axis, -1)
    dym = np.moveaxis(dy, axis, -1)
    n = xm.shape[-1]
    dx = np.empty_like(xm, dtype=np.result_type(xm, dym))
    for i in range(n):
        without = xm.copy()
        without[..., i] = 1
        partial = np.cumprod(without, axis=-1)
        dx[..., i] = (dym[..., i:] * partial[..., i:]).sum(axis=-1)
    return (np.moveaxis(dx, -1, axis),)


CUMPROD = defop("cumprod", _cumprod_forward, _cumprod_vjp)


def _logcumsumexp_forward(x, axis):
    out = np.logaddexp.accumulate(x, axis=axis) if x.size else x.copy()
    return out, (x, out, axis)


def _rev_logcumsumexp(a, axis):
    return np.flip(np.logaddexp.accumulate(np.flip(a, axis), axis=axis), axis)


def _logcumsumexp_vjp(saved, dy, needs):
    # dx_i = Σ_{k ≥ i} dy_k · exp(x_i − out_k), summed in log space for the positive
    # and the negative parts of dy separately so nothing overflows.
    x, out, axis = saved
    with np.errstate(divide="ignore", invalid="ignore"):
        log_dy = np.log(np.abs(dy))
        pos = np.where(dy > 0, log_dy - out, -np.inf)
        neg = np.where(dy < 0, log_dy - out, -np.inf)
        dx = np.exp(x + _rev_logcumsumexp(pos, axis)) - np.exp(x + _rev_logcumsumexp(neg, axis))
    return (dx,)


LOGCUMSUMEXP = defop("logcumsumexp", _logcumsumexp_forward, _logcumsumexp_vjp)

# ------------------------------------------------------------------ take_along_axis


def _take_forward(x, indices, axis):
    return np.take_along_axis(x, indices, axis=axis), (x.shape, indices, axis)


def _take_vjp(saved, dy, needs):
    # The gather gate's adjoint is a scatter-add: an index picked twice gets both.
    shape, indices, axis = saved
    dx = np.zeros(shape, dtype=dy.dtype)
    grids = list(np.indices(indices.shape, sparse=True))
    grids[axis] = indices
    np.add.at(dx, tuple(grids), dy)
    return (dx,)


TAKE_ALONG_AXIS = defop("take_along_axis", _take_forward, _take_vjp)

# ---------------------------------------------------------------------------- norm


def _norm_forward(x, p=2.0, axis=None, keepdims=False):
    axes = normalize_axis(axis, x.ndim)
    a = np.abs(x)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if p == np.inf:
            out = a.max(axis=axes, keepdims=True, initial=0)
        elif p == -np.inf:
            out = a.min(axis=axes, keepdims=True)
        elif p == 0:
            out = (a != 0).sum(axis=axes, keepdims=True).astype(x.dtype)
        elif p == 1:
            out = a.sum(axis=axes, keepdims=True)
        elif p == 2:
            out = np.sqrt((a * a).sum(axis=axes, keepdims=True))
        else:
            out = (a**p).sum(axis=axes, keepdims=True) ** (1.0 / p)
    return _squeeze(out, axes, keepdims), (x, out, p, axes, keepdims)


def _norm_vjp(saved, dy, needs):
    x, out, p, axes, keepdims = saved
    dy = _expand(dy, x.shape, axes, keepdims)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if p in (np.inf, -np.inf):
            # Ties share the gradient evenly, as in torch.
            hit = np.abs(x) == out
            g = np.sign(x) * hit / hit.sum(axis=axes, keepdims=True)
        elif p == 0:
            g = np.zeros_like(x)
        elif p == 1:
            g = np.sign(x)
        else:
            # NOTE: at a zero norm the gradient is taken as 0 (as torch does).
            safe = np.where(out == 0, 1, out)
            g = np.sign(x) * (np.abs(x) / safe) ** (p - 1)
            g = np.where(out == 0, 0, g)
    return (dy * g,)


NORM = defop("norm", _norm_forward, _norm_vjp)


# ------------------------------------------- index finders (not differentiable)


def _sort_indices_forward(x, axis=-1, descending=False):
    """Stable sort order along ``axis``; NaN counts as the largest value (as in torch)."""
    if x.ndim == 0:
        return np.zeros((), dtype=np.int64), None
    if not descending:
        return np.argsort(x, axis=axis, kind="stable").astype(np.int64), None
    xm = np.moveaxis(x, axis, -1)
    nan = np.isnan(xm) if xm.dtype.kind in "fc" else np.zeros(xm.shape, bool)
    # Primary key: NaN first; secondary: larger first; ties keep their order (lexsort is
    # stable). Negating cannot overflow for floats; integers are compared as float64.
    key = (
        -np.where(nan, 0, xm).astype(np.float64) if xm.dtype.kind != "f" else -np.where(nan, 0, xm)
    )
    order = np.lexsort((key, ~nan), axis=-1) if xm.size else np.zeros(xm.shape, np.int64)
    return np.moveaxis(order.astype(np.int64), -1, axis), None


SORT_INDICES = defop("sort_indices", _sort_indices_forward, None)


def _cum_extreme_indices_forward(x, axis, largest=True):
    """Indices of the running max (min) along ``axis``: the latest of ties, NaN sticks."""
    xm = np.moveaxis(x, axis, -1)
    idx = np.zeros(xm.shape, dtype=np.int64)
    if xm.shape[-1] == 0:
        return np.moveaxis(idx, -1, axis), None
    best = xm[..., 0].copy()
    where = np.zeros(best.shape, dtype=np.int64)
    floating = xm.dtype.kind in "fc"
    for k in range(xm.shape[-1]):
        v = xm[..., k]
        better = (v >= best) if largest else (v <= best)
        if floating:
            better = np.isnan(v) | (~np.isnan(best) & better)
        best = np.where(better, v, best)
        where = np.where(better, k, where)
        idx[..., k] = where
    return np.moveaxis(idx, -1, axis), None


CUM_EXTREME_INDICES = defop("cum_extreme_indices", _cum_extreme_indices_forward, None)


def _median_index_forward(x, axis, keepdims=False):
    """Index of the lower median along ``axis`` (a NaN, if the slice has one, as in torch)."""
    order = np.argsort(x, axis=axis, kind="stable")
    n = x.shape[axis]
    if n == 0:
        raise ValueError(f"median: dimension {axis} of shape {x.shape} is empty")
    pick = np.take(order, [(n - 1) // 2], axis=axis)
    if x.dtype.kind in "fc":
        nan = np.isnan(x)
        first_nan = np.argmax(nan, axis=axis, keepdims=True)
        pick = np.where(nan.any(axis=axis, keepdims=True), first_nan, pick)
    pick = pick.astype(np.int64)
    return (pick if keepdims else np.squeeze(pick, axis)), None


MEDIAN_INDEX = defop("median_index", _median_index_forward, None)


def _median_all_forward(x):
    if x.size == 0:
        raise ValueError("median: the tensor is empty")
    flat = x.reshape(-1)
    if flat.dtype.kind in "fc" and np.isnan(flat).any():
        return np.asarray(np.nan, dtype=x.dtype), (x, int(np.argmax(np.isnan(flat))))
    out = np.sort(flat)[(flat.size - 1) // 2]
    return np.asarray(out), (x, out)


def _median_all_vjp(saved, dy, needs):
    # torch: the elements equal to the median share its gradient evenly.
    x, out = saved
    if isinstance(out, int):  # the median was the first NaN: it takes the gradient
        dx = np.zeros(x.size, dtype=dy.dtype)
        dx[out] = dy
        return (dx.reshape(x.shape),)
    hit = x == out
    return (hit * (dy / hit.sum()),)


MEDIAN_ALL = defop("median_all", _median_all_forward, _median_all_vjp)
