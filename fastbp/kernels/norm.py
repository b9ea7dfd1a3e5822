"""Batch normalisation in training mode: forward and backward, one kernel each.

Over an input viewed as ``(N, C, L)`` (``L`` the product of the spatial sizes, 1 for an
``(N, C)`` input) and ``M = N*L`` values per channel::

    mean = sum(x) / M             var = sum((x - mean)**2) / M      invstd = 1 / sqrt(var + eps)
    y    = (x - mean) * invstd * w + b

    dw = sum(dy * xhat)           db = sum(dy)                       xhat = (x - mean) * invstd
    dx = w * invstd * (dy - db / M - xhat * dw / M)

The forward kernel reads each channel once for its statistics (sums shifted by the channel's
first value and accumulated in float64, so a large mean does not cancel the variance) and once
to write ``y``; the backward kernel reads ``x`` and ``dy`` once for the two sums and once to
write ``dx``. Each kernel has a NumPy twin ``name_numpy`` with the same signature.

Example
-------
>>> import numpy as np
>>> x = np.array([[1.0, 2.0], [3.0, 6.0]]).reshape(2, 2, 1)
>>> y, mean, var, invstd = batch_norm_forward(x, None, None, 0.0)
>>> y[:, :, 0], mean, var
(array([[-1., -1.],
       [ 1.,  1.]]), array([2., 4.]), array([1., 4.]))
"""

from __future__ import annotations

import numpy as np

from ._guards import FLOAT_DTYPES
from ._jit import kernel_jit

__all__ = [
    "batch_norm_backward",
    "batch_norm_backward_numpy",
    "batch_norm_forward",
    "batch_norm_forward_numpy",
]


@kernel_jit()
def _bn_forward_loop(x, w, b, has_w, has_b, eps, y, mean, var, invstd):
    n_batch, channels, length = x.shape
    count = n_batch * length
    for c in range(channels):
        shift = np.float64(x[0, c, 0])
        total = 0.0
        squares = 0.0
        for n in range(n_batch):
            row = x[n, c]
            for i in range(length):
                d = np.float64(row[i]) - shift
                total += d
                squares += d * d
        centred_mean = total / count
        v = max(squares / count - centred_mean * centred_mean, 0.0)
        m = shift + centred_mean
        s = 1.0 / np.sqrt(v + eps)
        mean[c] = m
        var[c] = v
        invstd[c] = s
        scale = s * (np.float64(w[c]) if has_w else 1.0)
        offset = (np.float64(b[c]) if has_b else 0.0) - m * scale
        # y = x * scale + offset, in the input's precision.
        scale_t = y.dtype.type(scale)
        offset_t = y.dtype.type(offset)
        for n in range(n_batch):
            src = x[n, c]
            dst = y[n, c]
            for i in range(length):
                dst[i] = src[i] * scale_t + offset_t


@kernel_jit()
def _bn_backward_loop(x, dy, mean, invstd, w, has_w, dx, dw, db):
    n_batch, channels, length = x.shape
    count = n_batch * length
    for c in range(channels):
        m = mean[c]
        s = invstd[c]
        sum_dy = 0.0
        sum_dy_x = 0.0
        for n in range(n_batch):
            xs = x[n, c]
            ds = dy[n, c]
            for i in range(length):
                g = np.float64(ds[i])
                sum_dy += g
                sum_dy_x += g * (np.float64(xs[i]) - m)
        sum_dy_xhat = sum_dy_x * s
        dw[c] = sum_dy_xhat
        db[c] = sum_dy
        # dx = k * (dy - sum_dy/M - xhat * sum_dy_xhat/M) = a*dy + bx*x + const
        k = s * (np.float64(w[c]) if has_w else 1.0)
        a = dx.dtype.type(k)
        bx = dx.dtype.type(-k * s * sum_dy_xhat / count)
        const = dx.dtype.type(-k * sum_dy / count + k * s * sum_dy_xhat / count * m)
        for n in range(n_batch):
            xs = x[n, c]
            ds = dy[n, c]
            out = dx[n, c]
            for i in range(length):
                out[i] = a * ds[i] + bx * xs[i] + const


def _suits(x: np.ndarray, *others: np.ndarray | None) -> bool:
    if x.dtype not in FLOAT_DTYPES or x.ndim != 3:
        return False
    return all(o is None or o.dtype == x.dtype for o in others)


