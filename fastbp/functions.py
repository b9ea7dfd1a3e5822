"""The ``fb.*`` functions: NumPy-style spellings of the Tensor ops.

Each accepts Tensors, ndarrays or Python numbers and returns a Tensor; the
differentiation itself lives in the op table (:mod:`fastbp.ops`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .core.args import axis_args
from .core.engine import apply
from .core.tensor import Axis, Tensor, as_tensor
from .ops import elementwise as ew
from .ops import linalg, linalg_nd, reduce
from .ops import shape as shape_ops

__all__ = [
    "add", "sub", "mul", "div", "pow", "neg", "matmul",
    "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs", "clip",
    "sum", "mean", "max", "min", "maximum", "minimum", "where",
    "reshape", "transpose", "concatenate", "cat", "stack",
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
    """Matrix product with ``torch.matmul``'s rules for every rank.

    2-D @ 2-D is the op ``matmul`` (the fast kernel path); 1-D operands act as a row
    (left) or a column (right) that is dropped from the result; N-D operands are
    stacks of matrices whose batch dimensions broadcast (op ``matmul_nd``).

    Raises
    ------
    ValueError
        If an operand is 0-D or the inner dimensions differ (the message names both
        shapes).

    Example
    -------
    >>> import fastbp as fb
    >>> fb.matmul(fb.ones(2, 3), fb.ones(3, 4)).shape
    (2, 4)
    >>> fb.matmul(fb.ones(5, 1, 2, 3), fb.ones(4, 3, 6)).shape
    (5, 4, 2, 6)
    >>> fb.matmul(fb.ones(3), fb.ones(3)).shape
    ()
    """
    a, b = _binary(a, b)
    if a.ndim == 2 and b.ndim == 2:
        return apply(linalg.MATMUL, (a, b))
    return a.matmul(b)


def exp(x: Any) -> Tensor:
    """Elementwise ``e**x``."""
    return apply(ew.EXP, (as_tensor(x),))


def log(x: Any) -> Tensor:
    """Elementwise natural logarithm."""
    return apply(ew.LOG, (as_tensor(x),))


def sqrt(x: Any) -> Tensor:
    """Elementwise square root."""
    return apply(ew.SQRT, (as_tensor(x),))


def tanh(x: Any) -> Tensor:
    """Elementwise hyperbolic tangent."""
    return apply(ew.TANH, (as_tensor(x),))


def sigmoid(x: Any) -> Tensor:
    """Elementwise logistic function; its gradient is ``σ(1 − σ)``.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.sigmoid(fb.tensor([0.0]))
    tensor([0.5])
    """
    return apply(ew.SIGMOID, (as_tensor(x),))


def relu(x: Any) -> Tensor:
    """Elementwise ``max(x, 0)``; the gradient at 0 is 0."""
    return apply(ew.RELU, (as_tensor(x),))


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


def sum(
    x: Any, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim=None
) -> Tensor:  # noqa: A001
    """Sum over ``axis`` (an int, a tuple, negative allowed, or None for all).

    Example
    -------
    >>> import fastbp as fb
    >>> fb.sum(fb.ones(2, 3), axis=-1)
    tensor([3., 3.])
    """
    return as_tensor(x).sum(axis, keepdims, dim=dim, keepdim=keepdim)


def mean(
    x: Any, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim=None
) -> Tensor:
    """Mean over ``axis``."""
    return as_tensor(x).mean(axis, keepdims, dim=dim, keepdim=keepdim)


def max(
    x: Any, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim=None
) -> Tensor:  # noqa: A001
    """Maximum over ``axis``; tied elements share the gradient equally."""
    return as_tensor(x).max(axis, keepdims, dim=dim, keepdim=keepdim)


def min(
    x: Any, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim=None
) -> Tensor:  # noqa: A001
    """Minimum over ``axis``; tied elements share the gradient equally."""
    return as_tensor(x).min(axis, keepdims, dim=dim, keepdim=keepdim)


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


def concatenate(
    tensors: Sequence[Any], axis: int | None = None, *, dim: int | None = None
) -> Tensor:
    """Join tensors along an existing axis (``dim`` is PyTorch's name for ``axis``).

    Example
    -------
    >>> import fastbp as fb
    >>> fb.concatenate([fb.ones(2, 3), fb.zeros(1, 3)]).shape
    (3, 3)
    """
    if len(tensors) == 0:
        raise ValueError("concatenate: need at least one tensor")
    axis = axis_args("concatenate", axis, None, dim)[0]
    axis = 0 if axis is None else axis
    return apply(shape_ops.CONCATENATE, tuple(as_tensor(t) for t in tensors), axis=axis)


def cat(tensors: Sequence[Any], dim: int = 0) -> Tensor:
    """PyTorch's name for :func:`concatenate`: join tensors along the existing axis ``dim``.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.cat([fb.ones(2, 3), fb.zeros(2, 1)], dim=1).shape
    (2, 4)
    """
    return concatenate(tensors, dim)


def stack(tensors: Sequence[Any], axis: int | None = None, *, dim: int | None = None) -> Tensor:
    """Join same-shaped tensors along a new axis (``dim`` is PyTorch's name for ``axis``).

    Example
    -------
    >>> import fastbp as fb
    >>> fb.stack([fb.ones(3), fb.zeros(3)], axis=1).shape
    (3, 2)
    """
    if len(tensors) == 0:
        raise ValueError("stack: need at least one tensor")
    axis = axis_args("stack", axis, None, dim)[0]
    axis = 0 if axis is None else axis
    return apply(shape_ops.STACK, tuple(as_tensor(t) for t in tensors), axis=axis)


def softmax(x: Any, axis: int | None = None, *, dim: int | None = None) -> Tensor:
    """Softmax along ``axis`` (or PyTorch's ``dim``), computed stably (shifted by the maximum).

    Example
    -------
    >>> import fastbp as fb
    >>> fb.softmax(fb.tensor([1000.0, 1000.0]))
    tensor([0.5, 0.5])
    """
    axis = axis_args("softmax", axis, None, dim)[0]
    axis = -1 if axis is None else axis
    return apply(reduce.SOFTMAX, (as_tensor(x),), axis=axis)


def log_softmax(x: Any, axis: int | None = None, *, dim: int | None = None) -> Tensor:
    """``log(softmax(x))`` along ``axis`` (or ``dim``), computed without overflow or log(0).

    Example
    -------
    >>> import fastbp as fb
    >>> fb.log_softmax(fb.tensor([0.0, 1000.0]))
    tensor([-1000.,     0.])
    """
    axis = axis_args("log_softmax", axis, None, dim)[0]
    axis = -1 if axis is None else axis
    return apply(reduce.LOG_SOFTMAX, (as_tensor(x),), axis=axis)


def logsumexp(
    x: Any,
    axis: Axis = None,
    keepdims: bool = False,
    *,
    dim: Axis = None,
    keepdim: bool | None = None,
) -> Tensor:
    """``log(sum(exp(x)))`` over ``axis`` (or ``dim``), stable for large inputs.

    Example
    -------
    >>> import fastbp as fb
    >>> import numpy as np
    >>> float(fb.logsumexp(fb.tensor(np.array([1000.0, 1000.0]))))
    1000.6931471805599
    """
    axis, keepdims = axis_args("logsumexp", axis, keepdims, dim, keepdim)
    return apply(reduce.LOGSUMEXP, (as_tensor(x),), axis=axis, keepdims=keepdims)


# ------------------------------------------------ issue 14: matmul_nd, einsum, more math


def einsum(subscripts: str, *operands: Any) -> Tensor:
    """Einstein summation, as ``torch.einsum`` / ``np.einsum`` (with ``...``).

    The gradient of each operand is the einsum of ``dy`` with the other operands;
    the contractions run in NumPy with ``optimize=True`` (BLAS where it applies).

    Parameters
    ----------
    subscripts : str
        E.g. ``"bij,bjk->bik"``; implicit output (no ``->``) as in NumPy.
    *operands : Tensor or array_like
        One per comma-separated term (a single list of them is accepted too).

    Returns
    -------
    Tensor

    Raises
    ------
    ValueError
        If the subscripts do not fit the operands' shapes.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.einsum("ij,jk->ik", fb.ones(2, 3), fb.ones(3, 4)).shape
    (2, 4)
    >>> fb.einsum("ii", fb.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor(5.)
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    return apply(linalg_nd.EINSUM, tuple(as_tensor(t) for t in operands), subscripts=subscripts)


def _unary_function(name: str, example: str = ""):
    """``fb.<name>(x)``: the Tensor method of that name applied to ``as_tensor(x)``."""

    def function(x: Any) -> Tensor:
        return getattr(as_tensor(x), name)()

    function.__name__ = function.__qualname__ = name
    method = getattr(Tensor, name)
    extra = f"\n\n    Example\n    -------\n{example}" if example else ""
    function.__doc__ = method.__doc__ + extra
    return function


sin = _unary_function(
    "sin", "    >>> import fastbp as fb\n    >>> fb.sin(fb.tensor([0.0]))\n    tensor([0.])\n"
)
cos, tan = _unary_function("cos"), _unary_function("tan")
asin, acos, atan = _unary_function("asin"), _unary_function("acos"), _unary_function("atan")
arcsin, arccos, arctan = asin, acos, atan
sinh, cosh = _unary_function("sinh"), _unary_function("cosh")
asinh, acosh, atanh = _unary_function("asinh"), _unary_function("acosh"), _unary_function("atanh")
arcsinh, arccosh, arctanh = asinh, acosh, atanh
log2, log10, exp2 = _unary_function("log2"), _unary_function("log10"), _unary_function("exp2")
log1p, expm1 = _unary_function("log1p"), _unary_function("expm1")
rsqrt, square = _unary_function("rsqrt"), _unary_function("square")
sign = _unary_function(
    "sign",
    "    >>> import fastbp as fb\n    >>> fb.sign(fb.tensor([-2.0, 0.0, 3.0]))\n"
    "    tensor([-1.,  0.,  1.])\n",
)
floor, ceil, trunc = _unary_function("floor"), _unary_function("ceil"), _unary_function("trunc")
fix = trunc
isnan, isinf = _unary_function("isnan"), _unary_function("isinf")
isfinite, logical_not = _unary_function("isfinite"), _unary_function("logical_not")


def round(x: Any, decimals: int = 0) -> Tensor:  # noqa: A001
    """Round half to even; see :meth:`Tensor.round`."""
    return as_tensor(x).round(decimals)


def clamp(x: Any, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    """Limit ``x`` to ``[min, max]``, bounds numbers or tensors; see :meth:`Tensor.clamp`.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.clamp(fb.tensor([-2.0, 3.0]), min=fb.tensor([-1.0, 0.0]))
    tensor([-1.,  3.])
    """
    return as_tensor(x).clamp(min, max)


def lerp(start: Any, end: Any, weight: Any) -> Tensor:
    """``start + weight * (end - start)``; see :meth:`Tensor.lerp`."""
    a, b = _binary(start, end)
    return a.lerp(b, weight)


def _binary_method(name: str):
    def function(a: Any, b: Any) -> Tensor:
        a, b = _binary(a, b)
        return getattr(a, name)(b)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = getattr(Tensor, name).__doc__
    return function


logaddexp, copysign = _binary_method("logaddexp"), _binary_method("copysign")
floor_divide, remainder = _binary_method("floor_divide"), _binary_method("remainder")
fmod = _binary_method("fmod")
logical_and, logical_or = _binary_method("logical_and"), _binary_method("logical_or")
logical_xor = _binary_method("logical_xor")


def isclose(
    a: Any, b: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False
) -> Tensor:
    """Elementwise closeness test; see :meth:`Tensor.isclose`."""
    a, b = _binary(a, b)
    return a.isclose(b, rtol, atol, equal_nan)


def bitwise_and(a: Any, b: Any) -> Tensor:
    """Elementwise ``a & b`` on bool or integer tensors."""
    a, b = _binary(a, b)
    return a & b


def bitwise_or(a: Any, b: Any) -> Tensor:
    """Elementwise ``a | b`` on bool or integer tensors."""
    a, b = _binary(a, b)
    return a | b


def bitwise_xor(a: Any, b: Any) -> Tensor:
    """Elementwise ``a ^ b`` on bool or integer tensors."""
    a, b = _binary(a, b)
    return a ^ b


def bitwise_not(x: Any) -> Tensor:
    """Elementwise ``~x`` on bool or integer tensors."""
    return ~as_tensor(x)


__all__ += [  # issue 14, math
    "einsum",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "arcsin",
    "arccos",
    "arctan",
    "sinh",
    "cosh",
    "asinh",
    "acosh",
    "atanh",
    "arcsinh",
    "arccosh",
    "arctanh",
    "log2",
    "log10",
    "exp2",
    "log1p",
    "expm1",
    "rsqrt",
    "square",
    "sign",
    "floor",
    "ceil",
    "trunc",
    "fix",
    "round",
    "clamp",
    "lerp",
    "logaddexp",
    "copysign",
    "floor_divide",
    "remainder",
    "fmod",
    "isnan",
    "isinf",
    "isfinite",
    "isclose",
    "logical_and",
    "logical_or",
    "logical_xor",
    "logical_not",
    "bitwise_and",
    "bitwise_or",
    "bitwise_xor",
    "bitwise_not",
]


# ------------------------------------------------------ issue 14: more reductions


def var(x: Any, *args: Any, **kwargs: Any) -> Tensor:
    """Variance; the arguments of :meth:`Tensor.var` (``dim``, ``correction``, ...).

    Example
    -------
    >>> import fastbp as fb
    >>> fb.var(fb.tensor([[1.0, 3.0]]), dim=1, correction=0)
    tensor([1.])
    """
    return as_tensor(x).var(*args, **kwargs)


def std(x: Any, *args: Any, **kwargs: Any) -> Tensor:
    """Standard deviation; the arguments of :meth:`Tensor.std`."""
    return as_tensor(x).std(*args, **kwargs)


def _method_function(name: str):
    """``fb.<name>(x, ...)``: the Tensor method of that name, with its arguments."""

    def function(x: Any, *args: Any, **kwargs: Any):
        return getattr(as_tensor(x), name)(*args, **kwargs)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = getattr(Tensor, name).__doc__
    return function


prod, any, all = _method_function("prod"), _method_function("any"), _method_function("all")  # noqa: A001
argmax, argmin = _method_function("argmax"), _method_function("argmin")
amax, amin = _method_function("amax"), _method_function("amin")
cumsum, cumprod = _method_function("cumsum"), _method_function("cumprod")
logcumsumexp = _method_function("logcumsumexp")
cummax, cummin = _method_function("cummax"), _method_function("cummin")
sort, argsort = _method_function("sort"), _method_function("argsort")
topk = _method_function("topk")
median, norm = _method_function("median"), _method_function("norm")

__all__ += [  # issue 14, reductions
    "var", "std", "prod", "any", "all", "argmax", "argmin", "amax", "amin", "cumsum", "cumprod",
    "logcumsumexp", "cummax", "cummin", "sort", "argsort", "topk", "median", "norm",
]  # fmt: skip


# ---------------------------------------------- issue 14: shape and indexing functions
# ``fb.<name>(x, ...)`` is ``x.<name>(...)``: same arguments and docstring as the method.
flatten = _method_function("flatten")
unflatten = _method_function("unflatten")
squeeze = _method_function("squeeze")
unsqueeze = _method_function("unsqueeze")
broadcast_to = _method_function("broadcast_to")
movedim = _method_function("movedim")
moveaxis = _method_function("moveaxis")
permute = _method_function("permute")
swapaxes = _method_function("swapaxes")
tile = _method_function("tile")
repeat_interleave = _method_function("repeat_interleave")
flip = _method_function("flip")
roll = _method_function("roll")
tril = _method_function("tril")
triu = _method_function("triu")
diag = _method_function("diag")
diagonal = _method_function("diagonal")
split = _method_function("split")
chunk = _method_function("chunk")
unbind = _method_function("unbind")
gather = _method_function("gather")
scatter = _method_function("scatter")
scatter_add = _method_function("scatter_add")
index_select = _method_function("index_select")
masked_fill = _method_function("masked_fill")
masked_select = _method_function("masked_select")
nonzero = _method_function("nonzero")


__all__ += [  # issue 14, shape and indexing
    "flatten",
    "unflatten",
    "squeeze",
    "unsqueeze",
    "broadcast_to",
    "movedim",
    "moveaxis",
    "permute",
    "swapaxes",
    "tile",
    "repeat_interleave",
    "flip",
    "roll",
    "tril",
    "triu",
    "diag",
    "diagonal",
    "split",
    "chunk",
    "unbind",
    "gather",
    "scatter",
    "scatter_add",
    "index_select",
    "masked_fill",
    "masked_select",
    "nonzero",
]
