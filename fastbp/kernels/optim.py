"""In-place optimizer updates over one flat parameter buffer, with PyTorch's exact semantics.

The optimizer keeps every parameter as a view into one flat C-contiguous 1-D buffer (gradients
and state likewise), so a whole step is one kernel call. Arithmetic follows ``torch.optim.SGD``
and ``torch.optim.Adam``/``AdamW`` (single-tensor CPU path) operation by operation: scalar
coefficients are computed in Python-float (double) precision and rounded to the parameter dtype,
as ATen does, and each update is evaluated in the same order. Results agree with PyTorch to a few
ulp (FMA contraction may differ).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._guards import (
    check_float_arrays,
    check_same_dtype,
    check_same_shape,
    check_writable,
    require_float_vectors,
    require_writable,
)
from ._jit import kernel_jit

__all__ = ["adam_update", "adam_update_numpy", "sgd_update", "sgd_update_numpy"]

_TINY32 = float(np.finfo(np.float32).tiny)  # smallest normal float32
_TINY64 = float(np.finfo(np.float64).tiny)


def _explain(kernel: str, outputs: dict[str, Any], inputs: dict[str, Any]) -> None:
    arrays = {**outputs, **inputs}
    check_float_arrays(kernel, 1, **arrays)
    check_same_dtype(kernel, **arrays)
    check_same_shape(kernel, **arrays)
    check_writable(kernel, **outputs)


@kernel_jit(fastmath={"contract"})
def _sgd_loop(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step):
    require_float_vectors(param, grad, buf)
    require_writable(param, buf)
    size = param.shape[0]
    if grad.shape[0] != size or buf.shape[0] != size:
        raise ValueError("sgd_update: shape mismatch")
    cast = param.dtype.type
    neg_lr = cast(-lr)
    decay = cast(weight_decay)
    mom = cast(momentum)
    keep = cast(1.0 - dampening)
    has_decay = weight_decay != 0
    # NOTE: momentum of a parameter whose gradient stays 0 (a dead ReLU unit) decays
    # geometrically into subnormal floats, which x86 handles 10-30x slower; flush those
    # to zero (a difference below 1e-38 from PyTorch, which does not).
    tiny = cast(_TINY32) if param.itemsize == 4 else cast(_TINY64)
    # One branch per case outside the loops keeps every loop branch-free, hence vectorised.
    if momentum == 0:
        for i in range(size):
            g = grad[i] + decay * param[i] if has_decay else grad[i]
            param[i] = param[i] + neg_lr * g
    elif first_step:
        for i in range(size):
            g = grad[i] + decay * param[i] if has_decay else grad[i]
            buf[i] = g
            param[i] = param[i] + neg_lr * (g + mom * g if nesterov else g)
    elif nesterov:
        for i in range(size):
            g = grad[i] + decay * param[i] if has_decay else grad[i]
            b = buf[i] * mom + keep * g
            b = b if abs(b) >= tiny else cast(0)
            buf[i] = b
            param[i] = param[i] + neg_lr * (g + mom * b)
    else:
        for i in range(size):
            g = grad[i] + decay * param[i] if has_decay else grad[i]
            b = buf[i] * mom + keep * g
            b = b if abs(b) >= tiny else cast(0)
            buf[i] = b
            param[i] = param[i] + neg_lr * b


def sgd_update(
    param: np.ndarray,
    grad: np.ndarray,
    momentum_buf: np.ndarray | None,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    first_step: bool = False,
) -> None:
    """One SGD step in place, as ``torch.optim.SGD`` (momentum, dampening, Nesterov, L2 decay).

    ``g = grad + weight_decay * param``; with momentum, ``buf = g`` on the first step and
    ``buf = momentum * buf + (1 - dampening) * g`` after; then ``g = g + momentum * buf`` (Nesterov)
    or ``g = buf``; finally ``param -= lr * g``. ``grad`` is not modified.

    Parameters
    ----------
    param : ndarray, shape (P,), float32 or float64, C-contiguous
        Flat parameter buffer, updated in place.
    grad : ndarray, shape (P,), same dtype
        Flat gradient buffer.
    momentum_buf : ndarray, shape (P,), same dtype, or None
        Momentum buffer, updated in place (its old content is ignored when ``first_step``);
        may be ``None`` only when ``momentum == 0``.
    lr, momentum, dampening, weight_decay : float
        Hyper-parameters, as in PyTorch.
    nesterov : bool
        Use Nesterov momentum.
    first_step : bool
        True on the first step of the momentum buffer (PyTorch's "buffer is None").

    Raises
    ------
    TypeError
        For non-float or mixed-dtype buffers.
    ValueError
        For buffers of different lengths, non-1-D, non-C-contiguous or read-only buffers, or a
        missing momentum buffer.

    Example
    -------
    >>> param, grad = np.ones(3), np.full(3, 0.5)
    >>> sgd_update(param, grad, None, lr=0.1)
    >>> param
    array([0.95, 0.95, 0.95])
    """
    if momentum_buf is None:
        if momentum != 0:
            raise ValueError("sgd_update: momentum_buf is required when momentum != 0")
        buffer = param  # a stand-in: the momentum-free loop never touches it
    else:
        buffer = momentum_buf
    try:
        _sgd_loop(param, grad, buffer, lr, momentum, dampening, weight_decay, nesterov, first_step)
    except Exception:
        _explain("sgd_update", {"param": param, "momentum_buf": momentum_buf}, {"grad": grad})
        raise


def sgd_update_numpy(
    param: np.ndarray,
    grad: np.ndarray,
    momentum_buf: np.ndarray | None,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    first_step: bool = False,
) -> None:
    """NumPy twin of :func:`sgd_update` (same arguments, same in-place effect).

    Parameters
    ----------
    param, grad, momentum_buf : ndarray
        Flat buffers (``momentum_buf`` may be None without momentum).
    lr, momentum, dampening, weight_decay : float
        Hyper-parameters.
    nesterov, first_step : bool
        Nesterov momentum; first step of the momentum buffer.

    Example
    -------
    >>> param = np.ones(2)
    >>> sgd_update_numpy(param, np.ones(2), None, lr=0.5)
    >>> param
    array([0.5, 0.5])
    """
    g = grad + weight_decay * param if weight_decay != 0 else grad
    if momentum != 0:
        if first_step:
            momentum_buf[...] = g
        else:
            momentum_buf *= momentum
            momentum_buf += (1.0 - dampening) * g
        g = g + momentum * momentum_buf if nesterov else momentum_buf
    param += -lr * g


@kernel_jit(fastmath={"contract"})
def _adam_loop(
    param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step, decoupled
):
    require_float_vectors(param, grad, exp_avg, exp_avg_sq)
    require_writable(param, exp_avg, exp_avg_sq)
    size = param.shape[0]
    if grad.shape[0] != size or exp_avg.shape[0] != size or exp_avg_sq.shape[0] != size:
        raise ValueError("adam_update: shape mismatch")
    cast = param.dtype.type
    # Scalars in double precision first, rounded once, as PyTorch does with Python floats.
    bias_correction1 = 1.0 - beta1 ** float(step)
    bias_correction2 = 1.0 - beta2 ** float(step)
    neg_step_size = cast(-(lr / bias_correction1))
    correction2_sqrt = cast(bias_correction2**0.5)
    weight1 = cast(1.0 - beta1)
    keep1 = cast(1.0) - weight1  # lerp's second form, rounded as ATen does
    beta2_ = cast(beta2)
    weight2 = cast(1.0 - beta2)
    eps_ = cast(eps)
    decay = cast(weight_decay)
    shrink = cast(1.0 - lr * weight_decay)
    l2_decay = weight_decay != 0 and not decoupled
    decoupled_decay = weight_decay != 0 and decoupled
    # torch.lerp switches formula at weight 0.5 for accuracy; follow it.
    small_weight = abs(1.0 - beta1) < 0.5
    tiny = cast(_TINY32) if param.itemsize == 4 else cast(_TINY64)  # see _sgd_loop
    for i in range(size):
        p = param[i]
        g = grad[i]
        if decoupled_decay:
            p = p * shrink
        if l2_decay:
            g = g + decay * p
        m = exp_avg[i]
        m = m + weight1 * (g - m) if small_weight else g - (g - m) * keep1
        v = exp_avg_sq[i] * beta2_
        v = v + weight2 * g * g
        m = m if abs(m) >= tiny else cast(0)
        v = v if v >= tiny else cast(0)
        denominator = np.sqrt(v) / correction2_sqrt + eps_
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] = p + neg_step_size * m / denominator


def adam_update(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    step: int,
    decoupled: bool,
) -> None:
    """One Adam (``decoupled=False``) or AdamW (``decoupled=True``) step in place, as PyTorch.

    Adam adds ``weight_decay * param`` to the gradient; AdamW multiplies ``param`` by
    ``1 - lr * weight_decay`` first. Then ``m = lerp(m, g, 1 - beta1)``,
    ``v = beta2 * v + (1 - beta2) * g * g`` and
    ``param -= lr / (1 - beta1**step) * m / (sqrt(v) / sqrt(1 - beta2**step) + eps)``.

    Parameters
    ----------
    param : ndarray, shape (P,), float32 or float64, C-contiguous
        Flat parameter buffer, updated in place.
    grad : ndarray, shape (P,), same dtype
        Flat gradient buffer (not modified).
    exp_avg, exp_avg_sq : ndarray, shape (P,), same dtype
        First and second moment estimates, updated in place (zeros before step 1).
    lr, beta1, beta2, eps, weight_decay : float
        Hyper-parameters, as in PyTorch.
    step : int
        Number of this step, starting at 1 (for the bias corrections).
    decoupled : bool
        AdamW's decoupled weight decay instead of Adam's L2 penalty.

    Raises
    ------
    TypeError
        For non-float or mixed-dtype buffers.
    ValueError
        For buffers of different lengths, non-1-D, non-C-contiguous or read-only buffers, or
        ``step < 1``.

    Example
    -------
    >>> param, grad = np.ones(2), np.ones(2)
    >>> adam_update(param, grad, np.zeros(2), np.zeros(2), 0.1, 0.9, 0.999, 1e-8, 0.0, 1, False)
    >>> param.round(6)
    array([0.9, 0.9])
    """
    if step < 1:
        raise ValueError(f"adam_update: step counts from 1, got {step}")
    try:
        _adam_loop(
            param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step, decoupled
        )
    except Exception:
        outputs = {"param": param, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
        _explain("adam_update", outputs, {"grad": grad})
        raise


def adam_update_numpy(
    param: np.ndarray,
    grad: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    step: int,
    decoupled: bool,
) -> None:
    """NumPy twin of :func:`adam_update` (same arguments, same in-place effect).

    Parameters
    ----------
    param, grad, exp_avg, exp_avg_sq : ndarray
        Flat buffers.
    lr, beta1, beta2, eps, weight_decay : float
        Hyper-parameters.
    step : int
        Step number, from 1.
    decoupled : bool
        AdamW instead of Adam.

    Example
    -------
    >>> param = np.ones(1)
    >>> adam_update_numpy(param, np.ones(1), np.zeros(1), np.zeros(1), 0.1, 0.9, 0.999, 1e-8,
    ...                   0.0, 1, False)
    >>> param.round(6)
    array([0.9])
    """
    g = grad
    if weight_decay != 0:
        if decoupled:
            param *= 1.0 - lr * weight_decay
        else:
            g = grad + weight_decay * param
    weight1 = 1.0 - beta1
    if abs(weight1) < 0.5:
        exp_avg += weight1 * (g - exp_avg)
    else:
        exp_avg[...] = g - (g - exp_avg) * (1.0 - weight1)
    exp_avg_sq *= beta2
    exp_avg_sq += (1.0 - beta2) * g * g
    bias_correction1 = 1.0 - beta1 ** float(step)
    bias_correction2 = 1.0 - beta2 ** float(step)
    denominator = np.sqrt(exp_avg_sq) / bias_correction2**0.5 + eps
    param += -(lr / bias_correction1) * exp_avg / denominator
