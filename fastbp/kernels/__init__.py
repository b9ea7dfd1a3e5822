"""CPU kernels for the hot parts of backpropagation, jitted with Numba, each with a NumPy twin.

Every public kernel ``name`` has a plain-NumPy twin ``name_numpy`` with the same signature (the
expression the kernel replaces; used by the tests, by the benchmarks and as a fallback), and
:data:`KERNELS` maps each name to the pair. Inputs are C-contiguous float32 or float64 arrays
(2-D unless noted); outputs are freshly allocated unless an ``out``-style argument is given.

Design notes
------------
* Matrix products use NumPy's BLAS (``np.dot``, or ``np.matmul`` where its call measured faster;
  ``out=``, transposes as ``.T`` views) from the Python wrappers. Calling BLAS from inside
  ``@njit`` (SciPy's OpenBLAS) measured the same within noise from (16,128,128) to
  (1024,1024,1024) and slower at batch 1, and it would make SciPy's separate OpenBLAS thread pool
  busy next to NumPy's. Numba loads SciPy's OpenBLAS anyway, but no kernel calls it, so only
  NumPy's pool ever works. A batch of one takes a jitted outer product for ``xᵀ·dy`` (OpenBLAS's
  gemm with an inner dimension of 1 is 2-6x slower).
* Softmax needs ``exp``: Numba's is a scalar libm call (no SVML here), slower than NumPy's SIMD
  one, so the kernels use their own vectorisable ``exp`` (``_simd_math``, < 1 ulp).
* Argument checks cost nothing on the fast path: jitted kernels reject wrong dtypes, ranks,
  layouts and read-only outputs when they are compiled for them, compare shapes at run time, and
  the wrapper turns any failure into a TypeError/ValueError that names the kernel, the argument,
  its shape and its dtype.
* Kernels are compiled lazily, once per dtype, and cached on disk (``cache=True``). When Numba
  has nowhere to write the cache they compile without one. ``FASTBP_DISABLE_JIT=1`` (or Numba's
  ``NUMBA_DISABLE_JIT=1``) runs them as plain Python.
* No kernel runs in parallel. On the 2-core target ``prange`` gave 1.8x only on memory-bound
  kernels at (1024,1024), lost at (128,512), and stalled for ~10 ms whenever the other core was
  busy; it would also compete with NumPy's BLAS threads.
* Allocation: large fresh outputs page-fault on every call (softmax at 1024x1024 float64: 5.9 ms
  allocating vs 2.4 ms into given buffers), so callers that repeat shapes should pass ``out``.

Example
-------
>>> import numpy as np
>>> from fastbp.kernels import KERNELS, relu_backward_bias
>>> dz, db = relu_backward_bias(np.array([[1.0, -1.0]]), np.array([[3.0, 3.0]]))
>>> db
array([3., 0.])
>>> sorted(KERNELS)[:3]
['adam_update', 'bias_grad', 'gelu_backward']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._jit import JIT_DISABLED
from .activations import (
    relu_backward,
    relu_backward_bias,
    relu_backward_bias_numpy,
    relu_backward_numpy,
    sigmoid_backward,
    sigmoid_backward_bias,
    sigmoid_backward_bias_numpy,
    sigmoid_backward_numpy,
)
from .gelu import gelu_backward, gelu_backward_numpy, gelu_forward, gelu_forward_numpy
from .linear import (
    bias_grad,
    bias_grad_numpy,
    linear_backward,
    linear_backward_numpy,
    linear_forward,
    linear_forward_numpy,
    matmul_grad,
    matmul_grad_numpy,
)
from .losses import (
    scale_rows,
    scale_rows_numpy,
    softmax_cross_entropy,
    softmax_cross_entropy_numpy,
    softmax_cross_entropy_total,
    softmax_cross_entropy_total_numpy,
)
from .optim import adam_update, adam_update_numpy, sgd_update, sgd_update_numpy

#: Kernel name -> (jitted public function, NumPy twin with the same signature).
KERNELS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "linear_forward": (linear_forward, linear_forward_numpy),
    "linear_backward": (linear_backward, linear_backward_numpy),
    "matmul_grad": (matmul_grad, matmul_grad_numpy),
    "bias_grad": (bias_grad, bias_grad_numpy),
    "sigmoid_backward": (sigmoid_backward, sigmoid_backward_numpy),
    "relu_backward": (relu_backward, relu_backward_numpy),
    "relu_backward_bias": (relu_backward_bias, relu_backward_bias_numpy),
    "sigmoid_backward_bias": (sigmoid_backward_bias, sigmoid_backward_bias_numpy),
    "softmax_cross_entropy": (softmax_cross_entropy, softmax_cross_entropy_numpy),
    "softmax_cross_entropy_total": (softmax_cross_entropy_total, softmax_cross_entropy_total_numpy),
    "scale_rows": (scale_rows, scale_rows_numpy),
    "sgd_update": (sgd_update, sgd_update_numpy),
    "adam_update": (adam_update, adam_update_numpy),
    "gelu_forward": (gelu_forward, gelu_forward_numpy),
    "gelu_backward": (gelu_backward, gelu_backward_numpy),
}

__all__ = [
    "JIT_DISABLED",
    "KERNELS",
    "adam_update",
    "adam_update_numpy",
    "bias_grad",
    "bias_grad_numpy",
    "gelu_backward",
    "gelu_backward_numpy",
    "gelu_forward",
    "gelu_forward_numpy",
    "linear_backward",
    "linear_backward_numpy",
    "linear_forward",
    "linear_forward_numpy",
    "matmul_grad",
    "matmul_grad_numpy",
    "relu_backward",
    "relu_backward_bias",
    "relu_backward_bias_numpy",
    "relu_backward_numpy",
    "scale_rows",
    "scale_rows_numpy",
    "sgd_update",
    "sgd_update_numpy",
    "sigmoid_backward",
    "sigmoid_backward_bias",
    "sigmoid_backward_bias_numpy",
    "sigmoid_backward_numpy",
    "softmax_cross_entropy",
    "softmax_cross_entropy_numpy",
    "softmax_cross_entropy_total",
    "softmax_cross_entropy_total_numpy",
]
