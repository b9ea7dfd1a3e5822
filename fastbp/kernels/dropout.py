"""Dropout masks drawn inside a kernel, from a counter-based generator.

Element ``i`` of a mask is kept when the 53 high bits of ``splitmix64(seed + (i + 1) * γ)``
(γ the golden-ratio increment) reach ``p * 2**53``. Each draw depends only on the seed and the
element's position, so the kernel fills the mask, scales the input by ``1 / (1 - p)`` and writes
the output in one pass, without a random array the size of the input, and the NumPy twin
computes the very same mask with vectorised ``uint64`` arithmetic. The seed comes from
fastbp's generator (:func:`fastbp.manual_seed`), so a seeded run drops the same units.

With ``channelwise`` (``dropout2d``) one draw per row of the ``(rows, length)`` view decides a
whole channel.

Example
-------
>>> import numpy as np
>>> y, keep = dropout_forward(np.ones((2, 4)), 0.5, 7, False)
>>> set(y.ravel().tolist()) <= {0.0, 2.0}
True
>>> np.array_equal(keep, dropout_forward_numpy(np.ones((2, 4)), 0.5, 7, False)[1])
True
"""

from __future__ import annotations

import numpy as np

from ._guards import FLOAT_DTYPES
from ._jit import kernel_jit

__all__ = [
    "dropout_backward",
    "dropout_backward_numpy",
    "dropout_forward",
    "dropout_forward_numpy",
]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


@kernel_jit()
def _draw(seed, i):
    # splitmix64 of the i-th counter value; every operand is uint64, so it wraps as NumPy does.
    z = seed + (np.uint64(i) + np.uint64(1)) * _GAMMA
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return z >> _S11


@kernel_jit()
def _dropout_loop(x, seed, threshold, scale, channelwise, y, keep):
    rows, length = x.shape
    zero = y.dtype.type(0.0)
    for r in range(rows):
        if channelwise:
            kept = _draw(seed, r) >= threshold
            keep[r] = kept
            factor = scale if kept else zero
            for i in range(length):
                # x * 0, not 0: a NaN stays NaN, as the unfused x * mask.
                y[r, i] = x[r, i] * factor
        else:
            for i in range(length):
                j = r * length + i
                kept = _draw(seed, j) >= threshold
                keep[j] = kept
                y[r, i] = x[r, i] * (scale if kept else zero)


@kernel_jit()
def _dropout_backward_loop(dy, keep, scale, channelwise, dx):
    rows, length = dy.shape
    zero = dx.dtype.type(0.0)
    for r in range(rows):
        for i in range(length):
            kept = keep[r] if channelwise else keep[r * length + i]
            dx[r, i] = dy[r, i] * (scale if kept else zero)


def _threshold(p: float) -> np.uint64:
    return np.uint64(int(p * 2.0**53))


def _scale(p: float, dtype: np.dtype):
    # NOTE: p == 1 drops everything; the scale is then 0 rather than 1/0.
    return dtype.type(0.0 if p >= 1.0 else 1.0 / (1.0 - p))


def _check(kernel: str, x: np.ndarray, p: float) -> None:
    if not isinstance(x, np.ndarray) or x.dtype not in FLOAT_DTYPES or x.ndim != 2:
        raise TypeError(
            f"{kernel}: x must be a 2-D float32/float64 array, got "
            f"{getattr(x, 'dtype', type(x).__name__)} of shape {getattr(x, 'shape', None)}"
        )
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{kernel}: p must be in [0, 1], got {p!r}")


