"""More elementwise ops: trigonometric, hyperbolic, logarithms and powers, rounding,
clamp with tensor bounds, lerp / logaddexp / copysign, integer division and remainders,
and the non-differentiable tests (isnan, isclose, bitwise and logical ops).

Integer and bool inputs to a function with real values (``sin``, ``log2``, ...) are
computed in float32, as PyTorch does with its default dtype.
"""

from __future__ import annotations

import numpy as np

from ..core.dtypes import real
from ..core.registry import defop


def _unary(name, f, df):
    """An op ``f`` whose derivative ``df(x, out)`` needs the input and/or the output."""

    def forward(x):
        x = real(x)
        with np.errstate(all="ignore"):  # domain errors give NaN/inf, as in torch
            out = f(x)
        return out, (x, out)

    def vjp(saved, dy, needs):
        x, out = saved
        with np.errstate(all="ignore"):
            return (dy * df(x, out),)

    return defop(name, forward, vjp)


# Each derivative is written from the saved input x and/or output y.
SIN = _unary("sin", np.sin, lambda x, y: np.cos(x))
COS = _unary("cos", np.cos, lambda x, y: -np.sin(x))
TAN = _unary("tan", np.tan, lambda x, y: 1 + y * y)
ASIN = _unary("asin", np.arcsin, lambda x, y: 1 / np.sqrt(1 - x * x))
ACOS = _unary("acos", np.arccos, lambda x, y: -1 / np.sqrt(1 - x * x))
ATAN = _unary("atan", np.arctan, lambda x, y: 1 / (1 + x * x))
SINH = _unary("sinh", np.sinh, lambda x, y: np.cosh(x))
COSH = _unary("cosh", np.cosh, lambda x, y: np.sinh(x))
ASINH = _unary("asinh", np.arcsinh, lambda x, y: 1 / np.sqrt(x * x + 1))
ACOSH = _unary("acosh", np.arccosh, lambda x, y: 1 / np.sqrt(x * x - 1))
ATANH = _unary("atanh", np.arctanh, lambda x, y: 1 / (1 - x * x))
LOG2 = _unary("log2", np.log2, lambda x, y: 1 / (x * np.log(2.0)).astype(x.dtype))
LOG10 = _unary("log10", np.log10, lambda x, y: 1 / (x * np.log(10.0)).astype(x.dtype))
EXP2 = _unary("exp2", np.exp2, lambda x, y: y * np.asarray(np.log(2.0), x.dtype))
LOG1P = _unary("log1p", np.log1p, lambda x, y: 1 / (1 + x))
EXPM1 = _unary("expm1", np.expm1, lambda x, y: y + 1)
RSQRT = _unary("rsqrt", lambda x: 1 / np.sqrt(x), lambda x, y: -0.5 * y * y * y)


def _square_forward(x):
    return np.square(x), x  # integers stay integers, as in torch.square


def _square_vjp(x, dy, needs):
    return (dy * (2 * x),)


SQUARE = defop("square", _square_forward, _square_vjp)

# ----------------------------------------------------------- rounding: gradient 0


def _rounding(name, f):
    def forward(x):
        # Integers are already whole: torch returns them unchanged (same dtype).
        out = x.copy() if x.dtype.kind in "biu" else f(x)
        return out, None

    def vjp(saved, dy, needs):
        # NOTE: piecewise constant, so the gradient is 0 everywhere (as in torch).
        return (np.zeros_like(dy),)

    return defop(name, forward, vjp)


def _sign_forward(x):
    if x.dtype == bool:
        return x.copy(), None
    # torch.sign(NaN) is 0, np.sign(NaN) is NaN.
    out = np.sign(x)
    if x.dtype.kind in "fc":
        out[np.isnan(x)] = 0
    return out, None


SIGN = defop("sign", _sign_forward, lambda saved, dy, needs: (np.zeros_like(dy),))
FLOOR = _rounding("floor", np.floor)
CEIL = _rounding("ceil", np.ceil)
ROUND = _rounding("round", np.round)  # half to even, like torch.round
TRUNC = _rounding("trunc", np.trunc)


def _round_decimals_forward(x, decimals=0):
    return np.round(real(x), decimals), None


ROUND_DECIMALS = defop(
    "round_decimals", _round_decimals_forward, lambda s, dy, needs: (np.zeros_like(dy),)
)

# ------------------------------------------------------------------------- clamp


def _clamp_forward(x, *bounds, has_min, has_max):
    bounds = list(bounds)
    low = bounds.pop(0) if has_min else None
    high = bounds.pop(0) if has_max else None
    out = x
    if low is not None:
        out = np.maximum(out, low)
    if high is not None:
        # torch: where min > max the result is max.
        out = np.minimum(out, high)
    if out is x:
        out = x.copy()
    return out, (x, low, high)


