"""Grad modes: ``no_grad``, ``enable_grad`` and ``is_grad_enabled``, per thread.

Each works as a context manager (``with fb.no_grad():``), as a decorator with or
without parentheses (``@fb.no_grad()`` or ``@fb.no_grad``), and on generator functions,
where the mode holds while the generator's own code runs and not while its caller's
code runs between two ``next()`` calls, as in PyTorch.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from .state import state

__all__ = ["no_grad", "enable_grad", "is_grad_enabled"]


def is_grad_enabled() -> bool:
    """Return whether ops are being recorded on this thread.

    Returns
    -------
    bool
        False inside :class:`no_grad`.

    Example
    -------
    >>> import fastbp as fb
    >>> with fb.no_grad():
    ...     fb.is_grad_enabled()
    False
    """
    return state.grad_enabled


class _GradMode:
    """Set grad mode on this thread for a ``with`` block or a decorated function."""

    enabled = True

    def __new__(cls, func: Callable[..., Any] | None = None):
        if func is None:
            return super().__new__(cls)
        if not callable(func):
            raise TypeError(
                f"{cls.__name__}() takes no arguments, or decorates a function; got a "
                f"{type(func).__name__}. Use `with fb.{cls.__name__}():`"
            )
        return cls()(func)  # the bare decorator: @fb.no_grad

    def __enter__(self):
        self._previous = state.grad_enabled
        state.grad_enabled = self.enabled
        return self

    def __exit__(self, *exc) -> bool:
        state.grad_enabled = self._previous
        return False

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        mode = type(self)
        # A fresh context per call: one shared instance would break under recursion and
        # threads (``_previous`` would be shared).
        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def generator(*args, **kwargs):
                gen = func(*args, **kwargs)
                send, value = gen.send, None
                while True:
                    try:
                        with mode():
                            item = send(value)
                    except StopIteration as stop:  # the generator's return value
                        return stop.value
                    try:
                        value, send = (yield item), gen.send
                    except GeneratorExit:
                        gen.close()
                        raise
                    except BaseException as exc:  # thrown in by the caller: pass it on
                        value, send = exc, gen.throw

            return generator

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with mode():
                return func(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Context manager and decorator that stops recording ops on this thread.

    Use it for evaluation and for in-place parameter updates: results computed
    inside do not require a gradient and keep nothing alive for backward.

    Example
    -------
    >>> import fastbp as fb
    >>> w = fb.tensor([1.0, 2.0], requires_grad=True)
    >>> with fb.no_grad():
    ...     y = w * 2
    >>> y.requires_grad
    False
    """

    enabled = False


class enable_grad(_GradMode):
    """Context manager and decorator that re-enables recording inside ``no_grad``.

    Example
    -------
    >>> import fastbp as fb
    >>> with fb.no_grad(), fb.enable_grad():
    ...     fb.is_grad_enabled()
    True
    """

    enabled = True
