"""benchmarks/blas_info.py: the line every benchmark prints about its BLAS kernels."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from blas_info import blas_line, openblas_cores  # noqa: E402


def test_blas_line_says_who_chose_the_kernels(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert "chosen by OPENBLAS_CORETYPE=Haswell" in blas_line()
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert "(chosen for this CPU)" in blas_line()
    with open("/proc/self/maps") as maps:
        loaded = any("openblas" in line.lower() for line in maps)
    assert bool(openblas_cores()) == loaded  # every OpenBLAS NumPy loaded names its core
