"""Convolution and pooling modules: Conv1d, Conv2d, MaxPool1d/2d, AvgPool1d/2d, adaptive pools.

Weights use PyTorch's layout ``(out_channels, in_channels / groups, *kernel_size)`` and its
initialisation: weight and bias from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with
``fan_in = in_channels / groups * prod(kernel_size)`` (Kaiming-uniform with ``a = sqrt(5)``),
drawn from the generator seeded by :func:`fastbp.manual_seed`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.tensor import Tensor
from . import functional_conv as Fc
from . import init
from .module import Module, Parameter

__all__ = [
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "Embedding",
    "MaxPool1d",
    "MaxPool2d",
]


class _ConvNd(Module):
    _spatial = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels),
                           ("groups", groups)):  # fmt: skip
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                f"divisible by groups ({groups})"
            )
        if padding_mode != "zeros":
            raise ValueError(
                f"{name}: padding_mode {padding_mode!r} is not supported; only 'zeros' is"
            )
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"{name}: dtype must be floating point, got {dtype}")
        n = self._spatial
        self.kernel_size = Fc._tuple(name, "kernel_size", kernel_size, n, 1)
        self.stride = Fc._tuple(name, "stride", stride, n, 1)
        self.dilation = Fc._tuple(name, "dilation", dilation, n, 1)
        self.padding = padding if isinstance(padding, str) else Fc._tuple(
            name, "padding", padding, n, 0)  # fmt: skip
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.padding_mode = padding_mode
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(np.empty(shape, dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty(out_channels, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Redraw weight and bias from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (PyTorch's default).

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp import nn
        >>> fb.manual_seed(0); a = nn.Conv2d(1, 2, 3).weight.data.copy()
        >>> fb.manual_seed(0); bool((nn.Conv2d(1, 2, 3).weight.data == a).all())
        True
        """
        # NOTE: init.kaiming_uniform_ reads fans in Linear's (in, out) layout; a conv weight is
        # (out, in/groups, k...), so the bound 1/sqrt(fan_in) of a = sqrt(5) is applied directly.
        fan_in = self.weight.data[0].size
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor | np.ndarray) -> Tensor:
        """Convolve ``input`` with the layer's weight (see ``F.conv2d`` / ``F.conv1d``)."""
        fn = Fc.conv2d if self._spatial == 2 else Fc.conv1d
        return fn(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                  self.groups)  # fmt: skip

    def forward_relu(self, input: Tensor | np.ndarray) -> Tensor:
        """``relu(self(input))`` recorded as one fused ``conv2d_relu`` op (same values).

        ``nn.Sequential`` calls it for a Conv1d/Conv2d directly followed by ``nn.ReLU``: the bias
        and the ReLU are applied while the product is written out, and backward masks the
        gradient and sums the bias gradient in one pass.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp import nn
        >>> conv = nn.Conv2d(1, 2, 3, padding=1)
        >>> x = fb.randn(1, 1, 4, 4)
        >>> bool((conv.forward_relu(x).data == conv(x).relu().data).all())
        True
        """
        name = "conv2d" if self._spatial == 2 else "conv1d"
        return Fc._conv(name, input, self.weight, self.bias, self.stride, self.padding,
                        self.dilation, self.groups, self._spatial, relu=True)  # fmt: skip

    def fuses_pool(self, pool: Module) -> bool:
        """True if ``pool`` (after this layer and a ReLU) is a 2x2, stride-2 ``MaxPool2d``
        that :meth:`forward_relu_pool` can absorb (no padding, dilation, ceil mode, indices).

        Example
        -------
        >>> from fastbp import nn
        >>> nn.Conv2d(1, 2, 3).fuses_pool(nn.MaxPool2d(2)), nn.Conv2d(1, 2, 3).fuses_pool(
        ...     nn.MaxPool2d(3))
        (True, False)
        """
        if self._spatial != 2 or self.groups != 1 or type(pool) is not MaxPool2d:
            return False
        two = (2, 2)
        try:
            geometry = (
                Fc._tuple("MaxPool2d", "kernel_size", pool.kernel_size, 2, 1),
                Fc._tuple("MaxPool2d", "stride", pool.stride, 2, 1),
                Fc._tuple("MaxPool2d", "padding", pool.padding, 2, 0),
                Fc._tuple("MaxPool2d", "dilation", pool.dilation, 2, 1),
            )
        except (TypeError, ValueError):
            return False  # let the pool itself raise its error
        return geometry == (two, two, (0, 0), (1, 1)) and not pool.ceil_mode and not (
            pool.return_indices)  # fmt: skip

    def forward_relu_pool(self, input: Tensor | np.ndarray) -> Tensor:
        """``max_pool2d(relu(self(input)), 2)`` as one fused ``conv2d_relu_pool2`` op.

        ``nn.Sequential`` calls it for a Conv2d, ReLU, MaxPool2d(2) run (see
        :meth:`fuses_pool`): the pooled output is written straight from the product, so the
        full-size activation is never stored. Same values and gradients as the three layers.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp import nn
        >>> conv = nn.Conv2d(1, 2, 3, padding=1)
        >>> x = fb.randn(1, 1, 4, 4)
        >>> y = conv.forward_relu_pool(x)
        >>> bool((y.data == nn.MaxPool2d(2)(conv(x).relu()).data).all())
        True
        """
        return Fc._conv("conv2d", input, self.weight, self.bias, self.stride, self.padding,
                        self.dilation, self.groups, 2, relu=True, pool=True)  # fmt: skip

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding not in ((0,) * self._spatial, "valid"):
            text += f", padding={self.padding!r}" if isinstance(self.padding, str) else (
                f", padding={self.padding}")  # fmt: skip
        if self.dilation != (1,) * self._spatial:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text if self.bias is not None else text + ", bias=False"


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W), PyTorch's ``nn.Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride : int or (int, int), default 1
    padding : int, (int, int), 'same' or 'valid', default 0
    dilation : int or (int, int), default 1
    groups : int, default 1
        Both channel counts must be divisible by it (``groups == in_channels``: depthwise).
    bias : bool, default True
    padding_mode : {'zeros'}
        The only mode implemented.
    dtype : dtype, default np.float32

    Attributes
    ----------
    weight : Parameter
        Shape (out_channels, in_channels / groups, kH, kW).
    bias : Parameter or None
        Shape (out_channels,).

    Raises
    ------
    ValueError
        On non-positive sizes, channels not divisible by ``groups`` or another padding mode.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.Conv2d(1, 8, 3, padding=1)(fb.zeros(2, 1, 28, 28)).shape
    (2, 8, 28, 28)
    """

    _spatial = 2
    # Sequential fuses this class (not its subclasses, which may override forward) with
    # a directly following nn.ReLU into one conv2d_relu op.
    _fuses_relu = True


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L), PyTorch's ``nn.Conv1d`` (weight (out, in/groups, k)).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation : int (or 1-tuple); padding may be 'same' / 'valid'
    groups : int, default 1
    bias : bool, default True
    padding_mode : {'zeros'}
    dtype : dtype, default np.float32

    Raises
    ------
    ValueError
        As :class:`Conv2d`.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.Conv1d(4, 2, 3)(fb.zeros(1, 4, 10)).shape
    (1, 2, 8)
    """

    _spatial = 1
    # Sequential fuses this class (not its subclasses, which may override forward) with
    # a directly following nn.ReLU into one conv2d_relu op.
    _fuses_relu = True


