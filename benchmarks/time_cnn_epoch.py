"""Epoch time of the MNIST CNN example, fastbp versus PyTorch, and fastbp's first-step cost.

Both systems train the network and recipe of ``python -m fastbp.examples.mnist_cnn``'s default
run: two conv3x3-ReLU-maxpool2 blocks (32, 64 channels), dropout 0.25, Linear 3136→128, ReLU,
dropout 0.5, Linear 128→10; SGD lr 0.05 with a per-epoch cosine decay over 5 epochs, momentum
0.9, batch 64, pixels scaled to [0, 1], seed 0. They see the same batches in the same order and
start from the same weights (fastbp draws them, PyTorch copies them); only the dropout masks
differ (each system draws its own). Evaluation (batches of 500) is not on the training clock,
nor is one warm-up step with a spare model (``--no-warmup`` leaves it out), which loads the
kernels a first step needs (what ``--first-step`` measures).
Each system runs in its own subprocess, so its peak resident memory is its own; both run on
one CPU with one thread per pool and take turns epoch by epoch, so that a slow spell of a
shared machine falls on both::

    python benchmarks/time_cnn_epoch.py                      # 5 epochs each, CPU 0
    python benchmarks/time_cnn_epoch.py --stop-after 1       # the first epoch of that run
    python benchmarks/time_cnn_epoch.py --first-step         # process start -> first step

``--first-step`` starts fresh interpreters that import the example, load MNIST, build its model
and optimizer and take one training step, and reports the wall time from starting the process
to the end of that step, with the time of each stage. The first of ``--repeat + 1`` runs fills
Numba's on-disk cache and is not reported, so the runs shown have a warm cache.

The data directory is ``--data-dir``, else ``$FASTBP_DATA``. Without torch its row is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Nothing numerical is imported at the top: the thread limits must be set first (see _pin).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import time_to_98  # noqa: E402  (stdlib only at import; pinning and peak RSS helpers)

SYSTEMS = ("fastbp", "torch")
EPOCHS = 5  # the example's default run, over which the cosine schedule decays


def _pin() -> None:
    """One thread per pool, on the CPU(s) this process was started on (set by the parent)."""
    time_to_98.pin(1, reexec=False)


def _data(data_dir: str | None, limit_train: int | None, limit_test: int | None):
    from fastbp.examples.mnist_cnn import images
    from fastbp.examples.mnist_mlp import load_data

    x_train, y_train, x_test, y_test = load_data(data_dir, limit_train, limit_test, download=False)
    return images(x_train), y_train, images(x_test), y_test


def _warmup_batch(n: int):
    import numpy as np

    return np.zeros((n, 1, 28, 28), np.float32), np.arange(n) % 10


def _fastbp(seed: int, init_out: str | None, warmup: bool):
    """``(train(loader), test(x, y), optimizer, version)`` from the example's own functions."""
    import numpy as np

    import fastbp
    from fastbp.examples import mnist_cnn
    from fastbp.examples.mnist_mlp import build_optimizer, evaluate, train_epoch

    d = mnist_cnn.DEFAULTS
    if warmup:
        # Loads (or compiles) every kernel the run uses, off the clock; build_model reseeds
        # below, so the run's weights and dropout masks are those of a run without it.
        spare = mnist_cnn.build_model(seed=seed)
        spare_opt = build_optimizer(d["optimizer"], spare.parameters(), d["lr"], d["momentum"])
        train_epoch(spare, spare_opt, [_warmup_batch(d["batch_size"])])
        evaluate(spare, *_warmup_batch(2))
    model = mnist_cnn.build_model(seed=seed)
    if init_out:
        np.savez(init_out, *[p.data for p in model.parameters()])
    optimizer = build_optimizer(d["optimizer"], model.parameters(), d["lr"], d["momentum"])

    def train(loader) -> float:
        return train_epoch(model, optimizer, loader)

    def test(x, y) -> float:
        return evaluate(model, x, y, mnist_cnn.EVAL_BATCH_SIZE)

    return train, test, optimizer, f"fastbp {fastbp.__version__}"


def _torch(seed: int, init_in: str | None, warmup: bool):
    """The same network, loss and optimizer in PyTorch eager, one thread."""
    import torch

    from fastbp.examples import mnist_cnn

    torch.set_num_threads(1)
    nn = torch.nn

    def build():
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Dropout(0.25), nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, 10),
        )  # fmt: skip

    d = mnist_cnn.DEFAULTS
    if warmup:  # as for fastbp: one step and one evaluation off the clock, before seeding
        spare = build()
        x, y = (torch.from_numpy(a) for a in _warmup_batch(d["batch_size"]))
        torch.nn.functional.cross_entropy(spare(x), y).backward()
        with torch.no_grad():
            spare.eval()(x[:2])
    torch.manual_seed(seed)
    model = build()
    if init_in:
        time_to_98.load_torch_init(model, init_in)
    optimizer = torch.optim.SGD(model.parameters(), lr=d["lr"], momentum=d["momentum"])
    train, test = time_to_98.torch_loops(model, optimizer, mnist_cnn.EVAL_BATCH_SIZE)
    return train, test, optimizer, f"torch {torch.__version__}"


