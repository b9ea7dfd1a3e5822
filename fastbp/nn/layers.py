"""Layers: ``Linear``, ``Sequential`` and the activation modules."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..core.engine import apply
from ..core.tensor import Tensor, as_tensor
from ..ops.linalg import LINEAR, LINEAR_RELU, LINEAR_SIGMOID
from . import init
from .module import Module, Parameter

__all__ = ["Linear", "Sequential", "ReLU", "Sigmoid", "Tanh"]


class Linear(Module):
    """Affine layer ``Y = X·W + b``, recorded as one fused op.

    The weight is stored ``(in_features, out_features)`` so the forward pass is a
    plain ``X @ W`` (no transpose). Weight and bias are drawn from
    ``U(-1/sqrt(in_features), 1/sqrt(in_features))``, PyTorch's default
    (Kaiming-uniform with ``a = sqrt(5)``), using the generator seeded by
    :func:`fastbp.manual_seed`.

    Parameters
    ----------
    in_features : int
        Size of each input row.
    out_features : int
        Size of each output row.
    bias : bool, default True
        Learn an additive bias.
    dtype : dtype, default np.float32
        Dtype of the weight and bias.

    Attributes
    ----------
    weight : Parameter
        Shape ``(in_features, out_features)``.
    bias : Parameter or None
        Shape ``(out_features,)``.

    Raises
    ------
    ValueError
        If a feature count is negative.
    TypeError
        If a feature count is not an integer or ``dtype`` is not floating point.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> layer = nn.Linear(784, 128)
    >>> layer(fb.zeros(32, 784)).shape
    (32, 128)
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, dtype: Any = np.float32
    ):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"Linear: {name} must be an int, got {type(value).__name__}")
            if value < 0:
                raise ValueError(f"Linear: {name} must be >= 0, got {value}")
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"Linear: dtype must be floating point, got {dtype}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = Parameter(np.empty((self.in_features, self.out_features), dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty(self.out_features, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Redraw weight and bias from ``U(-1/sqrt(in_features), 1/sqrt(in_features))``.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp import nn
        >>> fb.manual_seed(0); a = nn.Linear(3, 2).weight.data.copy()
        >>> fb.manual_seed(0); bool((nn.Linear(3, 2).weight.data == a).all())
        True
        """
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor | np.ndarray) -> Tensor:
        """Return ``x @ weight + bias`` for a batch ``x`` of shape ``(N, in_features)``.

        Parameters
        ----------
        x : Tensor or ndarray
            Shape ``(N, in_features)``.

        Returns
        -------
        Tensor
            Shape ``(N, out_features)``.

        Raises
        ------
        ValueError
            If ``x`` is not 2-D or has the wrong number of features; the message
            names the layer, the expected and the actual shape.
        """
        return self._apply(LINEAR, x)

    def _apply(self, op, x: Tensor | np.ndarray) -> Tensor:
        """Record ``op`` (``linear`` or a fused ``linear_<activation>``) on ``x``."""
        if not isinstance(x, Tensor):
            x = as_tensor(x)
        shape = x.data.shape
        if len(shape) != 2 or shape[1] != self.in_features:
            raise self._shape_error(shape)
        bias = self.bias
        return apply(op, (x, self.weight) if bias is None else (x, self.weight, bias))

    def _shape_error(self, shape: tuple[int, ...]) -> ValueError:
        if len(shape) != 2:
            hint = (
                "reshape a single sample with x.reshape(1, -1)"
                if len(shape) == 1
                else "flatten the input to (batch, features) first, e.g. x.reshape(len(x), -1)"
            )
            return ValueError(
                f"{self!r}: expected a 2-D input of shape (batch, {self.in_features}), got "
                f"shape {shape}; {hint}"
            )
        return ValueError(
            f"{self!r}: expected input with {self.in_features} features, shape "
            f"(batch, {self.in_features}), got {shape[1]} features (shape {shape}); check "
            f"the previous layer's out_features or the data's layout"
        )

    def extra_repr(self) -> str:
        text = f"in_features={self.in_features}, out_features={self.out_features}"
        # PyTorch prints bias=True too; we only mention the non-default case.
        return text if self.bias is not None else text + ", bias=False"


class Sequential(Module):
    """Chain modules: the output of each is the input of the next.

    Children are registered under the names ``'0'``, ``'1'``, ..., so parameter
    names read ``'0.weight'``. Supports ``len``, iteration and indexing (an int
    gives a module, a slice gives a new Sequential sharing the modules).

    Parameters
    ----------
    *modules : Module
        The layers, in order.

    Raises
    ------
    TypeError
        If an argument is not a Module.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> net(fb.zeros(5, 4)).shape, len(net), type(net[1]).__name__
    ((5, 2), 3, 'ReLU')
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end and return ``self``.

        Raises
        ------
        TypeError
            If ``module`` is not a Module.

        Example
        -------
        >>> from fastbp import nn
        >>> len(nn.Sequential().append(nn.ReLU()))
        1
        """
        if not isinstance(module, Module):
            raise TypeError(
                f"Sequential: item {len(self._modules)} is a {type(module).__name__}, not a "
                f"Module; wrap functions in a Module subclass"
            )
        self.add_module(str(len(self._modules)), module)
        return self

    def forward(self, x: Any) -> Any:
        """Feed ``x`` through every module in order and return the last output.

        A :class:`Linear` directly followed by :class:`ReLU` or :class:`Sigmoid` runs
        as one fused op (``linear_relu``/``linear_sigmoid``): same result, one tape
        record and one pass over the activations fewer in backward. A ``Conv1d`` or
        ``Conv2d`` directly followed by :class:`ReLU` runs as ``conv2d_relu`` likewise, and
        as ``conv2d_relu_pool2`` when a 2x2 ``MaxPool2d`` follows the ReLU.
        """
        modules = list(self._modules.values())
        i, n = 0, len(modules)
        while i < n:
            module = modules[i]
            if i + 1 < n and type(module) is Linear:
                fused = _FUSED.get(type(modules[i + 1]))
                if fused is not None:
                    x = module._apply(fused, x)
                    i += 2
                    continue
            # A layer class that declares it (Conv1d, Conv2d) absorbs a following ReLU.
            if (
                i + 1 < n
                and type(modules[i + 1]) is ReLU
                and "_fuses_relu" in type(module).__dict__
            ):
                if i + 2 < n and module.fuses_pool(modules[i + 2]):  # and a 2x2 max-pool
                    x = module.forward_relu_pool(x)
                    i += 3
                    continue
                x = module.forward_relu(x)
                i += 2
                continue
            x = module(x)
            i += 1
        return x

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int | slice) -> Module:
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        try:
            return modules[index]
        except IndexError:
            raise IndexError(
                f"Sequential: index {index} is out of range for {len(modules)} modules"
            ) from None


class ReLU(Module):
    """Elementwise ``max(x, 0)`` as a module (gradient at 0 is 0).

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.ReLU()(fb.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    """

    def forward(self, x: Any) -> Tensor:
        """Apply ReLU elementwise."""
        return as_tensor(x).relu()


class Sigmoid(Module):
    """Elementwise logistic function ``1 / (1 + e**-x)`` as a module.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.Sigmoid()(fb.tensor([0.0]))
    tensor([0.5])
    """

    def forward(self, x: Any) -> Tensor:
        """Apply the sigmoid elementwise."""
        return as_tensor(x).sigmoid()


class Tanh(Module):
    """Elementwise hyperbolic tangent as a module.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.Tanh()(fb.tensor([0.0]))
    tensor([0.])
    """

    def forward(self, x: Any) -> Tensor:
        """Apply tanh elementwise."""
        return as_tensor(x).tanh()


# Activations a preceding Linear can absorb (see Sequential.forward).
_FUSED = {ReLU: LINEAR_RELU, Sigmoid: LINEAR_SIGMOID}
