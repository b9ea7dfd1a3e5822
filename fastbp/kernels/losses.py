"""Fused softmax cross-entropy (forward and gradient in one pass) and per-row gradient scaling."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._guards import (
    check_float_arrays,
    check_labels,
    check_same_dtype,
    check_shape,
    check_writable,
    require_float_matrices,
    require_float_vectors,
    require_label_vector,
    require_same_dtype,
    require_writable,
)
from ._jit import kernel_jit
from ._simd_math import exp, nan_maximum

__all__ = [
    "scale_rows",
    "scale_rows_numpy",
    "softmax_cross_entropy",
    "softmax_cross_entropy_numpy",
    "softmax_cross_entropy_total",
    "softmax_cross_entropy_total_numpy",
]


@kernel_jit()
def _store_exp(row, peak, out):
    for j in range(row.shape[0]):
        out[j] = exp(row[j] - peak)


# "reassoc" lets LLVM split the row sum over vector lanes; it is confined to this helper because
# in the caller it could rewrite log(total) - (logit - peak) into a cancelling form. The sum
# is a loop of its own, over the one array it reads: fused with the stores of _store_exp, the
# loop needed a run-time check that ``out`` does not overlap ``row``, and when two small
# arrays lay within a vector's reach of each other in the heap the check sent it down the
# scalar path, which adds in another order. The same logits then gave losses one ulp apart
# from one run to the next (what made the traced-step and compiled-step tests flaky).
@kernel_jit(fastmath={"reassoc"})
def _row_sum(values):
    total = values.dtype.type(0.0)
    for j in range(values.shape[0]):
        total += values[j]
    return total


@kernel_jit()
def _softmax_cross_entropy_loop(logits, labels, losses, dlogits):
    # Returns the float64 sum of the losses and whether every loss is a number. A -inf logit
    # (a masked class) is fine, as in PyTorch: exp(-inf - peak) = 0, and the loss is finite
    # when the label's logit is (+inf when it is -inf). A NaN logit, a +inf one (inf - inf) or
    # a row of only -inf makes that row's loss NaN, and NaN survives the float64 sum (every
    # loss is >= 0 or NaN, so no inf - inf can appear there): one test at the end.
    require_float_matrices(logits, dlogits)
    require_float_vectors(losses)
    require_same_dtype(logits, losses)
    require_label_vector(labels)
    require_writable(losses, dlogits)
    rows, classes = logits.shape
    if labels.shape[0] != rows or losses.shape[0] != rows or dlogits.shape != logits.shape:
        raise ValueError("softmax_cross_entropy: shape mismatch")
    one = logits.dtype.type(1.0)
    total_loss = 0.0
    for i in range(rows):
        label = labels[i]
        # Checked before any use: an out-of-range label would read and write out of bounds.
        if label < 0 or label >= classes:
            raise ValueError("softmax_cross_entropy: label out of range")
        row = logits[i]
        probabilities = dlogits[i]
        label_logit = row[label]  # read first: dlogits may be logits itself
        peak = row[0]
        for j in range(1, classes):
            peak = nan_maximum(peak, row[j])
        _store_exp(row, peak, probabilities)
        total = _row_sum(probabilities)
        inverse = one / total
        for j in range(classes):
            probabilities[j] *= inverse
        # log-softmax of the label: shifted logit minus log of the shifted normaliser (>= 1).
        loss = np.log(total) - (label_logit - peak)
        losses[i] = loss
        total_loss += loss
        probabilities[label] -= one
    return total_loss, total_loss == total_loss


@kernel_jit()
def _scale_rows_loop(matrix, row_scales, out):
    require_float_matrices(matrix, out)
    require_float_vectors(row_scales)
    require_same_dtype(matrix, row_scales)
    require_writable(out)
    rows, cols = matrix.shape
    if out.shape != matrix.shape or row_scales.shape[0] != rows:
        raise ValueError("scale_rows: shape mismatch")
    for i in range(rows):
        scale = row_scales[i]
        for j in range(cols):
            out[i, j] = matrix[i, j] * scale


def _explain_softmax_cross_entropy(logits: Any, labels: Any, losses: Any, dlogits: Any) -> None:
    kernel = "softmax_cross_entropy"
    check_float_arrays(kernel, 2, logits=logits, dlogits_out=dlogits)
    check_float_arrays(kernel, 1, losses_out=losses)
    check_same_dtype(kernel, logits=logits, losses_out=losses, dlogits_out=dlogits)
    rows, classes = logits.shape
    check_shape(kernel, "dlogits_out", dlogits, logits.shape)
    check_shape(kernel, "losses_out", losses, (rows,))
    check_labels(kernel, labels, rows, classes)
    check_writable(kernel, losses_out=losses, dlogits_out=dlogits)


def softmax_cross_entropy(
    logits: np.ndarray,
    labels: np.ndarray,
    losses_out: np.ndarray | None = None,
    dlogits_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample softmax cross-entropy and its gradient, one pass over each row of logits.

    For each row: subtract the row maximum (so logits of +-1000 are fine), exponentiate and sum,
    then ``loss = log(sum) - (logit[label] - max)`` and ``dlogits = softmax - onehot(label)``.

    Parameters
    ----------
    logits : ndarray, shape (N, C), float32 or float64, C-contiguous
        Unnormalised class scores.
    labels : ndarray, shape (N,), int32 or int64, C-contiguous
        Class index of each sample, in ``[0, C)``.
    losses_out : ndarray, shape (N,), optional
        Where to write the losses.
    dlogits_out : ndarray, shape (N, C), optional
        Where to write the gradient; may be ``logits`` itself.

    Returns
    -------
    losses : ndarray, shape (N,)
        ``-log softmax(logits)[i, labels[i]]``.
    dlogits : ndarray, shape (N, C)
        Gradient of ``losses[i]`` with respect to row ``i`` of the logits; multiply row ``i`` by
        the upstream gradient of ``losses[i]`` (see :func:`scale_rows`), e.g. ``1/N`` for a mean.

    Raises
    ------
    TypeError
        For non-float logits, non-integer labels or mixed float dtypes.
    ValueError
        For mismatched shapes, non-C-contiguous arrays or a label outside ``[0, C)``.

    Example
    -------
    >>> losses, dlogits = softmax_cross_entropy(np.zeros((1, 2)), np.array([1]))
    >>> losses, dlogits
    (array([0.69314718]), array([[ 0.5, -0.5]]))
    """
    try:
        if losses_out is None:
            losses_out = np.empty(logits.shape[0], logits.dtype)
        if dlogits_out is None:
            dlogits_out = np.empty(logits.shape, logits.dtype)
        _softmax_cross_entropy_loop(logits, labels, losses_out, dlogits_out)
    except Exception:
        _explain_softmax_cross_entropy(logits, labels, losses_out, dlogits_out)
        raise
    return losses_out, dlogits_out


