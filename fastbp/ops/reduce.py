"""Reductions over axes: sum, mean, max, min, logsumexp, softmax, log_softmax."""

from __future__ import annotations

import numpy as np

from ..core.registry import defop


def normalize_axis(axis, ndim: int) -> tuple[int, ...]:
    """Return ``axis`` (None, int or tuple, possibly negative) as a sorted tuple.

    Raises
    ------
    numpy.exceptions.AxisError
        If an axis is out of range for ``ndim`` dimensions.
    """
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (int(axis),)
    return tuple(sorted(np.lib.array_utils.normalize_axis_tuple(axis, ndim)))


def _expand(dy, shape, axes, keepdims):
    """Give ``dy`` back the reduced axes (size 1), ready to broadcast to ``shape``."""
    if keepdims:
        return dy
    kept = [1 if i in axes else n for i, n in enumerate(shape)]
    return dy.reshape(kept)


def _sum_forward(x, axis=None, keepdims=False):
    axes = normalize_axis(axis, x.ndim)
    return x.sum(axis=axes, keepdims=keepdims), (x.shape, axes, keepdims)


def _sum_vjp(saved, dy, needs):
    shape, axes, keepdims = saved
    return (np.broadcast_to(_expand(dy, shape, axes, keepdims), shape),)


SUM = defop("sum", _sum_forward, _sum_vjp)


def _mean_forward(x, axis=None, keepdims=False):
    axes = normalize_axis(axis, x.ndim)
    count = int(np.prod([x.shape[a] for a in axes]))
    if count == 0:
        # The mean of nothing is NaN, as in PyTorch, without NumPy's "Mean of empty slice".
        shape = [1 if i in axes else n for i, n in enumerate(x.shape)]
        dtype = x.dtype if x.dtype.kind in "fc" else np.float32
        out = np.full(shape, np.nan, dtype)
        out = out if keepdims else out.reshape([n for i, n in enumerate(x.shape) if i not in axes])
        return out, (x.shape, axes, keepdims, 1)
    return x.mean(axis=axes, keepdims=keepdims), (x.shape, axes, keepdims, count)


def _mean_vjp(saved, dy, needs):
    shape, axes, keepdims, count = saved
    return (np.broadcast_to(_expand(dy, shape, axes, keepdims) / count, shape),)


MEAN = defop("mean", _mean_forward, _mean_vjp)


def _extreme_forward(reduce, name):
    def forward(x, axis=None, keepdims=False):
        axes = normalize_axis(axis, x.ndim)
        empty = [a for a in axes if x.shape[a] == 0]
        if empty or (x.size == 0 and axis is None):
            where = "over all dims" if axis is None else f"over dim {empty[0]}, of size 0,"
            raise ValueError(
                f"{name}: cannot reduce an empty tensor of shape {x.shape} {where} (no "
                f"element to return, as in PyTorch); pass a dim whose size is not 0, or "
                f"skip empty inputs"
            )
        out = reduce(x, axis=axes, keepdims=True)
        result = (
            out if keepdims else out.reshape([n for i, n in enumerate(out.shape) if i not in axes])
        )
        # One index per slice (PyTorch's max(dim)) only when a single dim is given.
        single = isinstance(axis, (int, np.integer))
        return result, (x, out, axes, keepdims, single)

    return forward


def _extreme_vjp(saved, dy, needs):
    # The max gate routes dy to the element that won, as PyTorch does:
    # * a NaN wins (max and min propagate NaN), so dy goes to the NaN elements; ``x == out``
    #   would select nothing and 0/0 would make every gradient NaN;
    # * ties: the full reduction (and a tuple of dims, like torch.amax) splits dy evenly;
    #   a single dim (torch.max(x, dim)) sends it all to the first winner, the index
    #   torch returns.
    x, out, axes, keepdims, single = saved
    winners = x == out
    if out.dtype.kind in "fc":
        nan = np.isnan(out)
        if nan.any():
            winners |= np.isnan(x) & nan
    if single:
        (axis,) = axes
        first = np.cumsum(winners, axis=axis) == 1
        winners &= first
    dy = _expand(dy, x.shape, axes, keepdims)
    if single:
        return (np.where(winners, dy, 0).astype(dy.dtype, copy=False),)
    return (winners * (dy / winners.sum(axis=axes, keepdims=True)),)


MAX = defop("max", _extreme_forward(np.max, "max"), _extreme_vjp)
MIN = defop("min", _extreme_forward(np.min, "min"), _extreme_vjp)


def _stable_logsumexp(x, axes):
    """log(sum(exp(x))) over ``axes`` with keepdims, shifted by the max to avoid overflow."""
    if any(x.shape[a] == 0 for a in axes):
        # The log of an empty sum is log(0) = -inf, as in PyTorch (np.max would raise).
        shape = [1 if i in axes else n for i, n in enumerate(x.shape)]
        return np.full(shape, -np.inf, x.dtype if x.dtype.kind in "fc" else np.float32)
    shift = x.max(axis=axes, keepdims=True)
    # NOTE: a slice that is all -inf has max -inf; shifting by it would give NaN.
    shift = np.where(np.isfinite(shift), shift, 0).astype(x.dtype, copy=False)
    return np.log(np.exp(x - shift).sum(axis=axes, keepdims=True)) + shift


def _logsumexp_forward(x, axis=None, keepdims=False):
    axes = normalize_axis(axis, x.ndim)
    out = _stable_logsumexp(x, axes)
    result = out if keepdims else out.reshape([n for i, n in enumerate(out.shape) if i not in axes])
    return result, (x, out, axes, keepdims)


def _logsumexp_vjp(saved, dy, needs):
    x, out, axes, keepdims = saved
    return (np.exp(x - out) * _expand(dy, x.shape, axes, keepdims),)


LOGSUMEXP = defop("logsumexp", _logsumexp_forward, _logsumexp_vjp)


def _softmax_forward(x, axis=-1):
    axes = normalize_axis(axis, x.ndim)
    if x.size == 0:
        return x.copy(), (x.copy(), axes)  # nothing to normalise (np.max would raise)
    e = np.exp(x - x.max(axis=axes, keepdims=True))
    out = e / e.sum(axis=axes, keepdims=True)
    return out, (out, axes)


def _softmax_vjp(saved, dy, needs):
    out, axes = saved
    return (out * (dy - (dy * out).sum(axis=axes, keepdims=True)),)


SOFTMAX = defop("softmax", _softmax_forward, _softmax_vjp)


def _log_softmax_forward(x, axis=-1):
    axes = normalize_axis(axis, x.ndim)
    lse = _stable_logsumexp(x, axes)
    if lse.dtype.kind == "f" and np.isposinf(lse).any():
        # A slice with +inf is NaN throughout, as in PyTorch (inf - inf before the exp):
        # x - inf would give -inf for its finite entries instead.
        out = np.where(np.isposinf(lse), np.nan, x).astype(x.dtype, copy=False)
        with np.errstate(invalid="ignore"):
            out -= lse
    else:
        out = x - lse
    return out, (out, axes)


def _log_softmax_vjp(saved, dy, needs):
    out, axes = saved
    return (dy - np.exp(out) * dy.sum(axis=axes, keepdims=True),)


LOG_SOFTMAX = defop("log_softmax", _log_softmax_forward, _log_softmax_vjp)
