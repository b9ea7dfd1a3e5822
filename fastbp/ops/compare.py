"""Comparisons: elementwise ``< <= > >= == !=``, giving bool tensors.

Not differentiable (no vjp), so never recorded; they pass through the engine all the
same, so that a trace (:mod:`fastbp.jit`) sees a mask computed from an argument.
"""

from __future__ import annotations

import numpy as np

from ..core.registry import defop


def _compare_forward(a: np.ndarray, *b: np.ndarray, ufunc, scalar=None) -> tuple[np.ndarray, None]:
    # A Python scalar comes as a parameter, keeping NumPy's weak-scalar comparison rules.
    return ufunc(a, b[0] if b else scalar), None


COMPARE = defop("compare", _compare_forward, None)
