"""Side-by-side table of training-step times, in one process, every system pinned alike.

Usage::

    python benchmarks/compare.py                 # one core (the default), all systems
    python benchmarks/compare.py --threads all   # every core
    python benchmarks/compare.py --plot benchmarks/train_step.png --markdown out.md

With ``--threads 1`` the script re-executes itself pinned to core 0 with
OMP/OpenBLAS/Numba limited to one thread (and ``torch.set_num_threads(1)``), since
two busy threads on a shared machine make timings jump by milliseconds. The systems
take turns (:func:`interleaved_medians`), so a slow spell of the machine is shared.
It prints the median of each system, its ratio to the GEMM floor (the matrix products
alone) and the ratio to PyTorch of fastbp, eager and traced (``fb.trace``).
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


def interleaved_medians(
    steps: dict, min_time: float = 1.0, rounds: int = 10, max_calls: int = 2000
) -> dict[str, float]:
    """Median wall time of each ``steps[name]()``, the systems taking turns.

    Each system runs ``rounds`` times for ``min_time / rounds`` seconds (at least one call,
    at most ``max_calls`` calls in all), one system after the other within each round, so
    that a stretch when the shared machine is slow falls on every system alike rather than
    on whichever ran then. Every call is timed; the median is over all of a system's calls.
    """
    import numpy as np

    for step in steps.values():
        for _ in range(3):
            step()  # warm-up: JIT, caches, allocator
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            calls = times[name]
            budget = len(calls) + max(1, max_calls // rounds)
            start = time.perf_counter()
            while len(calls) < budget:
                t0 = time.perf_counter()
                step()
                calls.append(time.perf_counter() - t0)
                if t0 - start >= min_time / rounds:
                    break
    return {name: float(np.median(calls)) for name, calls in times.items()}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1", help="'1' (pinned, default) or 'all'")
    parser.add_argument("--configs", default="all", help="comma-separated config names")
    parser.add_argument(
        "--min-time", type=float, default=1.0, help="seconds per system and configuration"
    )
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
        steps = {system: ms.SYSTEMS[system][0](batch, sizes) for system in systems}
        results[config] = interleaved_medians(steps, args.min_time)
        for system in systems:
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
