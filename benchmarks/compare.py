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
    parser.add_argument(
        "--optimizers",
        default="sgd,sgd-momentum,adam",
        help="comma-separated: sgd (plain), sgd-momentum (0.9, the MNIST example's), adam",
    )
    parser.add_argument("--plot", help="write a PNG bar chart here")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument(
        "--replot",
        metavar="MARKDOWN",
        help="measure nothing: redraw --plot from the first step-time table in this file "
        "(e.g. benchmarks/README.md)",
    )
    args = parser.parse_args(argv)
    if args.replot:
        if not args.plot:
            parser.error("--replot needs --plot PATH")
        with open(args.replot, encoding="utf-8") as f:
            results = parse_times_table(f.read())
        plot(results, list(next(iter(results.values()))), args.plot)
        return results
    if args.threads == "1":
        pin_to_one_core(argv)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import mlp_systems as ms

    if ms.has("torch"):
        import torch

        if args.threads == "1":
            torch.set_num_threads(1)
    configs = list(ms.CONFIGS) if args.configs == "all" else args.configs.split(",")
    optimizers = args.optimizers.split(",")
    results: dict[str, dict[str, float]] = {}
    paths: dict[str, str] = {}  # row -> the path fastbp-trace takes
    for config in configs:
        batch, sizes = ms.CONFIGS[config]
        for optimizer in optimizers:
            row = config if optimizer == "sgd" else f"{config} {optimizer}"
            systems = ms.available_systems(optimizer)
            steps = {s: ms.SYSTEMS[s][0](batch, sizes, optimizer) for s in systems}
            if "fastbp-trace" in steps:
                paths[row] = ms.fastbp_trace_path(steps["fastbp-trace"])
            results[row] = interleaved_medians(steps, args.min_time)
            for system in systems:
                print(
                    f"{row:>36} {system:>12}: {results[row][system] * 1e6:10.1f} us",
                    file=sys.stderr,
                )
    systems = ms.available_systems()  # every column; rows without one show a dash

    table = markdown_tables(results, systems, args.threads)
    table += "\n\nThe path fastbp-trace takes in each row:\n\n| step | path |\n| --- | --- |\n"
    table += "\n".join(f"| {row} | {path} |" for row, path in paths.items())
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from blas_info import blas_line

    print(blas_line() + "\n\n" + table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    if args.plot:
        plot(results, systems, args.plot)
    return results


# The names the tables and the plot's legend show, one list for both.
LABELS = {
    "gemm-floor": "GEMM floor",
    "fastbp": "fastbp",
    "fastbp-trace": "fastbp-trace",
    "numpy": "NumPy by hand",
    "torch": "PyTorch eager",
    "jax": "JAX jit",
}


def label(system: str) -> str:
    return LABELS.get(system, system)


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds >= 0.01 else f"{seconds * 1e6:.0f} us"


def markdown_tables(results: dict, systems: list[str], threads: str = "1") -> str:
    """Three narrow tables (7 columns at most, so they fit the docs' content column).

    Step times; the same relative to the GEMM floor; fastbp's ratio to PyTorch.
    """
    where = "1 pinned core" if threads == "1" else "all cores"
    header = "| step | " + " | ".join(label(s) for s in systems) + " |"
    rule = "| --- |" + " ---: |" * len(systems)
    times = [f"Training step medians ({where}), float32.", "", header, rule]
    ratios = ["Time relative to the GEMM floor (lower is better).", "", header, rule]
    for config, row in results.items():
        floor = row["gemm-floor"]
        cells = [_time(row[s]) if s in row else "–" for s in systems]
        times.append(f"| {config} | " + " | ".join(cells) + " |")
        cells = [f"{row[s] / floor:.2f}x" if s in row else "–" for s in systems]
        ratios.append(f"| {config} | " + " | ".join(cells) + " |")
    out = "\n".join(times) + "\n\n" + "\n".join(ratios)
    ours = [s for s in systems if s.startswith("fastbp")]  # eager and traced
    if "torch" in systems:
        vs = ["fastbp relative to PyTorch eager (below 1 is faster).", ""]
        vs.append("| step | " + " | ".join(f"{label(s)} / {label('torch')}" for s in ours) + " |")
        vs.append("| --- |" + " ---: |" * len(ours))
        for config, row in results.items():
            cells = [f"{row[s] / row['torch']:.2f}x" for s in ours]
            vs.append(f"| {config} | " + " | ".join(cells) + " |")
        out += "\n\n" + "\n".join(vs)
    return out


def parse_times_table(text: str) -> dict[str, dict[str, float]]:
    """``{config: {system: seconds}}`` from the first Markdown table of step times in ``text``.

    Reads the layout :func:`markdown_tables` writes (cells such as ``34 us`` or ``61.6 ms``,
    optionally followed by a bracketed ratio), with the systems named as in ``LABELS``.
    """
    import re

    by_label = {v: k for k, v in LABELS.items()}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| step |") or "GEMM floor" not in cells:
            continue
        systems = [by_label.get(c, c) for c in cells[1:]]
        results: dict[str, dict[str, float]] = {}
        for row in lines[i + 2 :]:
            if not row.startswith("|"):
                break
            values = [c.strip() for c in row.strip().strip("|").split("|")]
            parsed = {}
            for system, cell in zip(systems, values[1:], strict=True):
                if system not in LABELS:
                    continue  # e.g. an older "fastbp / PyTorch" ratio column
                m = re.match(r"([0-9.]+)\s*(us|ms|s)\b", cell)
                if m:
                    parsed[system] = (
                        float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
                    )
            if len(parsed) != len([x for x in systems if x in LABELS]):
                break  # a table of ratios, not times
            results[values[0]] = parsed
        if results:
            return results
    raise ValueError("no table of step times (a '| step | GEMM floor | ...' header) found")


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
        ax.bar(np.arange(len(configs)) + i * width, ratios, width, label=label(system))
    ax.set_xticks(np.arange(len(configs)) + width * (len(systems) - 1) / 2, configs)
    ax.set_ylabel("time / GEMM floor (lower is better)")
    ax.set_yscale("log")
    # Plain numbers at chosen ratios: the default log labels read "2×10⁰".
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    top = max(results[c][s] / results[c]["gemm-floor"] for c in configs for s in systems)
    low = min(results[c][s] / results[c]["gemm-floor"] for c in configs for s in systems)
    ticks = [t for t in (0.5, 0.75, 1, 1.25, 1.5, 2, 3, 4, 6, 8, 10, 15, 20) if low / 1.3 <= t]
    ticks = [t for t in ticks if t <= top * 1.3] or [1]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.axhline(1.0, color="0.5", linewidth=0.8)
    ax.legend(fontsize="small", ncols=2)
    ax.set_title("One SGD training step, float32")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
