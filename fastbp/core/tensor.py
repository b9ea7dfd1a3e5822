"""``Tensor``: an ndarray that remembers how it was computed, and its constructors.

Every operator and method routes to one entry of the op registry, by name, through
:func:`fastbp.core.engine.apply`. The ops register themselves (:mod:`fastbp.ops`, a
layer above this one), so this module imports none of them; the ``fb.*`` functions
in :mod:`fastbp.functions` call these methods, so each op is wired up exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import engine, hooks, inplace
from .args import axis_args
from .dtypes import result_dtype
from .engine import apply
from .observer import record_read
from .registry import OPS
from .state import state

__all__ = [
    "Tensor",
    "tensor",
    "from_numpy",
    "as_tensor",
    "zeros",
    "ones",
    "zeros_like",
    "ones_like",
    "randn",
    "manual_seed",
]

Axis = int | Sequence[int] | None


def _check_numeric(data: np.ndarray, where: str) -> None:
    if data.dtype.kind not in "biufc":
        raise TypeError(
            f"{where}: fastbp tensors hold numbers, but the data has dtype {data.dtype} "
            f"(shape {data.shape}); convert it with np.asarray(data, dtype=np.float32)"
        )


def _check_grad_dtype(data: np.ndarray, where: str) -> None:
    if data.dtype.kind not in "fc":
        raise TypeError(
            f"{where}: only floating-point tensors can require gradients, but the data has "
            f"dtype {data.dtype}; pass dtype=np.float32 (or float64)"
        )


def _unary_method(name: str, doc: str):
    """A Tensor method that applies the one-input op ``name`` (looked up when called)."""

    def method(self) -> Tensor:
        return apply(OPS[name], (self,))

    method.__name__ = method.__qualname__ = name
    method.__doc__ = doc
    return method


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    # 2-D @ 2-D stays the op 'matmul' (the kernel path the compiler knows by name);
    # every other rank goes through the general 'matmul_nd'.
    if a.data.ndim == 2 and b.data.ndim == 2:
        return apply(OPS["matmul"], (a, b))
    return apply(OPS["matmul_nd"], (a, b))


class ValuesIndices(tuple):
    """``(values, indices)``, as torch's ``return_types``: unpack it or use the names."""

    __slots__ = ()

    def __new__(cls, values: Tensor, indices: Tensor):
        return super().__new__(cls, (values, indices))

    @property
    def values(self) -> Tensor:
        """The values (differentiable)."""
        return self[0]

    @property
    def indices(self) -> Tensor:
        """Their int64 indices along the dimension."""
        return self[1]


def _shape_tuple(shape) -> tuple[int, ...]:
    """``f(2, 3)`` and ``f((2, 3))`` both mean the shape (2, 3)."""
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        return tuple(int(n) for n in shape[0])
    return tuple(int(n) for n in shape)


def _scan_axis(where: str, t: Tensor, dim, axis) -> int:
    if dim is None:
        dim = axis
    if dim is None:
        if t.ndim > 1:
            raise TypeError(f"{where}: give dim for a {t.ndim}-D tensor (shape {t.shape})")
        dim = 0
    return dim