def _clamp_vjp(saved, dy, needs):
    # torch's rule: x gets dy where low <= x <= high (bounds included); a bound gets
    # dy where it was the one that took effect (x strictly outside it). Where the
    # bounds cross (low > high) the output is high, so high takes the gradient.
    x, low, high = saved
    zero = np.zeros((), dtype=dy.dtype)
    # NOTE: comparisons with NaN are False, so a NaN input passes no gradient anywhere.
    take_x = np.ones(x.shape, dtype=bool)
    below = above = None
    if low is not None:
        below = x < low
        take_x = take_x & (x >= low)
    if high is not None:
        above = x > high
        take_x = take_x & (x <= high)
        if low is not None:
            above = above | (low > high)
            below = below & ~above
    grads = [np.where(take_x, dy, zero) if needs[0] else None]
    k = 1
    if low is not None:
        grads.append(np.where(below, dy, zero) if needs[k] else None)
        k += 1
    if high is not None:
        grads.append(np.where(above, dy, zero) if needs[k] else None)
    return tuple(grads)


CLAMP = defop("clamp", _clamp_forward, _clamp_vjp)

# -------------------------------------------------------- lerp, logaddexp, copysign


def _lerp_forward(start, end, weight):
    return start + weight * (end - start), (start, end, weight)


def _lerp_vjp(saved, dy, needs):
    start, end, weight = saved
    return (
        dy * (1 - weight) if needs[0] else None,
        dy * weight if needs[1] else None,
        dy * (end - start) if needs[2] else None,
    )


LERP = defop("lerp", _lerp_forward, _lerp_vjp)


def _logaddexp_forward(a, b):
    a, b = real(a), real(b)
    with np.errstate(invalid="ignore"):  # inf + -inf gives NaN, as in torch
        return np.logaddexp(a, b), (a, b)


def _logaddexp_vjp(saved, dy, needs):
    a, b = saved
    # 1 / (1 + e^(b - a)) stays right when one side is infinite (a - out would be NaN).
    with np.errstate(invalid="ignore", over="ignore"):
        wa = 1 / (1 + np.exp(b - a))
        wb = 1 / (1 + np.exp(a - b))
    # NOTE: both -inf makes a - out NaN, and the gradient NaN, as in torch.
    return (dy * wa if needs[0] else None), (dy * wb if needs[1] else None)


LOGADDEXP = defop("logaddexp", _logaddexp_forward, _logaddexp_vjp)


def _copysign_forward(a, b):
    a = real(a)
    out = np.copysign(a, b)
    return out, (a, out)


def _copysign_vjp(saved, dy, needs):
    a, out = saved
    # d copysign(a, b)/da = ±1 (the sign flip), 0 at a == 0 as in torch; 0 for b.
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(a == 0, 0, out / np.where(a == 0, 1, a))
    return (dy * ratio if needs[0] else None), (np.zeros_like(dy) if needs[1] else None)


COPYSIGN = defop("copysign", _copysign_forward, _copysign_vjp)

# ------------------------------------------------------- division and remainders


def _floor_divide_forward(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.floor_divide(a, b), None


# torch.floor_divide has no derivative either.
FLOOR_DIVIDE = defop("floor_divide", _floor_divide_forward, None)


def _remainder_forward(a, b):
    # Python-like: the result takes the sign of the divisor (np.mod = torch.remainder).
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mod(a, b), (a, b)


def _remainder_vjp(saved, dy, needs):
    a, b = saved
    with np.errstate(divide="ignore", invalid="ignore"):
        db = -dy * np.floor(a / b) if needs[1] else None
    return (dy if needs[0] else None), db


REMAINDER = defop("remainder", _remainder_forward, _remainder_vjp)


def _fmod_forward(a, b):
    # C-like: the result takes the sign of the dividend.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.fmod(a, b), (a, b)


def _fmod_vjp(saved, dy, needs):
    a, b = saved
    with np.errstate(divide="ignore", invalid="ignore"):
        db = -dy * np.trunc(a / b) if needs[1] else None
    return (dy if needs[0] else None), db


FMOD = defop("fmod", _fmod_forward, _fmod_vjp)

# ---------------------------------------------- tests and bit ops: no derivative


def _ufunc_forward(*arrays, ufunc):
    return ufunc(*arrays), None


UFUNC_TEST = defop("ufunc_test", _ufunc_forward, None)


def _isclose_forward(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan), None


ISCLOSE = defop("isclose", _isclose_forward, None)


def _check_integral(name, arrays):
    for a in arrays:
        if a.dtype.kind not in "biu":
            raise TypeError(
                f"{name}: bitwise ops take bool or integer tensors, got dtype {a.dtype} "
                f"(shape {a.shape}); compare first (e.g. x > 0) to get a bool tensor"
            )


def _bitwise_forward(*arrays, ufunc):
    _check_integral(ufunc.__name__, arrays)
    return ufunc(*arrays), None


BITWISE = defop("bitwise", _bitwise_forward, None)
