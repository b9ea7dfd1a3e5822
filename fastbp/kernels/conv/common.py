"""What the convolution and pooling kernels share: the argument check and reused buffers."""

from __future__ import annotations

import numpy as np

from .._guards import FLOAT_DTYPES
from ..dispatch import _output

Pair = tuple[int, int]


def _check_float(kernel: str, **arrays: np.ndarray) -> None:
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray) or array.dtype not in FLOAT_DTYPES:
            got = getattr(array, "dtype", type(array).__name__)
            raise TypeError(f"{kernel}: {name} must be a float32/float64 array, got {got}")


def _buffer(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array, on a reused block when it is large.

    A fresh multi-megabyte array costs a page fault per 4 KiB page on every step (glibc maps
    and unmaps such blocks); the conv passes and products write every element anyway.
    """
    out = _output(shape, dtype)
    return np.empty(shape, dtype) if out is None else out
