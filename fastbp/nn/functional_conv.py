"""Convolution and pooling functions (PyTorch's ``torch.nn.functional`` signatures).

They are re-exported by :mod:`fastbp.nn.functional`; import them from there::

    import fastbp.nn.functional as F
    y = F.max_pool2d(F.relu(F.conv2d(x, w, b, padding=1)), 2)

Layouts follow PyTorch: inputs are ``(N, C, H, W)`` (or ``(N, C, L)`` for the 1-D forms; an
unbatched ``(C, H, W)`` / ``(C, L)`` input is accepted too), convolution weights are
``(out_channels, in_channels / groups, kH, kW)``. Every argument is checked here, before an op
runs, so errors name the function, the shapes and the offending argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.engine import apply
from ..core.tensor import Tensor, as_tensor
from ..ops.conv import CONV2D, CONV2D_RELU, CONV2D_RELU_POOL2, CONV_TRANSPOSE2D, EMBEDDING
from ..ops.pool import (
    ADAPTIVE_AVG_POOL2D,
    ADAPTIVE_MAX_POOL2D,
    ADAPTIVE_MAX_POOL2D_INDICES,
    AVG_POOL2D,
    MAX_POOL2D,
    MAX_POOL2D_INDICES,
    SEPARABLE2D,
)

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "conv1d",
    "conv2d",
    "conv_transpose2d",
    "embedding",
    "interpolate",
    "max_pool1d",
    "max_pool2d",
]

IntOrPair = int | Sequence[int]


def _tuple(op: str, name: str, value: Any, n: int, minimum: int) -> tuple[int, ...]:
    """``value`` (an int or a sequence of ``n`` ints) as an ``n``-tuple, each >= ``minimum``."""
    items = (value,) * n if isinstance(value, (int, np.integer)) else value
    try:
        items = tuple(items)
    except TypeError:
        items = None
    if (
        items is None
        or len(items) != n
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items)
    ):
        raise TypeError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    if any(v < minimum for v in items):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in items)


def _batched(op: str, x: Tensor, spatial: int) -> tuple[Tensor, bool]:
    """Add a batch axis to an unbatched input; reject any other rank."""
    rank = spatial + 2
    if x.ndim == rank:
        return x, False
    if x.ndim == rank - 1:
        return x.reshape(1, *x.shape), True
    layout = "(N, C, H, W)" if spatial == 2 else "(N, C, L)"
    raise ValueError(
        f"{op}: expected a {rank}-D input {layout} (or {rank - 1}-D unbatched), got shape "
        f"{x.shape} ({x.ndim}-D)"
    )


def _out_len(op: str, size: int, k: int, s: int, lo: int, hi: int, d: int, ceil: bool) -> int:
    span = size + lo + hi - d * (k - 1) - 1
    if span < 0:
        return 0
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    # PyTorch: the last window must start inside the input or the leading padding.
    if (out - 1) * s >= size + lo:
        out -= 1
    return out


def _too_small(op, x_shape, kernel, padding, dilation, out):
    return ValueError(
        f"{op}: kernel size {tuple(kernel)} (dilation {tuple(dilation)}) does not fit the "
        f"input of shape {tuple(x_shape)} with padding {tuple(padding)}; the output would have "
        f"spatial size {tuple(out)}. Use a smaller kernel, more padding or a larger input"
    )


# ---- convolution ------------------------------------------------------------------------------


def _conv_padding(op, padding, kernel, dilation, stride, spatial):
    """Leading and trailing padding per axis, ((lo, hi), ...), from an int, a tuple or a string."""
    if isinstance(padding, str):
        if padding == "valid":
            return tuple((0, 0) for _ in range(spatial))
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"{op}: padding='same' is not supported for strided convolutions "
                    f"(stride={stride}); pass the padding as numbers"
                )
            # PyTorch puts the odd pixel of a dilated even kernel's padding at the end.
            totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
            return tuple((t // 2, t - t // 2) for t in totals)
        raise ValueError(
            f"{op}: padding must be 'same', 'valid', an int or a tuple, got {padding!r}"
        )
    pads = _tuple(op, "padding", padding, spatial, 0)
    return tuple((p, p) for p in pads)


def conv2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrPair = 1,
    padding: IntOrPair | str = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation, as in PyTorch) over an (N, C, H, W) input.

    Parameters
    ----------
    input : Tensor or array_like
        Shape (N, C_in, H, W), or (C_in, H, W) unbatched; float32 or float64.
    weight : Tensor or array_like
        Shape (C_out, C_in / groups, kH, kW), same dtype as ``input``.
    bias : Tensor or array_like, optional
        Shape (C_out,).
    stride : int or (int, int), default 1
    padding : int, (int, int), 'valid' or 'same', default 0
        Zero padding on both sides of each spatial axis. ``'same'`` (stride 1 only) keeps the
        input size, putting an odd leftover pixel at the end, like PyTorch.
    dilation : int or (int, int), default 1
        Spacing between kernel taps.
    groups : int, default 1
        Split the channels into ``groups`` independent convolutions; ``groups == C_in`` with
        weight ``(k * C_in, 1, kH, kW)`` is a depthwise convolution.

    Returns
    -------
    Tensor
        Shape (N, C_out, OH, OW) with ``OH = (H + 2*pH - dH*(kH-1) - 1) // sH + 1`` (same for W).

    Raises
    ------
    ValueError
        On a wrong rank, channels that do not match the weight or are not divisible by
        ``groups``, a bias of the wrong shape, or a (dilated) kernel larger than the padded input.
    TypeError
        On badly typed arguments or mixed dtypes.

    Example
    -------
    >>> import numpy as np, fastbp as fb, fastbp.nn.functional as F
    >>> x = fb.tensor(np.ones((1, 1, 4, 4)))
    >>> F.conv2d(x, np.ones((2, 1, 3, 3)), padding=1).shape
    (1, 2, 4, 4)
    >>> F.conv2d(x, np.ones((1, 1, 3, 3))).data
    array([[[[9., 9.],
             [9., 9.]]]])
    """
    return _conv("conv2d", input, weight, bias, stride, padding, dilation, groups, spatial=2)


