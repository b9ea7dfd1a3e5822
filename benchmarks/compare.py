"""Side-by-side table of training-step times, in one process, every system pinned alike.

Usage::

    python benchmarks/compare.py                 # one core (the default), all systems
    python benchmarks/compare.py --threads all   # every core
    python benchmarks/compare.py --plot benchmarks/train_step.png --markdown out.md

With ``--threads 1`` the script re-executes itself pinned to core 0 with
OMP/OpenBLAS/Numba limited to one thread (and ``torch.set_num_threads(1)``), since
two busy threads on a shared machine make timings jump by milliseconds. It prints
the median of each system, its ratio to the GEMM floor (the matrix products alone)
and the ratio to PyTorch of fastbp, eager and traced (``fb.trace``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def pin_to_one_core(argv: list[str]) -> None:
    """Re-exec with one BLAS/Numba thread on core 0, before NumPy is imported."""
    if os.environ.get("FASTBP_BENCH_PINNED") == "1":
        return
    env = dict(os.environ, FASTBP_BENCH_PINNED="1", **{v: "1" for v in THREAD_VARS})
    os.sched_setaffinity(0, {0})
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], env)


def median_time(step, min_time: float = 1.0, min_rounds: int = 7, max_rounds: int = 2000):
    """Median wall time of ``step()`` over enough rounds to fill ``min_time`` seconds."""
    import numpy as np

    for _ in range(3):
        step()  # warm-up: JIT, caches, allocator
    times = []
    start = time.perf_counter()
    while len(times) < max_rounds and (
        len(times) < min_rounds or time.perf_counter() - start < min_time
    ):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1", help="'1' (pinned, default) or 'all'")
    parser.add_argument("--configs", default="all", help="comma-separated config names")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--plot", help="write a PNG bar chart here")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    if args.threads == "1":
        pin_to_one_core(argv)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import mlp_systems as ms

    if ms.has("torch"):
        import torch

        if args.threads == "1":
            torch.set_num_threads(1)
    configs = list(ms.CONFIGS) if args.configs == "all" else args.configs.split(",")
    systems = ms.available_systems()
    results: dict[str, dict[str, float]] = {}
    for config in configs:
        batch, sizes = ms.CONFIGS[config]
        results[config] = {}
        for system in systems:
            step = ms.SYSTEMS[system][0](batch, sizes)
            results[config][system] = median_time(step, args.min_time)
            print(
                f"{config:>24} {system:>12}: {results[config][system] * 1e6:10.1f} us",
                file=sys.stderr,
            )

    ours = [s for s in systems if s.startswith("fastbp")]  # eager and traced
    lines = [
        f"Training step medians ({'1 pinned core' if args.threads == '1' else 'all cores'}), "
        f"float32; ratio to the GEMM floor in brackets.",
        "",
        "| step | " + " | ".join(systems) + " | " + " | ".join(f"{s} / torch" for s in ours) + " |",
        "| --- | " + " | ".join("---" for _ in systems + ours) + " |",
    ]
    for config, row in results.items():
        floor = row["gemm-floor"]
        cells = [f"{row[s] * 1e6:.0f} us ({row[s] / floor:.2f}x)" for s in systems]
        cells += [f"{row[s] / row['torch']:.2f}x" if "torch" in row else "-" for s in ours]
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    if args.plot:
        plot(results, systems, args.plot)
    return results


def plot(results: dict, systems: list[str], path: str) -> None:
    """Bar chart of each system's time relative to the GEMM floor, per configuration."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install matplotlib (or the 'examples' extra)")
    import numpy as np

    configs = list(results)
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, system in enumerate(systems):
        ratios = [results[c][system] / results[c]["gemm-floor"] for c in configs]
        ax.bar(np.arange(len(configs)) + i * width, ratios, width, label=system)
    ax.set_xticks(np.arange(len(configs)) + width * (len(systems) - 1) / 2, configs)
    ax.set_ylabel("time / GEMM floor (lower is better)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("One SGD training step, float32")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
