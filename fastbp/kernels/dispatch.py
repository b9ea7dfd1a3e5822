"""The engine's door to the kernels: use a kernel when the arrays suit it, else its twin.

A jitted kernel takes float32/float64 arrays of one dtype, with C-contiguous gradients.
The ops of the op table see everything else too (mixed dtypes, broadcast views coming
from ``sum``'s vjp, integer data), and asking a kernel to reject such arrays costs a
failed Numba type inference (about a millisecond) on every call. So each function
here tests the arrays with identity checks on the dtype singletons (well under a
microsecond) and sends what a kernel cannot take to the NumPy twin, which computes
the same thing.

Example
-------
>>> import numpy as np
>>> from fastbp.kernels import dispatch
>>> dispatch.relu_backward(np.array([[1.0, -1.0]]), np.array([[2.0, 2.0]]))
array([[2., 0.]])
"""

from __future__ import annotations

import weakref

import numpy as np

from . import activations, linear, losses

_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
_INTP = np.dtype(np.intp)
_INT32 = np.dtype(np.int32)


def _suits(first: np.ndarray, *rest: np.ndarray) -> bool:
    """True if all arrays share one float dtype and the last ones are C-contiguous."""
    dtype = first.dtype
    if dtype is not _FLOAT32 and dtype is not _FLOAT64:
        return False
    for a in rest:
        if a.dtype is not dtype or not a.flags.c_contiguous:
            return False
    return True


# ------------------------------------------------------------------ buffer reuse
# A fresh large output can cost a page fault per 4 KiB page on every step: glibc maps
# blocks over its mmap threshold and gives them back to the OS when they are freed. Its
# threshold adapts (a freed block up to 32 MiB raises it), so at batch 128 the faults
# are gone after the first step, but at batch 1024 (4 MiB gradients) a step without the
# pool took ~2000 faults (benchmarks/buffer_reuse.py). Outputs of 128 KiB and more that
# the backward walk consumes (dx, dz) therefore get their memory from a small pool of
# blocks, and a block is lent to one array at a time. The array handed out is built
# on the block (a ``bytearray``, not an ndarray), so NumPy makes that array the
# ``base`` of every view taken of it, and of every view of those views: the array
# lives exactly as long as anything can reach the block. When it dies (the engine
# dropped the gradient, ``.grad`` was cleared), a weak-reference callback puts the
# block back on the free list. Whether a block is free is thus a fact fastbp records
# from Python's object lifetime, not a guess from ``sys.getrefcount`` (whose exact
# count is a CPython detail). Every kernel overwrites its whole output, so reuse
# cannot change a result.
#
# Memory held: at most ``_POOL_PER_SIZE`` idle blocks per byte size and ``_POOL_SIZES``
# sizes; a block coming back to a full list is freed. ``release_buffers()`` frees the
# idle blocks now, ``buffer_stats()`` says what is lent and what is idle.

_POOL_MIN_BYTES = 128 * 1024
_POOL_PER_SIZE = 6
_POOL_SIZES = 32  # beyond this many sizes (varying batch sizes...) start afresh
_free: dict[int, list[tuple[bytearray, int]]] = {}  # byte size -> idle (block, offset)
_lent: dict[int, tuple] = {}  # id(weak reference) -> (weak ref, block, offset, byte size)


def _give_back(ref: weakref.ref) -> None:
    """Weak-reference callback: the array died, so nothing can reach its block any more."""
    entry = _lent.pop(id(ref), None)
    if entry is None:  # lent before release_buffers(): freed with the array
        return
    _, block, offset, size = entry
    blocks = _free.get(size)
    if blocks is None:
        if len(_free) >= _POOL_SIZES:
            _free.clear()  # bounded memory: forget the idle blocks of other sizes
        blocks = _free[size] = []
    if len(blocks) < _POOL_PER_SIZE:
        blocks.append((block, offset))


