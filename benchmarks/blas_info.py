"""Which OpenBLAS kernels this process runs: a line for every benchmark's output.

OpenBLAS built with ``DYNAMIC_ARCH`` picks its kernels for the CPU at load time, unless
``OPENBLAS_CORETYPE`` names a core. Some machines set it (with ``OPENBLAS_L2_SIZE``) to an
older core for the sake of old OpenBLAS builds; a current NumPy then runs, for example, its
AVX2 Haswell kernels on an AVX-512 CPU, and its products take up to 2x longer. PyTorch
(oneDNN) does not read the variable, so a side-by-side table measured that way handicaps
the NumPy-based rows. To measure what a user gets, run the command with both unset::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/cnn_systems.py ...

Example
-------
>>> isinstance(blas_line(), str)
True
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["openblas_cores", "blas_line"]

_CORENAME_SYMBOLS = (
    "scipy_openblas_get_corename64_",
    "scipy_openblas_get_corename",
    "openblas_get_corename64_",
    "openblas_get_corename",
)


def openblas_cores() -> dict[str, str]:
    """Library file name -> the OpenBLAS core it runs, for every OpenBLAS this process loaded.

    Reads ``/proc/self/maps`` (Linux); elsewhere, or with no OpenBLAS loaded, an empty dict.
    """
    import numpy  # noqa: F401  (loads NumPy's BLAS)

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return {}
    cores = {}
    for path in sorted(p for p in paths if p.startswith("/")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in _CORENAME_SYMBOLS:
            function = getattr(lib, symbol, None)
            if function is not None:
                function.restype = ctypes.c_char_p
                cores[os.path.basename(path)] = function().decode()
                break
    return cores


def blas_line() -> str:
    """One line saying which OpenBLAS kernels run, and whether the environment chose them."""
    cores = openblas_cores()
    kernels = ", ".join(sorted(set(cores.values()))) or "unknown (no OpenBLAS found)"
    forced = os.environ.get("OPENBLAS_CORETYPE")
    if forced:
        return (
            f"# BLAS: OpenBLAS runs its {kernels} kernels, chosen by OPENBLAS_CORETYPE={forced} "
            "in the environment; unset it and OPENBLAS_L2_SIZE to measure what a user gets"
        )
    return f"# BLAS: OpenBLAS runs its {kernels} kernels (chosen for this CPU)"
