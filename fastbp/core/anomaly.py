"""Anomaly mode: remember where each op was created, and stop at the first NaN or Inf.

The engine asks :func:`user_frame` for the creating line while ``state.anomaly`` is
set, and calls :func:`check_finite` on every gradient a vjp returns.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator

import numpy as np

from .state import state

__all__ = ["detect_anomaly", "user_frame", "check_finite"]


@contextlib.contextmanager
def detect_anomaly() -> Iterator[None]:
    """Raise as soon as backward produces a NaN or Inf, naming the op that caused it.

    Inside the block every recorded op remembers the line of user code that
    created it (this costs a stack walk per op, so use it for debugging only).
    During backward, a gradient containing NaN/Inf raises ``RuntimeError`` naming
    the forward op whose vjp produced it and where that op was called.

    Raises
    ------
    RuntimeError
        From ``backward`` when a non-finite gradient appears.

    Example
    -------
    >>> import fastbp as fb
    >>> x = fb.tensor([0.0], requires_grad=True)
    >>> with fb.detect_anomaly():
    ...     y = fb.sqrt(x).sum()
    ...     y.backward()  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    RuntimeError: backward of 'sqrt' produced inf ...
    """
    previous = state.anomaly
    state.anomaly = True
    try:
        yield
    finally:
        state.anomaly = previous


def user_frame() -> str:
    """The innermost stack frame outside fastbp, as 'file:line in func: code'."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/fastbp/" not in frame.filename.replace("\\", "/"):
            return f"{frame.filename}:{frame.lineno} in {frame.name}: {frame.line}"
    return "<unknown>"


def check_finite(a: np.ndarray, name: str, where: str | None, phase: str) -> None:
    """Raise ``RuntimeError`` if the float array ``a`` holds NaN or Inf."""
    if a.dtype.kind in "fc" and not np.isfinite(a).all():
        bad = "nan" if np.isnan(a).any() else "inf"
        raise RuntimeError(
            f"{phase} of '{name}' produced {bad} values; the op was created at {where}"
        )
