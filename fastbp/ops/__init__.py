"""The op table: every differentiable operation, its forward and its vjp, by name.

An op is defined once, with :func:`defop`, next to the functions that implement it::

    def _exp_forward(x):
        out = np.exp(x)
        return out, out          # (output, what the vjp needs)

    def _exp_vjp(out, dy, needs):
        return (dy * out,)       # one gradient per input

    EXP = defop("exp", _exp_forward, _exp_vjp)

Rules a vjp follows (the engine does the rest):

* return one entry per input, ``None`` where ``needs[i]`` is False;
* a gradient may keep the broadcast output shape: the engine sums it back down;
* never modify ``dy`` or a saved array in place, and never return a saved array
  itself (the engine may hand the gradient to the user as ``.grad``).

``OPS`` maps each name to its :class:`~fastbp.autograd.Op`, so ``sorted(OPS)``
lists everything fastbp can differentiate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..autograd import Op

OPS: dict[str, Op] = {}


def defop(name: str, forward: Callable, vjp: Callable, jit: Any = None) -> Op:
    """Register an op under ``name`` and return it.

    Parameters
    ----------
    name : str
        Unique name; it appears in every error message about the op.
    forward : callable
        ``forward(*arrays, **params) -> (out, saved)``.
    vjp : callable
        ``vjp(saved, dy, needs) -> tuple of gradients``.
    jit : JitForm, optional
        The same op written as source for a compiled step (see :mod:`fastbp.compiler`);
        a step holding an op without one is replayed in Python instead.

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
    >>> from fastbp.ops import defop
    >>> square = defop("square_example", lambda x: (x * x, x),
    ...                lambda x, dy, needs: (2 * x * dy,))
    >>> square.name
    'square_example'
    """
    if name in OPS:
        raise ValueError(f"an op named '{name}' is already registered")
    op = Op(name, forward, vjp, jit)
    OPS[name] = op
    return op


from . import elementwise, linalg, loss, reduce, shape  # noqa: E402,F401  (fill the table)
