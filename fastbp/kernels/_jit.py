"""The decorator every kernel goes through: Numba ``njit`` with caching, or plain Python.

``FASTBP_DISABLE_JIT=1`` (read once, at import) makes :func:`kernel_jit` hand back the undecorated
function, so kernels run as ordinary Python for debugging and line coverage. Numba's own
``NUMBA_DISABLE_JIT=1`` has the same effect through ``numba.njit`` itself.

Numba keys each cached kernel on the source file that defines it, not on the helpers it calls:
after editing ``_guards.py`` or ``_simd_math.py`` during development, delete
``fastbp/kernels/__pycache__`` (reinstalling the package refreshes every file, so users are safe).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import numba

__all__ = ["JIT_DISABLED", "kernel_jit"]

_log = logging.getLogger(__name__)

KernelFunction = TypeVar("KernelFunction", bound=Callable[..., Any])


def _env_flag(name: str) -> bool:
    """Return True when environment variable ``name`` holds a truthy value such as ``1``."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


#: True when kernels run as plain Python, either by ``FASTBP_DISABLE_JIT`` or ``NUMBA_DISABLE_JIT``.
JIT_DISABLED: bool = _env_flag("FASTBP_DISABLE_JIT") or bool(numba.config.DISABLE_JIT)

# The numpy error model lets LLVM vectorise divisions (no ZeroDivisionError branch per element).
_DEFAULT_OPTIONS: dict[str, Any] = {"cache": True, "error_model": "numpy"}


def kernel_jit(**options: Any) -> Callable[[KernelFunction], KernelFunction]:
    """Build a decorator that compiles a kernel with ``numba.njit`` (cached, numpy error model).

    Parameters
    ----------
    **options
        Extra ``numba.njit`` options (``fastmath``, ``parallel``, ...); they override the defaults
        ``cache=True`` and ``error_model="numpy"``.

    Returns
    -------
    Callable
        A decorator. It returns the function itself when the JIT is disabled, and a Numba
        dispatcher otherwise. When Numba cannot cache the function (read-only tree and no usable
        cache directory: "no locator available"), it compiles without a cache instead of failing.

    Example
    -------
    >>> @kernel_jit(fastmath={"contract"})
    ... def add_one(values):
    ...     return values + 1
    """
    settings = {**_DEFAULT_OPTIONS, **options}

    def decorate(function: KernelFunction) -> KernelFunction:
        if JIT_DISABLED:
            return function
        try:
            return numba.njit(**settings)(function)
        except RuntimeError as error:
            # Numba decides where the cache lives at decoration time and raises when no locator
            # can write anywhere; a slower first call beats an import error.
            if not settings.get("cache") or "cannot cache" not in str(error):
                raise
            _log.info("fastbp.kernels: %s; compiling %s without a cache", error, function.__name__)
            return numba.njit(**{**settings, "cache": False})(function)

    return decorate
