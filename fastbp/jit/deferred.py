"""Deferred gradients: ``p.grad`` computed on first read, after a folded compiled step.

A compiled step (:mod:`fastbp.jit.compiler`) that folds a plain SGD update into the
product ``w ← w − lr·xᵀ·dy`` never writes ``xᵀ·dy`` out: writing it and reading it back
would cost two passes over memory the size of the weights, for a gradient most
training loops never look at. It defers the gradient instead: the parameter's class is
switched to a subclass of its own and of :class:`PendingGradTensor`, whose ``grad``
computes the product from the step's saved ``x`` and ``dy`` when first read, stores it,
and switches the class back. Nothing below this layer knows: to the engine and the
optimizers ``p.grad`` is an ordinary attribute that happens to be computed on demand.

Example
-------
>>> import numpy as np, fastbp as fb
>>> w = fb.zeros(2, requires_grad=True)
>>> defer_grad(w, lambda: np.ones(2, np.float32))
>>> isinstance(w, PendingGradTensor), raw_grad(w) is None
(True, False)
>>> w.grad
array([1., 1.], dtype=float32)
>>> type(w) is fb.Tensor
True
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..core.tensor import Tensor

__all__ = ["PendingGradTensor", "defer_grad", "raw_grad"]

_GRAD = Tensor.__dict__["grad"]  # the slot itself, under the property below


class _Deferred:
    __slots__ = ("compute", "cls")

    def __init__(self, compute: Callable[[], np.ndarray], cls: type):
        self.compute = compute
        self.cls = cls  # the tensor's own class, given back once the gradient is computed


def _grad_get(self) -> np.ndarray | None:
    pending = _GRAD.__get__(self)
    if type(pending) is not _Deferred:
        return pending
    value = pending.compute()
    if _GRAD.__get__(self) is pending:  # else another thread's step deferred a newer one
        _GRAD.__set__(self, value)
        self.__class__ = pending.cls
    return value


def _grad_set(self, value: np.ndarray | None) -> None:
    try:
        pending = _GRAD.__get__(self)
    except AttributeError:  # a copy being filled in (copy, pickle)
        pending = None
    _GRAD.__set__(self, value)
    if type(pending) is _Deferred:
        self.__class__ = pending.cls


class PendingGradTensor(Tensor):
    """The mark of a tensor whose gradient is computed when ``.grad`` is first read.

    The class a deferred tensor takes is made per tensor class (``Tensor``,
    ``nn.Parameter``...), a subclass of both that class and this one, so that
    ``isinstance`` answers as before.
    """

    __slots__ = ()
    grad = property(_grad_get, _grad_set)

    def __reduce_ex__(self, protocol):
        # Copies and pickles are of the tensor's own class, with its gradient computed.
        pending = _GRAD.__get__(self)
        if type(pending) is _Deferred:
            self.__class__ = pending.cls
            _GRAD.__set__(self, pending.compute())
        return self.__reduce_ex__(protocol)


_pending_classes: dict[type, type] = {Tensor: PendingGradTensor}


def defer_grad(t: Tensor, compute: Callable[[], np.ndarray]) -> None:
    """Make ``t.grad`` call ``compute()`` (once) when it is next read."""
    cls = type(t)
    if issubclass(cls, PendingGradTensor):  # deferred again before being read
        cls = _GRAD.__get__(t).cls
    pending = _pending_classes.get(cls)
    if pending is None:
        pending = _pending_classes[cls] = type(
            cls.__name__, (cls, PendingGradTensor), {"__slots__": ()}
        )
    _GRAD.__set__(t, _Deferred(compute, cls))
    t.__class__ = pending


def raw_grad(t: Tensor) -> object:
    """What ``t.grad`` holds, without computing a deferred gradient."""
    return _GRAD.__get__(t)
