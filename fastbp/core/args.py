"""Argument spellings shared by the Tensor methods and the ``fb.*`` functions.

PyTorch names a reduction's axis ``dim`` and its flag ``keepdim``; NumPy says ``axis``
and ``keepdims``. fastbp accepts both, through :func:`axis_args`, so that code ported
from either library runs unchanged.
"""

from __future__ import annotations

from typing import Any

__all__ = ["axis_args"]


def axis_args(
    where: str, axis: Any = None, keepdims: Any = None, dim: Any = None, keepdim: Any = None
) -> tuple[Any, bool]:
    """Merge the NumPy (``axis``/``keepdims``) and PyTorch (``dim``/``keepdim``) spellings.

    Parameters
    ----------
    where : str
        The op's name, for the error message.
    axis, dim : int, tuple of int or None
        The axis, under either name; give at most one of them.
    keepdims, keepdim : bool or None
        Keep the reduced axes with size 1; None means False.

    Returns
    -------
    tuple
        ``(axis, keepdims)``.

    Raises
    ------
    TypeError
        If both ``axis`` and ``dim`` (or both ``keepdims`` and ``keepdim``) are given
        with different values.

    Example
    -------
    >>> from fastbp.core.args import axis_args
    >>> axis_args("sum", dim=1, keepdim=True)
    (1, True)
    """
    if dim is not None:
        if axis is not None and axis != dim:
            raise TypeError(f"{where}: got axis={axis!r} and dim={dim!r}; give only one of them")
        axis = dim
    if keepdim is not None:
        if keepdims and not keepdim:
            raise TypeError(
                f"{where}: got keepdims={keepdims!r} and keepdim={keepdim!r}; give only one"
            )
        keepdims = keepdim
    return axis, bool(keepdims)
