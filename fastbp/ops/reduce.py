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
    return x.mean(axis=axes, keepdims=keepdims), (x.shape, axes, keepdims, count)


def _mean_vjp(saved, dy, needs):
    shape, axes, keepdims, count = saved
    return (np.broadcast_to(_expand(dy, shape, axes, keepdims) / count, shape),)


MEAN = defop("mean", _mean_forward, _mean_vjp)


def _extreme_forward(reduce):
    def forward(x, axis=None, keepdims=False):
        axes = normalize_axis(axis, x.ndim)
        if x.size == 0:
            raise ValueError("cannot take the max/min of an empty tensor")
        out = reduce(x, axis=axes, keepdims=True)
        result = (
            out if keepdims else out.reshape([n for i, n in enumerate(out.shape) if i not in axes])
        )
        return result, (x, out, axes, keepdims)

    return forward


def _extreme_vjp(saved, dy, needs):
    # The max gate routes dy to the element that won.
    # NOTE: ties split dy evenly between the tied elements (the average subgradient).
    x, out, axes, keepdims = saved
    winners = x == out
    dy = _expand(dy, x.shape, axes, keepdims)
    return (winners * (dy / winners.sum(axis=axes, keepdims=True)),)


MAX = defop("max", _extreme_forward(np.max), _extreme_vjp)
MIN = defop("min", _extreme_forward(np.min), _extreme_vjp)


def _stable_logsumexp(x, axes):
    """log(sum(exp(x))) over ``axes`` with keepdims, shifted by the max to avoid overflow."""
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
    e = np.exp(x - x.max(axis=axes, keepdims=True))
    out = e / e.sum(axis=axes, keepdims=True)
    return out, (out, axes)


def _softmax_vjp(saved, dy, needs):
    out, axes = saved
    return (out * (dy - (dy * out).sum(axis=axes, keepdims=True)),)


SOFTMAX = defop("softmax", _softmax_forward, _softmax_vjp)


def _log_softmax_forward(x, axis=-1):
    axes = normalize_axis(axis, x.ndim)
    out = x - _stable_logsumexp(x, axes)
    return out, (out, axes)


def _log_softmax_vjp(saved, dy, needs):
    out, axes = saved
    return (dy - np.exp(out) * dy.sum(axis=axes, keepdims=True),)


LOG_SOFTMAX = defop("log_softmax", _log_softmax_forward, _log_softmax_vjp)
