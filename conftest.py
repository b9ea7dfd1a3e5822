"""Test-session set-up shared by tests/ and benchmarks/.

One BLAS/Numba thread: the suites check behaviour, not speed, and on a shared 2-core
machine a second BLAS thread spinning against a busy core makes small GEMMs up to
30x slower (see benchmarks/README.md). Set before NumPy is imported; explicit
settings in the environment win.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
