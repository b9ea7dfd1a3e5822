"""The op registry: every operation fastbp knows, by name.

An op is a record of plain data: its name, its ``forward`` and its vector-Jacobian
product ``vjp`` (None for ops that are not differentiable, such as comparisons), and,
where a benchmark showed one pays, the Numba ``kernel`` it calls and that kernel's
NumPy ``twin``. The engine reads ``forward`` and ``vjp``; the layers above (the
tracer and the compiler in :mod:`fastbp.jit`) read the same records, and may keep
tables of their own keyed by the op's name. Nothing here knows that they exist.

Rules a forward and a vjp follow (the engine does the rest)::

    forward(*arrays, **params) -> (out, saved)
    vjp(saved, dy, needs) -> one gradient (or None) per input

* return ``None`` for an input whose ``needs[i]`` is False;
* a gradient may keep the broadcast output shape: the engine sums it back down;
* never modify ``dy`` or a saved array in place, and never return a saved array
  itself (the engine may hand the gradient to the user as ``.grad``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Op", "OPS", "defop"]


class Op(NamedTuple):
    """One operation: its name, forward and vector-Jacobian product, and its kernels.

    ``forward(*arrays, **params) -> (out, saved)`` computes the output array and
    whatever its backward pass needs. ``vjp(saved, dy, needs) -> grads`` returns one
    gradient (or ``None``) per input; ``needs[i]`` says whether input ``i`` wants one,
    so an op can skip work (e.g. ``dX`` for the data batch). ``kernel`` and ``twin``
    name the Numba kernel the op runs on and its NumPy twin, for readers, tests and
    compilers; the engine never calls them itself.
    """

    name: str
    forward: Callable[..., tuple[np.ndarray, Any]]
    vjp: Callable[[Any, np.ndarray, tuple[bool, ...]], Sequence[np.ndarray | None]] | None
    kernel: Callable[..., Any] | None = None
    twin: Callable[..., Any] | None = None


OPS: dict[str, Op] = {}


def defop(
    name: str,
    forward: Callable[..., Any],
    vjp: Callable[..., Any] | None,
    *,
    kernel: Callable[..., Any] | None = None,
    twin: Callable[..., Any] | None = None,
) -> Op:
    """Register an op under ``name`` and return it.

    Parameters
    ----------
    name : str
        Unique name; it appears in every error message about the op.
    forward : callable
        ``forward(*arrays, **params) -> (out, saved)``.
    vjp : callable or None
        ``vjp(saved, dy, needs) -> tuple of gradients``; None for an op that is not
        differentiable (it is never recorded, and its outputs need no gradient).
    kernel, twin : callable, optional
        The Numba kernel the op is built on and its NumPy twin.

    Returns
    -------
    Op

    Raises
    ------
    ValueError
        If an op of that name is already registered.

    Example
    -------
    >>> import numpy as np
    >>> from fastbp.core.registry import defop
    >>> square = defop("square_example", lambda x: (x * x, x),
    ...                lambda x, dy, needs: (2 * x * dy,))
    >>> square.name
    'square_example'
    """
    if name in OPS:
        raise ValueError(f"an op named '{name}' is already registered")
    op = Op(name, forward, vjp, kernel, twin)
    OPS[name] = op
    return op
