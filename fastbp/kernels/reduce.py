"""The mean of N copies of one range, written to two places in one pass (DDP's share).

:class:`fastbp.distributed.node_reduce.NodeAllReduce` has each rank average its share of
every bucket from all ranks' copies in shared memory, and write the mean both to its own
gradient and back to shared memory for the others. In NumPy that is three passes (add,
scale, copy); one fused loop reads the copies once and stores twice.

Example
-------
>>> import numpy as np
>>> a, b = np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])
>>> out, shared = np.zeros(3), np.zeros(3)
>>> mean_of_copies((a, b), 0, 2, 0.5, out, shared)
>>> out, shared
(array([2., 2., 0.]), array([2., 2., 0.]))
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel_jit

__all__ = ["mean_of_copies", "mean_of_copies_numpy"]


@kernel_jit()
def _mean_of_two(a, b, lo, hi, scale, out, shared):
    # Slices first: indices from 0 let LLVM drop the negative-index check and vectorise.
    a, b, out, shared = a[lo:hi], b[lo:hi], out[lo:hi], shared[lo:hi]
    for i in range(out.shape[0]):
        value = (a[i] + b[i]) * scale
        out[i] = value
        shared[i] = value


@kernel_jit()
def _mean_of_two_both_in_place(lo, hi, scale, out, shared):
    # `out` and `shared` are the two copies (DDP's two-rank mean, in place). Read and written
    # at the same index in one loop, LLVM sees that it is safe; passed to _mean_of_two as
    # copies too, they would look like an overlap that its run-time check cannot rule out,
    # and the loop would run scalar (2-3x slower). a + b == b + a in IEEE arithmetic, so
    # the two may come in either order.
    out, shared = out[lo:hi], shared[lo:hi]
    for i in range(out.shape[0]):
        value = (out[i] + shared[i]) * scale
        out[i] = value
        shared[i] = value


@kernel_jit()
def _mean_of_many(copies, lo, hi, scale, out, shared):
    # Summed in the copies' order; the running sum stays in `shared`, which is no copy,
    # so that `out` may be one: it is written only in the last pass.
    out, shared = out[lo:hi], shared[lo:hi]
    a, b = copies[0][lo:hi], copies[1][lo:hi]
    for i in range(shared.shape[0]):
        shared[i] = a[i] + b[i]
    for k in range(2, len(copies)):
        c = copies[k][lo:hi]
        for i in range(shared.shape[0]):
            shared[i] += c[i]
    for i in range(shared.shape[0]):
        value = shared[i] * scale
        out[i] = value
        shared[i] = value


def mean_of_copies(
    copies: tuple, lo: int, hi: int, scale, out: np.ndarray, shared: np.ndarray
) -> None:
    """``out[lo:hi] = shared[lo:hi] = (copies[0] + copies[1] + ...)[lo:hi] * scale``.

    Parameters
    ----------
    copies : tuple of ndarray
        Two or more 1-D arrays of one float dtype. ``out`` may be one of them; with two
        copies ``shared`` may be the other (or one, if ``out`` is not).
    lo, hi : int
        The element range.
    scale : float
        The factor, ``1 / len(copies)`` for a mean (converted to the arrays' dtype).
    out, shared : ndarray
        1-D arrays of the same dtype, written over ``lo:hi`` only.

    Raises
    ------
    ValueError
        With fewer than two copies, or more than two with ``shared`` among them.
    """
    if len(copies) < 2:
        raise ValueError(f"mean_of_copies: needs two or more copies, got {len(copies)}")
    scale = out.dtype.type(scale)
    # Which arrays are copies is told by identity: a loop whose outputs are its inputs
    # vectorises only in a kernel written for it. Any other aliasing at the same index is
    # still correct in _mean_of_two (each element is read before it is written), if slower.
    if len(copies) == 2:
        a, b = copies
        if (out is a and shared is b) or (out is b and shared is a):
            _mean_of_two_both_in_place(lo, hi, scale, out, shared)
        else:
            _mean_of_two(a, b, lo, hi, scale, out, shared)
    elif any(c is shared for c in copies):
        raise ValueError(
            "mean_of_copies: with more than two copies, shared holds the running sum and "
            "must not be one of them"
        )
    else:
        _mean_of_many(tuple(copies), lo, hi, scale, out, shared)


def mean_of_copies_numpy(
    copies: tuple, lo: int, hi: int, scale, out: np.ndarray, shared: np.ndarray
) -> None:
    """NumPy twin of :func:`mean_of_copies`."""
    if len(copies) < 2:
        raise ValueError(f"mean_of_copies: needs two or more copies, got {len(copies)}")
    if len(copies) > 2 and any(c is shared for c in copies):
        raise ValueError(
            "mean_of_copies: with more than two copies, shared holds the running sum and "
            "must not be one of them"
        )
    total = copies[0][lo:hi] + copies[1][lo:hi]
    for c in copies[2:]:
        total += c[lo:hi]
    total *= out.dtype.type(scale)
    out[lo:hi] = total
    shared[lo:hi] = total
