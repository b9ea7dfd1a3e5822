"""Argument checking for the kernels at (almost) no cost per call.

A Python-level dtype/contiguity/shape check costs ~0.3-0.5 us per call, as much as the whole kernel
at batch size 1. So the checks are split in two:

* Typing guards (``require_*``) are called at the top of every jitted kernel. Under Numba they are
  resolved while the kernel is *typed*: a wrong dtype, rank, layout or read-only output makes the
  compilation fail, and a good call costs nothing at run time. Shape checks are plain comparisons
  inside the kernel. In pure-Python mode (JIT disabled) the guards check the values directly.
* Explainers (``check_*``) run only after a kernel has raised. The public wrapper calls them in its
  ``except`` block to replace Numba's typing error by a short TypeError/ValueError naming the
  kernel, the argument, its shape and dtype.
"""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np
from numba import types
from numba.core.errors import TypingError
from numba.extending import overload

__all__ = [
    "FLOAT_DTYPES",
    "check_float_arrays",
    "check_labels",
    "check_same_dtype",
    "check_same_shape",
    "check_shape",
    "check_writable",
    "describe",
    "require_float_matrices",
    "require_float_vectors",
    "require_label_vector",
    "require_same_dtype",
    "require_writable",
]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_NUMBA_FLOATS = (types.float32, types.float64)
_NUMBA_LABEL_INTS = (types.int32, types.int64)


def _is_float_array(value: Any, ndim: int) -> bool:
    return (
        isinstance(value, np.ndarray)
        and value.ndim == ndim
        and value.dtype in FLOAT_DTYPES
        and value.flags.c_contiguous
    )


def _python_float_guard(ndim: int, arrays: tuple[Any, ...]) -> None:
    if not all(_is_float_array(array, ndim) for array in arrays):
        raise TypeError(f"expected C-contiguous {ndim}-D float32/float64 arrays")
    if len({array.dtype for array in arrays}) > 1:
        raise TypeError("expected arrays of one dtype")


def require_float_matrices(*arrays: Any) -> None:
    """Require C-contiguous 2-D arrays of one float dtype (float32 or float64).

    Parameters
    ----------
    *arrays
        The arrays to check.

    Raises
    ------
    TypeError
        In pure-Python mode, when a check fails. Under Numba the check happens while typing the
        calling kernel, which then fails to compile.

    Example
    -------
    >>> require_float_matrices(np.zeros((2, 3)), np.ones((2, 3)))
    """
    _python_float_guard(2, arrays)


def require_float_vectors(*arrays: Any) -> None:
    """Require C-contiguous 1-D arrays of one float dtype (float32 or float64).

    Parameters
    ----------
    *arrays
        The arrays to check.

    Raises
    ------
    TypeError
        In pure-Python mode, when a check fails (under Numba: at typing time).

    Example
    -------
    >>> require_float_vectors(np.zeros(3, np.float32))
    """
    _python_float_guard(1, arrays)


def require_label_vector(labels: Any) -> None:
    """Require a C-contiguous 1-D int32 or int64 array of class indices.

    Parameters
    ----------
    labels
        The array to check.

    Raises
    ------
    TypeError
        In pure-Python mode, when the check fails (under Numba: at typing time).

    Example
    -------
    >>> require_label_vector(np.array([0, 2, 1]))
    """
    if not (
        isinstance(labels, np.ndarray)
        and labels.ndim == 1
        and labels.dtype in (np.dtype(np.int32), np.dtype(np.int64))
        and labels.flags.c_contiguous
    ):
        raise TypeError("expected a C-contiguous 1-D int32/int64 label array")


def require_same_dtype(*arrays: Any) -> None:
    """Require arrays that all have the same dtype.

    Parameters
    ----------
    *arrays
        The arrays to compare.

    Raises
    ------
    TypeError
        In pure-Python mode, when the dtypes differ (under Numba: at typing time).

    Example
    -------
    >>> require_same_dtype(np.zeros(3), np.zeros((2, 2)))
    """
    if len({array.dtype for array in arrays}) > 1:
        raise TypeError("expected arrays of one dtype")


def require_writable(*arrays: Any) -> None:
    """Require arrays that the kernel may write into.

    Parameters
    ----------
    *arrays
        The output arrays to check.

    Raises
    ------
    TypeError
        In pure-Python mode, when an array is read-only (under Numba: at typing time).

    Example
    -------
    >>> require_writable(np.empty(3))
    """
    if not all(array.flags.writeable for array in arrays):
        raise TypeError("expected writable output arrays")