def run_system(
    system: str,
    *,
    data_dir: str | None = None,
    epochs: int = EPOCHS,
    stop_after: int | None = None,
    seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
    init_out: str | None = None,
    init_in: str | None = None,
    warmup: bool = True,
    before_epoch: Callable[[int], None] | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Train one system with the example's recipe in this process, timing every epoch.

    Parameters
    ----------
    system : {'fastbp', 'torch'}
        Which implementation to run.
    data_dir : str or None, optional
        MNIST directory (None: ``$FASTBP_DATA``).
    epochs : int, optional
        Length of the run the cosine schedule decays over. Default 5 (the example's).
    stop_after : int or None, optional
        Train only the first N epochs of that run (None: all of them).
    seed : int, optional
        Initialisation and shuffling seed. Default 0.
    limit_train, limit_test : int or None, optional
        Use only the first N samples.
    init_out : str or None, optional
        fastbp only: save the initial parameters to this ``.npz``.
    init_in : str or None, optional
        torch only: start from the parameters in this ``.npz``.
    warmup : bool, optional
        Before the run, take one step and one evaluation with a spare model, off the clock,
        so that the epoch times are steady-state ones: the one-time costs (Numba loading
        its cached kernels, oneDNN creating its primitives) are what ``--first-step``
        measures. Default True.
    before_epoch : callable or None, optional
        Called with the epoch's index before each epoch (off the clock): the parent's turn
        taking waits there.
    verbose : bool, optional
        Print one line per epoch to stderr.

    Returns
    -------
    dict
        ``system``, ``version``, ``epochs`` (per epoch: ``loss``, ``accuracy``, ``lr``,
        ``train_time``, ``eval_time``), ``final_accuracy``, ``train_time`` (sum),
        ``setup_time`` (data, model and the warm-up) and ``peak_rss_mb``.

    Raises
    ------
    ValueError
        For an unknown system.
    """
    from fastbp.examples.mnist_cnn import DEFAULTS
    from fastbp.examples.mnist_mlp import make_loader, set_learning_rate

    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; use one of {SYSTEMS}")
    t0 = time.perf_counter()
    x_train, y_train, x_test, y_test = _data(data_dir, limit_train, limit_test)
    if system == "fastbp":
        train, test, optimizer, version = _fastbp(seed, init_out, warmup)
    else:
        train, test, optimizer, version = _torch(seed, init_in, warmup)
    setup_time = time.perf_counter() - t0
    records = []
    for epoch in range(epochs if stop_after is None else min(stop_after, epochs)):
        if before_epoch is not None:
            before_epoch(epoch)
        # set_learning_rate only writes param_groups[i]["lr"], which torch's optimizer has too.
        lr = set_learning_rate(optimizer, DEFAULTS["lr"], DEFAULTS["schedule"], epoch, epochs)
        loader = make_loader(x_train, y_train, DEFAULTS["batch_size"], seed, epoch)
        t1 = time.perf_counter()
        loss = train(loader)
        t2 = time.perf_counter()
        accuracy = test(x_test, y_test)
        t3 = time.perf_counter()
        records.append(
            {"loss": loss, "accuracy": accuracy, "lr": lr, "train_time": t2 - t1,
             "eval_time": t3 - t2}
        )  # fmt: skip
        if verbose:
            print(
                f"[{system}] epoch {epoch + 1}/{epochs}: loss {loss:.4f}  accuracy "
                f"{accuracy:.4f}  train {t2 - t1:.1f}s  eval {t3 - t2:.1f}s",
                file=sys.stderr,
                flush=True,
            )
    return {
        "system": system,
        "version": version,
        "epochs": records,
        "final_accuracy": records[-1]["accuracy"] if records else None,
        "train_time": sum(r["train_time"] for r in records),
        "setup_time": setup_time,
        "peak_rss_mb": time_to_98._peak_rss_mb(),
    }


def first_step(data_dir: str | None, started: float) -> dict[str, float]:
    """Import the example, load MNIST, build its model and take one step; time each stage.

    Parameters
    ----------
    data_dir : str or None
        MNIST directory.
    started : float
        ``time.time()`` just before the parent started this process.

    Returns
    -------
    dict
        Seconds since ``started`` at the end of each stage: ``python`` (this function
        entered), ``import`` (the example imported), ``data``, ``model`` and ``step``.
    """
    marks = {"python": time.time() - started}
    from fastbp.examples import mnist_cnn
    from fastbp.examples.mnist_mlp import build_optimizer, make_loader, train_epoch

    marks["import"] = time.time() - started
    x_train, y_train, _, _ = _data(data_dir, None, None)
    marks["data"] = time.time() - started
    d = mnist_cnn.DEFAULTS
    model = mnist_cnn.build_model(seed=d["seed"])
    optimizer = build_optimizer(d["optimizer"], model.parameters(), d["lr"], d["momentum"])
    loader = make_loader(x_train, y_train, d["batch_size"], d["seed"], 0)
    batch = next(iter(loader))
    marks["model"] = time.time() - started
    train_epoch(model, optimizer, [batch])
    marks["step"] = time.time() - started
    return marks


# ---------------------------------------------------------------------------------------------
# Orchestration and report
# ---------------------------------------------------------------------------------------------


def _wait_for_turn(epoch: int) -> None:
    """A worker's side of the turn taking: say it is ready, then wait for the parent's go."""
    print("ready", flush=True)
    if not sys.stdin.readline():
        raise SystemExit("time_cnn_epoch: the parent went away")


def _command(args: argparse.Namespace, extra: list[str], out: Path, started: float):
    cmd = [sys.executable, os.path.abspath(__file__), *extra, "--out", str(out)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    cmd += ["--started", repr(started)]
    env = dict(os.environ, **{v: "1" for v in time_to_98.THREAD_VARS})
    # A warm start has Python's bytecode cache as well as Numba's: without it (a shell
    # with PYTHONDONTWRITEBYTECODE set) every import compiles fastbp's sources again,
    # 0.2-0.3 s that no user who ran the example once pays.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return cmd, env


def _take_turns(args: argparse.Namespace, workers: list[tuple[str, list[str]]], tmp: Path):
    """Run the systems' epochs alternately on one CPU: epoch 1 of each, then epoch 2, ...

    A slow spell of the shared machine then falls on both systems rather than on whichever
    ran during it. Each worker stops before every epoch (``ready``) until it is told to go;
    the next system is started only once the one before is ready, so that fastbp's initial
    weights exist before PyTorch reads them and no setup overlaps an epoch.
    """
    procs = []
    for system, extra in workers:
        out = tmp / f"{system}.json"
        cmd, env = _command(args, extra, out, time.time())
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {args.cpu}),
        )  # fmt: skip
        alive = proc.stdout.readline() == "ready\n"
        procs.append((system, proc, out, alive))
    while any(alive for *_, alive in procs):
        for i, (system, proc, out, alive) in enumerate(procs):
            if alive:
                proc.stdin.write("go\n")
                proc.stdin.flush()
                # The next "ready" comes before the next epoch; EOF when the run is over.
                procs[i] = (system, proc, out, proc.stdout.readline() == "ready\n")
    results = []
    for system, proc, out, _ in procs:
        proc.stdin.close()
        code = proc.wait()
        if code != 0 or not out.exists():
            results.append({"system": system, "error": f"worker exited with status {code}"})
        else:
            results.append({"system": system, **json.loads(out.read_text())})
    return results


def _child(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    """Run this script in a fresh interpreter pinned to ``args.cpu``; return its JSON result."""
    with tempfile.TemporaryDirectory(prefix="fastbp-cnn-") as tmp:
        out = Path(tmp) / "out.json"
        started = time.time()
        cmd, env = _command(args, extra, out, started)
        proc = subprocess.run(
            cmd,
            env=env,
            preexec_fn=lambda: os.sched_setaffinity(0, {args.cpu}),
            check=False,
        )
        if proc.returncode != 0 or not out.exists():
            return {"error": f"worker exited with status {proc.returncode}"}
        return json.loads(out.read_text())


def format_epochs(results: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of the epoch runs and the fastbp/PyTorch ratios.

    Parameters
    ----------
    results : sequence of dict
        As :func:`run_system` returns them, or ``{'system', 'error' | 'skipped'}``.

    Returns
    -------
    str
    """
    lines = [
        "| system | epochs | mean epoch (s) | each epoch (s) | test accuracy | peak RSS (MB) |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    by_name = {}
    for r in results:
        if "epochs" not in r:
            lines.append(f"| {r['system']} | {r.get('error') or r.get('skipped')} | | | | |")
            continue
        by_name[r["system"]] = r
        n = len(r["epochs"])
        each = ", ".join(f"{e['train_time']:.1f}" for e in r["epochs"])
        accs = ", ".join(f"{e['accuracy']:.4f}" for e in r["epochs"])
        lines.append(
            f"| {r['version']} | {n} | {r['train_time'] / n:.1f} | {each} | {accs} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    ours, theirs = by_name.get("fastbp"), by_name.get("torch")
    if ours and theirs:
        ratio = (ours["train_time"] / len(ours["epochs"])) / (
            theirs["train_time"] / len(theirs["epochs"])
        )
        lines += [
            "",
            f"fastbp / PyTorch: {ratio:.2f}x the epoch time, "
            f"{ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}x the peak RSS, accuracy "
            f"{ours['final_accuracy']:.4f} against {theirs['final_accuracy']:.4f}.",
        ]
    return "\n".join(lines)


def format_first_steps(runs: Sequence[dict[str, float]]) -> str:
    """A Markdown table of :func:`first_step`'s stage times, one row per run."""
    stages = ("python", "import", "data", "model", "step")
    lines = [
        "| run | " + " | ".join(stages) + " | first step alone |",
        "| --- |" + " ---: |" * (len(stages) + 1),
    ]
    for i, marks in enumerate(runs, 1):
        if "error" in marks:
            lines.append(f"| {i} | {marks['error']} |" + " |" * len(stages))
            continue
        cells = [f"{marks[s]:.2f} s" for s in stages]
        lines.append(
            f"| {i} | " + " | ".join(cells) + f" | {marks['step'] - marks['model']:.2f} s |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", type=int, default=0, help="the CPU every subprocess runs on [0]")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="the run's length [5]")
    p.add_argument("--stop-after", type=int, default=None, help="train only the first N epochs")
    p.add_argument("--seed", type=int, default=0, help="init and shuffling seed [0]")
    p.add_argument("--data-dir", default=None, help="MNIST directory [$FASTBP_DATA]")
    p.add_argument("--limit-train", type=int, default=None, help="first N training samples")
    p.add_argument("--limit-test", type=int, default=None, help="first N test samples")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated [fastbp,torch]")
    p.add_argument("--no-warmup", action="store_true", help="no untimed step before the run")
    p.add_argument("--first-step", action="store_true", help="time process start -> first step")
    p.add_argument("--repeat", type=int, default=3, help="--first-step runs reported [3]")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    # Internal: what a subprocess runs.
    p.add_argument("--worker", choices=(*SYSTEMS, "first-step"), help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--started", type=float, help=argparse.SUPPRESS)
    p.add_argument("--init-out", help=argparse.SUPPRESS)
    p.add_argument("--init-in", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run from the command line; see the module docstring.

    Parameters
    ----------
    argv : sequence of str or None
        Arguments without the program name (None: ``sys.argv[1:]``).

    Returns
    -------
    int
        0, or 1 if a subprocess failed.
    """
    args = _parser().parse_args(argv)
    if args.worker:
        _pin()
        if args.worker == "first-step":
            result: Any = first_step(args.data_dir, args.started)
        else:
            result = run_system(
                args.worker, data_dir=args.data_dir, epochs=args.epochs,
                stop_after=args.stop_after, seed=args.seed, limit_train=args.limit_train,
                limit_test=args.limit_test, init_out=args.init_out, init_in=args.init_in,
                warmup=not args.no_warmup, before_epoch=_wait_for_turn, verbose=True,
            )  # fmt: skip
        Path(args.out).write_text(json.dumps(result))
        return 0

    if args.first_step:
        runs = [_child(args, ["--worker", "first-step"]) for _ in range(args.repeat + 1)]
        print(f"# process start -> end of the first CNN training step, CPU {args.cpu}; the")
        print("# first run (not shown) filled Numba's cache")
        report = format_first_steps(runs[1:])
        results: Any = runs
    else:
        import importlib.util

        results = []
        with tempfile.TemporaryDirectory(prefix="fastbp-cnn-init-") as tmp:
            init = Path(tmp) / "init.npz"
            common = ["--epochs", str(args.epochs), "--seed", str(args.seed)]
            common += ["--no-warmup"] if args.no_warmup else []
            for flag, value in (("--stop-after", args.stop_after),
                                ("--limit-train", args.limit_train),
                                ("--limit-test", args.limit_test)):  # fmt: skip
                if value is not None:
                    common += [flag, str(value)]
            workers, skipped = [], []
            # fastbp first: it writes the initial weights PyTorch starts from.
            for system in [s for s in SYSTEMS if s in args.systems.split(",")]:
                if system == "torch" and importlib.util.find_spec("torch") is None:
                    skipped.append({"system": "torch", "skipped": "skipped (not installed)"})
                    continue
                extra = ["--worker", system, *common]
                if "fastbp" in args.systems.split(","):
                    extra += ["--init-out" if system == "fastbp" else "--init-in", str(init)]
                workers.append((system, extra))
            results = _take_turns(args, workers, Path(tmp)) + skipped
        report = format_epochs(results)
    print(report, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
