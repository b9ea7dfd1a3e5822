"""The one hook through which a layer above the engine watches it: the observer.

:mod:`fastbp.jit` records a traced function's first call by setting an observer on
this thread. The engine then reports to it every op it applies
(``observer.record_op(op, inputs, params, result)``) and every ``backward()``
(``observer.record_backward(root, grad, seed, retain_graph)``); methods with side
effects outside the op table (an optimizer's ``step``) announce themselves through
:func:`record_call`. The engine knows the observer only by this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .state import state

__all__ = ["observer", "set_observer", "record_call"]


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
