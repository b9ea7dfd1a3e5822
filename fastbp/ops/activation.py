"""Activation functions beyond relu/sigmoid/tanh, each one op (forward + vjp).

PyTorch's conventions at the kinks and at NaN are kept (they are tested against it): e.g.
``leaky_relu'(0)`` is the slope, ``hardtanh'`` is 0 at the bounds, ``elu'(0)`` is alpha.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.registry import defop
from ..kernels import gelu as gelu_kernels

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _activation(name, f, df):
    """An op ``f(x, **params)`` whose derivative is ``df(x, out, **params)``."""

    def forward(x, **params):
        with np.errstate(over="ignore", invalid="ignore"):
            out = f(x, **params)
        return np.asarray(out, dtype=x.dtype), (x, out, params)

    def vjp(saved, dy, needs):
        x, out, params = saved
        with np.errstate(over="ignore", invalid="ignore"):
            return (dy * np.asarray(df(x, out, **params), dtype=dy.dtype),)

    return defop(name, forward, vjp)


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * x))


def _softplus(x, beta=1.0, threshold=20.0):
    bx = beta * x
    # log(1 + e^bx) = max(bx, 0) + log1p(e^-|bx|): no overflow for large |bx|.
    smooth = (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / beta
    return np.where(bx > threshold, x, smooth)


LEAKY_RELU = _activation(
    "leaky_relu",
    lambda x, negative_slope=0.01: np.where(x > 0, x, x * negative_slope),
    lambda x, y, negative_slope=0.01: np.where(x > 0, 1.0, negative_slope),
)
ELU = _activation(
    "elu",
    lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))),
    lambda x, y, alpha=1.0: np.where(x <= 0, alpha * np.exp(np.minimum(x, 0)), 1.0),
)
SELU = _activation(
    "selu",
    lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0))),
    lambda x, y: SELU_SCALE * np.where(x <= 0, SELU_ALPHA * np.exp(np.minimum(x, 0)), 1.0),
)
CELU = _activation(
    "celu",
    lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0) / alpha)),
    lambda x, y, alpha=1.0: np.where(x <= 0, np.exp(np.minimum(x, 0) / alpha), 1.0),
)

# Python floats, not np.float64: those would promote float32 arrays to float64 (NEP 50).
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def _gelu_forward(x, approximate="none"):
    # Keep Φ(x) (or the tanh term) for the backward pass: erf is the costly part.
    with np.errstate(over="ignore", invalid="ignore"):
        if approximate == "tanh":
            t = np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
            return 0.5 * x * (1 + t), (x, t, approximate)
        if x.dtype in _KERNEL_DTYPES:
            out, cdf = gelu_kernels.gelu_forward(x)
        else:
            out, cdf = gelu_kernels.gelu_forward_numpy(x)
        return out, (x, cdf, approximate)


def _gelu_vjp(saved, dy, needs):
    x, s, approximate = saved
    with np.errstate(over="ignore", invalid="ignore"):
        if approximate == "tanh":
            dinner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return (dy * (0.5 * (1 + s) + 0.5 * x * (1 - s * s) * dinner),)
        # d/dx x·Φ(x) = Φ(x) + x·φ(x), in one pass when the dtype suits the kernel.
        if x.dtype in _KERNEL_DTYPES and dy.dtype == x.dtype:
            return (gelu_kernels.gelu_backward(x, s, dy),)
        return (gelu_kernels.gelu_backward_numpy(x, s, dy),)


GELU = defop(
    "gelu",
    _gelu_forward,
    _gelu_vjp,
    kernel=gelu_kernels.gelu_forward,
    twin=gelu_kernels.gelu_forward_numpy,
)
SILU = _activation(
    "silu",
    lambda x: x * _sigmoid(x),
    lambda x, y: (lambda s: s * (1 + x * (1 - s)))(_sigmoid(x)),
)


def _mish_grad(x, y):
    t = np.tanh(_softplus(x))
    return t + x * _sigmoid(x) * (1 - t * t)


MISH = _activation("mish", lambda x: x * np.tanh(_softplus(x)), _mish_grad)
SOFTPLUS = _activation(
    "softplus",
    _softplus,
    lambda x, y, beta=1.0, threshold=20.0: np.where(beta * x > threshold, 1.0, _sigmoid(beta * x)),
)
SOFTSIGN = _activation(
    "softsign",
    lambda x: x / (1 + np.abs(x)),
    # Written as torch differentiates x / (1 + |x|): NaN (inf/inf) at ±inf, as there.
    lambda x, y: 1 / (1 + np.abs(x)) - x * np.sign(x) / (1 + np.abs(x)) ** 2,
)
# hardtanh (and relu6): torch passes no gradient at the bounds themselves.
HARDTANH = _activation(
    "hardtanh",
    lambda x, min_val=-1.0, max_val=1.0: np.clip(x, min_val, max_val),
    lambda x, y, min_val=-1.0, max_val=1.0: ~((x <= min_val) | (x >= max_val)),
)
HARDSIGMOID = _activation(
    "hardsigmoid",
    lambda x: np.clip(x / 6 + 0.5, 0, 1),
    lambda x, y: ((x > -3) & (x < 3)) / 6,
)
HARDSWISH = _activation(
    "hardswish",
    lambda x: x * np.clip(x + 3, 0, 6) / 6,
    lambda x, y: np.where(x <= -3, 0.0, np.where(x < 3, (2 * x + 3) / 6, 1.0)),
)
LOGSIGMOID = _activation(
    "logsigmoid",
    # log σ(x) = min(x, 0) - log1p(e^-|x|), finite for every finite x.
    lambda x: np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x))),
    lambda x, y: _sigmoid(-x),
)


def _normalize_forward(x, p=2.0, axis=1, eps=1e-12):
    ax = axis % x.ndim if x.ndim else 0
    a = np.abs(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if p == np.inf:
            n = a.max(axis=ax, keepdims=True) if x.size else np.zeros_like(a.sum(ax, keepdims=True))
        else:
            n = (a**p).sum(axis=ax, keepdims=True) ** (1.0 / p)
    d = np.maximum(n, eps)
    return x / d, (x, n, d, p, ax, eps)


def _normalize_vjp(saved, dy, needs):
    # y = x / d with d = max(‖x‖_p, eps): dx = dy/d − x·(Σ dy·x)/d² · ∂d/∂x.
    x, n, d, p, ax, eps = saved
    inner = (dy * x).sum(axis=ax, keepdims=True)
    dx = dy / d
    with np.errstate(divide="ignore", invalid="ignore"):
        if p == np.inf:
            top = (np.abs(x) == n) & (n > 0)
            dn = np.sign(x) * top / np.maximum(top.sum(axis=ax, keepdims=True), 1)
        else:
            dn = np.sign(x) * (np.abs(x) / np.where(n > 0, n, 1)) ** (p - 1)
    dn = np.where(n >= eps, dn, 0)  # below eps the norm was clamped: no gradient through it
    return (dx - inner / (d * d) * dn,)


NORMALIZE = defop("normalize", _normalize_forward, _normalize_vjp)

OPS_BY_NAME = {
    op.name: op
    for op in (
        LEAKY_RELU, ELU, SELU, CELU, GELU, SILU, MISH, SOFTPLUS, SOFTSIGN,
        HARDTANH, HARDSIGMOID, HARDSWISH, LOGSIGMOID, NORMALIZE,
    )
}  # fmt: skip
