"""Error hints: turn a forward computation's failure into a message that says what to do.

The engine calls :func:`explain` when an op's forward raises; the message names the
op, the shapes and dtypes of its inputs and, where the cause is a usual one, the fix.
"""

from __future__ import annotations

from typing import Any

__all__ = ["explain"]

# First by op, then by the words of NumPy's message.
_HINTS_BY_OP = {
    "getitem": "indices must lie within the tensor's shape",
    "reshape": "the new shape must have the same number of elements",
    "concatenate": "all dimensions except the joining axis must match",
    "stack": "all inputs must have the same shape",
}
_HINTS_BY_MESSAGE = (
    ("broadcast", "shapes must match or broadcast (trailing dimensions equal or 1); "
     "reshape an input or add a size-1 axis"),
    ("inner dimensions", "the first operand's columns must equal the second's rows; "
     "check the order of the operands or transpose one with .T"),
    ("2-d", "reshape the operands to 2-D matrices"),
    ("axis", "pass an axis in [-ndim, ndim)"),
)  # fmt: skip


def explain(name: str, inputs: tuple[Any, ...], params: dict, exc: Exception) -> Exception:
    """Return the exception to raise for ``exc``, raised by the forward of op ``name``.

    Parameters
    ----------
    name : str
        The op's name.
    inputs : tuple of Tensor
        Its inputs (anything with ``.data``).
    params : dict
        Its keyword arguments.
    exc : Exception
        What the forward raised.

    Returns
    -------
    Exception
        Of the same kind (ValueError, IndexError or TypeError), naming the op, the
        inputs' shapes and dtypes, and a fix where one is known.

    Example
    -------
    >>> import numpy as np
    >>> from types import SimpleNamespace as T
    >>> str(explain("add", (T(data=np.ones(2)),), {}, ValueError("cannot broadcast")))[:40]
    'add: cannot apply to inputs [(2,) float6'
    """
    described = ", ".join(f"{tuple(t.data.shape)} {t.data.dtype}" for t in inputs)
    extra = "".join(f", {k}={v!r}" for k, v in params.items() if k != "key")
    if isinstance(exc, ValueError):  # first: NumPy's AxisError is also an IndexError
        kind = ValueError
    elif isinstance(exc, IndexError):
        kind = IndexError
    else:
        kind = TypeError
    text = str(exc)
    hint = _HINTS_BY_OP.get(name) or next(
        (h for key, h in _HINTS_BY_MESSAGE if key in text.lower()), None
    )
    advice = f". Fix: {hint}" if hint else ""
    return kind(f"{name}: cannot apply to inputs [{described}]{extra}: {text}{advice}")