def softmax_cross_entropy_total(
    logits: np.ndarray,
    labels: np.ndarray,
    losses_out: np.ndarray | None = None,
    dlogits_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """:func:`softmax_cross_entropy`, plus the summed loss and whether every logit is finite.

    What a mean or summed loss needs, from the same single pass: no reduction over the losses
    and no separate finiteness check over the logits afterwards.

    Parameters
    ----------
    logits, labels, losses_out, dlogits_out
        As for :func:`softmax_cross_entropy`.

    Returns
    -------
    losses : ndarray, shape (N,)
        Per-sample losses.
    dlogits : ndarray, shape (N, C)
        ``softmax(logits) - onehot(labels)``.
    total : float
        Sum of the losses, accumulated in double precision.
    finite : bool
        False if a loss is NaN: a logit is NaN or +inf, or a row is all -inf. (A -inf
        logit alone, a masked class, gives a finite loss, as in PyTorch.)

    Raises
    ------
    TypeError, ValueError
        As for :func:`softmax_cross_entropy`.

    Example
    -------
    >>> losses, dlogits, total, finite = softmax_cross_entropy_total(
    ...     np.zeros((2, 2)), np.array([0, 1]))
    >>> round(total, 6), finite
    (1.386294, True)
    """
    try:
        if losses_out is None:
            losses_out = np.empty(logits.shape[0], logits.dtype)
        if dlogits_out is None:
            dlogits_out = np.empty(logits.shape, logits.dtype)
        total, finite = _softmax_cross_entropy_loop(logits, labels, losses_out, dlogits_out)
    except Exception:
        _explain_softmax_cross_entropy(logits, labels, losses_out, dlogits_out)
        raise
    return losses_out, dlogits_out, float(total), bool(finite)


def softmax_cross_entropy_total_numpy(
    logits: np.ndarray,
    labels: np.ndarray,
    losses_out: np.ndarray | None = None,
    dlogits_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """NumPy twin of :func:`softmax_cross_entropy_total`.

    Parameters
    ----------
    logits, labels, losses_out, dlogits_out
        As for :func:`softmax_cross_entropy_numpy`.

    Returns
    -------
    losses, dlogits : ndarray
        As for :func:`softmax_cross_entropy_numpy`.
    total : float
        Sum of the losses (in double precision).
    finite : bool
        False if a loss is NaN (a NaN or +inf logit, or a row of only -inf).

    Example
    -------
    >>> _, _, total, finite = softmax_cross_entropy_total_numpy(np.zeros((1, 2)), np.array([0]))
    >>> round(total, 4), finite
    (0.6931, True)
    """
    losses, dlogits = softmax_cross_entropy_numpy(logits, labels, losses_out, dlogits_out)
    total = float(losses.sum(dtype=np.float64))
    return losses, dlogits, total, total == total


def softmax_cross_entropy_numpy(
    logits: np.ndarray,
    labels: np.ndarray,
    losses_out: np.ndarray | None = None,
    dlogits_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`softmax_cross_entropy` (the usual stable log-softmax expression).

    Parameters
    ----------
    logits : ndarray, shape (N, C)
        Unnormalised class scores.
    labels : ndarray, shape (N,)
        Class indices.
    losses_out, dlogits_out : ndarray, optional
        Where to write the results.

    Returns
    -------
    losses : ndarray, shape (N,)
        Per-sample losses.
    dlogits : ndarray, shape (N, C)
        ``softmax(logits) - onehot(labels)``.

    Example
    -------
    >>> softmax_cross_entropy_numpy(np.zeros((1, 2)), np.array([0]))[1]
    array([[-0.5,  0.5]])
    """
    with np.errstate(invalid="ignore"):  # inf - inf: a NaN loss, reported by the caller
        shifted = logits - logits.max(axis=1, keepdims=True)
    exps = np.exp(shifted)
    totals = exps.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    losses = np.subtract(np.log(totals[:, 0]), shifted[rows, labels], out=losses_out)
    dlogits = np.divide(exps, totals, out=dlogits_out)
    dlogits[rows, labels] -= 1
    return losses, dlogits


def scale_rows(
    matrix: np.ndarray, row_scales: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Multiply row ``i`` of ``matrix`` by ``row_scales[i]`` (backward of a per-sample loss).

    Parameters
    ----------
    matrix : ndarray, shape (N, C), float32 or float64, C-contiguous
        Typically ``dlogits`` from :func:`softmax_cross_entropy`.
    row_scales : ndarray, shape (N,), same dtype
        Upstream gradient of each per-sample loss.
    out : ndarray, optional
        Where to write the result; may be ``matrix`` itself.

    Returns
    -------
    ndarray
        ``matrix * row_scales[:, None]``.

    Raises
    ------
    TypeError
        For non-float arrays or mixed dtypes.
    ValueError
        For mismatched shapes, non-C-contiguous arrays or a read-only ``out``.

    Example
    -------
    >>> scale_rows(np.ones((2, 2)), np.array([0.5, 2.0]))
    array([[0.5, 0.5],
           [2. , 2. ]])
    """
    try:
        if out is None:
            out = np.empty(matrix.shape, matrix.dtype)
        _scale_rows_loop(matrix, row_scales, out)
    except Exception:
        kernel = "scale_rows"
        check_float_arrays(kernel, 2, matrix=matrix, out=out)
        check_float_arrays(kernel, 1, row_scales=row_scales)
        check_same_dtype(kernel, matrix=matrix, row_scales=row_scales, out=out)
        check_shape(kernel, "out", out, matrix.shape)
        check_shape(kernel, "row_scales", row_scales, matrix.shape[:1])
        check_writable(kernel, out=out)
        raise
    return out


def scale_rows_numpy(
    matrix: np.ndarray, row_scales: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """NumPy twin of :func:`scale_rows`: ``matrix * row_scales[:, None]``.

    Parameters
    ----------
    matrix : ndarray, shape (N, C)
        Matrix to scale.
    row_scales : ndarray, shape (N,)
        One factor per row.
    out : ndarray, optional
        Where to write the result.

    Returns
    -------
    ndarray
        The scaled matrix.

    Example
    -------
    >>> scale_rows_numpy(np.ones((1, 2)), np.array([3.0]))
    array([[3., 3.]])
    """
    return np.multiply(matrix, row_scales[:, None], out=out)
