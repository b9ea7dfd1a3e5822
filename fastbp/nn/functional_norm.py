"""Normalisation and dropout functions (PyTorch's ``torch.nn.functional`` signatures).

Re-exported by :mod:`fastbp.nn.functional`. Batch norm in training mode and dropout are single
ops over Numba kernels (``fastbp.ops.norm``): one pass forward, one backward. The other forms
(batch norm with running statistics, layer norm, group norm) are composed from recorded tensor
ops (mean, subtraction, square root, products), so their gradients come from those ops' vjps.

Dropout draws its masks from a seed taken from the generator seeded by
:func:`fastbp.manual_seed` (:func:`fastbp.core.tensor.default_generator`), so a seeded run drops
the same units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.engine import apply
from ..core.tensor import Tensor, as_tensor, default_generator
from ..ops.norm import BATCH_NORM_TRAIN, DROPOUT_MASK

__all__ = ["batch_norm", "dropout", "dropout2d", "group_norm", "layer_norm"]


def _check_p(op: str, p: float) -> float:
    if not isinstance(p, (int, float, np.floating)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p!r}")
    return float(p)


# Dropout masks are drawn in a kernel for these dtypes (fastbp.kernels.dropout).
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _mask(x: Tensor, shape: tuple[int, ...], p: float) -> Tensor:
    keep = default_generator().random(shape) >= p
    # NOTE: p == 1 drops everything; the scale is then 0 rather than 1/0.
    scale = 0.0 if p >= 1.0 else 1.0 / (1.0 - p)
    return Tensor(keep.astype(x.dtype) * x.dtype.type(scale))


def dropout(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Parameters
    ----------
    input : Tensor or array_like
        Floating point, any shape.
    p : float, default 0.5
        Probability of an element being zeroed.
    training : bool, default True
        When False, return ``input`` unchanged (evaluation).
    inplace : bool, default False
        Accepted for PyTorch compatibility; the result is always a new tensor.

    Returns
    -------
    Tensor

    Raises
    ------
    ValueError
        If ``p`` is not in [0, 1].

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> _ = fb.manual_seed(0)
    >>> y = F.dropout(fb.ones(1000), 0.5)
    >>> sorted(set(y.data.tolist())), 400 < int((y.data == 0).sum()) < 600
    ([0.0, 2.0], True)
    """
    p = _check_p("dropout", p)
    x = as_tensor(input)
    if not training or p == 0.0:
        return x
    if x.dtype in _KERNEL_DTYPES:
        return apply(DROPOUT_MASK, (x,), p=p, channelwise=False)
    return x * _mask(x, x.shape, p)


def dropout2d(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels of an (N, C, H, W) (or unbatched (C, H, W)) input with probability p.

    Parameters
    ----------
    input : Tensor or array_like
        4-D (N, C, H, W) or 3-D (C, H, W).
    p : float, default 0.5
    training : bool, default True
    inplace : bool, default False
        Accepted for PyTorch compatibility.

    Returns
    -------
    Tensor
        Kept channels are scaled by ``1 / (1 - p)``.

    Raises
    ------
    ValueError
        If ``p`` is not in [0, 1] or the input is not 3-D or 4-D.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> y = F.dropout2d(fb.ones(2, 8, 3, 3), 0.5)
    >>> bool(((y.data == 0).all(axis=(2, 3)) | (y.data == 2).all(axis=(2, 3))).all())
    True
    """
    p = _check_p("dropout2d", p)
    x = as_tensor(input)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"dropout2d: expected a 4-D input (N, C, H, W) or 3-D (C, H, W), got shape {x.shape}"
        )
    if not training or p == 0.0:
        return x
    if x.dtype in _KERNEL_DTYPES and x.ndim == 4:
        return apply(DROPOUT_MASK, (x,), p=p, channelwise=True)
    return x * _mask(x, x.shape[: x.ndim - 2] + (1, 1), p)


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batch_norm(
    input: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise each channel (axis 1) by its batch or running statistics.

    Parameters
    ----------
    input : Tensor or array_like
        Shape (N, C, ...), at least 2-D.
    running_mean, running_var : Tensor, ndarray or None
        Shape (C,). In training they are updated in place:
        ``running = (1 - momentum) * running + momentum * batch`` (the variance unbiased).
    weight, bias : Tensor or array_like, optional
        Shape (C,): the affine transform after normalising.
    training : bool, default False
        Use the batch statistics (True) or the running ones (False).
    momentum : float, default 0.1
    eps : float, default 1e-5
        Added to the variance.

    Returns
    -------
    Tensor

    Raises
    ------
    ValueError
        On an input of fewer than 2 dimensions, statistics of the wrong shape, or training
        with one value per channel.

    Example
    -------
    >>> import numpy as np, fastbp as fb, fastbp.nn.functional as F
    >>> rm, rv = np.zeros(2), np.ones(2)
    >>> y = F.batch_norm(fb.tensor([[1.0, 2.0], [3.0, 6.0]]), rm, rv, training=True)
    >>> np.round(y.data, 3).tolist(), rm.tolist()
    ([[-1.0, -1.0], [1.0, 1.0]], [0.2, 0.4])
    """
    x = as_tensor(input)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected an input of at least 2 dimensions, got {x.shape}")
    channels = x.shape[1]
    for name, stat in (("running_mean", running_mean), ("running_var", running_var),
                       ("weight", weight), ("bias", bias)):  # fmt: skip
        if stat is not None and tuple(np.shape(getattr(stat, "data", stat))) != (channels,):
            raise ValueError(
                f"batch_norm: {name} must have shape ({channels},) for input of shape "
                f"{x.shape}, got {np.shape(getattr(stat, 'data', stat))}"
            )
    shape = _channel_shape(x)
    if training:
        count = x.data.size // max(channels, 1)
        if count <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, got input "
                f"of shape {x.shape}"
            )
        # One op over the batch-norm kernels: statistics, normalisation and the affine
        # transform in one pass, the running statistics updated from the same statistics.
        # The statistics travel as tensors: a replayed (traced) step then updates the
        # buffers they hold, not arrays frozen at the first call.
        stats = [
            None if stat is None else (stat if isinstance(stat, Tensor) else Tensor(stat))
            for stat in (running_mean, running_var)
        ]
        inputs = [x] + [as_tensor(v) for v in (weight, bias) if v is not None]
        return apply(
            BATCH_NORM_TRAIN,
            tuple(inputs),
            has_weight=weight is not None,
            has_bias=bias is not None,
            eps=float(eps),
            momentum=float(momentum),
            running_mean=stats[0],
            running_var=stats[1],
        )
    else:
        if running_mean is None or running_var is None:
            raise ValueError(
                "batch_norm: running_mean and running_var are needed when not training"
            )
        rm = np.array(getattr(running_mean, "data", running_mean), dtype=x.dtype).reshape(shape)
        rv = np.array(getattr(running_var, "data", running_var), dtype=x.dtype).reshape(shape)
        y = (x - Tensor(rm)) * Tensor((1.0 / np.sqrt(rv + eps)).astype(x.dtype))
    if weight is not None:
        y = y * as_tensor(weight).reshape(*shape)
    if bias is not None:
        y = y + as_tensor(bias).reshape(*shape)
    return y