class _Pool(Module):
    _fields: tuple[str, ...] = ()

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in self._fields)


class MaxPool2d(_Pool):
    """Max pooling over (N, C, H, W), PyTorch's ``nn.MaxPool2d`` (see ``F.max_pool2d``).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int), default 0
    dilation : int or (int, int), default 1
    return_indices : bool, default False
    ceil_mode : bool, default False

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.MaxPool2d(2)(fb.zeros(1, 3, 28, 28)).shape
    (1, 3, 14, 14)
    """

    _fields = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
    _fn = staticmethod(Fc.max_pool2d)

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input: Tensor | np.ndarray) -> Any:
        """Pool ``input``; a (values, indices) pair when ``return_indices``."""
        return self._fn(input, self.kernel_size, self.stride, self.padding, self.dilation,
                        self.ceil_mode, self.return_indices)  # fmt: skip


class MaxPool1d(MaxPool2d):
    """Max pooling over (N, C, L), PyTorch's ``nn.MaxPool1d`` (arguments as :class:`MaxPool2d`).

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.MaxPool1d(3, stride=2)(fb.zeros(1, 2, 9)).shape
    (1, 2, 4)
    """

    _fn = staticmethod(Fc.max_pool1d)


class AvgPool2d(_Pool):
    """Average pooling over (N, C, H, W), PyTorch's ``nn.AvgPool2d`` (see ``F.avg_pool2d``).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int), default 0
    ceil_mode : bool, default False
    count_include_pad : bool, default True
    divisor_override : int, optional

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.AvgPool2d(2)(fb.ones(1, 1, 4, 4)).data
    array([[[[1., 1.],
             [1., 1.]]]], dtype=float32)
    """

    _fields = ("kernel_size", "stride", "padding")

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, input: Tensor | np.ndarray) -> Tensor:
        """Average-pool ``input``."""
        return Fc.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                             self.count_include_pad, self.divisor_override)  # fmt: skip


