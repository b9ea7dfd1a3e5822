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
    add,
    clip,
    concatenate,
    div,
    exp,
    log,
    log_softmax,
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
    reshape,
    sigmoid,
    softmax,
    sqrt,
    stack,
    sub,
    sum,
    tanh,
    transpose,
    where,
)
from .gradcheck import GradcheckError, gradcheck
from .jit import trace
from .serialization import load, save

from . import autograd, data, nn, optim, viz  # isort: skip

__version__ = "0.1.0"