def conv1d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrPair = 1,
    padding: IntOrPair | str = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> Tensor:
    """1-D convolution over an (N, C, L) input, computed as :func:`conv2d` with H = 1.

    Parameters
    ----------
    input : Tensor or array_like
        Shape (N, C_in, L), or (C_in, L) unbatched.
    weight : Tensor or array_like
        Shape (C_out, C_in / groups, k).
    bias : Tensor or array_like, optional
        Shape (C_out,).
    stride : int or (int,), default 1
    padding : int, (int,), 'valid' or 'same', default 0
    dilation : int or (int,), default 1
    groups : int, default 1
        As in :func:`conv2d`, for one spatial axis.

    Returns
    -------
    Tensor
        Shape (N, C_out, L_out).

    Raises
    ------
    ValueError, TypeError
        As :func:`conv2d`, naming ``conv1d``.

    Example
    -------
    >>> import numpy as np, fastbp as fb, fastbp.nn.functional as F
    >>> F.conv1d(fb.tensor(np.arange(5.0).reshape(1, 1, 5)), np.ones((1, 1, 2))).data
    array([[[1., 3., 5., 7.]]])
    """
    return _conv("conv1d", input, weight, bias, stride, padding, dilation, groups, spatial=1)


def _conv(
    op, input, weight, bias, stride, padding, dilation, groups, spatial, relu=False, pool=False
):
    x, unbatched = _batched(op, as_tensor(input), spatial)
    w = as_tensor(weight)
    if w.ndim != spatial + 2:
        raise ValueError(
            f"{op}: expected a {spatial + 2}-D weight (out_channels, in_channels/groups, "
            f"{'kH, kW' if spatial == 2 else 'k'}), got shape {w.shape}"
        )
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    channels, out_channels = x.shape[1], w.shape[0]
    if channels % groups or out_channels % groups:
        raise ValueError(
            f"{op}: in_channels ({channels}, input shape {x.shape}) and out_channels "
            f"({out_channels}, weight shape {w.shape}) must both be divisible by groups={groups}"
        )
    if w.shape[1] * groups != channels:
        raise ValueError(
            f"{op}: weight of shape {w.shape} with groups={groups} expects an input with "
            f"{w.shape[1] * groups} channels, got input of shape {x.shape} ({channels} channels)"
        )
    kernel = tuple(w.shape[2:])
    stride_ = _tuple(op, "stride", stride, spatial, 1)
    dilation_ = _tuple(op, "dilation", dilation, spatial, 1)
    pads = _conv_padding(op, padding, kernel, dilation_, stride_, spatial)
    sizes = x.shape[2:]
    out = tuple(
        _out_len(op, n, k, s, lo, hi, d, False)
        for n, k, s, (lo, hi), d in zip(sizes, kernel, stride_, pads, dilation_, strict=True)
    )
    if min(out) <= 0:
        raise _too_small(op, x.shape, kernel, [lo for lo, _ in pads], dilation_, out)
    inputs = [x, w]
    if bias is not None:
        b = as_tensor(bias)
        if b.shape != (out_channels,):
            raise ValueError(
                f"{op}: bias must have shape ({out_channels},) for weight of shape {w.shape}, "
                f"got {b.shape}"
            )
        inputs.append(b)
    if spatial == 1:
        # The 1-D convolution is the 2-D one over an H = 1 view.
        inputs[0] = x.reshape(x.shape[0], channels, 1, sizes[0])
        inputs[1] = w.reshape(out_channels, w.shape[1], 1, kernel[0])
        stride_, dilation_, pads, out = (1, *stride_), (1, *dilation_), ((0, 0), *pads), (1, *out)
    # conv -> ReLU -> 2x2 max-pool fused: groups == 1 and a pooled output of at least 1x1.
    fused_pool = pool and relu and groups == 1 and spatial == 2 and min(out) >= 2
    y = apply(
        CONV2D_RELU_POOL2 if fused_pool else CONV2D_RELU if relu else CONV2D,
        tuple(inputs),
        stride=stride_,
        padding=tuple(lo for lo, _ in pads),
        dilation=dilation_,
        groups=groups,
        out_size=out,
    )
    if spatial == 1:
        y = y.reshape(y.shape[0], out_channels, out[1])
    if pool and not fused_pool:
        y = max_pool2d(y, 2)
    return y.reshape(*y.shape[1:]) if unbatched else y