class AvgPool1d(_Pool):
    """Average pooling over (N, C, L), PyTorch's ``nn.AvgPool1d``.

    Parameters
    ----------
    kernel_size : int
    stride : int, optional
        Defaults to ``kernel_size``.
    padding : int, default 0
    ceil_mode : bool, default False
    count_include_pad : bool, default True

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.AvgPool1d(2)(fb.ones(1, 1, 6)).shape
    (1, 1, 3)
    """

    _fields = ("kernel_size", "stride", "padding")

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode, self.count_include_pad = padding, ceil_mode, count_include_pad

    def forward(self, input: Tensor | np.ndarray) -> Tensor:
        """Average-pool ``input``."""
        return Fc.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                             self.count_include_pad)  # fmt: skip


class AdaptiveAvgPool2d(_Pool):
    """Average pooling to a fixed output size, PyTorch's ``nn.AdaptiveAvgPool2d``.

    Parameters
    ----------
    output_size : int or (int or None, int or None)

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.AdaptiveAvgPool2d((1, None))(fb.ones(2, 3, 5, 4)).shape
    (2, 3, 1, 4)
    """

    _fields = ("output_size",)

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor | np.ndarray) -> Tensor:
        """Pool ``input`` to ``output_size``."""
        return Fc.adaptive_avg_pool2d(input, self.output_size)


class AdaptiveMaxPool2d(_Pool):
    """Max pooling to a fixed output size, PyTorch's ``nn.AdaptiveMaxPool2d``.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
    return_indices : bool, default False

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.AdaptiveMaxPool2d(2)(fb.ones(2, 3, 5, 4)).shape
    (2, 3, 2, 2)
    """

    _fields = ("output_size",)

    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, input: Tensor | np.ndarray) -> Any:
        """Pool ``input`` to ``output_size``."""
        return Fc.adaptive_max_pool2d(input, self.output_size, self.return_indices)


class ConvTranspose2d(_ConvNd):
    """Transposed 2-D convolution, PyTorch's ``nn.ConvTranspose2d`` (see ``F.conv_transpose2d``).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride : int or (int, int), default 1
    padding : int or (int, int), default 0
    output_padding : int or (int, int), default 0
    groups : int, default 1
    bias : bool, default True
    dilation : int or (int, int), default 1
    padding_mode : {'zeros'}
    dtype : dtype, default np.float32

    Attributes
    ----------
    weight : Parameter
        Shape (in_channels, out_channels / groups, kH, kW); PyTorch draws its init bound from
        ``fan_in = out_channels / groups * kH * kW``, and so does fastbp.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.ConvTranspose2d(8, 4, 2, stride=2)(fb.zeros(1, 8, 7, 7)).shape
    (1, 4, 14, 14)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: Any = 1,
        padding_mode: str = "zeros",
        dtype: Any = np.float32,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, dtype)  # fmt: skip
        # The transposed layout: (in, out / groups, kH, kW).
        self.weight = Parameter(
            np.empty((in_channels, out_channels // groups, *self.kernel_size), dtype=dtype)
        )
        self.output_padding = Fc._tuple("ConvTranspose2d", "output_padding", output_padding, 2, 0)
        self.reset_parameters()

    def forward(self, input: Tensor | np.ndarray) -> Tensor:
        """Apply the transposed convolution."""
        return Fc.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                   self.output_padding, self.groups, self.dilation)  # fmt: skip


class Embedding(Module):
    """A lookup table of ``num_embeddings`` vectors, PyTorch's ``nn.Embedding``.

    Parameters
    ----------
    num_embeddings, embedding_dim : int
    padding_idx : int, optional
        Its row starts at zero and never receives a gradient.
    dtype : dtype, default np.float32

    Attributes
    ----------
    weight : Parameter
        Shape (num_embeddings, embedding_dim), drawn from N(0, 1) with the generator seeded by
        :func:`fastbp.manual_seed`.

    Example
    -------
    >>> import numpy as np
    >>> from fastbp import nn
    >>> nn.Embedding(10, 3, padding_idx=0)(np.array([[0, 4], [9, 9]])).shape
    (2, 2, 3)
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        from ..core.tensor import default_generator

        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx must be within num_embeddings ({num_embeddings})"
                )
            padding_idx = int(padding_idx) % num_embeddings
        self.padding_idx = padding_idx
        values = default_generator().standard_normal((num_embeddings, embedding_dim))
        if padding_idx is not None:
            values[padding_idx] = 0
        self.weight = Parameter(values.astype(dtype))

    def forward(self, input: Any) -> Tensor:
        """Look up the rows named by the integer ``input``."""
        return Fc.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        return text if self.padding_idx is None else text + f", padding_idx={self.padding_idx}"
