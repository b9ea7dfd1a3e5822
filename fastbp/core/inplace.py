"""In-place tensor ops (``add_``, ``-=``, ``zero_`` ...), with PyTorch's rules.

An in-place op writes into the tensor's own array and bumps its ``_version``, so that
any graph that saved the old values refuses to backward through them
(:mod:`fastbp.core.saved`). Three cases, as in PyTorch:

* no graph is involved (grad mode off, as in ``with fb.no_grad(): p -= lr * p.grad``,
  or nothing requires grad): the array is updated in place, nothing is recorded;
* a leaf that requires grad, with grad mode on: refused, since its ``.grad`` would
  no longer describe the value it holds;
* otherwise (a non-leaf, or a constant updated from a tensor that requires grad): the
  op is recorded like its out-of-place twin, applied to a snapshot of the old value,
  and the tensor takes over the new record, so gradients flow through it as they would
  through ``t = t + other``.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from .engine import apply
from .registry import OPS
from .state import state

__all__ = ["update", "fill", "clamp"]

_UFUNCS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide}


def _refuse_leaf(t, name: str) -> None:
    raise RuntimeError(
        f"{name}: a leaf Variable that requires grad is being used in an in-place "
        f"operation (shape {t.shape}). Update it under `with fb.no_grad():`, or use the "
        f"out-of-place form (t = t + x) if the update is part of the graph"
    )


def _records(t, other, where: str) -> bool:
    """Whether an in-place op on ``t`` with ``other`` must be recorded; refuses a leaf."""
    if not state.grad_enabled:
        return False
    if t.requires_grad and t._node is None:
        _refuse_leaf(t, where)
    return t.requires_grad or (other is not None and other.requires_grad)


def _take_over(t, result) -> Any:
    """Write ``result``'s values into ``t``'s array and make ``t`` the op's output."""
    np.copyto(t.data, result.data, casting="same_kind")
    t._version += 1
    t.requires_grad = True
    t._node = result._node
    result._node.output = weakref.ref(t)
    return t


def _snapshot(t):
    """A tensor holding a copy of ``t``'s current value and its place in the graph."""
    old = object.__new__(type(t))
    old.data = t.data.copy()
    old.grad = None
    old.requires_grad = t.requires_grad
    old._node = t._node
    old._version = 0
    return old


def update(t, name: str, other: Any, where: str) -> Any:
    """``t <op>= other`` in place for op ``name`` in add/sub/mul/div; return ``t``.

    Parameters
    ----------
    t : Tensor
        The tensor updated.
    name : str
        ``"add"``, ``"sub"``, ``"mul"`` or ``"div"``.
    other : Tensor, ndarray or number
        The other operand; it broadcasts to ``t``'s shape.
    where : str
        The method's name for errors (``"add_"``, ``"__isub__"``).

    Returns
    -------
    Tensor
        ``t``.

    Raises
    ------
    RuntimeError
        For a leaf that requires grad, with grad mode on.
    TypeError
        If the result cannot be stored in ``t``'s dtype (a float into an int tensor).

    Example
    -------
    >>> import fastbp as fb
    >>> t = fb.tensor([1.0, 2.0])
    >>> update(t, "add", 1.0, "add_")
    tensor([2., 3.])
    """
    operand = t._operand(other)
    if _records(t, operand, where):
        result = apply(OPS[name], (_snapshot(t), operand))
        _check_shape(t, result.shape, where)
        return _take_over(t, result)
    out = np.result_type(t.data, operand.data)
    if not np.can_cast(out, t.data.dtype, casting="same_kind"):
        raise TypeError(
            f"{where}: result type {out} can't be cast to the tensor's dtype "
            f"{t.data.dtype} (shape {t.shape}); convert the tensor first (t.astype) or use "
            f"the out-of-place form"
        )
    _check_shape(t, np.broadcast_shapes(t.shape, operand.shape), where)
    _UFUNCS[name](t.data, operand.data, out=t.data, casting="same_kind")
    t._version += 1
    return t


def fill(t, values: Any, where: str) -> Any:
    """Overwrite ``t``'s values with ``values`` (broadcast); return ``t``.

    Recorded as ``t * 0 + values`` when a graph is involved, so ``t``'s old value gets a
    zero gradient and a ``values`` tensor that requires grad gets the upstream one.

    Example
    -------
    >>> import fastbp as fb
    >>> fill(fb.ones(3), 0.5, "fill_")
    tensor([0.5, 0.5, 0.5])
    """
    operand = t._operand(values)
    if _records(t, operand, where):
        zeroed = apply(OPS["mul"], (_snapshot(t), t._operand(0)))
        result = apply(OPS["add"], (zeroed, operand))
        _check_shape(t, result.shape, where)
        return _take_over(t, result)
    _check_shape(t, np.broadcast_shapes(t.shape, operand.shape), where)
    np.copyto(t.data, operand.data, casting="same_kind")
    t._version += 1
    return t


def clamp(t, low, high, where: str) -> Any:
    """Limit ``t``'s values to ``[low, high]`` in place; return ``t``.

    Example
    -------
    >>> import fastbp as fb
    >>> clamp(fb.tensor([-1.0, 0.5, 2.0]), 0.0, 1.0, "clamp_")
    tensor([0. , 0.5, 1. ])
    """
    if low is None and high is None:
        raise ValueError(f"{where}: give at least one of min and max")
    if _records(t, None, where):
        return _take_over(t, apply(OPS["clip"], (_snapshot(t),), low=low, high=high))
    np.clip(t.data, low, high, out=t.data)
    t._version += 1
    return t


def _check_shape(t, shape: tuple[int, ...], where: str) -> None:
    if tuple(shape) != t.shape:
        raise RuntimeError(
            f"{where}: the result has shape {tuple(shape)}, which doesn't match the "
            f"tensor's shape {t.shape}: an in-place op cannot change the shape"
        )
