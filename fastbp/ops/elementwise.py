"""Elementwise ops: arithmetic, unary math, activations, maximum/minimum, where."""

from __future__ import annotations

import numpy as np

from ..core.dtypes import division_dtype, real, result_dtype
from ..core.registry import defop
from ..kernels import dispatch


def _promoted(a, b, rule=result_dtype):
    """``a`` and ``b`` cast to PyTorch's result dtype (NumPy would give int * float32 float64)."""
    if a.dtype is b.dtype and rule is result_dtype:
        return a, b  # the common case: no promotion, no lookup
    dtype = rule(a, b)
    return a.astype(dtype, copy=False), b.astype(dtype, copy=False)


class _Constants(dict):
    """0-d read-only arrays of one value, by dtype: ``_ONE[a.dtype] - a``.

    NOTE: a Python scalar operand costs a ufunc about a microsecond more than an array
    of the operand's dtype does (it is converted on every call), which is as much as
    the arithmetic on a small array; the vjps of the unary ops use these instead.
    """

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def __missing__(self, dtype: np.dtype) -> np.ndarray:
        constant = np.full((), self.value, dtype)
        constant.flags.writeable = False
        self[dtype] = constant
        return constant


_ONE = _Constants(1)
_HALF = _Constants(0.5)

# ------------------------------------------------------------------ arithmetic gates


def _add_forward(a, b):
    if a.dtype is not b.dtype:  # tested here: a call less on the common path
        a, b = _promoted(a, b)
    return a + b, None


def _add_vjp(saved, dy, needs):
    # The add gate distributes: both inputs receive dy unchanged.
    return dy, dy


ADD = defop("add", _add_forward, _add_vjp)


def _sub_forward(a, b):
    if a.dtype is not b.dtype:  # tested here: a call less on the common path
        a, b = _promoted(a, b)
    return a - b, None


def _sub_vjp(saved, dy, needs):
    return dy, (-dy if needs[1] else None)


SUB = defop("sub", _sub_forward, _sub_vjp)


def _mul_forward(a, b):
    if a.dtype is not b.dtype:  # tested here: a call less on the common path
        a, b = _promoted(a, b)
    return a * b, (a, b)


def _mul_vjp(saved, dy, needs):
    # The mul gate swaps: each input's gradient is dy times the *other* input.
    a, b = saved
    return (dy * b if needs[0] else None), (dy * a if needs[1] else None)


MUL = defop("mul", _mul_forward, _mul_vjp)


def _div_forward(a, b):
    # int / int is float32 (PyTorch's default float dtype), not NumPy's float64.
    a, b = _promoted(a, b, division_dtype)
    out = a / b
    return out, (b, out)


def _div_vjp(saved, dy, needs):
    b, out = saved
    da = dy / b
    return (da if needs[0] else None), (-da * out if needs[1] else None)


DIV = defop("div", _div_forward, _div_vjp)


def _neg_forward(a):
    return -a, None


def _neg_vjp(saved, dy, needs):
    return (-dy,)


NEG = defop("neg", _neg_forward, _neg_vjp)


def _pow_forward(a, p):
    a, p = _promoted(a, p)
    out = a**p
    return out, (a, p, out)


def _pow_vjp(saved, dy, needs):
    # PyTorch's pow gradients, case by case (tests/test_edges.py, item 1):
    # * d/da = p * a**(p-1), but exactly 0 where p == 0: x**0 is the constant 1, while the
    #   formula gives 0 * 0**-1 = NaN at a == 0;
    # * d/dp = a**p * log(a), but 0 where a == 0 and p >= 0 (0**p is flat there: the
    #   formula gives 0 * -inf = NaN); for a < 0 it is NaN, as in PyTorch.
    a, p, out = saved
    da = dp = None
    with np.errstate(divide="ignore", invalid="ignore"):
        if needs[0]:
            da = np.where(p == 0, 0, dy * (p * a ** (p - 1))).astype(dy.dtype, copy=False)
        if needs[1]:
            flat = (a == 0) & (p >= 0)
            dp = np.where(flat, 0, dy * (out * np.log(a))).astype(dy.dtype, copy=False)
    return da, dp


POW = defop("pow", _pow_forward, _pow_vjp)

# ------------------------------------------------------------------------ unary math


def _exp_forward(x):
    out = np.exp(real(x))
    return out, out  # exp needs only its output: d exp(x) = exp(x) dx


def _exp_vjp(out, dy, needs):
    return (dy * out,)


EXP = defop("exp", _exp_forward, _exp_vjp)


def _log_forward(x):
    x = real(x)
    return np.log(x), x