class Tensor:
    """A NumPy array that records the ops applied to it, for reverse-mode autodiff.

    Create tensors with :func:`tensor`, :func:`from_numpy`, :func:`zeros`,
    :func:`ones` or :func:`randn` rather than calling the class.

    Attributes
    ----------
    data : ndarray
        The values.
    requires_grad : bool
        Whether ops on this tensor are recorded for backward.

    Example
    -------
    >>> import fastbp as fb
    >>> x = fb.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    array([2., 4., 6.], dtype=float32)
    """

    # ``_version`` counts in-place updates by fastbp itself (optimizer steps), so that
    # backward can refuse a graph whose saved parameters have changed since forward.
    __slots__ = ("data", "grad", "requires_grad", "_node", "_version", "__weakref__")
    #: The class of the tensors ops return, also when their input is of a subclass.
    result_class: type
    # Make ``ndarray <op> Tensor`` call the Tensor's reflected method instead of
    # letting NumPy treat the Tensor as an object scalar.
    __array_ufunc__ = None

    def __init__(self, data: Any, requires_grad: bool = False):
        data = np.asarray(data)
        _check_numeric(data, "Tensor")
        if requires_grad:
            _check_grad_dtype(data, "Tensor")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._node = None
        self._version = 0

    # ------------------------------------------------------------------- properties
    # ``grad``: the accumulated gradient (same shape and dtype as ``data``), or None.
    # backward() sets it on leaves that require a gradient; assign None to reset it.

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of ``data``."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """The dtype of ``data``."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return self.data.ndim

    @property
    def size(self) -> int:
        """The number of elements."""
        return self.data.size

    @property
    def T(self) -> Tensor:
        """The transpose (axes reversed)."""
        return self.transpose()

    @property
    def is_leaf(self) -> bool:
        """True if no recorded op produced this tensor (it can receive ``.grad``)."""
        return self._node is None

    @property
    def grad_fn(self):
        """The tape record that produced this tensor, or None for a leaf."""
        return self._node

    # ------------------------------------------------------------------ conversions
    def numpy(self) -> np.ndarray:
        """Return ``data`` (shared memory, no copy).

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1, 2]).numpy()
        array([1, 2])
        """
        if state.observer is not None:
            record_read(self, "numpy()")
        return self.data

    def item(self) -> int | float | bool:
        """Return the single element as a Python number.

        Raises
        ------
        ValueError
            If the tensor has more than one element.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([2.5]).item()
        2.5
        """
        if self.data.size != 1:
            raise ValueError(
                f"item() needs a tensor with one element, this one has shape {self.shape}"
            )
        if state.observer is not None:
            record_read(self, "item()")
        return self.data.item()

    def detach(self) -> Tensor:
        """Return a tensor sharing ``data`` but cut off from the graph.

        Example
        -------
        >>> import fastbp as fb
        >>> x = fb.tensor([1.0], requires_grad=True)
        >>> (x * 2).detach().requires_grad
        False
        """
        return Tensor(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place (checking the dtype) and return ``self``.

        Raises
        ------
        TypeError
            If the tensor is not floating point.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.zeros(2).requires_grad_().requires_grad
        True
        """
        if requires_grad:
            _check_grad_dtype(self.data, "requires_grad_")
        self.requires_grad = bool(requires_grad)
        return self

    def __array__(self, dtype=None, copy=None):
        if state.observer is not None:
            record_read(self, "np.asarray()")
        if dtype is None:
            return self.data if not copy else self.data.copy()
        return self.data.astype(dtype, copy=bool(copy))

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self.data.dtype not in (np.float32, np.int64, np.bool_):
            extra = f", dtype={self.data.dtype}" + extra
        return f"tensor({body}{extra})"

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        if state.observer is not None:
            record_read(self, "bool()")
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    __hash__ = object.__hash__  # defining __eq__ would otherwise remove it

    # --------------------------------------------------------------------- autograd
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into ``.grad`` of the leaves.

        Parameters
        ----------
        grad : array_like, optional
            The upstream gradient, shaped like this tensor; may be omitted for a
            tensor with one element (the usual scalar loss).
        retain_graph : bool, default False
            Keep the saved arrays so that backward can run through the graph again.

        Raises
        ------
        RuntimeError
            If this tensor does not require grad, ``grad`` is missing for a
            non-scalar tensor, or the graph was freed by an earlier backward.

        Example
        -------
        >>> import fastbp as fb
        >>> x, y, z = (fb.tensor(v, requires_grad=True) for v in (-2.0, 5.0, -4.0))
        >>> ((x + y) * z).backward()
        >>> float(x.grad), float(y.grad), float(z.grad)
        (-4.0, -4.0, 3.0)
        """
        engine.backward(self, grad, retain_graph)

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` after each backward has finished accumulating ``self.grad``.

        See :func:`fastbp.core.hooks.register_post_accumulate_grad_hook`.

        Example
        -------
        >>> import fastbp as fb
        >>> w = fb.ones(2, requires_grad=True)
        >>> h = w.register_post_accumulate_grad_hook(lambda t: print(t.grad))
        >>> (2 * w).sum().backward()
        [2. 2.]
        >>> h.remove()
        """
        return hooks.register_post_accumulate_grad_hook(self, hook)

    def zero_grad(self) -> None:
        """Reset ``.grad`` to None."""
        self.grad = None

    # ------------------------------------------------------------------ arithmetic
    def _operand(self, other: Any) -> Tensor:
        """Wrap ``other`` as a constant tensor, keeping Python scalars 'weak'.

        ``float32_tensor * 2.0`` stays float32 and ``int_tensor * 2.5`` is float32
        (PyTorch's rule for Python scalars, :func:`fastbp.core.dtypes.result_dtype`).
        """
        kind = type(other)  # exact-type tests first: they are the cheapest
        if kind is not float and kind is not int and kind is not bool:
            if isinstance(other, Tensor):
                return other
            if not isinstance(other, (int, float)):  # (np.float64 is a float)
                return as_tensor(other)
        # Training loops multiply by the same few constants every step: reuse them.
        # NOTE: -0.0 == 0.0 and hashes alike, so a zero is keyed on its text: keying on
        # the value would hand ``x * -0.0`` the cached +0 constant.
        key = (kind, other if other else repr(other), self.data.dtype)
        constant = _scalar_cache.get(key)
        if constant is None:
            if len(_scalar_cache) >= 4096:
                _scalar_cache.clear()
            # PyTorch's promotion (fastbp.core.dtypes): int tensor * 2.5 is float32.
            dtype = result_dtype(self.data, other)
            array = np.asarray(other, dtype=dtype)
            array.flags.writeable = False  # shared between graphs: never to be written
            constant = _scalar_cache[key] = _constant(array)
        return constant

    def __add__(self, other):
        return apply(OPS["add"], (self, self._operand(other)))

    def __radd__(self, other):
        return apply(OPS["add"], (self._operand(other), self))

    def __sub__(self, other):
        return apply(OPS["sub"], (self, self._operand(other)))

    def __rsub__(self, other):
        return apply(OPS["sub"], (self._operand(other), self))

    def __mul__(self, other):
        return apply(OPS["mul"], (self, self._operand(other)))

    def __rmul__(self, other):
        return apply(OPS["mul"], (self._operand(other), self))

    def __truediv__(self, other):
        return apply(OPS["div"], (self, self._operand(other)))

    def __rtruediv__(self, other):
        return apply(OPS["div"], (self._operand(other), self))

    def __pow__(self, other):
        return apply(OPS["pow"], (self, self._operand(other)))

    def __rpow__(self, other):
        return apply(OPS["pow"], (self._operand(other), self))

    # -------------------------------------------------------------------- in place
    # PyTorch's rules (see fastbp.core.inplace): the array is written, _version bumped.
    def __iadd__(self, other):
        return inplace.update(self, "add", other, "__iadd__")

    def __isub__(self, other):
        return inplace.update(self, "sub", other, "__isub__")

    def __imul__(self, other):
        return inplace.update(self, "mul", other, "__imul__")

    def __itruediv__(self, other):
        return inplace.update(self, "div", other, "__itruediv__")

    def add_(self, other: Any, *, alpha: float = 1) -> Tensor:
        """In-place ``self += alpha * other``; returns ``self``.

        Raises
        ------
        RuntimeError
            On a leaf that requires grad while grad mode is on (use ``fb.no_grad()``).

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1.0, 2.0]).add_(1.0, alpha=2)
        tensor([3., 4.])
        """
        if alpha != 1:
            other = other * alpha if isinstance(other, Tensor) else np.multiply(other, alpha)
        return inplace.update(self, "add", other, "add_")

    def sub_(self, other: Any, *, alpha: float = 1) -> Tensor:
        """In-place ``self -= alpha * other``; returns ``self``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1.0, 2.0]).sub_(1.0)
        tensor([0., 1.])
        """
        if alpha != 1:
            other = other * alpha if isinstance(other, Tensor) else np.multiply(other, alpha)
        return inplace.update(self, "sub", other, "sub_")

    def mul_(self, other: Any) -> Tensor:
        """In-place ``self *= other``; returns ``self``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1.0, 2.0]).mul_(3.0)
        tensor([3., 6.])
        """
        return inplace.update(self, "mul", other, "mul_")

    def div_(self, other: Any) -> Tensor:
        """In-place ``self /= other``; returns ``self``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1.0, 2.0]).div_(2.0)
        tensor([0.5, 1. ])
        """
        return inplace.update(self, "div", other, "div_")

    def zero_(self) -> Tensor:
        """Fill with zeros in place; returns ``self``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.ones(2).zero_()
        tensor([0., 0.])
        """
        return inplace.fill(self, 0, "zero_")

    def fill_(self, value: float) -> Tensor:
        """Fill with ``value`` in place; returns ``self``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.zeros(2).fill_(7.0)
        tensor([7., 7.])
        """
        return inplace.fill(self, value, "fill_")

    def copy_(self, src: Any) -> Tensor:
        """Copy ``src``'s values (broadcast to this shape) in place; returns ``self``.

        Gradients flow to ``src`` if it requires grad, as in PyTorch.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.zeros(2, 2).copy_(fb.tensor([1.0, 2.0]))
        tensor([[1., 2.],
                [1., 2.]])
        """
        return inplace.fill(self, src, "copy_")

    def clamp_(self, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
        """Limit values to ``[min, max]`` in place; returns ``self``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([-1.0, 3.0]).clamp_(0.0, 1.0)
        tensor([0., 1.])
        """
        return inplace.clamp(self, min, max, "clamp_")

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator=None) -> Tensor:
        """Fill with samples of N(mean, std²) in place; returns ``self``.

        Parameters
        ----------
        mean : float, default 0.0
            The mean.
        std : float, default 1.0
            The standard deviation.
        generator : numpy.random.Generator, optional
            Defaults to the one seeded by :func:`manual_seed`.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.zeros(1000).normal_(5.0, 0.1).data.mean().round()
        np.float32(5.0)
        """
        rng = generator if generator is not None else default_generator()
        values = rng.normal(mean, std, self.shape).astype(self.data.dtype, copy=False)
        return inplace.fill(self, values, "normal_")

    def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator=None) -> Tensor:
        """Fill with samples of U(a, b) in place; returns ``self``.

        Parameters
        ----------
        a : float, default 0.0
            The lower bound.
        b : float, default 1.0
            The upper bound.
        generator : numpy.random.Generator, optional
            Defaults to the one seeded by :func:`manual_seed`.

        Example
        -------
        >>> import fastbp as fb
        >>> bool((fb.zeros(100).uniform_(2.0, 3.0).data >= 2.0).all())
        True
        """
        rng = generator if generator is not None else default_generator()
        values = rng.uniform(a, b, self.shape).astype(self.data.dtype, copy=False)
        return inplace.fill(self, values, "uniform_")

    def __neg__(self):
        return apply(OPS["neg"], (self,))

    def __pos__(self):
        return self

    def __abs__(self):
        return self.abs()

    def __matmul__(self, other):
        return _matmul(self, self._operand(other))

    def __rmatmul__(self, other):
        return _matmul(self._operand(other), self)

    # Comparisons give bool tensors that are never differentiated.
    def _compare(self, other, ufunc):
        # Through apply (which never records an op without a vjp) so that fb.trace
        # replays the comparison; a Python scalar stays a parameter, keeping NumPy's
        # weak-scalar comparison rules.
        if isinstance(other, Tensor | np.ndarray):
            return apply(OPS["compare"], (self, as_tensor(other)), ufunc=ufunc)
        return apply(OPS["compare"], (self,), ufunc=ufunc, scalar=other)

    def __lt__(self, other):
        return self._compare(other, np.less)

    def __le__(self, other):
        return self._compare(other, np.less_equal)

    def __gt__(self, other):
        return self._compare(other, np.greater)

    def __ge__(self, other):
        return self._compare(other, np.greater_equal)

    def __eq__(self, other):
        return self._compare(other, np.equal)

    def __ne__(self, other):
        return self._compare(other, np.not_equal)

    # ------------------------------------------------------------------ unary math
    def exp(self) -> Tensor:
        """Elementwise ``e**x``."""
        return apply(OPS["exp"], (self,))

    def log(self) -> Tensor:
        """Elementwise natural logarithm."""
        return apply(OPS["log"], (self,))

    def sqrt(self) -> Tensor:
        """Elementwise square root."""
        return apply(OPS["sqrt"], (self,))

    def tanh(self) -> Tensor:
        """Elementwise hyperbolic tangent."""
        return apply(OPS["tanh"], (self,))

    def sigmoid(self) -> Tensor:
        """Elementwise logistic function ``1 / (1 + e**-x)``."""
        return apply(OPS["sigmoid"], (self,))

    def relu(self) -> Tensor:
        """Elementwise ``max(x, 0)``."""
        return apply(OPS["relu"], (self,))

    def abs(self) -> Tensor:
        """Elementwise absolute value."""
        return apply(OPS["abs"], (self,))

    def clip(self, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
        """Limit values to ``[min, max]`` (either bound may be None)."""
        if min is None and max is None:
            raise ValueError("clip: give at least one of min and max")
        return apply(OPS["clip"], (self,), low=min, high=max)

    # ------------------------------------------------------------------ reductions
    def sum(
        self, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim=None
    ) -> Tensor:
        """Sum over ``axis`` (None: all axes).

        ``dim``/``keepdim`` are accepted as aliases of ``axis``/``keepdims``.
        """
        axis, keepdims = axis_args("sum", axis, keepdims, dim, keepdim)
        return apply(OPS["sum"], (self,), axis=axis, keepdims=keepdims)

    def mean(
        self, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim=None
    ) -> Tensor:
        """Mean over ``axis`` (None: all axes).

        ``dim``/``keepdim`` are accepted as aliases of ``axis``/``keepdims``.
        """
        axis, keepdims = axis_args("mean", axis, keepdims, dim, keepdim)
        return apply(OPS["mean"], (self,), axis=axis, keepdims=keepdims)

    def max(
        self, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim=None
    ) -> Tensor:
        """Maximum over ``axis``, with PyTorch's gradient at ties and NaN.

        NaN wins (the result is NaN and dy goes to the NaN elements). Ties share dy evenly
        over all axes or a tuple of axes (``torch.amax``); over one int ``dim`` it all goes
        to the first, the index ``torch.max(x, dim)`` returns.

        ``dim``/``keepdim`` are accepted as aliases of ``axis``/``keepdims``.
        """
        axis, keepdims = axis_args("max", axis, keepdims, dim, keepdim)
        return apply(OPS["max"], (self,), axis=axis, keepdims=keepdims)

    def min(
        self, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim=None
    ) -> Tensor:
        """Minimum over ``axis``, with PyTorch's gradient at ties and NaN.

        NaN wins (the result is NaN and dy goes to the NaN elements). Ties share dy evenly
        over all axes or a tuple of axes (``torch.amax``); over one int ``dim`` it all goes
        to the first, the index ``torch.max(x, dim)`` returns.

        ``dim``/``keepdim`` are accepted as aliases of ``axis``/``keepdims``.
        """
        axis, keepdims = axis_args("min", axis, keepdims, dim, keepdim)
        return apply(OPS["min"], (self,), axis=axis, keepdims=keepdims)

    # ----------------------------------------------------------------------- shape
    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        """Return the same elements in a new shape (one dimension may be -1)."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = tuple(shape[0])
        return apply(OPS["reshape"], (self,), shape=shape)

    def transpose(self, *axes: int) -> Tensor:
        """Permute the axes (reverse them when none are given)."""
        if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
            axes = tuple(axes[0])
        return apply(OPS["transpose"], (self,), axes=axes or None)

    def __getitem__(self, key) -> Tensor:
        return apply(OPS["getitem"], (self,), key=_index_key(key))

    # ------------------------------------------- issue 14: more math (fastbp.ops.elementwise_more)
    sin = _unary_method("sin", "Elementwise sine.")
    cos = _unary_method("cos", "Elementwise cosine.")
    tan = _unary_method("tan", "Elementwise tangent.")
    asin = _unary_method("asin", "Elementwise arcsine (NaN outside [-1, 1]).")
    acos = _unary_method("acos", "Elementwise arccosine (NaN outside [-1, 1]).")
    atan = _unary_method("atan", "Elementwise arctangent.")
    sinh = _unary_method("sinh", "Elementwise hyperbolic sine.")
    cosh = _unary_method("cosh", "Elementwise hyperbolic cosine.")
    asinh = _unary_method("asinh", "Elementwise inverse hyperbolic sine.")
    acosh = _unary_method("acosh", "Elementwise inverse hyperbolic cosine (NaN below 1).")
    atanh = _unary_method("atanh", "Elementwise inverse hyperbolic tangent.")
    arcsin, arccos, arctan = asin, acos, atan
    arcsinh, arccosh, arctanh = asinh, acosh, atanh
    log2 = _unary_method("log2", "Elementwise base-2 logarithm.")
    log10 = _unary_method("log10", "Elementwise base-10 logarithm.")
    exp2 = _unary_method("exp2", "Elementwise ``2**x``.")
    log1p = _unary_method("log1p", "Elementwise ``log(1 + x)``, accurate near 0.")
    expm1 = _unary_method("expm1", "Elementwise ``exp(x) - 1``, accurate near 0.")
    rsqrt = _unary_method("rsqrt", "Elementwise ``1 / sqrt(x)``.")
    square = _unary_method("square", "Elementwise ``x * x``.")
    sign = _unary_method("sign", "Elementwise sign (-1, 0 or 1); gradient 0.")
    floor = _unary_method("floor", "Round down; gradient 0; integers stay unchanged.")
    ceil = _unary_method("ceil", "Round up; gradient 0; integers stay unchanged.")
    trunc = _unary_method("trunc", "Round towards 0; gradient 0; integers stay unchanged.")
    fix = trunc

    def round(self, decimals: int = 0) -> Tensor:
        """Round half to even (to ``decimals`` places); the gradient is 0, as in torch.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([0.5, 1.5, 2.25]).round()
        tensor([0., 2., 2.])
        """
        if decimals == 0:
            return apply(OPS["round"], (self,))
        return apply(OPS["round_decimals"], (self,), decimals=decimals)

    def clamp(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
        """Limit values to ``[min, max]``; the bounds may be numbers or tensors.

        As in torch: the gradient passes to ``self`` where ``min <= x <= max`` (bounds
        included), to a tensor bound where it took effect, and where ``min > max`` the
        result is ``max``.

        Raises
        ------
        ValueError
            If neither bound is given.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([-2.0, 0.5, 3.0]).clamp(-1, fb.tensor([1.0, 1.0, 2.0]))
        tensor([-1. ,  0.5,  2. ])
        """
        if min is None and max is None:
            raise ValueError("clamp: give at least one of min and max")
        bounds = tuple(self._operand(b) for b in (min, max) if b is not None)
        return apply(
            OPS["clamp"], (self, *bounds), has_min=min is not None, has_max=max is not None
        )

    def clamp_min(self, min: Any) -> Tensor:  # noqa: A002
        """``clamp(min=min)``."""
        return self.clamp(min, None)

    def clamp_max(self, max: Any) -> Tensor:  # noqa: A002
        """``clamp(max=max)``."""
        return self.clamp(None, max)

    def lerp(self, end: Any, weight: Any) -> Tensor:
        """Linear interpolation ``self + weight * (end - self)``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([0.0, 10.0]).lerp(fb.tensor([1.0, 20.0]), 0.5)
        tensor([ 0.5, 15. ])
        """
        return apply(OPS["lerp"], (self, self._operand(end), self._operand(weight)))

    def logaddexp(self, other: Any) -> Tensor:
        """Elementwise ``log(exp(self) + exp(other))`` without overflow."""
        return apply(OPS["logaddexp"], (self, self._operand(other)))

    def copysign(self, other: Any) -> Tensor:
        """``|self|`` with the sign of ``other``; the gradient to ``other`` is 0."""
        return apply(OPS["copysign"], (self, self._operand(other)))

    def floor_divide(self, other: Any) -> Tensor:
        """``self // other`` rounded down (torch >= 1.13 semantics); not differentiable."""
        return apply(OPS["floor_divide"], (self, self._operand(other)))

    def remainder(self, other: Any) -> Tensor:
        """Python-like ``self % other``: the result has the sign of ``other``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([-7, 7]) % fb.tensor([2, -2])
        tensor([ 1, -1])
        """
        return apply(OPS["remainder"], (self, self._operand(other)))

    def fmod(self, other: Any) -> Tensor:
        """C-like remainder: the result has the sign of ``self``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([-7, 7]).fmod(fb.tensor([2, -2]))
        tensor([-1,  1])
        """
        return apply(OPS["fmod"], (self, self._operand(other)))

    def __floordiv__(self, other):
        return self.floor_divide(other)

    def __rfloordiv__(self, other):
        return self._operand(other).floor_divide(self)

    def __mod__(self, other):
        return self.remainder(other)

    def __rmod__(self, other):
        return self._operand(other).remainder(self)

    def isnan(self) -> Tensor:
        """Elementwise NaN test (a bool tensor)."""
        return apply(OPS["ufunc_test"], (self,), ufunc=np.isnan)

    def isinf(self) -> Tensor:
        """Elementwise ±inf test (a bool tensor)."""
        return apply(OPS["ufunc_test"], (self,), ufunc=np.isinf)

    def isfinite(self) -> Tensor:
        """Elementwise test for a finite value (a bool tensor)."""
        return apply(OPS["ufunc_test"], (self,), ufunc=np.isfinite)

    def isclose(
        self, other: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False
    ) -> Tensor:
        """Elementwise ``|self - other| <= atol + rtol * |other|`` (a bool tensor).

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1.0, 2.0]).isclose(fb.tensor([1.0, 2.1]))
        tensor([ True, False])
        """
        return apply(
            OPS["isclose"], (self, self._operand(other)), rtol=rtol, atol=atol, equal_nan=equal_nan
        )

    def _bitwise(self, other, ufunc):
        if other is None:
            return apply(OPS["bitwise"], (self,), ufunc=ufunc)
        return apply(OPS["bitwise"], (self, self._operand(other)), ufunc=ufunc)

    def __and__(self, other):
        return self._bitwise(other, np.bitwise_and)

    def __rand__(self, other):
        return self._operand(other)._bitwise(self, np.bitwise_and)

    def __or__(self, other):
        return self._bitwise(other, np.bitwise_or)

    def __ror__(self, other):
        return self._operand(other)._bitwise(self, np.bitwise_or)

    def __xor__(self, other):
        return self._bitwise(other, np.bitwise_xor)

    def __rxor__(self, other):
        return self._operand(other)._bitwise(self, np.bitwise_xor)

    def __invert__(self):
        return self._bitwise(None, np.invert)

    def bitwise_and(self, other: Any) -> Tensor:
        """``self & other`` on bool or integer tensors."""
        return self & other

    def bitwise_or(self, other: Any) -> Tensor:
        """``self | other`` on bool or integer tensors."""
        return self | other

    def bitwise_xor(self, other: Any) -> Tensor:
        """``self ^ other`` on bool or integer tensors."""
        return self ^ other

    def bitwise_not(self) -> Tensor:
        """``~self`` on bool or integer tensors."""
        return ~self

    def where(self, condition: Any, other: Any) -> Tensor:
        """``self`` where ``condition`` holds, else ``other`` (torch's ``Tensor.where``).

        Example
        -------
        >>> import fastbp as fb
        >>> x = fb.tensor([-1.0, 2.0])
        >>> x.where(x > 0, 0.0)
        tensor([0., 2.])
        """
        condition = np.asarray(condition.data if isinstance(condition, Tensor) else condition)
        if condition.dtype != bool:
            raise TypeError(f"where: condition must be bool, got dtype {condition.dtype}")
        return apply(OPS["where"], (self, self._operand(other)), condition=condition)

    def logical_and(self, other: Any) -> Tensor:
        """Elementwise logical and of the truth values (a bool tensor)."""
        return apply(OPS["ufunc_test"], (self, self._operand(other)), ufunc=np.logical_and)

    def logical_or(self, other: Any) -> Tensor:
        """Elementwise logical or of the truth values (a bool tensor)."""
        return apply(OPS["ufunc_test"], (self, self._operand(other)), ufunc=np.logical_or)

    def logical_xor(self, other: Any) -> Tensor:
        """Elementwise logical exclusive or of the truth values (a bool tensor)."""
        return apply(OPS["ufunc_test"], (self, self._operand(other)), ufunc=np.logical_xor)

    def logical_not(self) -> Tensor:
        """Elementwise logical not of the truth values (a bool tensor)."""
        return apply(OPS["ufunc_test"], (self,), ufunc=np.logical_not)

    def matmul(self, other: Any) -> Tensor:
        """``self @ other``: see :func:`fastbp.matmul`."""
        return _matmul(self, self._operand(other))

    # ------------------------------------------ issue 14: more reductions (ops.reduce_more)
    def var(
        self,
        axis: Axis = None,
        unbiased: bool | None = None,
        keepdims: bool = False,
        *,
        correction: float | None = None,
        dim: Axis = None,
        keepdim: bool | None = None,
    ) -> Tensor:
        """Variance over ``axis``: ``Σ(x − mean)² / (N − correction)``.

        ``correction`` defaults to 1 (Bessel's correction); ``unbiased=False`` means
        ``correction=0``. ``N − correction <= 0`` gives inf or NaN, as in torch.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1.0, 2.0, 3.0, 4.0]).var()
        tensor(1.6666666)
        >>> fb.tensor([1.0, 2.0, 3.0, 4.0]).var(correction=0)
        tensor(1.25)
        """
        axis, keepdims = axis_args("var", axis, keepdims, dim, keepdim)
        if correction is None:
            correction = 1.0 if unbiased is None or unbiased else 0.0
        elif unbiased is not None:
            raise TypeError("var: give either unbiased or correction, not both")
        return apply(OPS["var"], (self,), axis=axis, correction=correction, keepdims=keepdims)

    def std(
        self,
        axis: Axis = None,
        unbiased: bool | None = None,
        keepdims: bool = False,
        *,
        correction: float | None = None,
        dim: Axis = None,
        keepdim: bool | None = None,
    ) -> Tensor:
        """Standard deviation: ``var(...).sqrt()`` with the same arguments.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1.0, 3.0]).std()
        tensor(1.4142135)
        """
        v = self.var(axis, unbiased, keepdims, correction=correction, dim=dim, keepdim=keepdim)
        return v.sqrt()

    def prod(self, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim=None):
        """Product over ``axis``; the gradient is exact when elements are 0.

        Example
        -------
        >>> import fastbp as fb
        >>> x = fb.tensor([2.0, 0.0, 3.0], requires_grad=True)
        >>> x.prod().backward()
        >>> x.grad
        array([0., 6., 0.], dtype=float32)
        """
        axis, keepdims = axis_args("prod", axis, keepdims, dim, keepdim)
        return apply(OPS["prod"], (self,), axis=axis, keepdims=keepdims)

    def any(self, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim=None):
        """True where any element over ``axis`` is nonzero (a bool tensor)."""
        axis, keepdims = axis_args("any", axis, keepdims, dim, keepdim)
        return apply(OPS["bool_reduce"], (self,), ufunc=np.logical_or, axis=axis, keepdims=keepdims)

    def all(self, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim=None):
        """True where every element over ``axis`` is nonzero (a bool tensor)."""
        axis, keepdims = axis_args("all", axis, keepdims, dim, keepdim)
        return apply(
            OPS["bool_reduce"], (self,), ufunc=np.logical_and, axis=axis, keepdims=keepdims
        )

    def argmax(self, axis: int | None = None, keepdims: bool = False, *, dim=None, keepdim=None):
        """Index of the (first) maximum over ``axis``, or into the flattened tensor (int64).

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([[1.0, 5.0], [7.0, 2.0]]).argmax(dim=1)
        tensor([1, 0])
        """
        axis, keepdims = axis_args("argmax", axis, keepdims, dim, keepdim)
        return apply(OPS["arg_reduce"], (self,), which=np.argmax, axis=axis, keepdims=keepdims)

    def argmin(self, axis: int | None = None, keepdims: bool = False, *, dim=None, keepdim=None):
        """Index of the (first) minimum over ``axis``, or into the flattened tensor (int64)."""
        axis, keepdims = axis_args("argmin", axis, keepdims, dim, keepdim)
        return apply(OPS["arg_reduce"], (self,), which=np.argmin, axis=axis, keepdims=keepdims)

    def amax(self, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim=None):
        """Maximum over ``axis`` (all by default); tied elements share the gradient evenly."""
        axis, keepdims = axis_args("amax", axis, keepdims, dim, keepdim)
        # A tuple of dims: the op then splits the gradient among ties, like torch.amax
        # (a single int dim would send it all to one index, like torch.max(x, dim)).
        axis = (axis,) if isinstance(axis, (int, np.integer)) else axis
        return apply(OPS["max"], (self,), axis=axis, keepdims=keepdims)

    def amin(self, axis: Axis = None, keepdims: bool = False, *, dim: Axis = None, keepdim=None):
        """Minimum over ``axis`` (all by default); tied elements share the gradient evenly."""
        axis, keepdims = axis_args("amin", axis, keepdims, dim, keepdim)
        # A tuple of dims: the op then splits the gradient among ties, like torch.amin
        # (a single int dim would send it all to one index, like torch.max(x, dim)).
        axis = (axis,) if isinstance(axis, (int, np.integer)) else axis
        return apply(OPS["min"], (self,), axis=axis, keepdims=keepdims)

    def cumsum(self, dim: int | None = None, *, axis: int | None = None) -> Tensor:
        """Cumulative sum along ``dim``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1, 2, 3]).cumsum(0)
        tensor([1, 3, 6])
        """
        return apply(OPS["cumsum"], (self,), axis=_scan_axis("cumsum", self, dim, axis))

    def cumprod(self, dim: int | None = None, *, axis: int | None = None) -> Tensor:
        """Cumulative product along ``dim``; the gradient is exact when elements are 0."""
        return apply(OPS["cumprod"], (self,), axis=_scan_axis("cumprod", self, dim, axis))

    def logcumsumexp(self, dim: int | None = None, *, axis: int | None = None) -> Tensor:
        """``log(cumsum(exp(x)))`` along ``dim``, without overflow."""
        axis = _scan_axis("logcumsumexp", self, dim, axis)
        return apply(OPS["logcumsumexp"], (self,), axis=axis)

    # ------------------------------------------ issue 14: shape and indexing (ops.shape_more)
    def view(self, *shape: int | Sequence[int]) -> Tensor:
        """``reshape`` (fastbp arrays need no contiguity for it; the result may be a copy)."""
        return self.reshape(*shape)

    def view_as(self, other: Tensor) -> Tensor:
        """``reshape(other.shape)``."""
        return self.reshape(other.shape)

    def reshape_as(self, other: Tensor) -> Tensor:
        """``reshape(other.shape)``."""
        return self.reshape(other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge dimensions ``start_dim..end_dim`` into one.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.zeros(2, 3, 4).flatten(1).shape
        (2, 12)
        """
        if self.ndim == 0:
            return self.reshape(1)
        a, b = start_dim % self.ndim, end_dim % self.ndim
        if a > b:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        shape = self.shape
        return self.reshape(shape[:a] + (int(np.prod(shape[a : b + 1])),) + shape[b + 1 :])

    def unflatten(self, dim: int, sizes: Sequence[int]) -> Tensor:
        """Split dimension ``dim`` into ``sizes`` (one may be -1).

        Example
        -------
        >>> import fastbp as fb
        >>> fb.zeros(2, 12).unflatten(1, (3, -1)).shape
        (2, 3, 4)
        """
        d = dim % self.ndim
        return self.reshape(self.shape[:d] + tuple(sizes) + self.shape[d + 1 :])

    def squeeze(self, dim: int | Sequence[int] | None = None) -> Tensor:
        """Drop dimensions of size 1 (all, or those in ``dim`` that have size 1, as torch)."""
        if dim is None:
            dims = {i for i, n in enumerate(self.shape) if n == 1}
        else:
            dims = {d % max(self.ndim, 1) for d in ((dim,) if isinstance(dim, int) else dim)}
            dims = {d for d in dims if self.ndim and self.shape[d] == 1}
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if i not in dims))

    def unsqueeze(self, dim: int) -> Tensor:
        """Insert a dimension of size 1 at ``dim`` (negative counts from the new end)."""
        d = dim % (self.ndim + 1)
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def broadcast_to(self, *shape: int | Sequence[int]) -> Tensor:
        """Broadcast to ``shape`` (a read-only view); gradients are summed back."""
        return apply(OPS["broadcast_to"], (self,), shape=_shape_tuple(shape))

    def expand(self, *sizes: int | Sequence[int]) -> Tensor:
        """Broadcast to ``sizes``; -1 keeps a dimension's size, as in torch.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.zeros(3, 1).expand(-1, 4).shape
        (3, 4)
        """
        sizes = _shape_tuple(sizes)
        lead = len(sizes) - self.ndim
        if lead < 0:
            raise ValueError(f"expand: {len(sizes)} sizes for a tensor of shape {self.shape}")
        shape = tuple(self.shape[i - lead] if n == -1 and i >= lead else n
                      for i, n in enumerate(sizes))  # fmt: skip
        return self.broadcast_to(shape)

    def expand_as(self, other: Tensor) -> Tensor:
        """``expand(other.shape)``."""
        return self.broadcast_to(other.shape)

    def permute(self, *dims: int | Sequence[int]) -> Tensor:
        """Reorder the dimensions (``transpose`` with an explicit order)."""
        return self.transpose(_shape_tuple(dims))

    def movedim(self, source: int | Sequence[int], destination: int | Sequence[int]) -> Tensor:
        """Move dimensions ``source`` to positions ``destination``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.zeros(2, 3, 4).movedim(0, -1).shape
        (3, 4, 2)
        """
        src = [source] if isinstance(source, (int, np.integer)) else list(source)
        dst = [destination] if isinstance(destination, (int, np.integer)) else list(destination)
        if len(src) != len(dst):
            raise ValueError(f"movedim: {len(src)} sources but {len(dst)} destinations")
        src = [int(a) % self.ndim for a in src]
        dst = [int(a) % self.ndim for a in dst]
        # The dims that stay keep their order; each moved one is inserted at its place.
        order = [n for n in range(self.ndim) if n not in src]
        for d, a in sorted(zip(dst, src, strict=True)):
            order.insert(d, a)
        return self.transpose(tuple(order))

    moveaxis = movedim

    def swapaxes(self, axis0: int, axis1: int) -> Tensor:
        """Exchange two dimensions (also ``swapdims``; ``transpose(a, b)`` in torch)."""
        order = list(range(self.ndim))
        order[axis0], order[axis1] = order[axis1], order[axis0]
        return self.transpose(tuple(order))

    swapdims = swapaxes

    def repeat(self, *sizes: int | Sequence[int]) -> Tensor:
        """Tile the tensor ``sizes`` times along each dimension (torch's ``repeat``).

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1, 2]).repeat(2, 2)
        tensor([[1, 2, 1, 2],
                [1, 2, 1, 2]])
        """
        return apply(OPS["repeat"], (self,), reps=_shape_tuple(sizes))

    def tile(self, *dims: int | Sequence[int]) -> Tensor:
        """Like :meth:`repeat`, but fewer ``dims`` than dimensions are padded with 1s."""
        dims = _shape_tuple(dims)
        return self.repeat((1,) * (self.ndim - len(dims)) + dims)

    def repeat_interleave(self, repeats: Any, dim: int | None = None) -> Tensor:
        """Repeat each element ``repeats`` times along ``dim`` (flattened when None).

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1, 2]).repeat_interleave(fb.tensor([1, 3]))
        tensor([1, 2, 2, 2])
        """
        x = self.reshape(-1) if dim is None else self
        d = 0 if dim is None else dim % x.ndim
        counts = np.asarray(repeats.data if isinstance(repeats, Tensor) else repeats)
        index = np.repeat(np.arange(x.shape[d]), counts)
        return apply(OPS["take"], (x,), indices=index, axis=d)

    def flip(self, *dims: int | Sequence[int]) -> Tensor:
        """Reverse the order of elements along ``dims``."""
        return apply(OPS["flip"], (self,), axes=_shape_tuple(dims))

    def roll(self, shifts: int | Sequence[int], dims: int | Sequence[int] | None = None):
        """Shift elements cyclically along ``dims`` (the flattened tensor when None).

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1, 2, 3]).roll(1)
        tensor([3, 1, 2])
        """
        if dims is None:
            return apply(OPS["roll"], (self.reshape(-1),), shifts=shifts, axes=0).reshape(
                self.shape
            )
        if not isinstance(shifts, int):
            shifts, dims = tuple(shifts), tuple(dims)
        return apply(OPS["roll"], (self,), shifts=shifts, axes=dims)

    def tril(self, diagonal: int = 0) -> Tensor:
        """Zero the elements above the ``diagonal``-th diagonal (of the last two dims)."""
        return apply(OPS["tri"], (self,), diagonal=diagonal, upper=False)

    def triu(self, diagonal: int = 0) -> Tensor:
        """Zero the elements below the ``diagonal``-th diagonal (of the last two dims)."""
        return apply(OPS["tri"], (self,), diagonal=diagonal, upper=True)

    def diagonal(self, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
        """The diagonal of dims ``dim1``, ``dim2`` (appended as the last dimension)."""
        return apply(OPS["diagonal"], (self,), offset=offset, axis1=dim1, axis2=dim2)

    def diag(self, diagonal: int = 0) -> Tensor:
        """1-D: the matrix with ``self`` on a diagonal; 2-D: that diagonal, as torch.diag.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1, 2]).diag()
        tensor([[1, 0],
                [0, 2]])
        """
        if self.ndim == 1:
            return apply(OPS["diag_embed"], (self,), offset=diagonal)
        if self.ndim != 2:
            raise ValueError(f"diag: needs a 1-D or 2-D tensor, got shape {self.shape}")
        return self.diagonal(diagonal)

    def split(self, split_size_or_sections: int | Sequence[int], dim: int = 0):
        """Pieces along ``dim``: of ``split_size`` each (the last may be smaller), or sizes.

        Example
        -------
        >>> import fastbp as fb
        >>> [t.shape for t in fb.zeros(5, 2).split(2)]
        [(2, 2), (2, 2), (1, 2)]
        """
        n = self.shape[dim]
        if isinstance(split_size_or_sections, (int, np.integer)):
            step = int(split_size_or_sections)
            if step <= 0:
                raise ValueError(f"split: split_size must be positive, got {step}")
            sizes = [min(step, n - i) for i in range(0, n, step)] or [0]
        else:
            sizes = list(split_size_or_sections)
            if sum(sizes) != n:
                raise ValueError(
                    f"split: sections {sizes} sum to {sum(sizes)}, but dimension {dim} of "
                    f"shape {self.shape} has size {n}"
                )
        d = dim % self.ndim
        out, start = [], 0
        for size in sizes:
            out.append(self[(slice(None),) * d + (slice(start, start + size),)])
            start += size
        return tuple(out)

    def chunk(self, chunks: int, dim: int = 0):
        """Split into ``chunks`` pieces of ``ceil(n / chunks)`` (fewer if they run out)."""
        if chunks <= 0:
            raise ValueError(f"chunk: chunks must be positive, got {chunks}")
        n = self.shape[dim]
        return self.split(max(1, -(-n // chunks)), dim)

    def unbind(self, dim: int = 0):
        """The slices along ``dim``, as a tuple."""
        d = dim % self.ndim
        return tuple(self[(slice(None),) * d + (i,)] for i in range(self.shape[d]))

    def unfold(self, dimension: int, size: int, step: int) -> Tensor:
        """Windows of ``size`` every ``step`` along ``dimension`` (a new last dimension).

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1, 2, 3, 4, 5]).unfold(0, 2, 2)
        tensor([[1, 2],
                [3, 4]])
        """
        d = dimension % max(self.ndim, 1)
        n = self.shape[d] if self.ndim else 1
        if size > n or size <= 0 or step <= 0:
            raise ValueError(
                f"unfold: size {size} and step {step} do not fit dimension {d} of {self.shape}"
            )
        index = np.arange((n - size) // step + 1)[:, None] * step + np.arange(size)
        windows = apply(OPS["take"], (self,), indices=index, axis=d)
        return windows.movedim(d + 1, -1)

    def index_select(self, dim: int, index: Any) -> Tensor:
        """The slices at ``index`` (1-D integers) along ``dim``; repeats accumulate gradient."""
        index = np.asarray(index.data if isinstance(index, Tensor) else index)
        return apply(OPS["take"], (self,), indices=index.reshape(-1).astype(np.int64), axis=dim)

    def gather(self, dim: int, index: Any) -> Tensor:
        """``out[i][j] = self[index[i][j]][j]`` for ``dim=0`` (and so on), as torch.gather.

        ``index`` may be smaller than ``self`` in the other dimensions.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([[1, 2], [3, 4]]).gather(1, fb.tensor([[0, 0], [1, 0]]))
        tensor([[1, 1],
                [4, 3]])
        """
        index = np.asarray(index.data if isinstance(index, Tensor) else index).astype(np.int64)
        d = dim % self.ndim
        if index.ndim != self.ndim:
            raise ValueError(f"gather: index has {index.ndim} dims, the tensor {self.ndim}")
        src = self
        if any(i != d and index.shape[i] < n for i, n in enumerate(self.shape)):
            src = self[tuple(slice(None) if i == d else slice(0, index.shape[i])
                             for i in range(self.ndim))]  # fmt: skip
        return src._take(Tensor(index), d)

    def _scatter(self, dim, index, src, accumulate):
        index = np.asarray(index.data if isinstance(index, Tensor) else index).astype(np.int64)
        return apply(OPS["scatter"], (self, self._operand(src)), indices=index, axis=dim,
                     accumulate=accumulate)  # fmt: skip

    def scatter(self, dim: int, index: Any, src: Any = None, *, value: Any = None) -> Tensor:
        """A copy with ``src`` (a tensor or a number) written at ``index`` along ``dim``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.zeros(3).scatter(0, fb.tensor([2]), 5.0)
        tensor([0., 0., 5.])
        """
        return self._scatter(dim, index, value if src is None else src, False)

    def scatter_add(self, dim: int, index: Any, src: Any) -> Tensor:
        """A copy with ``src`` added at ``index`` along ``dim`` (repeated indices add up)."""
        return self._scatter(dim, index, src, True)

    def masked_fill(self, mask: Any, value: Any) -> Tensor:
        """``value`` where ``mask`` (broadcast) is True, else ``self``.

        Example
        -------
        >>> import fastbp as fb
        >>> x = fb.tensor([1.0, 2.0])
        >>> x.masked_fill(x > 1, 0.0)
        tensor([1., 0.])
        """
        mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
        if mask.dtype != bool:
            raise TypeError(f"masked_fill: mask must be bool, got dtype {mask.dtype}")
        return apply(OPS["where"], (self._operand(value), self), condition=mask)

    def masked_select(self, mask: Any) -> Tensor:
        """The elements where ``mask`` (broadcast with ``self``) is True, as a 1-D tensor."""
        mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
        if mask.dtype != bool:
            raise TypeError(f"masked_select: mask must be bool, got dtype {mask.dtype}")
        shape = np.broadcast_shapes(self.shape, mask.shape)
        x = self if self.shape == shape else self.broadcast_to(shape)
        return x[np.nonzero(np.broadcast_to(mask, shape))]

    def nonzero(self, as_tuple: bool = False):
        """Indices of the nonzero elements: an ``(n, ndim)`` int64 tensor, or one per dim."""
        idx = apply(OPS["nonzero"], (self,))
        if as_tuple:
            return tuple(idx[:, k] for k in range(max(self.ndim, 1)))
        return idx

    def __setitem__(self, key, value) -> None:
        """Write ``value`` into ``self[key]``, for tensors outside the graph.

        Raises
        ------
        RuntimeError
            If ``self`` (or ``value``) requires grad while grad mode is on: write under
            ``with fb.no_grad():``, or build a new tensor (``fb.where``, ``scatter``).
        """
        if state.grad_enabled and (
            self.requires_grad or (isinstance(value, Tensor) and value.requires_grad)
        ):
            raise RuntimeError(
                f"__setitem__: cannot assign into a tensor of shape {self.shape} in place while "
                f"it (or the value) requires grad: the graph would not see the change. Wrap "
                f"the assignment in `with fb.no_grad():` or build a new tensor (fb.where, "
                f"Tensor.scatter, Tensor.masked_fill)"
            )
        self.data[_index_key(key)] = value.data if isinstance(value, Tensor) else value
        self._version += 1

    def _take(self, indices: Tensor, axis: int) -> Tensor:
        return apply(OPS["take_along_axis"], (self,), indices=indices.data, axis=axis)

    def cummax(self, dim: int | None = None, *, axis: int | None = None):
        """Running maximum along ``dim``: ``(values, indices)``; ties take the latest index.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1.0, 3.0, 2.0]).cummax(0).values
        tensor([1., 3., 3.])
        """
        axis = _scan_axis("cummax", self, dim, axis)
        idx = apply(OPS["cum_extreme_indices"], (self,), axis=axis, largest=True)
        return ValuesIndices(self._take(idx, axis), idx)

    def cummin(self, dim: int | None = None, *, axis: int | None = None):
        """Running minimum along ``dim``: ``(values, indices)``; ties take the latest index."""
        axis = _scan_axis("cummin", self, dim, axis)
        idx = apply(OPS["cum_extreme_indices"], (self,), axis=axis, largest=False)
        return ValuesIndices(self._take(idx, axis), idx)

    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False):
        """Sorted values along ``dim`` and their indices: ``(values, indices)``.

        The sort is always stable; NaN sorts as the largest value, as in torch.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([3.0, 1.0, 2.0]).sort(descending=True).indices
        tensor([0, 2, 1])
        """
        idx = apply(OPS["sort_indices"], (self,), axis=dim, descending=descending)
        if self.ndim == 0:
            return ValuesIndices(self.reshape(()), idx)
        return ValuesIndices(self._take(idx, dim), idx)

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
        """The indices that sort ``self`` along ``dim`` (stable; see :meth:`sort`)."""
        return apply(OPS["sort_indices"], (self,), axis=dim, descending=descending)

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):  # noqa: A002
        """The ``k`` largest (or smallest) values along ``dim``: ``(values, indices)``.

        Raises
        ------
        ValueError
            If ``k`` exceeds the size of ``dim``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1.0, 4.0, 2.0, 3.0]).topk(2).values
        tensor([4., 3.])
        """
        n = self.shape[dim] if self.ndim else 1
        if not 0 <= k <= n:
            raise ValueError(
                f"topk: k={k} is out of range for dimension {dim} of shape {self.shape}"
            )
        idx = apply(OPS["sort_indices"], (self,), axis=dim, descending=largest)
        idx = apply(OPS["getitem"], (idx,), key=(slice(None),) * (dim % max(self.ndim, 1))
                    + (slice(0, k),))  # fmt: skip
        return ValuesIndices(self._take(idx, dim), idx)

    def median(self, dim: int | None = None, keepdim: bool = False):
        """The lower median: of all elements (a tensor), or along ``dim`` ``(values, indices)``.

        Without ``dim`` the elements equal to the median share its gradient (as in torch);
        along ``dim`` the gradient goes to the element at the returned index. A slice
        holding NaN has median NaN.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([1.0, 4.0, 2.0, 3.0]).median()
        tensor(2.)
        """
        if dim is None:
            return apply(OPS["median_all"], (self,))
        idx = apply(OPS["median_index"], (self,), axis=dim, keepdims=True)
        values = self._take(idx, dim)
        if not keepdim:
            values = values.reshape([n for i, n in enumerate(values.shape) if i != dim % self.ndim])
            idx = apply(OPS["median_index"], (self,), axis=dim, keepdims=False)
        return ValuesIndices(values, idx)

    def norm(self, p: Any = "fro", dim: Axis = None, keepdim: bool = False) -> Tensor:
        """The vector ``p``-norm over ``dim`` (all elements by default), as ``torch.norm``.

        ``p`` may be a number, ``inf``/``-inf`` (max/min of ``|x|``, ties share the
        gradient), 0 (count of nonzeros, gradient 0) or ``'fro'`` (= 2). At a zero norm
        the gradient is 0.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.tensor([3.0, -4.0]).norm()
        tensor(5.)
        >>> fb.tensor([3.0, -4.0]).norm(1)
        tensor(7.)
        """
        if p == "fro":
            p = 2.0
        elif isinstance(p, str):
            raise ValueError(f"norm: p must be a number, inf or 'fro', got {p!r}")
        return apply(OPS["norm"], (self,), p=float(p), axis=dim, keepdims=keepdim)


def _index_key(key):
    """Turn Tensors inside an indexing key into arrays."""
    if isinstance(key, tuple):
        return tuple(_index_key(k) for k in key)
    if isinstance(key, Tensor):
        return key.data
    if isinstance(key, list):
        return np.asarray(key)
    return key


_scalar_cache: dict[tuple, Tensor] = {}


def _constant(data: np.ndarray) -> Tensor:
    """Wrap an array as a tensor that needs no gradient, without checks or copies."""
    t = Tensor.__new__(Tensor)
    t.data = data
    t.grad = None
    t.requires_grad = False
    t._node = None
    t._version = 0
    return t


# --------------------------------------------------------------------- constructors


def _as_array(data: Any, dtype) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    from_python = not isinstance(data, np.ndarray) and not isinstance(data, np.generic)
    array = np.array(data, dtype=dtype, copy=True)
    if dtype is None and from_python and array.dtype == np.float64:
        array = array.astype(np.float32)  # Python floats and lists become float32
    return array


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """Create a tensor holding a copy of ``data``.

    Parameters
    ----------
    data : array_like
        Numbers: a scalar, nested lists, an ndarray or a Tensor.
    requires_grad : bool, default False
        Record ops on the tensor so that gradients flow back to it.
    dtype : dtype, optional
        Defaults to ``data``'s own dtype for ndarrays, float32 for Python floats,
        int64 for Python ints.

    Returns
    -------
    Tensor

    Raises
    ------
    TypeError
        If the data is not numeric (strings, objects) or if ``requires_grad`` is
        asked of integer or bool data.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.tensor([1.0, 2.0], requires_grad=True)
    tensor([1., 2.], requires_grad=True)
    """
    array = _as_array(data, dtype)
    return Tensor(array, requires_grad=requires_grad)


def from_numpy(array: np.ndarray, requires_grad: bool = False) -> Tensor:
    """Wrap an ndarray in a tensor that shares its memory.

    Parameters
    ----------
    array : ndarray
        The array; it is not copied, so changes are visible both ways.
    requires_grad : bool, default False
        See :func:`tensor`.

    Returns
    -------
    Tensor

    Raises
    ------
    TypeError
        If ``array`` is not an ndarray or is not numeric.

    Example
    -------
    >>> import numpy as np, fastbp as fb
    >>> a = np.zeros(2)
    >>> fb.from_numpy(a).data is a
    True
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects an ndarray, got {type(array).__name__}")
    return Tensor(array, requires_grad=requires_grad)


def as_tensor(data: Any) -> Tensor:
    """Return ``data`` if it is a Tensor, else a constant tensor sharing its memory.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.as_tensor([1, 2]).shape
    (2,)
    """
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        _check_numeric(data, "as_tensor")
        return _constant(data)
    array = _as_array(data, None)
    _check_numeric(array, "as_tensor")
    return _constant(array)


def _shape_arg(shape) -> tuple[int, ...]:
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        return tuple(shape[0])
    return tuple(shape)


def zeros(*shape: int | Sequence[int], dtype: Any = np.float32, requires_grad: bool = False):
    """Create a tensor of zeros.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.zeros(2, 3).shape
    (2, 3)
    """
    return Tensor(np.zeros(_shape_arg(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape: int | Sequence[int], dtype: Any = np.float32, requires_grad: bool = False):
    """Create a tensor of ones.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.ones((2,)).data
    array([1., 1.], dtype=float32)
    """
    return Tensor(np.ones(_shape_arg(shape), dtype=dtype), requires_grad=requires_grad)


def zeros_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    """Create a tensor of zeros with ``t``'s shape and dtype."""
    return Tensor(np.zeros_like(np.asarray(t)), requires_grad=requires_grad)


def ones_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    """Create a tensor of ones with ``t``'s shape and dtype."""
    return Tensor(np.ones_like(np.asarray(t)), requires_grad=requires_grad)


_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator behind :func:`randn` and parameter initialisation.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.manual_seed(0); a = fb.randn(2)
    >>> fb.manual_seed(0); bool((fb.randn(2).data == a.data).all())
    True
    """
    global _generator
    _generator = np.random.default_rng(seed)


def default_generator() -> np.random.Generator:
    """The generator seeded by :func:`manual_seed`."""
    return _generator


def randn(*shape: int | Sequence[int], dtype: Any = np.float32, requires_grad: bool = False):
    """Create a tensor of standard-normal samples.

    Example
    -------
    >>> import fastbp as fb
    >>> fb.randn(3, 2).dtype
    dtype('float32')
    """
    data = _generator.standard_normal(_shape_arg(shape)).astype(dtype)
    return Tensor(data, requires_grad=requires_grad)


Tensor.result_class = Tensor
