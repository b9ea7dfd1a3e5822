"""Batch normalisation in training mode and dropout, each one op over a Numba kernel.

* ``batch_norm_train`` normalises each channel of an (N, C, ...) input by its batch statistics
  and applies the optional affine transform, in one kernel pass (``fastbp.kernels.norm``);
  its vjp is one more. Given ``running_mean`` / ``running_var`` tensors, the forward also
  updates their arrays in place with ``momentum`` (the variance unbiased, as PyTorch), from
  the statistics the kernel computed.
* ``dropout_mask`` draws its mask inside the kernel (``fastbp.kernels.dropout``) from a seed
  taken from fastbp's generator at every call, so a replayed or traced step draws a new mask,
  and keeps the boolean mask for its vjp.

The callers (``fastbp.nn.functional.batch_norm`` / ``dropout``) validate the arguments.
"""

from __future__ import annotations

import numpy as np

from ..core.registry import defop
from ..core.tensor import default_generator
from ..kernels.dropout import dropout_backward, dropout_forward, dropout_forward_numpy
from ..kernels.norm import batch_norm_backward, batch_norm_forward, batch_norm_forward_numpy

__all__ = ["BATCH_NORM_TRAIN", "DROPOUT_MASK"]


def _check_float(op: str, x: np.ndarray) -> None:
    if x.dtype.kind != "f":
        raise TypeError(
            f"{op}: expected a floating-point input, got {x.dtype} (shape {x.shape}); "
            f"cast it with .astype(np.float32) first"
        )


def _batch_norm_train_forward(
    x, *params, has_weight, has_bias, eps, momentum, running_mean, running_var
):
    _check_float("batch_norm", x)
    weight = params[0] if has_weight else None
    bias = params[-1] if has_bias else None
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    y, mean, var, invstd = batch_norm_forward(x3, weight, bias, eps)
    count = x3.shape[0] * x3.shape[2]
    for stat, batch in ((running_mean, mean), (running_var, var * (count / max(count - 1, 1)))):
        if stat is not None:  # a Tensor holding the running statistic (a module buffer)
            array = stat.data
            array *= 1.0 - momentum
            array += (momentum * batch).astype(array.dtype)
    return y.reshape(x.shape), (x, mean, invstd, weight, has_weight, has_bias)


def _batch_norm_train_vjp(saved, dy, needs):
    x, mean, invstd, weight, has_weight, has_bias = saved
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    dx, dw, db = batch_norm_backward(x3, dy.reshape(x3.shape), mean, invstd, weight)
    grads = [dx.reshape(x.shape) if needs[0] else None]
    if has_weight:
        grads.append(dw.astype(x.dtype) if needs[len(grads)] else None)
    if has_bias:
        grads.append(db.astype(x.dtype) if needs[len(grads)] else None)
    return tuple(grads)


BATCH_NORM_TRAIN = defop(
    "batch_norm_train",
    _batch_norm_train_forward,
    _batch_norm_train_vjp,
    kernel=batch_norm_forward,
    twin=batch_norm_forward_numpy,
)


def _dropout_forward(x, *, p, channelwise):
    _check_float("dropout2d" if channelwise else "dropout", x)
    rows = x.shape[0] * x.shape[1] if channelwise else 1
    x2 = x.reshape(rows, -1)
    seed = int(default_generator().integers(0, 2**63))
    y, keep = dropout_forward(x2, p, seed, channelwise)
    return y.reshape(x.shape), (keep, p, channelwise, rows)


def _dropout_vjp(saved, dy, needs):
    keep, p, channelwise, rows = saved
    return (dropout_backward(dy.reshape(rows, -1), keep, p, channelwise).reshape(dy.shape),)


DROPOUT_MASK = defop(
    "dropout_mask",
    _dropout_forward,
    _dropout_vjp,
    kernel=dropout_forward,
    twin=dropout_forward_numpy,
)
