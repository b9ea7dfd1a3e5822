"""fastbp: tape-based reverse-mode autodiff over NumPy, with Numba-jitted kernels.

Example
-------
>>> import fastbp as fb
>>> x = fb.tensor([1.0, 2.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([2., 4.], dtype=float32)
"""

from __future__ import annotations

import importlib
from typing import Any

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
    all,
    amax,
    amin,
    any,
    arccos,
    arccosh,
    arcsin,
    arcsinh,
    arctan,
    arctanh,
    argmax,
    argmin,
    argsort,
    asin,
    asinh,
    atan,
    atanh,
    bitwise_and,
    bitwise_not,
    bitwise_or,
    bitwise_xor,
    broadcast_to,
    cat,
    ceil,
    chunk,
    clamp,
    clip,
    concatenate,
    copysign,
    cos,
    cosh,
    cummax,
    cummin,
    cumprod,
    cumsum,
    diag,
    diagonal,
    div,
    einsum,
    exp,
    exp2,
    expm1,
    fix,
    flatten,
    flip,
    floor,
    floor_divide,
    fmod,
    gather,
    index_select,
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
    logcumsumexp,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    logsumexp,
    masked_fill,
    masked_select,
    matmul,
    max,
    maximum,
    mean,
    median,
    min,
    minimum,
    moveaxis,
    movedim,
    mul,
    neg,
    nonzero,
    norm,
    permute,
    pow,
    prod,
    relu,
    remainder,
    repeat_interleave,
    reshape,
    roll,
    round,
    rsqrt,
    scatter,
    scatter_add,
    sigmoid,
    sign,
    sin,
    sinh,
    softmax,
    sort,
    split,
    sqrt,
    square,
    squeeze,
    stack,
    std,
    sub,
    sum,
    swapaxes,
    tan,
    tanh,
    tile,
    topk,
    transpose,
    tril,
    triu,
    trunc,
    unbind,
    unflatten,
    unsqueeze,
    var,
    where,
)
from .gradcheck import GradcheckError, gradcheck
from .serialization import load, save

from . import data, nn, optim  # isort: skip

__version__ = "0.1.0"

# Imported on first use, so that ``import fastbp`` (and a first training step) does not pay
# for layers it may never touch: the tracer and compiler, the graph viewer, the autograd
# namespace and torch interop. (gradcheck stays eager: its module and its function share
# the name, and importing the module would rebind ``fastbp.gradcheck`` to it.)
# Name -> (module, attribute or None for the module).
_LAZY: dict[str, tuple[str, str | None]] = {
    "trace": (".jit", "trace"),
    "jit": (".jit", None),
    "viz": (".viz", None),
    "autograd": (".autograd", None),
    "interop": (".interop", None),
    # torch interop (issue 14): weights to and from PyTorch state dicts
    "load_torch_state_dict": (".interop", "load_torch_state_dict"),
    "to_torch_state_dict": (".interop", "to_torch_state_dict"),
}


def __getattr__(name: str) -> Any:
    """Import the lazily loaded names of :data:`_LAZY` on first access (PEP 562)."""
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'fastbp' has no attribute {name!r}") from None
    module = importlib.import_module(module_name, __name__)
    # Every lazy name the module provides is bound at once: later accesses are plain
    # attribute lookups.
    for other, (source, attr) in _LAZY.items():
        if source == module_name:
            globals()[other] = module if attr is None else getattr(module, attr)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
