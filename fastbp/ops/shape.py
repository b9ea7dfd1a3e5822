"""Ops that move elements without changing them: reshape, transpose, indexing, joins."""

from __future__ import annotations

import numpy as np

from ..core.registry import defop


def _reshape_forward(x, shape):
    return x.reshape(shape), x.shape


def _reshape_vjp(shape, dy, needs):
    return (dy.reshape(shape),)


RESHAPE = defop("reshape", _reshape_forward, _reshape_vjp)


def _transpose_forward(x, axes=None):
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    return x.transpose(axes), np.argsort(axes)


def _transpose_vjp(inverse, dy, needs):
    return (dy.transpose(inverse),)


TRANSPOSE = defop("transpose", _transpose_forward, _transpose_vjp)


def _is_advanced(key) -> bool:
    parts = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (np.ndarray, list)) for k in parts)


def _getitem_forward(x, key):
    return x[key], (x.shape, x.dtype, key)


def _getitem_vjp(saved, dy, needs):
    shape, dtype, key = saved
    dx = np.zeros(shape, dtype=dtype)
    if _is_advanced(key):
        # NOTE: np.add.at, not dx[key] += dy: an index that appears twice must
        # receive the sum of both gradients (buffered += would keep only one).
        np.add.at(dx, key, dy)
    else:
        dx[key] = dy
    return (dx,)


GETITEM = defop("getitem", _getitem_forward, _getitem_vjp)


def _concatenate_forward(*arrays, axis=0):
    out = np.concatenate(arrays, axis=axis)
    axis = axis % out.ndim
    ends = np.cumsum([a.shape[axis] for a in arrays])[:-1]
    return out, (axis, ends)


def _concatenate_vjp(saved, dy, needs):
    axis, ends = saved
    return tuple(np.split(dy, ends, axis=axis))


CONCATENATE = defop("concatenate", _concatenate_forward, _concatenate_vjp)


def _stack_forward(*arrays, axis=0):
    out = np.stack(arrays, axis=axis)
    return out, (axis % out.ndim, len(arrays))


def _stack_vjp(saved, dy, needs):
    axis, count = saved
    return tuple(np.take(dy, i, axis=axis) for i in range(count))


STACK = defop("stack", _stack_forward, _stack_vjp)