def _vector(v: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    return np.empty(0, like.dtype) if v is None else np.ascontiguousarray(v)


def batch_norm_forward(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Normalise each channel of ``x`` (N, C, L) by its batch statistics, then scale and shift.

    Parameters
    ----------
    x : ndarray
        Floating point, shape (N, C, L) with N*L > 0.
    weight, bias : ndarray or None
        Shape (C,): the affine transform (1 and 0 when None).
    eps : float
        Added to the variance.

    Returns
    -------
    y : ndarray
        Shape and dtype of ``x``.
    mean, var, invstd : ndarray of float64
        Per channel: the batch mean, the biased variance and ``1/sqrt(var + eps)``.

    Raises
    ------
    ValueError
        If ``x`` is not 3-D or a vector does not have C entries.

    Example
    -------
    >>> import numpy as np
    >>> y, mean, var, invstd = batch_norm_forward(np.ones((2, 3, 4)), None, None, 1e-5)
    >>> float(abs(y).max()), mean.tolist()
    (0.0, [1.0, 1.0, 1.0])
    """
    _check("batch_norm_forward", x, weight, bias)
    if not _suits(x, weight, bias):
        return batch_norm_forward_numpy(x, weight, bias, eps)
    x = np.ascontiguousarray(x)
    c = x.shape[1]
    y = np.empty_like(x)
    mean, var, invstd = np.empty(c), np.empty(c), np.empty(c)
    _bn_forward_loop(x, _vector(weight, x), _vector(bias, x), weight is not None,
                     bias is not None, float(eps), y, mean, var, invstd)  # fmt: skip
    return y, mean, var, invstd


def batch_norm_forward_numpy(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """NumPy twin of :func:`batch_norm_forward` (statistics in float64).

    Example
    -------
    >>> import numpy as np
    >>> batch_norm_forward_numpy(np.arange(4.0).reshape(2, 1, 2), None, None, 0.0)[1]
    array([1.5])
    """
    _check("batch_norm_forward_numpy", x, weight, bias)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2))
    var = ((x64 - mean[:, None]) ** 2).mean(axis=(0, 2))
    invstd = 1.0 / np.sqrt(var + eps)
    scale = invstd * (1.0 if weight is None else weight.astype(np.float64))
    offset = (0.0 if bias is None else bias.astype(np.float64)) - mean * scale
    dtype = np.result_type(x.dtype, np.float32)
    y = (x * scale[:, None].astype(dtype) + offset[:, None].astype(dtype)).astype(dtype)
    return y, mean, var, invstd


def batch_norm_backward(
    x: np.ndarray,
    dy: np.ndarray,
    mean: np.ndarray,
    invstd: np.ndarray,
    weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`batch_norm_forward` in training mode: ``(dx, dweight, dbias)``.

    Parameters
    ----------
    x, dy : ndarray
        Shape (N, C, L): the forward's input and the gradient at its output.
    mean, invstd : ndarray of float64
        Shape (C,), from the forward pass.
    weight : ndarray or None
        Shape (C,).

    Returns
    -------
    dx : ndarray
        Shape and dtype of ``x``.
    dweight, dbias : ndarray of float64
        Shape (C,): ``sum(dy * xhat)`` and ``sum(dy)`` per channel.

    Raises
    ------
    ValueError
        If the shapes do not agree.

    Example
    -------
    >>> import numpy as np
    >>> x = np.array([1.0, 3.0]).reshape(2, 1, 1)
    >>> _, mean, _, invstd = batch_norm_forward(x, None, None, 0.0)
    >>> dx, dw, db = batch_norm_backward(x, np.array([1.0, 0.0]).reshape(2, 1, 1), mean, invstd,
    ...                                  None)
    >>> dx.ravel(), dw, db
    (array([0., 0.]), array([-1.]), array([1.]))
    """
    _check("batch_norm_backward", x, weight, None)
    if dy.shape != x.shape:
        raise ValueError(
            f"batch_norm_backward: dy of shape {dy.shape} does not match x of shape {x.shape}"
        )
    if not _suits(x, weight, dy):
        return batch_norm_backward_numpy(x, dy, mean, invstd, weight)
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy)
    c = x.shape[1]
    dx = np.empty_like(x)
    dw, db = np.empty(c), np.empty(c)
    _bn_backward_loop(x, dy, np.ascontiguousarray(mean, np.float64),
                      np.ascontiguousarray(invstd, np.float64), _vector(weight, x),
                      weight is not None, dx, dw, db)  # fmt: skip
    return dx, dw, db


def batch_norm_backward_numpy(
    x: np.ndarray,
    dy: np.ndarray,
    mean: np.ndarray,
    invstd: np.ndarray,
    weight: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy twin of :func:`batch_norm_backward`.

    Example
    -------
    >>> import numpy as np
    >>> x = np.array([1.0, 3.0]).reshape(2, 1, 1)
    >>> batch_norm_backward_numpy(x, np.ones((2, 1, 1)), np.array([2.0]), np.array([1.0]),
    ...                           None)[0].ravel()
    array([0., 0.])
    """
    count = x.shape[0] * x.shape[2]
    xhat = (x.astype(np.float64) - mean[:, None]) * invstd[:, None]
    g = dy.astype(np.float64)
    db = g.sum(axis=(0, 2))
    dw = (g * xhat).sum(axis=(0, 2))
    k = invstd * (1.0 if weight is None else weight.astype(np.float64))
    dx = k[:, None] * (g - db[:, None] / count - xhat * dw[:, None] / count)
    return dx.astype(np.result_type(x.dtype, np.float32)), dw, db


def _check(kernel: str, x: np.ndarray, weight, bias) -> None:
    if x.ndim != 3 or x.shape[0] * x.shape[2] == 0:
        raise ValueError(f"{kernel}: expected a non-empty (N, C, L) array, got shape {x.shape}")
    for name, v in (("weight", weight), ("bias", bias)):
        if v is not None and v.shape != (x.shape[1],):
            raise ValueError(
                f"{kernel}: {name} must have shape ({x.shape[1]},) for x of shape {x.shape}, "
                f"got {v.shape}"
            )
