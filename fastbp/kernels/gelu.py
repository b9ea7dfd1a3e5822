"""GELU (exact, with erf) forward and backward kernels, each one pass over memory.

NumPy needs about six passes and as many temporaries for ``x·Φ(x)`` and its derivative;
the jitted loops read each input once. Measured at (1000, 1000) float32, pinned to one
core: the op's forward + backward took 118 ms with NumPy and 42 ms with these loops
(torch: 19 ms). Inputs: float32 or float64 arrays of any shape (made C-contiguous).
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import kernel_jit

__all__ = ["gelu_backward", "gelu_backward_numpy", "gelu_forward", "gelu_forward_numpy"]

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@kernel_jit()
def _gelu_forward_loop(x, out, cdf):
    half = x.dtype.type(0.5)
    one = x.dtype.type(1.0)
    scale = x.dtype.type(_INV_SQRT_2)
    for i in range(x.size):
        c = half * (one + math.erf(x[i] * scale))
        cdf[i] = c
        out[i] = x[i] * c


@kernel_jit()
def _gelu_backward_loop(x, cdf, dy, dx):
    half = x.dtype.type(0.5)
    scale = x.dtype.type(_INV_SQRT_2PI)
    for i in range(x.size):
        v = x[i]
        dx[i] = dy[i] * (cdf[i] + v * math.exp(-half * v * v) * scale)


def _flat(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1)


def gelu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x·Φ(x), Φ(x))`` with ``Φ(x) = (1 + erf(x/√2)) / 2``, in ``x``'s dtype.

    Example
    -------
    >>> import numpy as np
    >>> from fastbp.kernels.gelu import gelu_forward
    >>> gelu_forward(np.array([0.0, 1.0]))[1].round(4)
    array([0.5   , 0.8413])
    """
    flat = _flat(x)
    out, cdf = np.empty_like(flat), np.empty_like(flat)
    _gelu_forward_loop(flat, out, cdf)
    return out.reshape(x.shape), cdf.reshape(x.shape)


def gelu_forward_numpy(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`gelu_forward`."""
    from scipy.special import erf  # here: importing scipy.special costs every start 0.1-0.4 s

    cdf = (0.5 * (1 + erf(x * _INV_SQRT_2))).astype(x.dtype, copy=False)
    with np.errstate(invalid="ignore"):  # -inf · 0 is NaN, as in torch
        return x * cdf, cdf


def gelu_backward(x: np.ndarray, cdf: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Return ``dy · (Φ(x) + x·φ(x))``, the gradient of GELU, from ``x`` and saved ``Φ(x)``.

    Example
    -------
    >>> import numpy as np
    >>> from fastbp.kernels.gelu import gelu_forward, gelu_backward
    >>> x = np.array([0.0])
    >>> gelu_backward(x, gelu_forward(x)[1], np.ones(1))
    array([0.5])
    """
    fx, fc, fd = _flat(x), _flat(cdf), _flat(np.asarray(dy, dtype=x.dtype))
    dx = np.empty_like(fx)
    _gelu_backward_loop(fx, fc, fd, dx)
    return dx.reshape(x.shape)


def gelu_backward_numpy(x: np.ndarray, cdf: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """NumPy twin of :func:`gelu_backward`."""
    with np.errstate(invalid="ignore"):  # ±inf · 0 is NaN, as in torch
        return dy * (cdf + x * np.exp(-0.5 * x * x) * _INV_SQRT_2PI).astype(x.dtype, copy=False)
