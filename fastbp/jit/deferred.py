"""Deferred gradients: ``p.grad`` made on first read, after a compiled step.

A compiled step (:mod:`fastbp.jit.compiler`) writes its gradients into memory of its
own, and a step that folds a plain SGD update into the product
``w ← w − lr·xᵀ·dy`` never writes ``xᵀ·dy`` out at all: writing it and reading it
back would cost two passes over memory the size of the weights, for a gradient most
training loops never look at. So the step does not hand out gradient arrays; it
*defers* them. The parameter's class is switched to a subclass of its own and of
:class:`PendingGradTensor`, and its gradient slot holds a :class:`Deferred`, whose
``compute(tensor)`` makes the array (a view of the step's memory, or the product
computed into it) when ``.grad`` is first read. The array is then stored and the
class switched back. Nothing below this layer knows: to the engine and the optimizers
``p.grad`` is an ordinary attribute that happens to be computed on demand.

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

__all__ = ["Deferred", "PendingGradTensor", "defer_grad", "pending_class", "raw_grad"]

_GRAD = Tensor.__dict__["grad"]  # the slot itself, under the property below


class Deferred:
    """What a pending tensor's gradient slot holds: ``compute(tensor)`` makes the gradient.

    One object may stand for the gradients of many tensors (a compiled step puts one
    per call into every parameter's slot). A read stores what ``compute`` returned only
    if the slot still holds this same object afterwards, so a read that straddles a
    newer step, which put a newer object there, does not leave a stale gradient behind.
    """

    __slots__ = ()

    def compute(self, tensor: Tensor) -> np.ndarray:
        """The gradient of ``tensor``, an array of its shape."""
        raise NotImplementedError


class _Call(Deferred):
    """A deferred gradient given as a function of nothing (:func:`defer_grad`)."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[[], np.ndarray]):
        self.function = function

    def compute(self, tensor: Tensor) -> np.ndarray:
        return self.function()


def _own_class(t: Tensor) -> type:
    # A pending class is made as (its tensor class, PendingGradTensor): the first base.
    return type(t).__bases__[0]


def _grad_get(self) -> np.ndarray | None:
    pending = _GRAD.__get__(self)
    if not isinstance(pending, Deferred):
        return pending
    value = pending.compute(self)
    if _GRAD.__get__(self) is pending:  # else a newer step deferred a newer one meanwhile
        _GRAD.__set__(self, value)
        self.__class__ = _own_class(self)
    return value


def _grad_set(self, value: np.ndarray | None) -> None:
    _GRAD.__set__(self, value)
    if isinstance(self, PendingGradTensor):
        self.__class__ = _own_class(self)


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
        if isinstance(pending, Deferred):
            value = pending.compute(self)
            self.__class__ = _own_class(self)
            _GRAD.__set__(self, value)
        return self.__reduce_ex__(protocol)


# PendingGradTensor is itself the pending class of Tensor: its first base is Tensor.
_pending_classes: dict[type, type] = {Tensor: PendingGradTensor}


def pending_class(cls: type) -> type:
    """The class a tensor of class ``cls`` takes while its gradient is deferred.

    Parameters
    ----------
    cls : type
        A Tensor class, or a pending class (whose own class is then meant).

    Returns
    -------
    type
        A subclass of ``cls`` and of :class:`PendingGradTensor`.

    Example
    -------
    >>> import fastbp as fb
    >>> pending_class(fb.Tensor) is PendingGradTensor
    True
    """
    if issubclass(cls, PendingGradTensor):
        cls = cls.__bases__[0]
    pending = _pending_classes.get(cls)
    if pending is None:
        pending = _pending_classes[cls] = type(
            cls.__name__, (cls, PendingGradTensor), {"__slots__": ()}
        )
    return pending


def defer_grad(t: Tensor, compute: Deferred | Callable[[], np.ndarray]) -> None:
    """Make ``t.grad`` compute its value (once) when it is next read.

    Parameters
    ----------
    t : Tensor
        The tensor whose gradient is deferred.
    compute : Deferred or callable
        A :class:`Deferred`, or a function of no arguments returning the gradient.
    """
    pending = compute if isinstance(compute, Deferred) else _Call(compute)
    cls = pending_class(type(t))
    _GRAD.__set__(t, pending)
    if type(t) is not cls:
        t.__class__ = cls


def raw_grad(t: Tensor) -> object:
    """What ``t.grad`` holds, without computing a deferred gradient."""
    return _GRAD.__get__(t)
