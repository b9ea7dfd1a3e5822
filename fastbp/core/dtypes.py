"""PyTorch's type promotion for binary operations, in one place.

NumPy and PyTorch disagree on mixed dtypes: NumPy gives ``int64 * float32 -> float64``,
PyTorch gives float32 (a float operand decides the result's kind, and the float keeps its
own width). A float32 model must never silently drift into float64 (off the float32
kernels and at twice the memory), so fastbp follows PyTorch:

* operands are ranked by *category*: bool < integer < floating < complex;
* three priority groups: tensors with at least one dimension, 0-d tensors, and Python
  scalars (``bool`` -> bool, ``int`` -> int64, ``float`` -> float32, PyTorch's default);
* within a group dtypes promote as usual; a lower-priority group changes the result only
  when its category is higher (``float32 vector * float64 0-d -> float32``, but
  ``int64 vector * 2.5 -> float32``);
* true division of integers or bools gives float32 (:func:`division_dtype`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DEFAULT_FLOAT", "result_dtype", "division_dtype", "promote_types", "real"]

DEFAULT_FLOAT = np.dtype(np.float32)
_BOOL = np.dtype(np.bool_)
_INT64 = np.dtype(np.int64)
_COMPLEX64 = np.dtype(np.complex64)
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}


def _category(dtype: np.dtype) -> int:
    return _CATEGORY.get(dtype.kind, 2)


def promote_types(a: Any, b: Any) -> np.dtype:
    """PyTorch's ``promote_types``: the smallest dtype both ``a`` and ``b`` convert to.

    Unlike :func:`numpy.promote_types`, a floating dtype wins over any integer one
    without widening (``int64`` with ``float32`` is ``float32``).

    Example
    -------
    >>> import numpy as np
    >>> promote_types(np.int64, np.float32), promote_types(np.float32, np.float64)
    (dtype('float32'), dtype('float64'))
    """
    a, b = np.dtype(a), np.dtype(b)
    if a is b or a == b:
        return a
    ca, cb = _category(a), _category(b)
    if ca == cb or (ca >= 2 and cb >= 2):
        return np.promote_types(a, b)
    return a if ca > cb else b


def _combine(higher: np.dtype | None, lower: np.dtype | None) -> np.dtype | None:
    # A lower-priority group only matters when its category is higher (or over bool).
    if higher is None:
        return lower
    if lower is None:
        return higher
    if _category(lower) > _category(higher) or higher is _BOOL or higher == _BOOL:
        return promote_types(higher, lower)
    return higher


def _group(value: Any) -> tuple[int, np.dtype]:
    """(priority group, dtype) of one operand: 0 dimensioned, 1 zero-dim, 2 Python scalar."""
    data = getattr(value, "data", value)  # a Tensor's array
    if isinstance(data, np.ndarray):
        return (0 if data.ndim else 1), data.dtype
    if isinstance(data, np.generic):
        return 1, data.dtype
    if isinstance(value, bool):
        return 2, _BOOL
    if isinstance(value, int):
        return 2, _INT64
    if isinstance(value, float):
        return 2, DEFAULT_FLOAT
    if isinstance(value, complex):
        return 2, _COMPLEX64
    array = np.asarray(value)
    if array.dtype == np.float64 and not isinstance(value, np.ndarray):
        array = array.astype(DEFAULT_FLOAT)  # Python lists of floats become float32
    return (0 if array.ndim else 1), array.dtype


def result_dtype(a: Any, b: Any) -> np.dtype:
    """The dtype PyTorch gives ``a op b`` for an arithmetic op (add, sub, mul, pow, ...).

    Parameters
    ----------
    a, b : Tensor, ndarray, NumPy scalar or Python scalar
        The operands.

    Returns
    -------
    numpy.dtype
        The result's dtype under PyTorch's promotion rules (see the module docstring).

    Example
    -------
    >>> import numpy as np
    >>> result_dtype(np.ones(2, np.int64), np.ones(2, np.float32))
    dtype('float32')
    >>> result_dtype(np.ones(2, np.int64), 2.5), result_dtype(np.ones(2, np.float32), 2)
    (dtype('float32'), dtype('float32'))
    >>> result_dtype(np.ones(2, np.float32), np.float64(1.0))  # a 0-d operand
    dtype('float32')
    """
    groups: list[np.dtype | None] = [None, None, None]
    for value in (a, b):
        group, dtype = _group(value)
        current = groups[group]
        groups[group] = dtype if current is None else promote_types(current, dtype)
    return _combine(groups[0], _combine(groups[1], groups[2]))


def division_dtype(a: Any, b: Any) -> np.dtype:
    """The dtype of true division ``a / b``: :func:`result_dtype`, but float32 for integers.

    Example
    -------
    >>> import numpy as np
    >>> division_dtype(np.ones(2, np.int64), np.ones(2, np.int64))
    dtype('float32')
    """
    dtype = result_dtype(a, b)
    return dtype if dtype.kind in "fc" else DEFAULT_FLOAT


def real(x: np.ndarray) -> np.ndarray:
    """``x`` as the input of a function with real values (``exp``, ``sin``, ...).

    Integers and bools become float32, PyTorch's default dtype (NumPy would give
    float64, and a float32 model would silently leave its kernels); floats stay.

    Example
    -------
    >>> real(np.array([1, 2])).dtype
    dtype('float32')
    """
    return x.astype(DEFAULT_FLOAT) if x.dtype.kind in "biu" else x
