"""More ops that move elements: broadcast, repeat, flip, roll, triangles and diagonals,
padding, index takes (index_select, repeat_interleave, unfold), scatter, nonzero.

Views that only relabel (view, flatten, squeeze, permute, movedim, ...) need no op of
their own: the Tensor methods spell them with ``reshape`` and ``transpose``.
"""

from __future__ import annotations

import numpy as np

from ..core.registry import defop

# --------------------------------------------------------------------- broadcast_to


def _broadcast_forward(x, shape):
    return np.broadcast_to(x, shape), None


def _broadcast_vjp(saved, dy, needs):
    return (dy,)  # the engine sums the broadcast gradient back to the input's shape


BROADCAST_TO = defop("broadcast_to", _broadcast_forward, _broadcast_vjp)

# --------------------------------------------------------------------------- repeat


def _repeat_forward(x, reps):
    if len(reps) < x.ndim:
        raise ValueError(
            f"repeat: {len(reps)} repeats for a {x.ndim}-D tensor of shape {x.shape}; give at "
            f"least one per dimension"
        )
    shape = (1,) * (len(reps) - x.ndim) + x.shape
    return np.tile(x.reshape(shape), reps), (x.shape, shape, tuple(reps))


def _repeat_vjp(saved, dy, needs):
    # Each input element appears once per tile: split every axis into (tiles, size) and
    # sum over the tiles.
    shape, padded, reps = saved
    split = []
    for r, n in zip(reps, padded, strict=True):
        split += [r, n]
    g = dy.reshape(split).sum(axis=tuple(range(0, 2 * len(reps), 2)))
    return (g.reshape(shape),)


REPEAT = defop("repeat", _repeat_forward, _repeat_vjp)

# ------------------------------------------------------------------------ flip, roll


def _flip_forward(x, axes):
    return np.flip(x, axes), axes


def _flip_vjp(axes, dy, needs):
    return (np.flip(dy, axes),)


FLIP = defop("flip", _flip_forward, _flip_vjp)


def _roll_forward(x, shifts, axes):
    return np.roll(x, shifts, axes), (shifts, axes)


def _roll_vjp(saved, dy, needs):
    shifts, axes = saved
    back = tuple(-s for s in shifts) if isinstance(shifts, tuple) else -shifts
    return (np.roll(dy, back, axes),)


ROLL = defop("roll", _roll_forward, _roll_vjp)

# ------------------------------------------------------------ triangles, diagonals


def _tri_forward(x, diagonal=0, upper=False):
    if x.ndim < 2:
        raise ValueError(f"{'triu' if upper else 'tril'}: needs a matrix, got shape {x.shape}")
    rows, cols = x.shape[-2:]
    keep = (
        np.triu(np.ones((rows, cols), bool), diagonal)
        if upper
        else np.tril(np.ones((rows, cols), bool), diagonal)
    )
    return np.where(keep, x, np.zeros((), x.dtype)), keep


def _tri_vjp(keep, dy, needs):
    return (np.where(keep, dy, np.zeros((), dy.dtype)),)


TRI = defop("tri", _tri_forward, _tri_vjp)


def _diagonal_forward(x, offset=0, axis1=0, axis2=1):
    return np.diagonal(x, offset, axis1, axis2).copy(), (x.shape, offset, axis1, axis2)


def _diag_index(shape, offset, axis1, axis2):
    """Index arrays that pick ``np.diagonal(x, offset, axis1, axis2)`` out of ``x``."""
    a1, a2 = axis1 % len(shape), axis2 % len(shape)
    n = max(0, min(shape[a1] - max(0, -offset), shape[a2] - max(0, offset)))
    i = np.arange(n)
    rest = [d for d in range(len(shape)) if d not in (a1, a2)]
    index = [None] * len(shape)
    grids = np.ix_(*[np.arange(shape[d]) for d in rest], i) if rest else (i,)
    for k, d in enumerate(rest):
        index[d] = grids[k]
    index[a1] = grids[-1] + max(0, -offset)
    index[a2] = grids[-1] + max(0, offset)
    return tuple(index)


def _diagonal_vjp(saved, dy, needs):
    shape, offset, axis1, axis2 = saved
    dx = np.zeros(shape, dtype=dy.dtype)
    dx[_diag_index(shape, offset, axis1, axis2)] = dy
    return (dx,)


DIAGONAL = defop("diagonal", _diagonal_forward, _diagonal_vjp)


def _diag_embed_forward(x, offset=0):
    if x.ndim != 1:
        raise ValueError(f"diag: builds a matrix from a 1-D tensor, got shape {x.shape}")
    return np.diag(x, offset), offset


def _diag_embed_vjp(offset, dy, needs):
    return (np.diagonal(dy, offset).copy(),)


DIAG_EMBED = defop("diag_embed", _diag_embed_forward, _diag_embed_vjp)

# ------------------------------------------------------------------------------ pad

