"""Losses with PyTorch's signatures (issue 14): the general ``cross_entropy`` (class
weights, ``ignore_index``, label smoothing, probability targets, ``(N, C, d1, ...)``
logits), ``nll_loss``, ``binary_cross_entropy``, ``binary_cross_entropy_with_logits``,
``l1_loss``, ``smooth_l1_loss``, ``huber_loss`` and ``kl_div``.

Each is a composition of differentiable ops (log-softmax, products with constant masks,
``where``, sums), so its gradient comes from those ops' vjps; no new kernel. The plain
``cross_entropy(logits, labels)`` call keeps the fused kernel (see
:func:`fastbp.nn.functional.cross_entropy`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functions as fb
from ..core.tensor import Tensor, as_tensor

__all__ = [
    "cross_entropy_general",
    "nll_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "kl_div",
]

_REDUCTIONS = ("none", "mean", "sum")


def _reduce(loss: Tensor, reduction: str, who: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"{who}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_reduction(reduction: str, who: str, extra: tuple[str, ...] = ()) -> None:
    if reduction not in _REDUCTIONS + extra:
        raise ValueError(
            f"{who}: reduction must be one of {_REDUCTIONS + extra}, got {reduction!r}"
        )


def _operand(x: Any, like: Tensor) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return as_tensor(np.asarray(x, dtype=like.dtype))


def _classes_last(x: Tensor) -> Tensor:
    """``(N, C, d1, ...)`` -> ``(N·d1·..., C)``; ``(C,)`` -> ``(1, C)``; ``(N, C)`` as is."""
    if x.ndim == 1:
        return x.reshape(1, x.shape[0])
    if x.ndim == 2:
        return x
    axes = (0, *range(2, x.ndim), 1)
    return fb.transpose(x, axes).reshape(-1, x.shape[1])


def _nll(
    logp: Tensor, target: Any, weight: Any, ignore_index: int, reduction: str, who: str,
    label_smoothing: float = 0.0,
) -> Tensor:  # fmt: skip
    """Negative log-likelihood of integer targets given log-probabilities ``(N, C, ...)``."""
    t = np.asarray(target.data if isinstance(target, Tensor) else target)
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"{who}: class targets must be integers, got dtype {t.dtype}; for class "
            f"probabilities pass a float target of the input's shape (cross_entropy only)"
        )
    n_classes = logp.shape[1] if logp.ndim > 1 else logp.shape[0]
    want = (logp.shape[0], *logp.shape[2:]) if logp.ndim > 1 else ()
    if t.shape != want:
        raise ValueError(
            f"{who}: input of shape {logp.shape} needs a target of shape {want}, got {t.shape}"
        )
    flat_t = t.reshape(-1).astype(np.int64)
    valid = flat_t != ignore_index
    bad = valid & ((flat_t < 0) | (flat_t >= n_classes))
    if bad.any():
        raise IndexError(
            f"{who}: target {int(flat_t[bad][0])} is out of bounds for {n_classes} classes "
            f"(valid: 0..{n_classes - 1}, or ignore_index={ignore_index})"
        )
    safe = np.where(valid, flat_t, 0)
    lp = _classes_last(logp)
    m = lp.shape[0]
    dtype = lp.dtype
    w = np.ones(n_classes, dtype=dtype) if weight is None else np.asarray(
        weight.data if isinstance(weight, Tensor) else weight, dtype=dtype
    )  # fmt: skip
    if w.shape != (n_classes,):
        raise ValueError(f"{who}: weight must have shape ({n_classes},), got {w.shape}")
    w_i = w[safe] * valid  # per-sample weight, 0 where ignored
    pick = np.zeros((m, n_classes), dtype=dtype)
    pick[np.arange(m), safe] = w_i
    loss = -(lp * pick).sum(axis=1)  # w_i · (−log p_i[t_i])
    denom = w_i.sum()
    if label_smoothing:
        smooth = -(lp * (w * valid[:, None]).astype(dtype)).sum(axis=1)
        eps = float(label_smoothing)
        if reduction == "none":
            out = loss * (1 - eps) + smooth * (eps / n_classes)
            return out.reshape(*want)
        if reduction == "sum":
            return loss.sum() * (1 - eps) + smooth.sum() * (eps / n_classes)
        return (loss.sum() * (1 - eps) + smooth.sum() * (eps / n_classes)) / denom
    if reduction == "none":
        return loss.reshape(*want)
    if reduction == "sum":
        return loss.sum()
    # NOTE: a batch whose targets are all ignored gives 0/0 = NaN, as in PyTorch.
    with np.errstate(invalid="ignore", divide="ignore"):
        return loss.sum() / denom


def nll_loss(
    input: Any,  # noqa: A002
    target: Any,
    weight: Any = None,
    size_average: Any = None,
    ignore_index: int = -100,
    reduce: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of class targets given log-probabilities (as torch's nll_loss).

    ``loss_i = −weight[t_i] · input[i, t_i]``; ``'mean'`` divides by the sum of the
    weights of the non-ignored targets (as PyTorch).

    Parameters
    ----------
    input : Tensor
        Log-probabilities, ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
    target : array_like of int
        ``(N,)``, ``(N, d1, ...)`` or ``()``; ``ignore_index`` entries contribute nothing.
    weight : array_like, optional
        Per-class weights, shape ``(C,)``.
    size_average, reduce : None
        PyTorch's deprecated arguments; must be None.
    ignore_index : int, default -100
    reduction : {'mean', 'sum', 'none'}, default 'mean'

    Returns
    -------
    Tensor

    Raises
    ------
    ValueError
        For a shape mismatch or an unknown reduction.
    IndexError
        For a target outside ``[0, C)`` that is not ``ignore_index``.

    Example
    -------
    >>> import numpy as np, fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> logp = fb.log_softmax(fb.zeros(2, 4), axis=1)
    >>> round(float(F.nll_loss(logp, np.array([1, -100]))), 4)  # log 4
    1.3863
    """
    _legacy(size_average, reduce, "nll_loss")
    _check_reduction(reduction, "nll_loss")
    x = as_tensor(input)
    return _nll(x, target, weight, ignore_index, reduction, "nll_loss")