def _log_vjp(x, dy, needs):
    return (dy / x,)


LOG = defop("log", _log_forward, _log_vjp)


def _sqrt_forward(x):
    out = np.sqrt(real(x))
    return out, out


def _sqrt_vjp(out, dy, needs):
    # NOTE: at x == 0 the gradient is +inf, as in the math (and in PyTorch).
    with np.errstate(divide="ignore"):
        return (dy * _HALF[out.dtype] / out,)


SQRT = defop("sqrt", _sqrt_forward, _sqrt_vjp)


def _abs_forward(x):
    return np.abs(x), x


def _abs_vjp(x, dy, needs):
    # NOTE: the subgradient at 0 is taken as 0 (np.sign(0) == 0).
    return (dy * np.sign(x),)


ABS = defop("abs", _abs_forward, _abs_vjp)


def _clip_forward(x, low=None, high=None):
    out = np.clip(x, low, high)
    inside = np.ones(x.shape, dtype=bool)
    if low is not None:
        inside &= x >= low
    if high is not None:
        inside &= x <= high
    return out, inside


def _clip_vjp(inside, dy, needs):
    # NOTE: at the bounds themselves the gradient passes (as in PyTorch's clamp).
    return (dy * inside,)


CLIP = defop("clip", _clip_forward, _clip_vjp)

# ----------------------------------------------------------------------- activations


def _tanh_forward(x):
    out = np.tanh(real(x))
    return out, out


def _tanh_vjp(out, dy, needs):
    return (dy * (_ONE[out.dtype] - out * out),)


TANH = defop("tanh", _tanh_forward, _tanh_vjp)


def _sigmoid_forward(x):
    # 0.5 * (1 + tanh(x / 2)) equals 1 / (1 + exp(-x)) but never overflows.
    x = real(x)
    out = np.tanh(x * _HALF[x.dtype])
    out += _ONE[out.dtype]
    out *= _HALF[out.dtype]
    return out, out


def _sigmoid_vjp(out, dy, needs):
    # The sigmoid gate's shortcut: dσ/dx = σ(1 − σ), from the saved output alone.
    return (dispatch.sigmoid_backward(out, dy),)


SIGMOID = defop("sigmoid", _sigmoid_forward, _sigmoid_vjp)


def _relu_forward(x):
    out = np.maximum(x, 0)
    return out, out


def _relu_vjp(out, dy, needs):
    # NOTE: relu'(0) is taken as 0; out > 0 exactly when x > 0.
    return (dispatch.relu_backward(out, dy),)


RELU = defop("relu", _relu_forward, _relu_vjp)

# -------------------------------------------------------------------- routing gates


def _maximum_forward(a, b):
    a, b = _promoted(a, b)
    return np.maximum(a, b), (a, b)


def _minimum_forward(a, b):
    a, b = _promoted(a, b)
    return np.minimum(a, b), (a, b)


def _route(a_loses, b_loses, tie, dy, needs):
    # The max gate routes dy to the input that won, as PyTorch does.
    # NOTE: on a tie each input receives half of dy, the average of the two subgradients.
    # Where either side is NaN (the result is NaN) neither loses, so both receive all of dy
    # (PyTorch masks out only the loser); "first wins" would send NaN's gradient nowhere.
    half = np.where(tie, dy.dtype.type(0.5), dy.dtype.type(1.0))
    da = np.where(a_loses, 0, dy * half).astype(dy.dtype, copy=False) if needs[0] else None
    db = np.where(b_loses, 0, dy * half).astype(dy.dtype, copy=False) if needs[1] else None
    return da, db


def _maximum_vjp(saved, dy, needs):
    a, b = saved
    return _route(a < b, a > b, a == b, dy, needs)


def _minimum_vjp(saved, dy, needs):
    a, b = saved
    return _route(a > b, a < b, a == b, dy, needs)


MAXIMUM = defop("maximum", _maximum_forward, _maximum_vjp)
MINIMUM = defop("minimum", _minimum_forward, _minimum_vjp)


def _where_forward(a, b, condition):
    a, b = _promoted(a, b)
    return np.where(condition, a, b), condition


def _where_vjp(condition, dy, needs):
    # NOTE: np.where, not dy * mask: a NaN in the branch that was not taken must not
    # leak into the gradient of the branch that was (NaN * 0 is NaN).
    zero = np.zeros((), dtype=dy.dtype)
    da = np.where(condition, dy, zero) if needs[0] else None
    db = np.where(condition, zero, dy) if needs[1] else None
    return da, db


WHERE = defop("where", _where_forward, _where_vjp)