def _typing_float_guard(ndim: int, array_types: tuple[types.Type, ...]) -> None:
    for array_type in array_types:
        if not (
            isinstance(array_type, types.Array)
            and array_type.ndim == ndim
            and array_type.layout == "C"
            and array_type.dtype in _NUMBA_FLOATS
            and array_type.dtype == array_types[0].dtype
        ):
            raise TypingError(f"expected C-contiguous {ndim}-D arrays of one float dtype")


def _no_op(*arrays: Any) -> None:
    return None


@overload(require_float_matrices)
def _require_float_matrices_typing(*arrays: Any) -> Any:
    _typing_float_guard(2, _star_types(arrays))
    return _no_op


@overload(require_float_vectors)
def _require_float_vectors_typing(*arrays: Any) -> Any:
    _typing_float_guard(1, _star_types(arrays))
    return _no_op


@overload(require_label_vector)
def _require_label_vector_typing(labels: Any) -> Any:
    if not (
        isinstance(labels, types.Array)
        and labels.ndim == 1
        and labels.layout == "C"
        and labels.dtype in _NUMBA_LABEL_INTS
    ):
        raise TypingError("expected a C-contiguous 1-D int32/int64 label array")
    return _accept_labels


def _accept_labels(labels: Any) -> None:
    return None


@overload(require_same_dtype)
def _require_same_dtype_typing(*arrays: Any) -> Any:
    array_types = _star_types(arrays)
    if not all(isinstance(array, types.Array) for array in array_types) or (
        len({array.dtype for array in array_types}) > 1
    ):
        raise TypingError("expected arrays of one dtype")
    return _no_op


@overload(require_writable)
def _require_writable_typing(*arrays: Any) -> Any:
    if not all(getattr(array, "mutable", False) for array in _star_types(arrays)):
        raise TypingError("expected writable output arrays")
    return _no_op


def _star_types(arrays: tuple[Any, ...]) -> tuple[types.Type, ...]:
    # Numba hands a *args overload either the member types or one StarArgTuple holding them.
    if len(arrays) == 1 and isinstance(arrays[0], types.BaseTuple):
        return tuple(arrays[0].types)
    return tuple(arrays)


# ---- explainers: run only after a kernel failed, to say precisely what was wrong ----------------


def describe(value: Any) -> str:
    """Describe a kernel argument for an error message: dtype, shape and layout, or its type.

    Parameters
    ----------
    value
        Any object passed to a kernel.

    Returns
    -------
    str
        For instance ``"float32 array of shape (16, 128)"``.

    Example
    -------
    >>> describe(np.zeros((2, 3), np.float32))
    'float32 array of shape (2, 3)'
    """
    if not isinstance(value, np.ndarray):
        return f"{type(value).__name__} object"
    notes = "" if value.flags.c_contiguous else ", not C-contiguous"
    notes += "" if value.flags.writeable else ", read-only"
    return f"{value.dtype} array of shape {value.shape}{notes}"


def _fail(error_type: type[Exception], kernel: str, message: str) -> NoReturn:
    # "from None" hides Numba's long typing traceback that this message replaces.
    raise error_type(f"{kernel}: {message}") from None


def check_float_arrays(kernel: str, ndim: int, **arrays: Any) -> None:
    """Raise unless every array is a C-contiguous float32/float64 array of rank ``ndim``.

    Parameters
    ----------
    kernel
        Kernel name, put at the start of the message.
    ndim
        Required number of dimensions.
    **arrays
        Argument name to value; ``None`` values (omitted optional outputs) are skipped.

    Raises
    ------
    TypeError
        For a non-array or a non-float dtype.
    ValueError
        For a wrong number of dimensions or a non-C-contiguous array.

    Example
    -------
    >>> check_float_arrays("relu_backward", 2, x=np.zeros((2, 2)), dy=np.zeros((2, 2)))
    """
    given = {name: value for name, value in arrays.items() if value is not None}
    for name, value in given.items():
        if not isinstance(value, np.ndarray) or value.dtype not in FLOAT_DTYPES:
            expected = "a float32 or float64 array"
            _fail(TypeError, kernel, f"{name} must be {expected}, got {describe(value)}")
        if value.ndim != ndim:
            _fail(ValueError, kernel, f"{name} must be {ndim}-D, got {describe(value)}")
        if not value.flags.c_contiguous:
            _fail(ValueError, kernel, f"{name} must be C-contiguous, got {describe(value)}")