def _legacy(size_average: Any, reduce: Any, who: str) -> None:
    if size_average is not None or reduce is not None:
        raise TypeError(
            f"{who}: size_average and reduce are deprecated in PyTorch and not supported; "
            f"use reduction='mean'|'sum'|'none'"
        )


def cross_entropy_general(
    input: Any,  # noqa: A002
    target: Any,
    weight: Any = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """``cross_entropy`` with every PyTorch option, built from log-softmax (see
    :func:`fastbp.nn.functional.cross_entropy`, which calls it).

    Example
    -------
    >>> import numpy as np, fastbp as fb
    >>> from fastbp.nn.functional_loss import cross_entropy_general
    >>> round(float(cross_entropy_general(fb.zeros(2, 4), np.array([1, 2]),
    ...                                   label_smoothing=0.1)), 4)
    1.3863
    """
    who = "cross_entropy"
    _check_reduction(reduction, who)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{who}: label_smoothing must be in [0, 1], got {label_smoothing}")
    x = as_tensor(input)
    if x.ndim == 0:
        raise ValueError(f"{who}: input must have at least 1 dimension (classes), got a scalar")
    class_axis = 1 if x.ndim > 1 else 0
    logp = fb.log_softmax(x, axis=class_axis)
    t_data = target.data if isinstance(target, Tensor) else np.asarray(target)
    if np.asarray(t_data).dtype.kind == "f":  # class probabilities
        t = _operand(target, x)
        if t.shape != x.shape:
            raise ValueError(
                f"{who}: probability targets must have the input's shape {x.shape}, got {t.shape}"
            )
        n_classes = x.shape[class_axis]
        if label_smoothing:
            t = t * (1 - label_smoothing) + label_smoothing / n_classes
        prod = logp * t
        if weight is not None:
            shape = [1] * x.ndim
            shape[class_axis] = n_classes
            w = np.asarray(weight.data if isinstance(weight, Tensor) else weight, dtype=x.dtype)
            prod = prod * w.reshape(shape)
        loss = -prod.sum(axis=class_axis)
        if reduction == "mean":
            return loss.sum() / max(x.size // n_classes, 1) if x.size else loss.sum() / 0.0
        return _reduce(loss, reduction, who)
    return _nll(logp, t_data, weight, ignore_index, reduction, who, label_smoothing)


def binary_cross_entropy(
    input: Any,  # noqa: A002
    target: Any,
    weight: Any = None,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy between probabilities ``input`` and ``target`` (both in [0, 1]).

    ``loss = −weight·(t·log x + (1 − t)·log(1 − x))``, each log clamped at −100 as in
    PyTorch, so ``x = 0`` or ``1`` gives a finite loss.

    Parameters
    ----------
    input, target : Tensor or array_like
        Same shape; ``target`` may require grad.
    weight : array_like, optional
        Broadcast against the loss.
    size_average, reduce : None
    reduction : {'mean', 'sum', 'none'}, default 'mean'

    Raises
    ------
    ValueError
        If the shapes differ, or ``input`` is outside [0, 1].

    Example
    -------
    >>> import fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> round(float(F.binary_cross_entropy(fb.tensor([0.5, 0.5]), fb.tensor([1.0, 0.0]))), 4)
    0.6931
    """
    who = "binary_cross_entropy"
    _legacy(size_average, reduce, who)
    _check_reduction(reduction, who)
    x = as_tensor(input)
    t = _operand(target, x)
    if t.shape != x.shape:
        raise ValueError(
            f"{who}: target shape {t.shape} differs from input shape {x.shape}; PyTorch "
            f"requires them equal"
        )
    if x.size and (np.nanmin(x.data) < 0 or np.nanmax(x.data) > 1):
        raise ValueError(
            f"{who}: input values must be probabilities in [0, 1]; got values in "
            f"[{np.nanmin(x.data)}, {np.nanmax(x.data)}] (use binary_cross_entropy_with_logits "
            f"for scores)"
        )
    with np.errstate(divide="ignore"):
        log_x = fb.maximum(fb.log(x), -100.0)
        log_1mx = fb.maximum(fb.log(1.0 - x), -100.0)
    loss = -(t * log_x + (1.0 - t) * log_1mx)
    if weight is not None:
        loss = loss * _operand(weight, x)
    return _reduce(loss, reduction, who)


def binary_cross_entropy_with_logits(
    input: Any,  # noqa: A002
    target: Any,
    weight: Any = None,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable expression.

    ``loss = −weight·(pos_weight·t·log σ(x) + (1 − t)·log(1 − σ(x)))``, computed as
    ``(1 − t)·x − (1 + (pos_weight − 1)·t)·log σ(x)`` with a stable ``log σ``.

    Parameters
    ----------
    input : Tensor
        Scores (logits).
    target : Tensor or array_like
        Same shape, in [0, 1].
    weight : array_like, optional
    size_average, reduce : None
    reduction : {'mean', 'sum', 'none'}, default 'mean'
    pos_weight : array_like, optional
        Weight of positive examples, broadcast along the last (class) dim.

    Raises
    ------
    ValueError
        If the shapes differ.

    Example
    -------
    >>> import fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> round(float(F.binary_cross_entropy_with_logits(fb.zeros(2), fb.tensor([1.0, 0.0]))), 4)
    0.6931
    """
    who = "binary_cross_entropy_with_logits"
    _legacy(size_average, reduce, who)
    _check_reduction(reduction, who)
    x = as_tensor(input)
    t = _operand(target, x)
    if t.shape != x.shape:
        raise ValueError(f"{who}: target shape {t.shape} differs from input shape {x.shape}")
    # log σ(x) = min(x, 0) − log(1 + e^−|x|): no overflow for any x.
    log_sig = fb.minimum(x, 0.0) - fb.log(1.0 + fb.exp(-fb.abs(x)))
    if pos_weight is None:
        loss = (1.0 - t) * x - log_sig
    else:
        pw = _operand(pos_weight, x)
        loss = (1.0 - t) * x - (1.0 + (pw - 1.0) * t) * log_sig
    if weight is not None:
        loss = loss * _operand(weight, x)
    return _reduce(loss, reduction, who)


def _diff(input: Any, target: Any, who: str) -> Tensor:
    x = as_tensor(input)
    t = _operand(target, x)
    if t.shape != x.shape:
        raise ValueError(
            f"{who}: target shape {t.shape} differs from input shape {x.shape}; broadcasting "
            f"them is almost always a bug (e.g. (N, 1) against (N,))"
        )
    return x - t


def l1_loss(
    input: Any,  # noqa: A002
    target: Any,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
) -> Tensor:
    """Mean absolute error ``|input − target|`` (gradient 0 where they are equal, as torch).

    Example
    -------
    >>> import fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> float(F.l1_loss(fb.tensor([1.0, 3.0]), fb.tensor([2.0, 1.0])))
    1.5
    """
    _legacy(size_average, reduce, "l1_loss")
    _check_reduction(reduction, "l1_loss")
    return _reduce(fb.abs(_diff(input, target, "l1_loss")), reduction, "l1_loss")


def smooth_l1_loss(
    input: Any,  # noqa: A002
    target: Any,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Tensor:
    """Smooth L1: ``0.5·d²/beta`` where ``|d| < beta``, else ``|d| − 0.5·beta`` (L1 for beta 0).

    Example
    -------
    >>> import fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> F.smooth_l1_loss(fb.tensor([0.5, 3.0]), fb.zeros(2), reduction="none").data
    array([0.125, 2.5  ], dtype=float32)
    """
    who = "smooth_l1_loss"
    _legacy(size_average, reduce, who)
    _check_reduction(reduction, who)
    if beta < 0:
        raise ValueError(f"{who}: beta must be >= 0, got {beta}")
    d = _diff(input, target, who)
    a = fb.abs(d)
    if beta == 0:
        return _reduce(a, reduction, who)
    loss = fb.where(a.data < beta, d * d * (0.5 / beta), a - 0.5 * beta)
    return _reduce(loss, reduction, who)


def huber_loss(
    input: Any,  # noqa: A002
    target: Any,
    reduction: str = "mean",
    delta: float = 1.0,
) -> Tensor:
    """Huber loss: ``0.5·d²`` where ``|d| < delta``, else ``delta·(|d| − 0.5·delta)``.

    Example
    -------
    >>> import fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> F.huber_loss(fb.tensor([0.5, 3.0]), fb.zeros(2), reduction="none", delta=2.0).data
    array([0.125, 4.   ], dtype=float32)
    """
    who = "huber_loss"
    _check_reduction(reduction, who)
    if delta <= 0:
        raise ValueError(f"{who}: delta must be > 0, got {delta}")
    d = _diff(input, target, who)
    a = fb.abs(d)
    loss = fb.where(a.data < delta, d * d * 0.5, (a - 0.5 * delta) * delta)
    return _reduce(loss, reduction, who)


def kl_div(
    input: Any,  # noqa: A002
    target: Any,
    size_average: Any = None,
    reduce: Any = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Tensor:
    """KL divergence with ``input`` as log-probabilities: ``t·(log t − input)`` pointwise.

    With ``log_target`` the target is given as log-probabilities too:
    ``exp(t)·(t − input)``. ``reduction='batchmean'`` divides the sum by the batch size
    (the true KL divergence); ``'mean'`` averages over every element, as in PyTorch.
    A zero target contributes 0.

    Example
    -------
    >>> import numpy as np, fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> p = fb.log_softmax(fb.zeros(1, 2), axis=1)
    >>> round(float(F.kl_div(p, fb.tensor([[1.0, 0.0]]), reduction="batchmean")), 4)  # log 2
    0.6931
    """
    who = "kl_div"
    _legacy(size_average, reduce, who)
    _check_reduction(reduction, who, ("batchmean",))
    x = as_tensor(input)
    t = _operand(target, x)
    if log_target:
        loss = fb.exp(t) * (t - x)
    else:
        positive = t.data > 0
        # where() twice: the log never sees 0, so the gradient has no NaN where t == 0.
        safe = fb.where(positive, t, 1.0)
        loss = fb.where(positive, t * (fb.log(safe) - x), 0.0 * x)
    if reduction == "batchmean":
        return loss.sum() / (x.shape[0] if x.ndim else 1)
    return _reduce(loss, reduction, who)