def _output(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """A writable C-contiguous array for a large output, on a pooled block, or None to let
    the kernel allocate (under 128 KiB a fresh allocation costs no page faults)."""
    if len(shape) == 2:  # the usual case, without a loop
        size = shape[0] * shape[1] * dtype.itemsize
    else:
        size = dtype.itemsize
        for n in shape:
            size *= n
    if size < _POOL_MIN_BYTES:
        return None
    blocks = _free.get(size)
    if blocks:
        block, offset = blocks.pop()
    else:
        # 64 bytes spare so the array can start on a cache line, as NumPy's own do not
        # promise but BLAS and the vectorised kernels prefer.
        block = bytearray(size + 64)
        offset = -np.frombuffer(block, np.uint8).ctypes.data % 64
    out = np.ndarray(shape, dtype, buffer=block, offset=offset)
    ref = weakref.ref(out, _give_back)
    _lent[id(ref)] = (ref, block, offset, size)
    return out


def buffer_stats() -> dict[str, int]:
    """What the output pool holds: blocks lent out and idle, and their bytes.

    Returns
    -------
    dict
        ``lent``, ``lent_bytes``: blocks some array still uses; ``idle``, ``idle_bytes``:
        free blocks kept for the next large output.

    Example
    -------
    >>> stats = buffer_stats()
    >>> sorted(stats)
    ['idle', 'idle_bytes', 'lent', 'lent_bytes']
    """
    idle = [len(block) for blocks in _free.values() for block, _ in blocks]
    return {
        "lent": len(_lent),
        "lent_bytes": sum(len(entry[1]) for entry in _lent.values()),
        "idle": len(idle),
        "idle_bytes": sum(idle),
    }


def release_buffers() -> None:
    """Free every idle pooled block now; blocks still lent are freed with their arrays.

    The pool keeps at most a few idle blocks per output size between steps (that is
    its point: no page faults next step). Call this after training, or before a phase
    that needs the memory, to hand them back to the allocator.

    Example
    -------
    >>> release_buffers()
    >>> buffer_stats()["idle"]
    0
    """
    _free.clear()
    # Lent blocks are forgotten too: their weak references die with the entries, so no
    # callback brings them back, and each block is freed with the last array using it.
    _lent.clear()


def _elementwise(kernel, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Run a 2-D elementwise kernel on C-contiguous arrays of any shape, as (1, size) views."""
    if a.ndim == 2:
        return kernel(a, b)
    return kernel(a.reshape(1, -1), b.reshape(1, -1)).reshape(a.shape)


def linear_forward(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, activation: str | None = None
) -> np.ndarray:
    """``act(x·w + b)``; see :func:`fastbp.kernels.linear_forward`.

    Example
    -------
    >>> linear_forward(np.ones((1, 2)), np.ones((2, 2)), None)
    array([[2., 2.]])
    """
    dtype = x.dtype
    if (
        (dtype is _FLOAT32 or dtype is _FLOAT64)
        and w.dtype is dtype
        and x.ndim == 2
        and w.ndim == 2
        and (b is None or (b.dtype is dtype and b.flags.c_contiguous))
    ):
        return linear.linear_forward(x, w, b, None, activation)
    return linear.linear_forward_numpy(x, w, b, None, activation)


def linear_backward(
    x: np.ndarray, w: np.ndarray, dy: np.ndarray, need_dx: bool, need_dw: bool, need_db: bool
):
    """``(dy·wᵀ, xᵀ·dy, dy.sum(0))``, each only if needed.

    See :func:`fastbp.kernels.linear_backward`.

    Example
    -------
    >>> dx, dw, db = linear_backward(np.ones((1, 2)), np.ones((2, 3)), np.ones((1, 3)),
    ...                              False, True, True)
    >>> dx is None, dw.shape, db.shape
    (True, (2, 3), (3,))
    """
    if x.ndim == 2 and w.ndim == 2 and w.dtype is x.dtype and _suits(x, dy):
        dtype = x.dtype
        return linear._linear_backward(  # the public kernel's body, entered directly
            "linear_backward",
            x,
            w,
            dy,
            need_dx,
            need_dw,
            need_db,
            _output(x.shape, dtype) if need_dx else None,
            # Not dw: a weight gradient becomes ``.grad``, and the engine keeps as ``.grad``
            # only an array that owns its memory (else it copies). A pooled dw would cost
            # that copy every step; a fresh one costs nothing below glibc's 32 MiB
            # mmap threshold (freed blocks stay in the heap) and page faults above it.
            None,
            None,
        )
    return linear.linear_backward_numpy(x, w, dy, need_dx, need_dw, need_db)


def relu_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``dy·(x > 0)``; see :func:`fastbp.kernels.relu_backward`.

    Example
    -------
    >>> relu_backward(np.array([0.0, 1.0]), np.array([5.0, 5.0]))
    array([0., 5.])
    """
    if x.shape == dy.shape and _suits(x, x, dy):
        return _elementwise(activations.relu_backward, x, dy)
    return activations.relu_backward_numpy(x, dy)


def sigmoid_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``dy·y·(1 − y)``; see :func:`fastbp.kernels.sigmoid_backward`.

    Example
    -------
    >>> sigmoid_backward(np.array([0.5]), np.array([1.0]))
    array([0.25])
    """
    if y.shape == dy.shape and _suits(y, y, dy):
        return _elementwise(activations.sigmoid_backward, y, dy)
    return activations.sigmoid_backward_numpy(y, dy)


def activation_backward_bias(
    activation: str, y: np.ndarray, dy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fused activation backward and bias gradient: ``(dz, dz.sum(0))``.

    Parameters
    ----------
    activation : {"relu", "sigmoid"}
    y : ndarray, shape (N, out)
        The activation's output (for ReLU, ``y > 0`` exactly where its input was).
    dy : ndarray, shape (N, out)
        Gradient at the activation's output.

    Returns
    -------
    dz, db : ndarray
        Gradient at the activation's input and its column sums.

    Example
    -------
    >>> dz, db = activation_backward_bias("relu", np.array([[0.0, 2.0]]), np.ones((1, 2)))
    >>> dz, db
    (array([[0., 1.]]), array([0., 1.]))
    """
    dtype = y.dtype
    if (
        (dtype is _FLOAT32 or dtype is _FLOAT64)
        and dy.dtype is dtype
        and y.ndim == 2
        and y.shape == dy.shape
        and y.flags.c_contiguous
        and dy.flags.c_contiguous
    ):
        fused = (
            activations.relu_backward_bias
            if activation == "relu"
            else activations.sigmoid_backward_bias
        )
        return fused(y, dy, _output(y.shape, dtype))
    if activation == "relu":
        return activations.relu_backward_bias_numpy(y, dy)
    return activations.sigmoid_backward_bias_numpy(y, dy)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray):
    """Per-sample losses, ``softmax − onehot``, the summed loss and whether the logits are finite.

    See :func:`fastbp.kernels.softmax_cross_entropy_total`. The labels are range-checked on
    both paths (the kernel checks them as it goes; the NumPy twin would wrap negative ones).

    Raises
    ------
    ValueError
        If a label lies outside ``[0, C)``.

    Example
    -------
    >>> losses, dlogits, total, finite = softmax_cross_entropy(np.zeros((1, 2)), np.array([0]))
    >>> losses.round(4), dlogits, round(total, 4), finite
    (array([0.6931]), array([[-0.5,  0.5]]), 0.6931, True)
    """
    dtype = logits.dtype
    if (
        (dtype is _FLOAT32 or dtype is _FLOAT64)
        and logits.ndim == 2
        and logits.flags.c_contiguous
        and (labels.dtype is _INTP or labels.dtype is _INT32)
    ):
        return losses.softmax_cross_entropy_total(logits, np.ascontiguousarray(labels))
    if len(labels) and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError("softmax_cross_entropy: label out of range")
    return losses.softmax_cross_entropy_total_numpy(logits, labels)
