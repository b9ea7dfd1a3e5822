"""Validation of optimizer hyperparameters, shared by every optimizer.

Every optimizer checks each hyperparameter with :func:`check_range` (and a pair such as
Adam's ``betas`` with :func:`check_pair`), so a new optimizer gets the same type and range
checks and the same messages: they name the optimizer, the argument and the value.
``optim.SGD(params, lr="0.1")`` used to fail deep inside a comparison with a bare
``TypeError: '>=' not supported between instances of 'str' and 'float'``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_range", "check_pair"]


def _is_real(value: Any) -> bool:
    # bool is an int subclass, but lr=True is a mistake, not 1.0 (np.bool_ is not Real).
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_range(who: str, name: str, value: Any, low: float, high: float | None = None) -> None:
    """Check that a hyperparameter is a finite real number in ``[low, high)`` (or ``>= low``).

    Parameters
    ----------
    who : str
        The optimizer's name, e.g. ``"SGD"``; every message starts with it.
    name : str
        The argument as the user wrote it, e.g. ``"learning rate lr"`` or ``"beta1"``.
    value : Any
        The value given. Python and NumPy ints and floats are accepted; ``bool``, strings,
        arrays and Tensors are not.
    low : float
        Smallest allowed value (inclusive).
    high : float or None, optional
        If given, the exclusive upper bound.

    Raises
    ------
    TypeError
        If ``value`` is not a real number (the message says how to pass one).
    ValueError
        If ``value`` is NaN, infinite or out of range.

    Example
    -------
    >>> from fastbp.optim.checks import check_range
    >>> check_range("SGD", "learning rate lr", 0.1, 0.0)
    >>> check_range("SGD", "learning rate lr", "0.1", 0.0)
    Traceback (most recent call last):
        ...
    TypeError: SGD: learning rate lr must be a real number, got str '0.1'; pass a float such as 0.1
    """
    if not _is_real(value):
        hint = _hint(value)
        raise TypeError(
            f"{who}: {name} must be a real number, got {type(value).__name__} {value!r}{hint}"
        )
    ok = math.isfinite(value) and value >= low and (high is None or value < high)
    if not ok:
        bounds = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ValueError(f"{who}: invalid {name} {value!r}; it must be {bounds}")


def check_pair(who: str, name: str, value: Any) -> None:
    """Check that ``value`` is a pair (tuple or list of two items), e.g. Adam's ``betas``.

    The items themselves are checked with :func:`check_range` by the caller.

    Parameters
    ----------
    who : str
        The optimizer's name.
    name : str
        The argument, e.g. ``"betas"``.
    value : Any
        The value given.

    Raises
    ------
    TypeError
        If ``value`` is not a tuple or list (a string or a single number, for instance).
    ValueError
        If it does not have exactly two items.

    Example
    -------
    >>> from fastbp.optim.checks import check_pair
    >>> check_pair("Adam", "betas", (0.9, 0.999))
    >>> check_pair("Adam", "betas", 0.9)
    Traceback (most recent call last):
        ...
    TypeError: Adam: betas must be a pair of floats such as (0.9, 0.999), got float 0.9
    """
    if not isinstance(value, (tuple, list)):
        raise TypeError(
            f"{who}: {name} must be a pair of floats such as (0.9, 0.999), got "
            f"{type(value).__name__} {value!r}"
        )
    if len(value) != 2:
        raise ValueError(
            f"{who}: {name} must be a pair ({name[:-1]}1, {name[:-1]}2), got {len(value)} "
            f"items: {value!r}"
        )


def _hint(value: Any) -> str:
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return "; pass a float"
        return f"; pass a float such as {number!r}"
    if isinstance(value, bool):
        return "; pass a float (a bool is not a hyperparameter value)"
    if hasattr(value, "shape") and getattr(value, "ndim", None) == 0:
        return "; pass a Python float, e.g. float(value)"
    return "; pass a float"
