"""Time to 98% MNIST test accuracy: fastbp versus PyTorch, same recipe, same core(s).

Both systems train a 784-512-256-10 ReLU MLP with SGD (lr 0.1, momentum 0.9, batch 128)
on identically preprocessed data in the identical batch order, starting from the identical
initial weights (fastbp draws them; PyTorch copies them, transposed). Test accuracy is
measured after every epoch; evaluation is excluded from the training clock and reported
separately. Each system runs in its own subprocess, so its peak resident memory
(``ru_maxrss``) is its own, and all threads of every library are limited to ``--threads``
cores (``OMP_NUM_THREADS`` and friends are set before NumPy or PyTorch is imported, and the
process is pinned with ``sched_setaffinity``)::

    python benchmarks/time_to_98.py                  # both systems, 1 thread, <= 8 epochs
    python benchmarks/time_to_98.py --threads 2 --max-epochs 5
    python benchmarks/time_to_98.py --limit-train 2000 --max-epochs 1 --target 0.5

The data directory is ``--data-dir``, else ``$FASTBP_DATA``. PyTorch is optional: without
it its row is reported as skipped. The script is also importable: :func:`run_system` runs
one system in-process (the tests use it on a small slice).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# NumPy, fastbp and torch are imported inside functions: the thread-count variables below
# only take effect if they are set before the BLAS and OpenMP runtimes are loaded.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
SYSTEMS = ("fastbp", "torch")
HIDDEN = (512, 256)
LR = 0.1
MOMENTUM = 0.9
BATCH_SIZE = 128
EVAL_BATCH_SIZE = 10_000
_REEXEC_MARK = "FASTBP_BENCH_PINNED"


# --------------------------------------------------------------------------------------------
# Pinning
# --------------------------------------------------------------------------------------------


def pin(threads: int, argv: Sequence[str] | None = None, reexec: bool = True) -> None:
    """Limit this process to ``threads`` cores and every thread pool to ``threads`` threads.

    Sets the ``THREAD_VARS`` environment variables and the CPU affinity. If a library that
    reads those variables at load time (NumPy, Numba, torch) is already imported with other
    values, the script re-executes itself (once) so they take effect, or warns if
    ``reexec`` is False.

    Parameters
    ----------
    threads : int
        Number of cores (the first ``threads`` of those this process may use).
    argv : sequence of str or None
        Arguments to re-execute with (default ``sys.argv[1:]``).
    reexec : bool, optional
        Allow replacing the process with a fresh interpreter. Default True.

    Returns
    -------
    None
    """
    value = str(threads)
    stale = any(os.environ.get(var) != value for var in THREAD_VARS)
    for var in THREAD_VARS:
        os.environ[var] = value
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(allowed[:threads]))
    loaded = any(mod in sys.modules for mod in ("numpy", "numba", "torch"))
    if not (stale and loaded):
        return
    if reexec and not os.environ.get(_REEXEC_MARK):
        os.environ[_REEXEC_MARK] = "1"
        args = list(sys.argv[1:] if argv is None else argv)
        os.execv(sys.executable, [sys.executable, os.path.abspath(__file__), *args])
    print(
        f"warning: NumPy/Numba/torch were imported before the thread limits were set; "
        f"they may use more than {threads} thread(s). Run this file as a script instead.",
        file=sys.stderr,
    )


def _peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# --------------------------------------------------------------------------------------------
# Data (shared by both systems, so preprocessing and batch order are identical)
# --------------------------------------------------------------------------------------------


def _load_data(data_dir: str | None, limit_train: int | None, limit_test: int | None):
    # fastbp.examples.mnist_mlp would also import fastbp.nn and fastbp.optim, which would
    # count against PyTorch's peak memory: only the light data module is imported here.
    import numpy as np

    from fastbp.data import load_mnist

    x_train, y_train, x_test, y_test = load_mnist(root=data_dir, download=False)
    x_train, y_train = x_train[:limit_train], y_train[:limit_train]
    x_test, y_test = x_test[:limit_test], y_test[:limit_test]

    def prep(images):  # as fastbp.examples.mnist_mlp.preprocess (a test checks they agree)
        x = images.reshape(len(images), -1).astype(np.float32)
        x *= np.float32(1.0 / 255.0)
        return x

    return prep(x_train), y_train.astype(np.int64), prep(x_test), y_test.astype(np.int64)


def _epoch_loader(x, y, seed: int, epoch: int):
    # Same loader and seeding as fastbp.examples.mnist_mlp.make_loader.
    from fastbp.data import DataLoader

    return DataLoader(x, y, BATCH_SIZE, shuffle=True, seed=seed + epoch)


# --------------------------------------------------------------------------------------------
# The two systems
# --------------------------------------------------------------------------------------------


def _fastbp_setup(seed: int, init_out: str | None):
    import numpy as np

    from fastbp.examples.mnist_mlp import build_model, build_optimizer, evaluate, train_epoch

    model = build_model(HIDDEN, seed=seed)
    if init_out:
        np.savez(init_out, *[p.data for p in model.parameters()])
    optimizer = build_optimizer("sgd", model.parameters(), LR, MOMENTUM)

    def train(loader) -> float:
        return train_epoch(model, optimizer, loader)

    def test(x, y) -> float:
        return evaluate(model, x, y, EVAL_BATCH_SIZE)

    import fastbp

    return train, test, f"fastbp {fastbp.__version__}"


def load_torch_init(model, init_in: str) -> None:
    """Copy the fastbp initial weights saved in ``init_in`` into a torch ``model``.

    fastbp stores Linear weights ``(in, out)`` and torch ``(out, in)``; conv weights agree.
    """
    import numpy as np
    import torch

    with np.load(init_in) as arrays:
        values = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    with torch.no_grad():
        for p, v in zip(model.parameters(), values, strict=True):
            p.copy_(torch.from_numpy(np.ascontiguousarray(v.T if v.ndim == 2 else v)))


def torch_loops(model, optimizer, eval_batch: int):
    """``(train, test)`` for a torch model: one epoch over a loader (returns the mean loss),
    and the test accuracy scored in batches of ``eval_batch``."""
    import torch

    cross_entropy = torch.nn.functional.cross_entropy
    from_numpy = torch.from_numpy

    def train(loader) -> float:
        model.train()
        total, count = 0.0, 0
        for xb, yb in loader:
            loss = cross_entropy(model(from_numpy(xb)), from_numpy(yb))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(yb)
            count += len(yb)
        return total / count

    def test(x, y) -> float:
        model.eval()
        correct = 0
        with torch.no_grad():
            for s in range(0, len(x), eval_batch):
                pred = model(from_numpy(x[s : s + eval_batch])).argmax(dim=1).numpy()
                correct += int((pred == y[s : s + eval_batch]).sum())
        return correct / len(x)

    return train, test


def _torch_setup(seed: int, init_in: str | None, threads: int):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    sizes = (784, *HIDDEN, 10)
    layers: list[Any] = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    if init_in:
        load_torch_init(model, init_in)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    train, test = torch_loops(model, optimizer, EVAL_BATCH_SIZE)
    return train, test, f"torch {torch.__version__}"


def run_system(
    system: str,
    *,
    data_dir: str | None = None,
    max_epochs: int = 8,
    target: float = 0.98,
    seed: int = 0,
    threads: int = 1,
    limit_train: int | None = None,
    limit_test: int | None = None,
    init_out: str | None = None,
    init_in: str | None = None,
    early_stop: bool = True,
    verbose: bool = False,
) -> dict[str, Any]:
    """Train one system with the benchmark recipe in this process and time it.

    Parameters
    ----------
    system : {'fastbp', 'torch'}
        Which implementation to run.
    data_dir : str or None, optional
        MNIST directory (None: ``$FASTBP_DATA`` or fastbp's cache).
    max_epochs : int, optional
        Upper bound on epochs. Default 8.
    target : float, optional
        Test accuracy to reach. Default 0.98.
    seed : int, optional
        Seed for initialisation and shuffling. Default 0.
    threads : int, optional
        Intra-op threads for torch (fastbp's come from the environment). Default 1.
    limit_train, limit_test : int or None, optional
        Use only the first N samples.
    init_out : str or None, optional
        fastbp only: save the initial parameters to this ``.npz``.
    init_in : str or None, optional
        torch only: start from the parameters in this ``.npz`` (written by ``init_out``).
    early_stop : bool, optional
        Stop once ``target`` is reached. Default True.
    verbose : bool, optional
        Print one line per epoch to stderr.

    Returns
    -------
    dict
        ``system``, ``version``, per-epoch ``epochs`` records (``loss``, ``accuracy``,
        ``train_time``, ``eval_time``), ``time_to_target`` and ``epochs_to_target`` (None
        if not reached), ``final_accuracy``, ``train_time`` (total), ``setup_time`` (data
        loading and model building) and ``peak_rss_mb`` (of this process so far).

    Raises
    ------
    ValueError
        For an unknown system.
    ImportError
        If ``system`` is 'torch' and torch is not installed.
    """
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; use one of {SYSTEMS}")
    t0 = time.perf_counter()
    x_train, y_train, x_test, y_test = _load_data(data_dir, limit_train, limit_test)
    if system == "fastbp":
        train, test, version = _fastbp_setup(seed, init_out)
    else:
        train, test, version = _torch_setup(seed, init_in, threads)
    setup_time = time.perf_counter() - t0

    records: list[dict[str, float]] = []
    clock = 0.0
    time_to_target = epochs_to_target = None
    for epoch in range(max_epochs):
        loader = _epoch_loader(x_train, y_train, seed, epoch)
        t1 = time.perf_counter()
        loss = train(loader)
        t2 = time.perf_counter()
        accuracy = test(x_test, y_test)
        t3 = time.perf_counter()
        clock += t2 - t1
        records.append(
            {"loss": loss, "accuracy": accuracy, "train_time": t2 - t1, "eval_time": t3 - t2}
        )
        if verbose:
            print(
                f"[{system}] epoch {epoch + 1}: loss {loss:.4f}  accuracy {accuracy:.4f}  "
                f"train {t2 - t1:.2f}s  eval {t3 - t2:.2f}s",
                file=sys.stderr,
                flush=True,
            )
        if time_to_target is None and accuracy >= target:
            time_to_target, epochs_to_target = clock, epoch + 1
            if early_stop:
                break
    return {
        "system": system,
        "version": version,
        "epochs": records,
        "time_to_target": time_to_target,
        "epochs_to_target": epochs_to_target,
        "final_accuracy": records[-1]["accuracy"] if records else None,
        "train_time": clock,
        "setup_time": setup_time,
        "peak_rss_mb": _peak_rss_mb(),
    }


# --------------------------------------------------------------------------------------------
# Orchestration and report
# --------------------------------------------------------------------------------------------


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _run_worker(system: str, args: argparse.Namespace, out: Path, init: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        system,
        "--out",
        str(out),
        "--threads",
        str(args.threads),
        "--max-epochs",
        str(args.max_epochs),
        "--target",
        str(args.target),
        "--seed",
        str(args.seed),
    ]
    for flag, value in (
        ("--data-dir", args.data_dir),
        ("--limit-train", args.limit_train),
        ("--limit-test", args.limit_test),
    ):
        if value is not None:
            cmd += [flag, str(value)]
    if args.no_early_stop:
        cmd.append("--no-early-stop")
    cmd += ["--init-out" if system == "fastbp" else "--init-in", str(init)]
    if system == "torch" and not init.exists():
        cmd = cmd[:-2]  # fastbp failed before writing it: torch uses its own init
    # The environment already holds the thread limits (see pin), and the child inherits the
    # CPU affinity; it pins itself again anyway in case it is started by hand.
    proc = subprocess.run(cmd, env=os.environ.copy(), check=False)
    if proc.returncode != 0 or not out.exists():
        return {"system": system, "error": f"worker exited with status {proc.returncode}"}
    return json.loads(out.read_text())


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def format_report(results: Sequence[dict[str, Any]], target: float) -> str:
    """Render the results as a Markdown table plus the fastbp/PyTorch ratio.

    Parameters
    ----------
    results : sequence of dict
        As returned by :func:`run_system`, or ``{'system', 'error'}`` / ``{'system',
        'skipped'}`` entries.
    target : float
        The accuracy target, for the column header.

    Returns
    -------
    str
    """
    header = (
        f"| system | time to {target:.1%} (s) | epochs | final acc | mean epoch (s) "
        "| eval (s) | peak RSS (MB) |"
    )
    lines = [header, "|" + "---|" * 7]
    by_name = {}
    for r in results:
        if "error" in r or "skipped" in r:
            why = r.get("error") or r.get("skipped")
            lines.append(f"| {r['system']} | {why} | | | | | |")
            continue
        by_name[r["system"]] = r
        n = len(r["epochs"])
        mean_epoch = r["train_time"] / n if n else None
        mean_eval = sum(e["eval_time"] for e in r["epochs"]) / n if n else None
        reached = r["time_to_target"]
        lines.append(
            f"| {r['version']} | {_fmt(reached, '.2f') if reached is not None else 'not reached'}"
            f" | {r['epochs_to_target'] or n} | {_fmt(r['final_accuracy'], '.4f')}"
            f" | {_fmt(mean_epoch, '.2f')} | {_fmt(mean_eval, '.3f')}"
            f" | {_fmt(r['peak_rss_mb'], '.0f')} |"
        )
    fb_r, th_r = by_name.get("fastbp"), by_name.get("torch")
    lines.append("")
    if fb_r and th_r:
        if fb_r["time_to_target"] is not None and th_r["time_to_target"] is not None:
            ratio = fb_r["time_to_target"] / th_r["time_to_target"]
            lines.append(f"fastbp/PyTorch time-to-{target:.1%} ratio: {ratio:.2f}x")
        else:
            lines.append(f"fastbp/PyTorch time-to-{target:.1%} ratio: n/a (target not reached)")
        fb_epoch = fb_r["train_time"] / len(fb_r["epochs"])
        th_epoch = th_r["train_time"] / len(th_r["epochs"])
        lines.append(f"fastbp/PyTorch mean epoch time ratio: {fb_epoch / th_epoch:.2f}x")
    else:
        lines.append("fastbp/PyTorch ratio: n/a (a system did not run)")
    return "\n".join(lines)


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Wall time to reach a test accuracy on MNIST: fastbp vs PyTorch.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--threads", type=int, default=1, help="cores/threads per system")
    p.add_argument("--max-epochs", type=int, default=8, help="give up after this many epochs")
    p.add_argument("--target", type=float, default=0.98, help="test accuracy to reach")
    p.add_argument("--seed", type=int, default=0, help="init and shuffling seed")
    p.add_argument("--data-dir", default=None, help="MNIST directory [$FASTBP_DATA]")
    p.add_argument("--limit-train", type=int, default=None, help="first N training samples")
    p.add_argument("--limit-test", type=int, default=None, help="first N test samples")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated systems to run")
    p.add_argument(
        "--no-early-stop", action="store_true", help="run all --max-epochs even after the target"
    )
    p.add_argument("--json", metavar="PATH", help="also write all results as JSON")
    # Internal: run one system and write its results (used by the parent process).
    p.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--init-out", help=argparse.SUPPRESS)
    p.add_argument("--init-in", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None, reexec: bool = False) -> int:
    """Run the benchmark from the command line; see the module docstring.

    Parameters
    ----------
    argv : sequence of str or None
        Arguments without the program name (None: ``sys.argv[1:]``).
    reexec : bool, optional
        Let :func:`pin` re-execute the process (only sensible when run as a script).

    Returns
    -------
    int
        Exit status: 0, or 1 if a system failed.
    """
    args = _build_parser().parse_args(argv)
    if args.threads < 1:
        raise SystemExit("error: --threads must be >= 1")
    pin(args.threads, argv, reexec)

    if args.worker:
        result = run_system(
            args.worker,
            data_dir=args.data_dir,
            max_epochs=args.max_epochs,
            target=args.target,
            seed=args.seed,
            threads=args.threads,
            limit_train=args.limit_train,
            limit_test=args.limit_test,
            init_out=args.init_out,
            init_in=args.init_in,
            early_stop=not args.no_early_stop,
            verbose=True,
        )
        Path(args.out).write_text(json.dumps(result))
        return 0

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"error: unknown system(s) {sorted(unknown)}; choose from {SYSTEMS}")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(
        f"# time to {args.target:.1%} on MNIST: 784-512-256-10 ReLU MLP, SGD lr {LR} "
        f"momentum {MOMENTUM}, batch {BATCH_SIZE}, <= {args.max_epochs} epochs, seed "
        f"{args.seed}\n# {args.threads} thread(s), CPUs {cpus}, Python "
        f"{platform.python_version()} on {platform.machine()}",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fastbp-bench-") as tmp:
        init = Path(tmp) / "init.npz"
        # fastbp goes first: it writes the initial weights that torch then starts from.
        for system in sorted(systems, key=SYSTEMS.index):
            if system == "torch" and not _torch_available():
                results.append({"system": "torch", "skipped": "skipped (torch not installed)"})
                continue
            results.append(_run_worker(system, args, Path(tmp) / f"{system}.json", init))
    print(format_report(results, args.target), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(reexec=True))
