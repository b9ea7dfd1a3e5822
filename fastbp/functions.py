"""The ``fb.*`` functions: NumPy-style spellings of the Tensor ops.

Each accepts Tensors, ndarrays or Python numbers and returns a Tensor; the
differentiation itself lives in the op table (:mod:`fastbp.ops`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .core.engine import apply
from .core.tensor import Axis, Tensor, as_tensor
from .ops import elementwise as ew
from .ops import linalg, reduce
from .ops import shape as shape_ops

__all__ = [
    "add", "sub", "mul", "div", "pow", "neg", "matmul",
    "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs", "clip",
    "sum", "mean", "max", "min", "maximum", "minimum", "where",
    "reshape", "transpose", "concatenate", "stack",
    "softmax", "log_softmax", "logsumexp",
]  # fmt: skip


def _binary(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Wrap two operands, letting a Tensor decide the dtype of a Python scalar."""
    if isinstance(a, Tensor):
        return a, a._operand(b)
    if isinstance(b, Tensor):
        return b._operand(a), b
    return as_tensor(a), as_tensor(b)


def add(a: Any, b: Any) -> Tensor:
    """Elementwise ``a + b`` with broadcasting.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.add(fb.tensor([1.0, 2.0]), 1.0)
    tensor([2., 3.])
    """
    return apply(ew.ADD, _binary(a, b))


def sub(a: Any, b: Any) -> Tensor:
    """Elementwise ``a - b`` with broadcasting."""
    return apply(ew.SUB, _binary(a, b))


def mul(a: Any, b: Any) -> Tensor:
    """Elementwise ``a * b`` with broadcasting."""
    return apply(ew.MUL, _binary(a, b))


def div(a: Any, b: Any) -> Tensor:
    """Elementwise ``a / b`` with broadcasting."""
    return apply(ew.DIV, _binary(a, b))


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001
    """Elementwise ``a ** b`` with broadcasting."""
    return apply(ew.POW, _binary(a, b))


def neg(a: Any) -> Tensor:
    """Elementwise ``-a``."""
    return -as_tensor(a)


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product of two 2-D tensors.

    Raises
    ------
    ValueError
        If an operand is not 2-D or the inner dimensions differ (the message
        names both shapes).

    Example
    -------
    >>> import fastbp as fb
    >>> fb.matmul(fb.ones(2, 3), fb.ones(3, 4)).shape
    (2, 4)
    """
    return apply(linalg.MATMUL, _binary(a, b))


def exp(x: Any) -> Tensor:
    """Elementwise ``e**x``."""
    return as_tensor(x).exp()


def log(x: Any) -> Tensor:
    """Elementwise natural logarithm."""
    return as_tensor(x).log()


def sqrt(x: Any) -> Tensor:
    """Elementwise square root."""
    return as_tensor(x).sqrt()


def tanh(x: Any) -> Tensor:
    """Elementwise hyperbolic tangent."""
    return as_tensor(x).tanh()


def sigmoid(x: Any) -> Tensor:
    """Elementwise logistic function; its gradient is ``σ(1 − σ)``.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.sigmoid(fb.tensor([0.0]))
    tensor([0.5])
    """
    return as_tensor(x).sigmoid()


def relu(x: Any) -> Tensor:
    """Elementwise ``max(x, 0)``; the gradient at 0 is 0."""
    return as_tensor(x).relu()


def abs(x: Any) -> Tensor:  # noqa: A001
    """Elementwise absolute value; the gradient at 0 is 0."""
    return as_tensor(x).abs()


def clip(x: Any, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """Limit ``x`` to ``[min, max]``; the gradient is 1 inside (bounds included), else 0.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.clip(fb.tensor([-2.0, 0.5, 3.0]), -1, 1)
    tensor([-1. ,  0.5,  1. ])
    """
    return as_tensor(x).clip(min, max)


def sum(x: Any, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum over ``axis`` (an int, a tuple, negative allowed, or None for all).

    Example
    -------
    >>> import fastbp as fb
    >>> fb.sum(fb.ones(2, 3), axis=-1)
    tensor([3., 3.])
    """
    return as_tensor(x).sum(axis, keepdims)


