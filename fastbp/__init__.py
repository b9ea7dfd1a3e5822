"""fastbp: tape-based reverse-mode autodiff over NumPy, with Numba-jitted kernels.

Example
-------
>>> import fastbp as fb
>>> x = fb.tensor([1.0, 2.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([2., 4.], dtype=float32)
"""

from .core.anomaly import detect_anomaly
from .core.engine import grad
from .core.grad_mode import enable_grad, is_grad_enabled, no_grad
from .core.tensor import (
    Tensor,
    as_tensor,
    from_numpy,
    manual_seed,
    ones,
    ones_like,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from .functions import (
    abs,
    acos,
    acosh,
    add,
    arccos,
    arccosh,
    arcsin,
    arcsinh,
    arctan,
    arctanh,
    asin,
    asinh,
    atan,
    atanh,
    bitwise_and,
    bitwise_not,
    bitwise_or,
    bitwise_xor,
    ceil,
    clamp,
    clip,
    concatenate,
    copysign,
    cos,
    cosh,
    div,
    einsum,
    exp,
    exp2,
    expm1,
    fix,
    floor,
    floor_divide,
    fmod,
    isclose,
    isfinite,
    isinf,
    isnan,
    lerp,
    log,
    log1p,
    log2,
    log10,
    log_softmax,
    logaddexp,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    mul,
    neg,
    pow,
    relu,
    remainder,
    reshape,
    round,
    rsqrt,
    sigmoid,
    sign,
    sin,
    sinh,
    softmax,
    sqrt,
    square,
    stack,
    sub,
    sum,
    tan,
    tanh,
    transpose,
    trunc,
    where,
)
from .gradcheck import GradcheckError, gradcheck
from .jit import trace
from .serialization import load, save

from . import autograd, data, nn, optim, viz  # isort: skip

__version__ = "0.1.0"
