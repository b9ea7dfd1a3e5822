"""Data-parallel throughput of the MNIST MLP (784-512-256-10) over MPI, 128 samples per rank.

A script, not a timed test::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python benchmarks/bench_distributed.py --ranks 1 2 --steps 300

It starts ``mpiexec -n N`` on itself for each N (``--repeat`` runs the sequence again,
so that 1- and 2-rank runs alternate); every rank pins itself to core ``rank % cores``
and times, on fixed random data with SGD (momentum 0.9), in turns of 10 steps (so that
a busy spell of the machine is shared by all of them):

* ``compute``: the plain step without any communication;
* ``ddp``: the step through :class:`fastbp.distributed.DistributedDataParallel` with small
  buckets; ranks on one machine average them through a shared-memory window;
* ``ddp-mpi``: the same with ``FASTBP_DDP_SHARED_MEMORY=0``: MPI's ``Iallreduce`` per
  bucket, started during backward;
* ``ddp-1-bucket``: DDP with one bucket (torch's default 25 MiB holds this whole model);
* ``after``: no DDP; one all-reduce of all gradients after backward returns;
* ``allreduce``: the all-reduce of the 535K float32 gradients alone, of the last bucket
  alone, and of 1 float (latency), 64 KiB and 8 MiB (bandwidth).

The split of a DDP step: compute; exposed communication = ddp - compute (of which the
wait after backward is measured by DDP itself); hidden = the all-reduce time of the
buckets already reduced when backward ended, at the rate of the all-reduce alone. Under
pytest (``--benchmark-disable``) :func:`test_bench_distributed_runs` runs it for a few
steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES = (784, 512, 256, 10)
BATCH = 128


def _timed_steps(fn, steps: int, comm, solo: bool = False) -> list[float]:
    """Seconds of each of ``steps`` calls, the ranks started together each time.

    ``solo``: rank 0 runs alone while the others sleep (one rank's throughput, measured
    in the same minutes as the others' steps); the other ranks report 0.
    """
    if solo and comm is not None:
        times = [0.0] * steps
        if comm.Get_rank() == 0:
            times = _timed_steps(fn, steps, None)
        request = comm.Ibarrier()  # the others wait without spinning on a core
        while not request.Test():
            time.sleep(0.001)
        return times
    times = []
    for _ in range(steps):
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _slowest(times: list[float], comm) -> np.ndarray:
    """Each call's time on the slowest rank: the slowest rank sets the pace."""
    times = np.array(times)
    if comm is not None:
        from mpi4py import MPI

        comm.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
    return times


def _interleaved(
    variants: dict, steps: int, comm, block: int = 10, solo: tuple = ()
) -> dict[str, float]:
    """Median step time of each variant, run in turns of ``block`` steps.

    Turns keep a slow spell of the machine (another job on a core) from landing on one
    variant only: every variant sees the same mix of quiet and busy moments. The
    variants named in ``solo`` run on rank 0 alone.
    """
    for name, fn in variants.items():  # warm-up: first calls compile, allocate buffers
        _timed_steps(fn, max(3, block), comm, name in solo)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(max(1, steps // block)):
        for name, fn in variants.items():
            times[name] += _timed_steps(fn, block, comm, name in solo)
    return {name: float(np.median(_slowest(t, comm))) for name, t in times.items()}


def worker(steps: int) -> dict:
    """Run in each rank under mpiexec; rank 0 returns the measurements."""
    import fastbp as fb
    import fastbp.distributed as dist
    import fastbp.nn.functional as F
    from fastbp import nn, optim

    dist.init()
    r, n = dist.rank(), dist.world_size()
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[r % len(cores)]})
    comm = None
    if n > 1:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    rng = np.random.default_rng(r)
    x = fb.from_numpy(rng.standard_normal((BATCH, SIZES[0])).astype(np.float32))
    y = rng.integers(0, SIZES[-1], BATCH)

    def model():
        fb.manual_seed(0)
        layers = []
        for a, b in zip(SIZES[:-1], SIZES[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers[:-1])

    def step_fn(net, params, after=None):
        opt = optim.SGD(params, lr=0.01, momentum=0.9)

        def step():
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            if after is not None:
                after()
            opt.step()

        return step

    plain = model()
    ddp = dist.DistributedDataParallel(model(), bucket_cap_mb=0.25)
    waits = []
    ddp_step = step_fn(ddp, ddp.parameters())

    overlapped = []

    def ddp_timed():
        ddp_step()
        waits.append(ddp.wait_seconds)
        overlapped.append(ddp.overlapped_bytes)

    os.environ["FASTBP_DDP_SHARED_MEMORY"] = "0"  # read at wrap time
    ddp_mpi = dist.DistributedDataParallel(model(), bucket_cap_mb=0.25)
    one = dist.DistributedDataParallel(model(), bucket_cap_mb=25)
    del os.environ["FASTBP_DDP_SHARED_MEMORY"]
    after_net = model()
    params = list(after_net.parameters())
    flat = np.empty(sum(p.data.size for p in params), np.float32)

    def reduce_after():
        offsets = np.cumsum([0] + [p.data.size for p in params])
        for p, lo, hi in zip(params, offsets[:-1], offsets[1:], strict=True):
            flat[lo:hi] = p.grad.reshape(-1)
        dist.all_reduce(flat, "mean")
        for p, lo, hi in zip(params, offsets[:-1], offsets[1:], strict=True):
            p.grad[...] = flat[lo:hi].reshape(p.grad.shape)

    alone = model()
    variants = {
        "solo": step_fn(alone, alone.parameters()),  # rank 0 alone: one rank's step
        "compute": step_fn(plain, plain.parameters()),
        "ddp": ddp_timed,
        "ddp-mpi": step_fn(ddp_mpi, ddp_mpi.parameters()),
        "ddp-1-bucket": step_fn(one, one.parameters()),
        "after": step_fn(after_net, params, reduce_after),
    }
    results = {"ranks": n, "steps": steps, **_interleaved(variants, steps, comm, solo=("solo",))}
    results["buckets"] = [round(b.nbytes / 2**20, 3) for b in ddp.buckets]
    results["ddp_wait"] = float(np.median(waits))
    results["overlapped_bytes"] = float(np.median(overlapped)) if n > 1 else 0.0
    results["param_bytes"] = int(flat.nbytes)
    last = np.ones(ddp.buckets[-1].nbytes // 4, np.float32)  # the bucket backward finishes last
    big, one_float, small = (np.ones(k, np.float32) for k in (2**21, 1, 16384))
    reductions = {
        "allreduce_4B": lambda: dist.all_reduce(one_float),
        "allreduce_64KiB": lambda: dist.all_reduce(small),
        "allreduce_params": lambda: dist.all_reduce(flat),
        "allreduce_last_bucket": lambda: dist.all_reduce(last),
        "allreduce_8MiB": lambda: dist.all_reduce(big),
    }
    results.update(_interleaved(reductions, max(20, steps // 3), comm))
    return results if r == 0 else {}


def run(ranks: int, steps: int) -> dict:
    """Start ``mpiexec -n ranks`` on this file; return rank 0's measurements."""
    mpiexec = shutil.which(
        "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    if mpiexec is None:
        raise RuntimeError("no mpiexec on PATH: pip install -e '.[mpi]'")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "NUMBA_NUM_THREADS": "1",
    }
    cmd = [mpiexec, "-n", str(ranks), sys.executable, __file__, "--worker", "--steps", str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def table(results: list[dict]) -> str:
    """Markdown tables: throughput, the time split, overlap, all-reduce cost.

    Speedup: N ranks' samples per second over one rank's. *same run* takes one rank's
    step from the ``solo`` turns of that run (rank 0 alone, interleaved with the others);
    *1-rank run* from the plain step of the ``mpiexec -n 1`` run just before it.
    """
    rows = [
        "| ranks | 1 rank alone | compute step | DDP step | DDP, MPI all-reduce | DDP 1 bucket "
        "(MPI) | all-reduce after backward | speedup, same run | speedup vs 1-rank run |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = results[0]
    for res in results:
        if res["ranks"] == 1:
            base = res
        n = res["ranks"]
        rows.append(
            f"| {n} | {res['solo'] * 1e3:.2f} ms | {res['compute'] * 1e3:.2f} ms | "
            f"{res['ddp'] * 1e3:.2f} ms | {res['ddp-mpi'] * 1e3:.2f} ms | "
            f"{res['ddp-1-bucket'] * 1e3:.2f} ms | {res['after'] * 1e3:.2f} ms | "
            f"{n * res['solo'] / res['ddp']:.2f}x | {n * base['compute'] / res['ddp']:.2f}x |"
        )
    rows += [
        "",
        "| ranks | compute | exposed comm (DDP - compute) | DDP wait after backward | hidden "
        "comm | all-reduce: gradients | last bucket | 1 float | 64 KiB | 8 MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for res in results:
        if res["ranks"] == 1:
            continue
        exposed = max(0.0, res["ddp"] - res["compute"])
        share = res["overlapped_bytes"] / res["param_bytes"]
        hidden = res["allreduce_params"] * share
        rows.append(
            f"| {res['ranks']} | {res['compute'] * 1e3:.2f} ms | {exposed * 1e3:.2f} ms | "
            f"{res['ddp_wait'] * 1e3:.2f} ms | {hidden * 1e3:.2f} ms | "
            f"{res['allreduce_params'] * 1e3:.2f} ms | "
            f"{res['allreduce_last_bucket'] * 1e3:.2f} ms | {res['allreduce_4B'] * 1e6:.0f} us | "
            f"{res['allreduce_64KiB'] * 1e6:.0f} us | {res['allreduce_8MiB'] * 1e3:.2f} ms |"
        )
    last = results[-1]
    if last["ranks"] > 1:
        bandwidth = 8 * 2**20 / last["allreduce_8MiB"] / 1e9
        rows += [
            "",
            f"buckets (MiB): {last['buckets']}; gradients {last['param_bytes'] / 2**20:.2f} MiB; "
            f"all-reduce latency ~{last['allreduce_4B'] * 1e6:.0f} us, "
            f"bandwidth ~{bandwidth:.2f} GB/s (8 MiB)",
        ]
    return "\n".join(rows)


def summary(results: list[dict]) -> str:
    """The medians over repeats: one line per world size, for the README."""
    lines = []
    for n in sorted({r["ranks"] for r in results} - {1}):
        runs = [r for r in results if r["ranks"] == n]
        same = [n * r["solo"] / r["ddp"] for r in runs]
        keys = ("solo", "compute", "ddp", "ddp-mpi", "ddp-1-bucket", "after", "ddp_wait")
        med = {k: float(np.median([r[k] for r in runs])) * 1e3 for k in keys}
        lines.append(
            f"{n} ranks, {len(runs)} runs: speedup (same run) median {np.median(same):.2f}x "
            f"(runs: {', '.join(f'{v:.2f}' for v in same)}); medians: 1 rank alone "
            f"{med['solo']:.2f} ms, compute {med['compute']:.2f} ms, DDP {med['ddp']:.2f} ms "
            f"(wait after backward {med['ddp_wait']:.2f} ms), DDP with MPI's all-reduce "
            f"{med['ddp-mpi']:.2f} ms, 1 bucket "
            f"{med['ddp-1-bucket']:.2f} ms, all-reduce after backward {med['after']:.2f} ms"
        )
        ones = [r for r in results if r["ranks"] == 1]
        if len(ones) == len(runs):
            cross = [n * one["compute"] / r["ddp"] for one, r in zip(ones, runs, strict=True)]
            lines.append(
                f"  against the 1-rank runs: median {np.median(cross):.2f}x "
                f"(runs: {', '.join(f'{v:.2f}' for v in cross)})"
            )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument(
        "--repeat", type=int, default=1, help="run the --ranks sequence this many times, in turn"
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        res = worker(args.steps)
        if res:
            print("RESULT " + json.dumps(res), flush=True)
        return [res]
    results = [run(n, args.steps) for _ in range(args.repeat) for n in args.ranks]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from blas_info import blas_line

    print(blas_line() + "\n\n" + table(results))
    if any(n > 1 for n in args.ranks):
        print()
        print(summary(results))
    return results


def test_bench_distributed_runs():
    import pytest

    pytest.importorskip("mpi4py", reason="mpi4py not installed: pip install -e '.[mpi]'")
    results = [run(2, 2)]  # one launch keeps it quick; the script itself runs 1 and 2
    assert results[0]["ranks"] == 2 and len(results[0]["buckets"]) > 1
    assert "speedup, same run" in table(results) and "median" in summary(results)


if __name__ == "__main__":
    main()