def check_same_dtype(kernel: str, **arrays: Any) -> None:
    """Raise TypeError unless all given arrays (``None`` skipped) have the same dtype.

    Parameters
    ----------
    kernel
        Kernel name, put at the start of the message.
    **arrays
        Argument name to array.

    Raises
    ------
    TypeError
        When the dtypes differ.

    Example
    -------
    >>> check_same_dtype("bias_grad", dy=np.zeros((2, 2)), out=np.zeros(2))
    """
    given = {name: value for name, value in arrays.items() if value is not None}
    if len({value.dtype for value in given.values()}) > 1:
        listing = ", ".join(f"{name}: {describe(value)}" for name, value in given.items())
        _fail(TypeError, kernel, f"arrays must share one dtype, got {listing}")


def check_same_shape(kernel: str, **arrays: Any) -> None:
    """Raise ValueError unless all given arrays (``None`` skipped) have the same shape.

    Parameters
    ----------
    kernel
        Kernel name, put at the start of the message.
    **arrays
        Argument name to array.

    Raises
    ------
    ValueError
        When the shapes differ.

    Example
    -------
    >>> check_same_shape("relu_backward", x=np.zeros((2, 2)), dy=np.zeros((2, 2)))
    """
    given = {name: value for name, value in arrays.items() if value is not None}
    if len({value.shape for value in given.values()}) > 1:
        listing = ", ".join(f"{name}: {describe(value)}" for name, value in given.items())
        _fail(ValueError, kernel, f"arrays must have the same shape, got {listing}")


def check_shape(kernel: str, name: str, value: Any, expected: tuple[int, ...]) -> None:
    """Raise ValueError unless ``value`` (skipped when ``None``) has shape ``expected``.

    Parameters
    ----------
    kernel
        Kernel name, put at the start of the message.
    name
        Argument name.
    value
        The array, or ``None``.
    expected
        The required shape.

    Raises
    ------
    ValueError
        When the shape differs.

    Example
    -------
    >>> check_shape("bias_grad", "out", np.zeros(3), (3,))
    """
    if value is not None and value.shape != expected:
        _fail(ValueError, kernel, f"{name} must have shape {expected}, got {describe(value)}")


def check_writable(kernel: str, **arrays: Any) -> None:
    """Raise ValueError if one of the given output arrays (``None`` skipped) is read-only.

    Parameters
    ----------
    kernel
        Kernel name, put at the start of the message.
    **arrays
        Argument name to array.

    Raises
    ------
    ValueError
        When an array is read-only.

    Example
    -------
    >>> check_writable("sgd_update", param=np.zeros(3))
    """
    for name, value in arrays.items():
        if value is not None and not value.flags.writeable:
            _fail(ValueError, kernel, f"{name} must be writable, got {describe(value)}")


def check_labels(kernel: str, labels: Any, rows: int, classes: int) -> None:
    """Raise unless ``labels`` is a C-contiguous int32/int64 vector of ``rows`` valid class indices.

    Parameters
    ----------
    kernel
        Kernel name, put at the start of the message.
    labels
        The label array.
    rows
        Required length (number of samples).
    classes
        Number of classes; every label must lie in ``[0, classes)``.

    Raises
    ------
    TypeError
        For a non-array or a dtype other than int32/int64.
    ValueError
        For a wrong shape, a non-contiguous array or an out-of-range label.

    Example
    -------
    >>> check_labels("softmax_cross_entropy", np.array([0, 1]), rows=2, classes=3)
    """
    if not isinstance(labels, np.ndarray) or labels.dtype not in (np.int32, np.int64):
        _fail(TypeError, kernel, f"labels must be an int32 or int64 array, got {describe(labels)}")
    if labels.shape != (rows,) or not labels.flags.c_contiguous:
        expected = f"C-contiguous of shape ({rows},)"
        _fail(ValueError, kernel, f"labels must be {expected}, got {describe(labels)}")
    if rows and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)]
        _fail(ValueError, kernel, f"labels must lie in [0, {classes}), got {bad[:5].tolist()}")
