"""The one hook through which a layer above the engine watches it: the observer.

:mod:`fastbp.jit` records a traced function's first call by setting an observer on
this thread. The engine then reports to it every op it applies
(``observer.record_op(op, inputs, params, result)``) and every ``backward()``
(``observer.record_backward(root, grad, seed, retain_graph)``, then
``observer.backward_finished(root)``); methods with side effects outside the op table
(an optimizer's ``step``) announce themselves through :func:`record_call`; a tensor
turned into a Python or NumPy value reports it through :func:`record_read`, and an
object whose Python attributes shape the computation (a module being called) through
:func:`record_object`. The engine knows the observer only by this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .state import state

__all__ = ["observer", "set_observer", "record_call", "record_read", "record_object"]


def observer() -> Any:
    """The observer set on this thread, or None.

    Example
    -------
    >>> observer() is None
    True
    """
    return state.observer


def set_observer(new: Any) -> Any:
    """Set this thread's observer (None: none); return the previous one.

    Example
    -------
    >>> set_observer(None) is None
    True
    """
    previous = state.observer
    state.observer = new
    return previous


def record_call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """Report ``method(*args, **kwargs)`` to the observer, which makes the call itself.

    Methods with side effects that do not go through ops (an optimizer's ``step`` and
    ``zero_grad``) call this first. With an observer set, the observer runs the
    method (and, for a trace, runs it again on every replay) and this returns True;
    with none, it returns False and the caller simply goes on.

    Parameters
    ----------
    method : callable
        The bound method.
    *args, **kwargs
        Its arguments.

    Returns
    -------
    bool
        Whether the observer took the call.

    Example
    -------
    >>> record_call(print, "not observed")
    False
    """
    watcher = state.observer
    if watcher is None:
        return False
    watcher.record_call(method, args, kwargs)
    return True


def record_read(t: Any, how: str) -> None:
    """Report that tensor ``t``'s value left fastbp as ``how`` (``"item()"``, ``"bool()"``).

    A trace warns: Python code that uses such a value runs only at the first call.

    Example
    -------
    >>> record_read(None, "item()")  # nothing observes: nothing happens
    """
    watcher = state.observer
    if watcher is not None:
        watcher.record_read(t, how)


def record_object(obj: Any) -> None:
    """Report an object whose attributes the computation reads (a module being called).

    A trace keeps a snapshot of its attributes and records again when they change.

    Example
    -------
    >>> record_object(object())  # nothing observes: nothing happens
    """
    watcher = state.observer
    if watcher is not None:
        watcher.record_object(obj)
