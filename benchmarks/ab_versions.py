"""Two versions of fastbp side by side in one process: per-op overhead and small MLP steps.

Timings on a shared machine drift by 10-20% between processes, more than most engine
changes are worth. This script imports an older commit and the working tree as two
packages (``fastbp_base`` and ``fastbp_new``), alternates between them in short rounds,
and reports the median of the per-round ratios new / base, which the drift cancels out
of. PyTorch eager runs in the same rounds when it is installed.

Workloads:

* ``chain``: 300 tiny elementwise ops (``* 1.001``, ``+ 0.5``, ``tanh`` on 4 floats),
  forward and backward, as in ``bench_overhead.py``; microseconds per op;
* ``B1``, ``B16``: the eager 784-128-10 training step (``nn.Sequential`` of Linear/ReLU,
  ``F.cross_entropy``, plain SGD) of ``compare.py``; microseconds per step.

Example::

    taskset -c 0 python benchmarks/ab_versions.py --base 6085681 --rounds 40
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHAIN = 300


def _install(base: str, where: Path) -> None:
    """Put ``base``'s package and the working tree's side by side under ``where``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", base, "fastbp"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    (where / "fastbp").rename(where / "fastbp_base")
    shutil.copytree(
        ROOT / "fastbp", where / "fastbp_new", ignore=shutil.ignore_patterns("__pycache__")
    )
    sys.path.insert(0, str(where))


def chain_workload(fb) -> Callable[[], None]:
    x = fb.tensor(np.ones(4, np.float32), requires_grad=True)

    def run() -> None:
        y = x
        for _ in range(CHAIN // 3):
            y = y * 1.001
            y = y + 0.5
            y = fb.tanh(y)
        y.sum().backward()

    return run


def step_workload(package: str, batch: int) -> Callable[[], None]:
    nn = importlib.import_module(package + ".nn")
    functional = importlib.import_module(package + ".nn.functional")
    optim = importlib.import_module(package + ".optim")
    fb = importlib.import_module(package)
    rng = np.random.default_rng(0)
    x = fb.from_numpy(rng.standard_normal((batch, 784)).astype(np.float32))
    y = rng.integers(0, 10, batch)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = optim.SGD(model.parameters(), lr=0.01)

    def run() -> None:
        opt.zero_grad()
        functional.cross_entropy(model(x), y).backward()
        opt.step()

    return run


def torch_workloads() -> dict[str, Callable[[], None]]:
    """The same workloads in PyTorch eager (one thread), or nothing if it is absent."""
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(1)
    x = torch.ones(4, requires_grad=True)

    def chain() -> None:
        y = x
        for _ in range(CHAIN // 3):
            y = torch.tanh(y * 1.001 + 0.5)
        y.sum().backward()

    def step(batch: int) -> Callable[[], None]:
        rng = np.random.default_rng(0)
        xb = torch.from_numpy(rng.standard_normal((batch, 784)).astype(np.float32))
        yb = torch.from_numpy(rng.integers(0, 10, batch))
        model = torch.nn.Sequential(
            torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def run() -> None:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()

        return run

    return {"chain": chain, "B1": step(1), "B16": step(16)}


def measure(runs: dict[str, Callable[[], None]], rounds: int, per_round: int) -> dict[str, list]:
    """The best of ``per_round`` calls of each system, for each of ``rounds`` rounds."""
    for run in runs.values():
        for _ in range(20):
            run()
    best: dict[str, list] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times = []
            for _ in range(per_round):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            best[name].append(min(times))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="HEAD", help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--per-round", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as where:
        _install(args.base, Path(where))
        packages = {"base": "fastbp_base", "new": "fastbp_new"}
        theirs = torch_workloads()
        print(f"base = {args.base}, new = the working tree; medians of {args.rounds} rounds")
        print("| workload | base | new | new / base (IQR) | new / PyTorch eager |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for workload in ("chain", "B1", "B16"):
            runs = {}
            for label, package in packages.items():
                if workload == "chain":
                    runs[label] = chain_workload(importlib.import_module(package))
                else:
                    runs[label] = step_workload(package, int(workload[1:]))
            if workload in theirs:
                runs["torch"] = theirs[workload]
            best = measure(runs, args.rounds, args.per_round)
            scale = 1e6 / CHAIN if workload == "chain" else 1e6
            ratios = np.array(best["new"]) / np.array(best["base"])
            low, mid, high = np.percentile(ratios, [25, 50, 75])
            vs_torch = "n/a"
            if "torch" in best:
                vs_torch = f"{np.median(np.array(best['new']) / np.array(best['torch'])):.2f}x"
            unit = "us/op" if workload == "chain" else "us"
            print(
                f"| {workload} | {np.median(best['base']) * scale:.2f} {unit} | "
                f"{np.median(best['new']) * scale:.2f} {unit} | {mid:.3f} ({low:.3f}-{high:.3f}) "
                f"| {vs_torch} |"
            )


if __name__ == "__main__":
    main()