_NUMPY_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad_forward(x, pad, mode="constant", value=0.0):
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(
            f"pad: {len(pad)} pad sizes for a {x.ndim}-D tensor of shape {x.shape}; give an "
            f"even number, at most two per dimension (last dimension first)"
        )
    # torch lists (left, right) pairs from the last dimension backwards.
    widths = [(0, 0)] * x.ndim
    for k in range(len(pad) // 2):
        widths[x.ndim - 1 - k] = (int(pad[2 * k]), int(pad[2 * k + 1]))
    if mode == "constant":
        if any(a < 0 or b < 0 for a, b in widths):
            raise ValueError("pad: negative padding (cropping) is not supported; slice instead")
        return np.pad(x, widths, constant_values=value), ("constant", widths, x.shape)
    if mode not in _NUMPY_MODES:
        raise ValueError(
            f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}"
        )
    index = []
    for d, (a, b) in enumerate(widths):
        n = x.shape[d]
        if mode == "reflect" and (a >= n or b >= n) and (a or b):
            raise ValueError(
                f"pad: reflect padding ({a}, {b}) must be smaller than dimension {d} of "
                f"shape {x.shape}"
            )
        if mode == "circular" and (a > n or b > n):
            raise ValueError(
                f"pad: circular padding ({a}, {b}) must not exceed dimension {d} of {x.shape}"
            )
        index.append(np.pad(np.arange(n), (a, b), mode=_NUMPY_MODES[mode]))
    out = x
    for d, idx in enumerate(index):
        if widths[d] != (0, 0):
            out = np.take(out, idx, axis=d)
    return np.ascontiguousarray(out), (mode, widths, x.shape, index)


def _pad_vjp(saved, dy, needs):
    if saved[0] == "constant":
        _, widths, shape = saved
        return (dy[tuple(slice(a, a + n) for (a, _), n in zip(widths, shape, strict=True))],)
    _, widths, shape, index = saved
    g = dy
    for d in reversed(range(len(shape))):
        if widths[d] == (0, 0):
            continue
        # The adjoint of a take along d: add each padded slice back to its source.
        moved = np.moveaxis(g, d, 0)
        acc = np.zeros((shape[d],) + moved.shape[1:], dtype=dy.dtype)
        np.add.at(acc, index[d], moved)
        g = np.moveaxis(acc, 0, d)
    return (g,)


PAD = defop("pad", _pad_forward, _pad_vjp)

# --------------------------------------------------------- take along one axis (index)


def _take_forward(x, indices, axis):
    return np.take(x, indices, axis=axis), (x.shape, indices, axis)


def _take_vjp(saved, dy, needs):
    # index_select's adjoint: scatter-add each picked slice back (repeats accumulate).
    shape, indices, axis = saved
    axis = axis % len(shape)
    moved = np.moveaxis(dy, list(range(axis, axis + indices.ndim)), list(range(indices.ndim)))
    acc = np.zeros((shape[axis],) + moved.shape[indices.ndim :], dtype=dy.dtype)
    np.add.at(acc, indices, moved)
    return (np.moveaxis(acc, 0, axis),)


TAKE = defop("take", _take_forward, _take_vjp)

# --------------------------------------------------------------------------- scatter


def _scatter_index(indices, axis):
    grids = list(np.indices(indices.shape, sparse=True))
    grids[axis] = indices
    return tuple(grids)


def _scatter_forward(x, src, indices, axis, accumulate=False):
    index = _scatter_index(indices, axis % x.ndim)
    out = x.copy()
    values = (
        np.broadcast_to(src, indices.shape)
        if src.ndim == 0
        else src[tuple(slice(0, n) for n in indices.shape)]
    )
    if accumulate:
        np.add.at(out, index, values)
    else:
        out[index] = values
    return out, (index, indices.shape, src.shape, accumulate)


def _scatter_vjp(saved, dy, needs):
    index, ishape, sshape, accumulate = saved
    dx = None
    if needs[0]:
        dx = dy.copy()
        if not accumulate:
            dx[index] = 0  # overwritten elements do not reach the output
    dsrc = None
    if needs[1]:
        picked = dy[index]
        if len(sshape) == 0:
            dsrc = np.asarray(picked.sum())
        else:
            dsrc = np.zeros(sshape, dtype=dy.dtype)
            dsrc[tuple(slice(0, n) for n in ishape)] = picked
    return dx, dsrc


SCATTER = defop("scatter", _scatter_forward, _scatter_vjp)

# ---------------------------------------------------------------- not differentiable


def _nonzero_forward(x):
    return np.argwhere(x).astype(np.int64), None


NONZERO = defop("nonzero", _nonzero_forward, None)


def _one_hot_forward(x, num_classes=-1):
    if x.dtype.kind not in "iu":
        raise TypeError(f"one_hot: needs an integer tensor, got dtype {x.dtype}")
    if x.size and x.min() < 0:
        raise ValueError("one_hot: class values must be non-negative")
    n = int(x.max()) + 1 if num_classes == -1 and x.size else num_classes
    if num_classes == -1 and not x.size:
        raise ValueError("one_hot: cannot infer num_classes from an empty tensor; pass it")
    if x.size and x.max() >= n:
        raise ValueError(f"one_hot: class value {int(x.max())} is not below num_classes={n}")
    return (x[..., None] == np.arange(n)).astype(np.int64), None


ONE_HOT = defop("one_hot", _one_hot_forward, None)
