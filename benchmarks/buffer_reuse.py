"""Interleaved A/B of the kernels' output pool (issue 13 item 11): eager training steps.

Variants, switched in one process between rounds so that the machine's load falls on
all of them alike: ``refcount`` (the former ``dispatch`` module, read from git at 33842c1:
a pooled array, dx and dw, is free when ``sys.getrefcount`` says 3), ``lease`` (the
current pool: blocks lent to one array and given back by a weak-reference callback when it
dies; dx only) and ``none`` (no pool: every output a fresh ``np.empty``). ``--mallopt``
first sets glibc's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD to 64 MiB through ctypes
(process-wide) and so measures "no pool, glibc keeps freed memory". Besides the median
step time, each row gives the minor page faults per step (``getrusage``), which the
machine's load does not blur.

Run pinned::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 taskset -c 1 \
        python benchmarks/buffer_reuse.py --rounds 15
"""

from __future__ import annotations

import argparse
import ctypes
import resource
import statistics
import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from mlp_systems import CONFIGS, make_fastbp  # noqa: E402

from fastbp.kernels import dispatch  # noqa: E402


def _former_dispatch():
    """``fastbp/kernels/dispatch.py`` as of commit 33842c1 (the sys.getrefcount pool)."""
    import importlib.util
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", "33842c1:fastbp/kernels/dispatch.py"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = root / "benchmarks" / "_former_dispatch.py"  # fastbp.kernels' relative imports
    spec = importlib.util.spec_from_loader("fastbp.kernels._former_dispatch", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "fastbp.kernels"
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def _none_output(shape, dtype):
    return None


def use(variant: str, former) -> None:
    """Point the ops at the variant's dispatch module."""
    import fastbp.ops.elementwise
    import fastbp.ops.linalg
    import fastbp.ops.loss

    module = former if variant == "refcount" else dispatch
    dispatch._output = _none_output if variant == "none" else _lease_output
    for ops in (fastbp.ops.elementwise, fastbp.ops.linalg, fastbp.ops.loss):
        ops.dispatch = module


_lease_output = dispatch._output
VARIANTS = ("refcount", "lease", "none")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--mallopt", action="store_true")
    parser.add_argument("--variants", default="refcount,lease,none")
    parser.add_argument("--configs", default="B128-784-512-256-10,B16-784-128-10")
    args = parser.parse_args()
    if args.mallopt:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        assert libc.mallopt(m_mmap_threshold, 64 << 20) == 1
        assert libc.mallopt(m_trim_threshold, 64 << 20) == 1
    variants = args.variants.split(",")
    assert set(variants) <= set(VARIANTS), variants
    former = _former_dispatch()
    for config in args.configs.split(","):
        batch, sizes = CONFIGS[config]
        step = make_fastbp(batch, sizes)
        times: dict[str, list[float]] = {v: [] for v in variants}
        faults: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                use(v, former)
                for _ in range(5):  # warm: the pool fills, the old variant's arrays go
                    step()
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step()
                times[v].append((time.perf_counter() - t0) / args.steps * 1e6)
                f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                faults[v].append((f1 - f0) / args.steps)
        label = "mallopt " if args.mallopt else ""
        for v in variants:
            t = times[v]
            print(
                f"{label}{config:24s} {v:9s} median {statistics.median(t):8.1f} us  "
                f"(min {min(t):8.1f}, rounds {len(t)})  "
                f"minor page faults/step {statistics.median(faults[v]):7.1f}"
            )
        use("lease", former)


if __name__ == "__main__":
    main()