def dropout_forward(
    x: np.ndarray, p: float, seed: int, channelwise: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Drop elements (or whole rows) of ``x`` with probability ``p``, scale the rest.

    Parameters
    ----------
    x : ndarray
        float32/float64, shape (rows, length).
    p : float
        Probability of dropping, in [0, 1].
    seed : int
        In [0, 2**64); the mask is a function of the seed and the positions only.
    channelwise : bool
        One draw per row (``dropout2d``) instead of one per element.

    Returns
    -------
    y : ndarray
        ``x * keep / (1 - p)``, shape and dtype of ``x``.
    keep : ndarray of bool
        The mask, flat: ``rows`` entries if ``channelwise``, else ``rows * length``.

    Raises
    ------
    TypeError
        If ``x`` is not a 2-D float32/float64 array.
    ValueError
        If ``p`` is outside [0, 1].

    Example
    -------
    >>> import numpy as np
    >>> y, keep = dropout_forward(np.ones((3, 2)), 0.0, 1, True)
    >>> keep.tolist()
    [True, True, True]
    """
    _check("dropout_forward", x, p)
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    keep = np.empty(x.shape[0] if channelwise else x.size, np.bool_)
    _dropout_loop(x, np.uint64(seed), _threshold(p), _scale(p, x.dtype), bool(channelwise), y,
                  keep)  # fmt: skip
    return y, keep


def dropout_forward_numpy(
    x: np.ndarray, p: float, seed: int, channelwise: bool
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`dropout_forward`: the same splitmix64 draws, vectorised.

    Example
    -------
    >>> import numpy as np
    >>> dropout_forward_numpy(np.ones((1, 3)), 1.0, 5, False)[0]
    array([[0., 0., 0.]])
    """
    _check("dropout_forward_numpy", x, p)
    count = x.shape[0] if channelwise else x.size
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (np.arange(count, dtype=np.uint64) + np.uint64(1)) * _GAMMA
        z = (z ^ (z >> _S30)) * _MIX1
        z = (z ^ (z >> _S27)) * _MIX2
        z = z ^ (z >> _S31)
    keep = (z >> _S11) >= _threshold(p)
    factor = np.where(keep, _scale(p, x.dtype), x.dtype.type(0.0)).astype(x.dtype)
    factor = factor[:, None] if channelwise else factor.reshape(x.shape)
    return x * factor, keep


def dropout_backward(dy: np.ndarray, keep: np.ndarray, p: float, channelwise: bool) -> np.ndarray:
    """``dy * keep / (1 - p)``, with the mask of :func:`dropout_forward`.

    Parameters
    ----------
    dy : ndarray
        float32/float64, shape (rows, length).
    keep : ndarray of bool
        From :func:`dropout_forward`.
    p : float
    channelwise : bool
        As given to :func:`dropout_forward`.

    Returns
    -------
    ndarray
        Shape and dtype of ``dy``.

    Raises
    ------
    TypeError, ValueError
        As :func:`dropout_forward`, or if ``keep`` has the wrong size.

    Example
    -------
    >>> import numpy as np
    >>> dropout_backward(np.ones((1, 2)), np.array([True, False]), 0.5, False)
    array([[2., 0.]])
    """
    _check("dropout_backward", dy, p)
    expected = dy.shape[0] if channelwise else dy.size
    if keep.shape != (expected,):
        raise ValueError(
            f"dropout_backward: mask of shape {keep.shape} does not fit dy of shape {dy.shape} "
            f"(channelwise={channelwise})"
        )
    dy = np.ascontiguousarray(dy)
    dx = np.empty_like(dy)
    _dropout_backward_loop(dy, np.ascontiguousarray(keep, np.bool_), _scale(p, dy.dtype),
                           bool(channelwise), dx)  # fmt: skip
    return dx


def dropout_backward_numpy(
    dy: np.ndarray, keep: np.ndarray, p: float, channelwise: bool
) -> np.ndarray:
    """NumPy twin of :func:`dropout_backward`.

    Example
    -------
    >>> import numpy as np
    >>> dropout_backward_numpy(np.ones((2, 2)), np.array([False, True]), 0.5, True)
    array([[0., 0.],
           [2., 2.]])
    """
    _check("dropout_backward_numpy", dy, p)
    factor = np.where(keep, _scale(p, dy.dtype), dy.dtype.type(0.0)).astype(dy.dtype)
    return dy * (factor[:, None] if channelwise else factor.reshape(dy.shape))