def mean(x: Any, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis``."""
    return as_tensor(x).mean(axis, keepdims)


def max(x: Any, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Maximum over ``axis``; tied elements share the gradient equally."""
    return as_tensor(x).max(axis, keepdims)


def min(x: Any, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Minimum over ``axis``; tied elements share the gradient equally."""
    return as_tensor(x).min(axis, keepdims)


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum; the gradient goes to the larger input (half each on a tie).

    Example
    -------
    >>> import fastbp as fb
    >>> fb.maximum(fb.tensor([1.0, 5.0]), 2.0)
    tensor([2., 5.])
    """
    return apply(ew.MAXIMUM, _binary(a, b))


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum; the gradient goes to the smaller input (half each on a tie)."""
    return apply(ew.MINIMUM, _binary(a, b))


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """Pick ``a`` where ``condition`` holds, else ``b`` (all three broadcast).

    Example
    -------
    >>> import fastbp as fb
    >>> x = fb.tensor([-1.0, 2.0])
    >>> fb.where(x > 0, x, 0.0)
    tensor([0., 2.])
    """
    condition = np.asarray(condition.data if isinstance(condition, Tensor) else condition)
    if condition.dtype != bool:
        raise TypeError(
            f"where: condition must be a bool array, got dtype {condition.dtype} (shape "
            f"{condition.shape}); build it with a comparison such as x > 0"
        )
    a, b = _binary(a, b)
    return apply(ew.WHERE, (a, b), condition=condition)


def reshape(x: Any, shape: Sequence[int]) -> Tensor:
    """Return ``x``'s elements in a new shape."""
    return as_tensor(x).reshape(shape)


def transpose(x: Any, axes: Sequence[int] | None = None) -> Tensor:
    """Permute the axes of ``x`` (reverse them by default)."""
    return as_tensor(x).transpose(*(() if axes is None else (tuple(axes),)))


def concatenate(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.concatenate([fb.ones(2, 3), fb.zeros(1, 3)]).shape
    (3, 3)
    """
    if len(tensors) == 0:
        raise ValueError("concatenate: need at least one tensor")
    return apply(shape_ops.CONCATENATE, tuple(as_tensor(t) for t in tensors), axis=axis)


def stack(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.stack([fb.ones(3), fb.zeros(3)], axis=1).shape
    (3, 2)
    """
    if len(tensors) == 0:
        raise ValueError("stack: need at least one tensor")
    return apply(shape_ops.STACK, tuple(as_tensor(t) for t in tensors), axis=axis)


def softmax(x: Any, axis: int = -1) -> Tensor:
    """Softmax along ``axis``, computed stably (shifted by the maximum).

    Example
    -------
    >>> import fastbp as fb
    >>> fb.softmax(fb.tensor([1000.0, 1000.0]))
    tensor([0.5, 0.5])
    """
    return apply(reduce.SOFTMAX, (as_tensor(x),), axis=axis)


def log_softmax(x: Any, axis: int = -1) -> Tensor:
    """``log(softmax(x))`` along ``axis``, computed without overflow or log(0).

    Example
    -------
    >>> import fastbp as fb
    >>> fb.log_softmax(fb.tensor([0.0, 1000.0]))
    tensor([-1000.,     0.])
    """
    return apply(reduce.LOG_SOFTMAX, (as_tensor(x),), axis=axis)


def logsumexp(x: Any, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """``log(sum(exp(x)))`` over ``axis``, stable for large inputs.

    Example
    -------
    >>> import fastbp as fb
    >>> import numpy as np
    >>> float(fb.logsumexp(fb.tensor(np.array([1000.0, 1000.0]))))
    1000.6931471805599
    """
    return apply(reduce.LOGSUMEXP, (as_tensor(x),), axis=axis, keepdims=keepdims)