def layer_norm(
    input: Any,
    normalized_shape: int | Sequence[int],
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` axes (biased variance), then scale/shift.

    Parameters
    ----------
    input : Tensor or array_like
    normalized_shape : int or sequence of int
        Must equal the input's trailing shape.
    weight, bias : Tensor or array_like, optional
        Shape ``normalized_shape``.
    eps : float, default 1e-5

    Returns
    -------
    Tensor

    Raises
    ------
    ValueError
        If the input's trailing shape is not ``normalized_shape``.

    Example
    -------
    >>> import numpy as np, fastbp as fb, fastbp.nn.functional as F
    >>> np.round(F.layer_norm(fb.tensor([[1.0, 3.0]]), 2).data, 3).tolist()
    [[-1.0, 1.0]]
    """
    x = as_tensor(input)
    norm_shape = (
        (int(normalized_shape),)
        if isinstance(normalized_shape, (int, np.integer))
        else tuple(int(n) for n in normalized_shape)
    )
    k = len(norm_shape)
    if k == 0 or x.shape[x.ndim - k :] != norm_shape or x.ndim < k:
        raise ValueError(
            f"layer_norm: normalized_shape {norm_shape} must equal the trailing shape of the "
            f"input, got input of shape {x.shape}"
        )
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=axes, keepdims=True)
    y = centred / (var + eps).sqrt()
    if weight is not None:
        y = y * as_tensor(weight)
    if bias is not None:
        y = y + as_tensor(bias)
    return y


def group_norm(
    input: Any, num_groups: int, weight: Any = None, bias: Any = None, eps: float = 1e-5
) -> Tensor:
    """Normalise each sample over groups of channels (and all spatial positions).

    Parameters
    ----------
    input : Tensor or array_like
        Shape (N, C, ...), C divisible by ``num_groups``.
    num_groups : int
    weight, bias : Tensor or array_like, optional
        Shape (C,), per-channel affine.
    eps : float, default 1e-5

    Returns
    -------
    Tensor

    Raises
    ------
    ValueError
        If C is not divisible by ``num_groups`` or the input has fewer than 2 dimensions.

    Example
    -------
    >>> import numpy as np, fastbp as fb, fastbp.nn.functional as F
    >>> np.round(F.group_norm(fb.tensor([[1.0, 3.0, 5.0, 5.0]]), 2).data, 3).tolist()
    [[-1.0, 1.0, 0.0, 0.0]]
    """
    x = as_tensor(input)
    if x.ndim < 2 or not isinstance(num_groups, (int, np.integer)) or num_groups < 1:
        raise ValueError(
            f"group_norm: expected an input (N, C, ...) and a positive num_groups, got shape "
            f"{x.shape} and num_groups={num_groups!r}"
        )
    n, c = x.shape[0], x.shape[1]
    if c % num_groups:
        raise ValueError(
            f"group_norm: the number of channels ({c}, input shape {x.shape}) must be "
            f"divisible by num_groups={num_groups}"
        )
    grouped = x.reshape(n, int(num_groups), -1)
    mean = grouped.mean(axis=2, keepdims=True)
    centred = grouped - mean
    var = (centred * centred).mean(axis=2, keepdims=True)
    y = (centred / (var + eps).sqrt()).reshape(*x.shape)
    shape = _channel_shape(x)
    if weight is not None:
        y = y * as_tensor(weight).reshape(*shape)
    if bias is not None:
        y = y + as_tensor(bias).reshape(*shape)
    return y