# ---- pooling ----------------------------------------------------------------------------------


def _pool_geometry(op, x, kernel_size, stride, padding, dilation, ceil_mode, spatial):
    kernel = _tuple(op, "kernel_size", kernel_size, spatial, 1)
    stride_ = kernel if stride is None or stride == [] else _tuple(op, "stride", stride, spatial, 1)
    pads = _tuple(op, "padding", padding, spatial, 0)
    dilation_ = _tuple(op, "dilation", dilation, spatial, 1)
    if any(p > k // 2 for p, k in zip(pads, kernel, strict=True)):
        raise ValueError(
            f"{op}: padding {pads} must be at most half the kernel size {kernel} "
            f"(so that no window lies entirely in the padding)"
        )
    out = tuple(
        _out_len(op, n, k, s, p, p, d, bool(ceil_mode))
        for n, k, s, p, d in zip(x.shape[2:], kernel, stride_, pads, dilation_, strict=True)
    )
    if min(out) <= 0:
        raise _too_small(op, x.shape, kernel, pads, dilation_, out)
    return kernel, stride_, pads, dilation_, out


def _as_2d(x: Tensor, spatial: int) -> Tensor:
    return x if spatial == 2 else x.reshape(x.shape[0], x.shape[1], 1, x.shape[2])


def _from_2d(y: Tensor, spatial: int, unbatched: bool) -> Tensor:
    if spatial == 1:
        y = y.reshape(y.shape[0], y.shape[1], y.shape[3])
    return y.reshape(*y.shape[1:]) if unbatched else y


def _max_pool(op, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, sp):
    x, unbatched = _batched(op, as_tensor(input), sp)
    kernel, stride_, pads, dilation_, out = _pool_geometry(
        op, x, kernel_size, stride, padding, dilation, ceil_mode, sp
    )
    one = () if sp == 2 else (1,)
    params = {
        "kernel_size": one + kernel,
        "stride": one + stride_,
        "padding": (0,) * (2 - sp) + pads,
        "dilation": one + dilation_,
        "out_size": one + out,
    }
    x2 = _as_2d(x, sp)
    y = _from_2d(apply(MAX_POOL2D, (x2,), **params), sp, unbatched)
    if not return_indices:
        return y
    return y, _from_2d(apply(MAX_POOL2D_INDICES, (x2,), **params), sp, unbatched)


def max_pool2d(
    input: Any,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Max over sliding windows of an (N, C, H, W) input.

    Parameters
    ----------
    input : Tensor or array_like
        Shape (N, C, H, W) or (C, H, W); floating point.
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int), default 0
        Implicit -inf padding, at most half the kernel size.
    dilation : int or (int, int), default 1
    ceil_mode : bool, default False
        Round the output size up (a last, partial window), as PyTorch.
    return_indices : bool, default False
        Also return the flat ``ih * W + iw`` index of each maximum (int64).

    Returns
    -------
    Tensor, or (Tensor, Tensor)
        The pooled values (and the indices). On ties the first maximum wins and receives the
        whole gradient; a NaN in a window wins.

    Raises
    ------
    ValueError
        On a wrong rank, padding larger than half the kernel, or a window that does not fit.

    Example
    -------
    >>> import numpy as np, fastbp as fb, fastbp.nn.functional as F
    >>> F.max_pool2d(fb.tensor(np.arange(16.0).reshape(1, 1, 4, 4)), 2).data
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    """
    return _max_pool(
        "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2
    )


def max_pool1d(
    input: Any,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Max over sliding windows of an (N, C, L) input (see :func:`max_pool2d`).

    Parameters
    ----------
    input : Tensor or array_like
        Shape (N, C, L) or (C, L).
    kernel_size, stride, padding, dilation, ceil_mode, return_indices
        As in :func:`max_pool2d`, for one axis; indices are positions along L.

    Returns
    -------
    Tensor, or (Tensor, Tensor)

    Raises
    ------
    ValueError
        As :func:`max_pool2d`, naming ``max_pool1d``.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> y, i = F.max_pool1d(fb.tensor([[[1.0, 3.0, 2.0, 0.0, 5.0]]]), 2, return_indices=True)
    >>> y.data, i.data
    (array([[[3., 2.]]], dtype=float32), array([[[1, 2]]]))
    """
    return _max_pool(
        "max_pool1d", input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1
    )


def _avg_pool(op, input, kernel_size, stride, padding, ceil_mode, include_pad, divisor, sp):
    x, unbatched = _batched(op, as_tensor(input), sp)
    kernel, stride_, pads, _, out = _pool_geometry(
        op, x, kernel_size, stride, padding, 1, ceil_mode, sp
    )
    if divisor is not None and (not isinstance(divisor, (int, np.integer)) or divisor == 0):
        raise ValueError(f"{op}: divisor_override must be a non-zero int, got {divisor!r}")
    one = () if sp == 2 else (1,)
    y = apply(
        AVG_POOL2D,
        (_as_2d(x, sp),),
        kernel_size=one + kernel,
        stride=one + stride_,
        padding=(0,) * (2 - sp) + pads,
        out_size=one + out,
        count_include_pad=bool(include_pad),
        divisor_override=divisor,
    )
    return _from_2d(y, sp, unbatched)


def avg_pool2d(
    input: Any,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """Mean over sliding windows of an (N, C, H, W) input.

    Parameters
    ----------
    input : Tensor or array_like
        Shape (N, C, H, W) or (C, H, W); floating point.
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int), default 0
        Zero padding, at most half the kernel size.
    ceil_mode : bool, default False
        Round the output size up, as PyTorch.
    count_include_pad : bool, default True
        Count the padding zeros in each window's divisor (never the part of a ``ceil_mode``
        window beyond the padding).
    divisor_override : int, optional
        Divide every window's sum by this instead.

    Returns
    -------
    Tensor

    Raises
    ------
    ValueError
        On a wrong rank, padding larger than half the kernel, or a window that does not fit.

    Example
    -------
    >>> import numpy as np, fastbp as fb, fastbp.nn.functional as F
    >>> F.avg_pool2d(fb.tensor(np.arange(16.0).reshape(1, 1, 4, 4)), 2).data
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    """
    return _avg_pool(
        "avg_pool2d",
        input,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
        2,
    )


def avg_pool1d(
    input: Any,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """Mean over sliding windows of an (N, C, L) input (see :func:`avg_pool2d`).

    Parameters
    ----------
    input : Tensor or array_like
        Shape (N, C, L) or (C, L).
    kernel_size, stride, padding, ceil_mode, count_include_pad
        As in :func:`avg_pool2d`, for one axis.

    Returns
    -------
    Tensor

    Raises
    ------
    ValueError
        As :func:`avg_pool2d`, naming ``avg_pool1d``.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.avg_pool1d(fb.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2).data
    array([[[2., 1.]]], dtype=float32)
    """
    return _avg_pool(
        "avg_pool1d", input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1
    )


def _adaptive_size(op: str, x: Tensor, output_size: Any) -> tuple[int, int]:
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size, output_size)
    try:
        sizes = tuple(output_size)
    except TypeError:
        sizes = ()
    if len(sizes) != 2:
        raise TypeError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    result = []
    for given, size in zip(sizes, x.shape[2:], strict=True):
        value = size if given is None else given
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{op}: output_size must hold positive ints, got {output_size!r}")
        result.append(int(value))
    if min(x.shape[2:]) == 0:
        raise ValueError(f"{op}: the input has an empty spatial axis (shape {x.shape})")
    return result[0], result[1]


def adaptive_avg_pool2d(input: Any, output_size: int | Sequence[int | None]) -> Tensor:
    """Average pooling to a fixed output size, windows ``[floor(i*H/OH), ceil((i+1)*H/OH))``.

    Parameters
    ----------
    input : Tensor or array_like
        Shape (N, C, H, W) or (C, H, W); floating point.
    output_size : int or (int or None, int or None)
        (OH, OW); None keeps that axis' input size.

    Returns
    -------
    Tensor
        Shape (N, C, OH, OW).

    Raises
    ------
    ValueError
        On a wrong rank or a non-positive output size.

    Example
    -------
    >>> import numpy as np, fastbp as fb, fastbp.nn.functional as F
    >>> F.adaptive_avg_pool2d(fb.tensor(np.arange(16.0).reshape(1, 1, 4, 4)), 1).data
    array([[[[7.5]]]])
    """
    x, unbatched = _batched("adaptive_avg_pool2d", as_tensor(input), 2)
    size = _adaptive_size("adaptive_avg_pool2d", x, output_size)
    return _from_2d(apply(ADAPTIVE_AVG_POOL2D, (x,), out_size=size), 2, unbatched)


def adaptive_max_pool2d(
    input: Any, output_size: int | Sequence[int | None], return_indices: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Max pooling to a fixed output size (windows as :func:`adaptive_avg_pool2d`).

    Parameters
    ----------
    input : Tensor or array_like
        Shape (N, C, H, W) or (C, H, W); floating point.
    output_size : int or (int or None, int or None)
        (OH, OW); None keeps that axis' input size.
    return_indices : bool, default False
        Also return the flat ``ih * W + iw`` index of each maximum.

    Returns
    -------
    Tensor, or (Tensor, Tensor)

    Raises
    ------
    ValueError
        On a wrong rank or a non-positive output size.

    Example
    -------
    >>> import numpy as np, fastbp as fb, fastbp.nn.functional as F
    >>> F.adaptive_max_pool2d(fb.tensor(np.arange(16.0).reshape(1, 1, 4, 4)), 1).data
    array([[[[15.]]]])
    """
    x, unbatched = _batched("adaptive_max_pool2d", as_tensor(input), 2)
    size = _adaptive_size("adaptive_max_pool2d", x, output_size)
    y = _from_2d(apply(ADAPTIVE_MAX_POOL2D, (x,), out_size=size), 2, unbatched)
    if not return_indices:
        return y
    idx = apply(ADAPTIVE_MAX_POOL2D_INDICES, (x,), out_size=size)
    return y, _from_2d(idx, 2, unbatched)


def conv_transpose2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    groups: int = 1,
    dilation: IntOrPair = 1,
) -> Tensor:
    """Transposed 2-D convolution (the gradient of :func:`conv2d` with respect to its input).

    Parameters
    ----------
    input : Tensor or array_like
        Shape (N, C_in, H, W) or (C_in, H, W).
    weight : Tensor or array_like
        Shape (C_in, C_out / groups, kH, kW) (PyTorch's layout for transposed convolutions).
    bias : Tensor or array_like, optional
        Shape (C_out,).
    stride : int or (int, int), default 1
    padding : int or (int, int), default 0
        Removed from each side of the output.
    output_padding : int or (int, int), default 0
        Extra rows / columns at the bottom / right; smaller than the stride or the dilation.
    groups : int, default 1
    dilation : int or (int, int), default 1

    Returns
    -------
    Tensor
        Shape (N, C_out, OH, OW), ``OH = (H-1)*sH - 2*pH + dH*(kH-1) + opH + 1``.

    Raises
    ------
    ValueError
        On a wrong rank, channels that do not match the weight or ``groups``, an output padding
        not smaller than the stride or dilation, or an empty output.

    Example
    -------
    >>> import numpy as np, fastbp as fb, fastbp.nn.functional as F
    >>> F.conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), stride=2).data[0, 0]
    array([[1., 1., 1., 1.],
           [1., 1., 1., 1.],
           [1., 1., 1., 1.],
           [1., 1., 1., 1.]])
    """
    op = "conv_transpose2d"
    x, unbatched = _batched(op, as_tensor(input), 2)
    w = as_tensor(weight)
    if w.ndim != 4:
        raise ValueError(
            f"{op}: expected a 4-D weight (in_channels, out_channels/groups, kH, kW), got "
            f"shape {w.shape}"
        )
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    channels = x.shape[1]
    if w.shape[0] != channels or channels % groups:
        raise ValueError(
            f"{op}: weight of shape {w.shape} expects {w.shape[0]} input channels divisible by "
            f"groups={groups}, got input of shape {x.shape}"
        )
    stride_ = _tuple(op, "stride", stride, 2, 1)
    pads = _tuple(op, "padding", padding, 2, 0)
    dilation_ = _tuple(op, "dilation", dilation, 2, 1)
    extra = _tuple(op, "output_padding", output_padding, 2, 0)
    if any(e >= max(s, d) for e, s, d in zip(extra, stride_, dilation_, strict=True)):
        raise ValueError(
            f"{op}: output_padding {extra} must be smaller than the stride {stride_} or the "
            f"dilation {dilation_}"
        )
    kernel = w.shape[2:]
    out = tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + e + 1
        for n, s, p, d, k, e in zip(
            x.shape[2:], stride_, pads, dilation_, kernel, extra, strict=True
        )  # fmt: skip
    )
    if min(out) <= 0:
        raise ValueError(
            f"{op}: input of shape {x.shape} with weight {w.shape}, stride {stride_} and padding "
            f"{pads} gives an empty output {out}; use less padding"
        )
    inputs = [x, w]
    out_channels = w.shape[1] * groups
    if bias is not None:
        b = as_tensor(bias)
        if b.shape != (out_channels,):
            raise ValueError(f"{op}: bias must have shape ({out_channels},), got {b.shape}")
        inputs.append(b)
    y = apply(CONV_TRANSPOSE2D, tuple(inputs), stride=stride_, padding=pads, dilation=dilation_,
              groups=int(groups), out_size=out)  # fmt: skip
    return y.reshape(*y.shape[1:]) if unbatched else y


def embedding(input: Any, weight: Any, padding_idx: int | None = None) -> Tensor:
    """Look up rows of ``weight`` by integer ``input``; repeated indices accumulate gradients.

    Parameters
    ----------
    input : Tensor or array_like of int
        Indices, any shape.
    weight : Tensor or array_like
        Shape (num_embeddings, embedding_dim).
    padding_idx : int, optional
        A row that receives no gradient (negative counts from the end).

    Returns
    -------
    Tensor
        Shape ``input.shape + (embedding_dim,)``.

    Raises
    ------
    IndexError
        If an index is out of range.
    TypeError
        If ``input`` is not integer.

    Example
    -------
    >>> import numpy as np, fastbp as fb, fastbp.nn.functional as F
    >>> w = fb.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    >>> F.embedding(np.array([2, 0, 2]), w).sum().backward()
    >>> w.grad.tolist()
    [[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]]
    """
    indices = np.asarray(getattr(input, "data", input))
    w = as_tensor(weight)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {indices.dtype}")
    if w.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num, dim), got shape {w.shape}")
    num = w.shape[0]
    if indices.size and (indices.min() < 0 or indices.max() >= num):
        raise IndexError(
            f"embedding: index out of range for a weight of {num} rows (indices from "
            f"{indices.min()} to {indices.max()})"
        )
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"embedding: padding_idx must be within the {num} rows")
        padding_idx = int(padding_idx) % num
    return apply(EMBEDDING, (w,), indices=indices.astype(np.int64), padding_idx=padding_idx)


def _resample_matrix(size: int, out: int, mode: str, align_corners: bool, scale: float | None):
    """(out, size) matrix mapping one axis of the input to the output (PyTorch's coordinates)."""
    a = np.zeros((out, size))
    rows = np.arange(out)
    # PyTorch maps with 1/scale_factor when one is given, else with size/out.
    ratio = 1.0 / scale if scale is not None else size / out
    if mode == "nearest":
        a[rows, np.minimum(np.floor(rows * ratio).astype(np.int64), size - 1)] = 1.0
        return a
    if align_corners:
        src = rows * ((size - 1) / (out - 1)) if out > 1 else np.zeros(out)
    else:
        src = np.maximum((rows + 0.5) * ratio - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), size - 1)
    hi = np.minimum(lo + 1, size - 1)
    frac = src - lo
    np.add.at(a, (rows, lo), 1.0 - frac)
    np.add.at(a, (rows, hi), frac)
    return a


def interpolate(
    input: Any,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
) -> Tensor:
    """Resize an (N, C, H, W) input by nearest-neighbour or bilinear interpolation.

    Both modes are linear and separable, so the op is ``A_h @ x @ A_wᵀ`` (two BLAS products
    forward, two backward) with PyTorch's source coordinates.

    Parameters
    ----------
    input : Tensor or array_like
        Shape (N, C, H, W), floating point.
    size : int or (int, int), optional
        Output (OH, OW); exactly one of ``size`` and ``scale_factor``.
    scale_factor : float or (float, float), optional
        ``OH = floor(H * scale)``.
    mode : {'nearest', 'bilinear'}
    align_corners : bool, optional
        Bilinear only: map the corner pixels' centres onto each other (default False).

    Returns
    -------
    Tensor

    Raises
    ------
    ValueError
        On a wrong rank, an unknown mode, ``align_corners`` with ``'nearest'``, or both/neither
        of ``size`` and ``scale_factor``.

    Example
    -------
    >>> import numpy as np, fastbp as fb, fastbp.nn.functional as F
    >>> F.interpolate(np.array([[[[0.0, 1.0]]]]), size=(1, 4), mode="bilinear").data
    array([[[[0.  , 0.25, 0.75, 1.  ]]]])
    """
    op = "interpolate"
    x = as_tensor(input)
    if x.ndim != 4:
        raise ValueError(f"{op}: only 4-D inputs (N, C, H, W) are supported, got shape {x.shape}")
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"{op}: mode must be 'nearest' or 'bilinear', got {mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(f"{op}: align_corners only applies to mode='bilinear'")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: give exactly one of size and scale_factor")
    h, w = x.shape[2:]
    scales: tuple[float | None, float | None] = (None, None)
    if size is not None:
        out = _tuple(op, "size", size, 2, 1)
    else:
        sf = (scale_factor, scale_factor) if np.isscalar(scale_factor) else tuple(scale_factor)
        if len(sf) != 2 or min(sf) <= 0:
            raise ValueError(
                f"{op}: scale_factor must be positive (one or two), got {scale_factor}"
            )
        scales = (float(sf[0]), float(sf[1]))
        out = (int(np.floor(h * scales[0])), int(np.floor(w * scales[1])))
        if min(out) < 1:
            raise ValueError(f"{op}: scale_factor {scale_factor} gives an empty output {out}")
    corners = bool(align_corners)
    a_h = _resample_matrix(h, out[0], mode, corners, scales[0])
    a_w = _resample_matrix(w, out[1], mode, corners, scales[1])
    return apply(SEPARABLE2D, (x,), a_h=a_h, a_w=a_w)
