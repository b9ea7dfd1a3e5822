"""Matrix products callable from inside ``@njit`` code, through NumPy's own OpenBLAS.

Why
---
A compiled training step (:mod:`fastbp.jit.compiler`) runs the whole step in one jitted call, so
its matrix products must be callable from Numba. ``np.dot`` inside ``@njit`` would go through
SciPy's separate OpenBLAS, with a second thread pool that fights NumPy's for the cores. This
module instead finds the CBLAS entry points of the OpenBLAS that NumPy itself loaded and
calls them through ctypes, which Numba compiles to a direct call. One library, one thread
pool, and the very kernels (hence the very bits) that ``np.dot`` uses eagerly: ``gemm``
mirrors NumPy's choice of ``gemv`` for a single row.

NumPy wheels from PyPI bundle OpenBLAS with ``scipy_``-prefixed 64-bit-integer symbols;
other builds (MKL, Accelerate, a system OpenBLAS) may not expose CBLAS where we look, and
then :data:`AVAILABLE` is False and compiled steps are not built (``fb.trace`` replays in
Python instead).

Example
-------
>>> import numpy as np
>>> from fastbp.jit import blas
>>> a, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
>>> c = np.empty((2, 4), np.float32)
>>> if blas.AVAILABLE:
...     blas.gemm(a, False, b, False, c, 1.0, 0.0)
...     assert (c == 3).all()
"""

from __future__ import annotations

import ctypes
import glob
import os
from typing import Any

import numpy as np

from ..kernels._jit import kernel_jit

__all__ = ["AVAILABLE", "gemm"]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _numpy_openblas() -> ctypes.CDLL | None:
    """The OpenBLAS shared library NumPy's wheel loaded (the same handle), or None."""
    folder = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(folder, "libscipy_openblas*"))):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _bind(library: ctypes.CDLL | None) -> tuple[Any, ...] | None:
    if library is None:
        return None
    try:
        functions = (
            library.scipy_cblas_sgemm64_,
            library.scipy_cblas_dgemm64_,
            library.scipy_cblas_sgemv64_,
            library.scipy_cblas_dgemv64_,
        )
    except AttributeError:
        return None
    enum, size, pointer = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    for function in functions:
        function.restype = None
    sgemm, dgemm, sgemv, dgemv = functions
    for function, real in ((sgemm, ctypes.c_float), (dgemm, ctypes.c_double)):
        function.argtypes = [enum, enum, enum, size, size, size, real, pointer, size]
        function.argtypes += [pointer, size, real, pointer, size]
    for function, real in ((sgemv, ctypes.c_float), (dgemv, ctypes.c_double)):
        function.argtypes = [enum, enum, size, size, real, pointer, size, pointer, size, real]
        function.argtypes += [pointer, size]
    return functions


_FUNCTIONS = _bind(_numpy_openblas())

#: True when NumPy's OpenBLAS exposes the CBLAS functions :func:`gemm` calls.
AVAILABLE: bool = _FUNCTIONS is not None

if AVAILABLE:
    _sgemm, _dgemm, _sgemv, _dgemv = _FUNCTIONS

    # Compiled without a disk cache: the library's addresses change from process to process.
    @kernel_jit(cache=False)
    def gemm(a, trans_a, b, trans_b, c, alpha, beta):
        """``c = alpha·op(a)·op(b) + beta·c`` for matrices of one float dtype, contiguous rows.

        ``op(m)`` is ``m.T`` when its flag is True (read through BLAS's transpose flag, no
        copy). A single-row ``op(a)`` takes ``gemv``, as ``np.dot`` does. ``alpha=1, beta=0``
        is the plain product; ``beta=1`` accumulates; a compiled step folds a plain SGD
        update into a weight gradient as ``w = beta·w + alpha·xᵀ·dy``.
        """
        rows = c.shape[0]
        cols = c.shape[1]
        inner = a.shape[0] if trans_a else a.shape[1]
        if rows == 1 and not trans_a:
            # A row times a matrix is a matrix times a vector: gemv over b's rows (bᵀ·x),
            # or over b itself when b comes transposed, as NumPy computes it.
            flag = _NO_TRANS if trans_b else _TRANS
            if c.itemsize == 4:
                _sgemv(_ROW_MAJOR, flag, b.shape[0], b.shape[1], alpha, b.ctypes.data,
                       b.shape[1], a.ctypes.data, 1, beta, c.ctypes.data, 1)  # fmt: skip
            else:
                _dgemv(_ROW_MAJOR, flag, b.shape[0], b.shape[1], alpha, b.ctypes.data,
                       b.shape[1], a.ctypes.data, 1, beta, c.ctypes.data, 1)  # fmt: skip
            return
        flag_a = _TRANS if trans_a else _NO_TRANS
        flag_b = _TRANS if trans_b else _NO_TRANS
        if c.itemsize == 4:
            _sgemm(_ROW_MAJOR, flag_a, flag_b, rows, cols, inner, alpha, a.ctypes.data,
                   a.strides[0] // a.itemsize, b.ctypes.data, b.strides[0] // b.itemsize, beta,
                   c.ctypes.data, c.strides[0] // c.itemsize)  # fmt: skip
        else:
            _dgemm(_ROW_MAJOR, flag_a, flag_b, rows, cols, inner, alpha, a.ctypes.data,
                   a.strides[0] // a.itemsize, b.ctypes.data, b.strides[0] // b.itemsize, beta,
                   c.ctypes.data, c.strides[0] // c.itemsize)  # fmt: skip

else:  # pragma: no cover - only on NumPy builds without a bundled OpenBLAS

    def gemm(a, trans_a, b, trans_b, c, alpha, beta):
        """Unavailable on this NumPy build (see :data:`AVAILABLE`)."""
        raise RuntimeError("fastbp.jit.blas: NumPy's OpenBLAS CBLAS functions were not found")
