"""fastbp.distributed: collectives, DDP, sampler, checkpoints and faults under ``mpiexec``.

Each multi-rank test starts ``mpiexec -n N python tests/mpi_scripts/<script>.py`` as a
subprocess; the scripts assert on every rank and print ``OK <rank>``. Skipped only when
mpi4py (and so an MPI launcher) is missing: ``pip install -e ".[mpi]"``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="mpi4py not installed: pip install -e '.[mpi]'")

import fastbp as fb  # noqa: E402
import fastbp.distributed as dist  # noqa: E402
import fastbp.nn.functional as F  # noqa: E402
from fastbp import nn, optim  # noqa: E402

SCRIPTS = Path(__file__).parent / "mpi_scripts"
MPIEXEC = shutil.which(
    "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)


def _start(n: int, script: str, *args: str, launcher_args=(), env=None):
    """Start ``mpiexec -n n python script args``; return the process and its start time."""
    if MPIEXEC is None:
        pytest.skip("mpi4py is installed but no mpiexec was found on PATH")
    full_env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "NUMBA_NUM_THREADS": "1",
        "FASTBP_DIST_TIMEOUT": "30",
        **(env or {}),
    }
    cmd = [MPIEXEC, *launcher_args, "-n", str(n), sys.executable, str(SCRIPTS / script), *args]
    popen = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env
    )
    return popen, time.monotonic()


def _finish(started, timeout: float = 90):
    """Wait for a started run: (CompletedProcess, seconds it took)."""
    popen, t0 = started
    try:
        out, err = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        out, err = popen.communicate()
        pytest.fail(f"{popen.args} still running after {timeout} s:\n{out}\n{err}")
    seconds = time.monotonic() - t0
    return subprocess.CompletedProcess(popen.args, popen.returncode, out, err), seconds


def mpirun(n: int, script: str, *args: str, **kwargs):
    return _finish(_start(n, script, *args, **kwargs))


def assert_ok(proc, n):
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert sorted(
        line.split()[1] for line in proc.stdout.splitlines() if line.startswith("OK")
    ) == [str(r) for r in range(n)], out


@pytest.mark.parametrize("n", [2, 3])
def test_collectives_and_sampler(n):
    proc, _ = mpirun(n, "collectives.py")
    assert_ok(proc, n)


@pytest.mark.parametrize("shared_memory", ["1", "0"], ids=["shared-memory", "mpi-allreduce"])
def test_ddp_equals_one_process_no_sync_mismatch_trace_resume(tmp_path, shared_memory):
    proc, _ = mpirun(2, "ddp.py", str(tmp_path), env={"FASTBP_DDP_SHARED_MEMORY": shared_memory})
    assert_ok(proc, 2)


def _remove_segments(proc) -> list[Path]:
    """Delete the MPICH shared-memory files that a job's ranks reported (``SEGMENTS``).

    MPICH unlinks its segments when a job ends normally; an aborted job's stay in
    /dev/shm, in memory, until the machine restarts (2 MiB a job: every run of the fault
    tests would leak 12 MiB). fault.py prints the ones its ranks map.
    """
    removed = []
    for line in proc.stdout.splitlines():
        if line.startswith("SEGMENTS "):
            for name in line.split()[1:]:
                path = Path(name)
                if path.parent == Path("/dev/shm") and path.name.startswith("mpich_shm_"):
                    if path.exists():
                        path.unlink(missing_ok=True)
                        removed.append(path)
    return removed


@pytest.fixture(scope="module")
def faults():
    """The fault runs, started together: they mostly wait (for a timeout, or a peer)."""
    hydra = "HYDRA" in subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True).stdout
    started = {
        "raise": _start(2, "fault.py", "raise", env={"FASTBP_DIST_TIMEOUT": "60"}),
        "hang": _start(2, "fault.py", "hang", env={"FASTBP_DIST_TIMEOUT": "2"}),
        "kill": _start(2, "fault.py", "kill", env={"FASTBP_DIST_TIMEOUT": "20"}),
        "unused": _start(2, "fault.py", "unused", env={"FASTBP_DIST_TIMEOUT": "60"}),
        "raise-slow-print": _start(
            2, "fault.py", "raise", env={"FASTBP_DIST_TIMEOUT": "60", "FAULT_SLOW_PRINT": "1"}
        ),
    }
    if hydra:  # MPICH's launcher can be told not to end the job when a rank dies
        started["kill-no-cleanup"] = _start(
            2,
            "fault.py",
            "kill",
            launcher_args=["-disable-auto-cleanup"],
            env={"FASTBP_DIST_TIMEOUT": "2"},
        )
    results = {name: _finish(run) for name, run in started.items()}
    for proc, _ in results.values():
        _remove_segments(proc)
    return results


def test_fault_runs_leave_no_shared_memory(faults):
    reported = [
        Path(name)
        for proc, _ in faults.values()
        for line in proc.stdout.splitlines()
        if line.startswith("SEGMENTS ")
        for name in line.split()[1:]
    ]
    if "kill-no-cleanup" in faults and Path("/proc/self/maps").exists():  # MPICH
        assert reported, "fault.py reported none of MPICH's shared-memory files"
    assert not [p for p in reported if p.exists()]


def test_rank_that_raises_is_named(faults):
    proc, seconds = faults["raise"]
    assert proc.returncode != 0
    assert "rank 1 failed" in proc.stderr and "boom in the data pipeline" in proc.stderr
    assert seconds < 40  # the notice arrives at once, not after the 60 s timeout


def test_unused_parameter_on_one_rank_does_not_hang_the_others(faults):
    # without find_unused_parameters: rank 1 refuses the backward; rank 0, waiting for
    # the missing layer's bucket, stops at once with rank 1's error, not after 60 s
    proc, seconds = faults["unused"]
    assert proc.returncode != 0 and seconds < 40, proc.stderr
    assert "rank 1 failed" in proc.stderr and "find_unused_parameters=True" in proc.stderr


def test_abort_waits_for_a_peer_that_prints_late(faults):
    # the failed rank aborts the job only after rank 0 has printed whose fault it was
    # (a fixed pause once lost rank 0's message on a loaded CI machine)
    proc, seconds = faults["raise-slow-print"]
    assert proc.returncode != 0 and seconds < 40, proc.stderr
    assert "rank 1 failed" in proc.stderr and "boom in the data pipeline" in proc.stderr


def test_hung_rank_is_named_after_the_timeout(faults):
    proc, seconds = faults["hang"]
    assert proc.returncode != 0
    assert "did not complete within 2 s" in proc.stderr and "rank 1 did not answer" in proc.stderr
    assert seconds < 40


def test_killed_rank_ends_the_job(faults):
    proc, seconds = faults["kill"]
    assert proc.returncode != 0 and seconds < 40
    assert "finished without noticing" not in proc.stdout


def test_killed_rank_is_named_when_the_launcher_does_not_clean_up(faults):
    if "kill-no-cleanup" not in faults:
        pytest.skip("-disable-auto-cleanup is MPICH hydra's option")
    proc, seconds = faults["kill-no-cleanup"]
    assert proc.returncode != 0 and seconds < 40, proc.stderr
    # hydra sometimes still ends the job when a peer's shared-memory transfer breaks; when
    # rank 0 lives on to its timeout, its error must name the dead rank
    if "DistributedError" in proc.stderr:
        assert "rank 1 did not answer" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- in this process


def test_world_of_one_without_mpiexec():
    dist.init()
    assert dist.is_initialized() and dist.rank() == 0 and dist.world_size() == 1
    x = np.arange(3.0)
    dist.all_reduce(x, "max")
    dist.broadcast(x)
    dist.barrier()
    np.testing.assert_array_equal(x, [0, 1, 2])
    with pytest.raises(ValueError, match="op must be one of"):
        dist.all_reduce(x, "prod")
    with pytest.raises(ValueError, match="src=1 is not a rank"):
        dist.broadcast(x, src=1)
    with pytest.raises(TypeError, match="ndarray or a Tensor"):
        dist.all_reduce([1.0, 2.0])
    with pytest.raises(ValueError, match="timeout must be > 0"):
        dist.init(timeout=0)


def test_ddp_world_of_one_is_plain_training():
    dist.init()
    fb.manual_seed(1)
    a = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    fb.manual_seed(1)
    b = dist.DistributedDataParallel(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
    oa, ob = (
        optim.SGD(a.parameters(), lr=0.1, momentum=0.9),
        optim.SGD(b.parameters(), lr=0.1, momentum=0.9),
    )
    rng = np.random.default_rng(0)
    for _ in range(3):
        x, y = rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 2, 5)
        for model, opt in ((a, oa), (b, ob)):
            opt.zero_grad()
            F.cross_entropy(model(fb.from_numpy(x)), y).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.module.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)
    assert list(b.state_dict()) == [
        "module.0.weight",
        "module.0.bias",
        "module.2.weight",
        "module.2.bias",
    ]


def test_ddp_errors():
    dist.init()
    with pytest.raises(ValueError, match="bucket_cap_mb"):
        dist.DistributedDataParallel(nn.Linear(2, 2), bucket_cap_mb=0)
    ddp = dist.DistributedDataParallel(nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="fb.trace"):
        fb.trace(lambda x: ddp(x).sum())(fb.ones(1, 2))
    assert ddp._handles == []  # a world of one: backward runs as without DDP


@pytest.mark.parametrize(
    "n,length,drop_last",
    [(2, 5, False), (2, 5, True), (3, 10, False), (4, 2, False), (3, 0, False), (3, 2, True)],
)
def test_sampler_shards(n, length, drop_last):
    shards = [
        list(dist.DistributedSampler(length, n, r, shuffle=False, drop_last=drop_last))
        for r in range(n)
    ]
    assert len({len(s) for s in shards}) == 1
    flat = [i for s in shards for i in s]
    if drop_last:
        assert sorted(flat) == list(range(length - length % n))
    else:
        assert set(flat) == set(range(length)) and len(flat) == -(-length // n) * n


def test_sampler_matches_torch_without_shuffle():
    torch = pytest.importorskip("torch")
    from torch.utils.data.distributed import DistributedSampler as TorchSampler

    for n, length, drop_last in [
        (2, 5, False),
        (3, 10, False),
        (3, 10, True),
        (4, 2, False),
        (3, 1, False),
    ]:
        for r in range(n):
            ours = list(dist.DistributedSampler(length, n, r, shuffle=False, drop_last=drop_last))
            theirs = list(TorchSampler(range(length), n, r, shuffle=False, drop_last=drop_last))
            assert ours == theirs, (n, length, drop_last, r)
    del torch


def test_sampler_global_batch_is_the_dataloaders():
    # N ranks at batch B see, together, DataLoader(seed=s+e)'s batch of N*B: same training
    from fastbp.data import DataLoader

    x = np.arange(23)
    single = [set(yb.tolist()) for _, yb in DataLoader(x, x, 6, seed=7 + 2)]
    per_rank = []
    for r in range(2):
        s = dist.DistributedSampler(23, 2, r, seed=7)
        s.set_epoch(2)
        per_rank.append([yb.tolist() for _, yb in dist.ShardedLoader(x, x, 3, s)])
    together = [set(a) | set(b) for a, b in zip(*per_rank, strict=True)]
    assert together[:-1] == single[:-1]  # the padded last batch differs by the repeat
    with pytest.raises(ValueError, match="rank 2 must be in"):
        dist.DistributedSampler(4, 2, 2)


def _mnist_dir() -> Path:
    data = Path(os.environ.get("FASTBP_DATA", Path(__file__).parents[2] / "shared/data/mnist"))
    if not (data / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST not found in {data} (set FASTBP_DATA)")
    return data


def _one_and_two(module: str, args: list[str]):
    """Run the example in one process and under mpiexec -n 2 --distributed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", module, *args]
    one = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    two = subprocess.run(
        [MPIEXEC, "-n", "2", *cmd, "--distributed"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    return one.stdout.splitlines(), two.stdout.splitlines()


def test_mnist_example_distributed_matches_one_process():
    args = ["--epochs", "1", "--limit-train", "1024", "--limit-test", "1000", "--no-progress"]
    args += ["--data-dir", str(_mnist_dir()), "--batch-size", "64"]
    one_lines, two_lines = _one_and_two("fastbp.examples.mnist_mlp", args)
    assert one_lines[-1].startswith("test accuracy:") and one_lines[-1] == two_lines[-1], two_lines
    assert one_lines[0].split("time")[0] == two_lines[0].split("time")[0]  # loss and accuracy
    assert len(two_lines) == len(one_lines)  # rank 1 printed nothing


def test_mnist_cnn_example_distributed(tmp_path):
    # A tiny run: the shards, DDP over conv layers, the reduced metrics, rank 0's checkpoint.
    # Dropout draws other masks per rank, so the numbers are close to one process's, not equal.
    ckpt = tmp_path / "cnn.npz"
    args = ["--epochs", "1", "--limit-train", "256", "--limit-test", "200", "--no-progress"]
    args += ["--data-dir", str(_mnist_dir()), "--batch-size", "32", "--save", str(ckpt)]
    one_lines, two_lines = _one_and_two("fastbp.examples.mnist_cnn", args)
    assert len(two_lines) == len(one_lines) == 2, two_lines  # rank 1 printed nothing
    losses = [float(lines[0].split("train loss")[1].split()[0]) for lines in (one_lines, two_lines)]
    assert abs(losses[0] - losses[1]) < 0.15, (one_lines, two_lines)
    assert two_lines[-1].startswith("test accuracy:") and ckpt.exists()


# --------------------------------------------------------------------------- DataLoader(sampler=)


def _rank_batches(loader_for, n):
    return [[yb.tolist() for _, yb in loader_for(r)] for r in range(n)]


@pytest.mark.parametrize("form", ["arrays", "tensor_dataset", "dataset"])
def test_dataloader_with_distributed_sampler(form):
    from fastbp.data import DataLoader, Dataset, TensorDataset

    x, y = np.arange(23.0)[:, None], np.arange(23)

    class Pairs(Dataset):  # a map-style dataset: the per-sample path
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return x[i], y[i]

    def loader(sampler, drop_last=False):
        if form == "arrays":
            return DataLoader(x, y, 4, sampler=sampler, drop_last=drop_last)
        data = TensorDataset(x, y) if form == "tensor_dataset" else Pairs()
        return DataLoader(data, batch_size=4, sampler=sampler, drop_last=drop_last)

    samplers = [dist.DistributedSampler(23, 3, r, seed=5) for r in range(3)]
    epochs = []
    for epoch in (0, 1, 1):
        for s in samplers:
            s.set_epoch(epoch)
        epochs.append(_rank_batches(lambda r: loader(samplers[r]), 3))
    assert epochs[0] != epochs[1] and epochs[1] == epochs[2]  # set_epoch reshuffles, repeatably
    for shards in epochs:
        flat = [i for batches in shards for b in batches for i in b]
        assert [len(b) for b in shards[0]] == [4, 4] and len(flat) == 24  # 8 each: 1 repeat
        assert set(flat) == set(range(23))
    # the sampler's drop_last: disjoint shards of 7, the last 2 samples of the order dropped
    dropped = [dist.DistributedSampler(23, 3, r, seed=5, drop_last=True) for r in range(3)]
    shards = _rank_batches(lambda r: loader(dropped[r]), 3)
    flat = [i for batches in shards for b in batches for i in b]
    assert len(flat) == 21 and len(set(flat)) == 21
    # the loader's drop_last: each rank's last incomplete batch (3 of 7) goes
    assert [len(b) for b in _rank_batches(lambda r: loader(dropped[r], True), 3)[0]] == [4]
    assert len(loader(dropped[0], True)) == 1 and len(loader(dropped[0])) == 2


def test_dataloader_sampler_matches_torch():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader as TorchLoader
    from torch.utils.data.distributed import DistributedSampler as TorchSampler

    from fastbp.data import DataLoader

    y = np.arange(10)
    for drop_last in (False, True):
        for r in range(3):
            theirs = TorchLoader(
                torch.arange(10),
                3,
                sampler=TorchSampler(range(10), 3, r, False, drop_last=drop_last),
            )
            ours = DataLoader(
                y, y, 3, sampler=dist.DistributedSampler(10, 3, r, False, drop_last=drop_last)
            )
            assert [b.tolist() for b in theirs] == [yb.tolist() for _, yb in ours]


def test_dataloader_sampler_excludes_shuffle_and_reproduces_one_process():
    from fastbp.data import DataLoader

    x = np.arange(24)
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(x, x, 4, shuffle=True, sampler=dist.DistributedSampler(24, 2, 0))
    # 2 ranks at 3 per batch: together DataLoader(seed=s+e)'s batches of 6
    single = [set(yb.tolist()) for _, yb in DataLoader(x, x, 6, seed=7 + 3)]
    per_rank = []
    for r in range(2):
        s = dist.DistributedSampler(24, 2, r, seed=7)
        s.set_epoch(3)
        per_rank.append([set(yb.tolist()) for _, yb in DataLoader(x, x, 3, sampler=s)])
    assert [a | b for a, b in zip(*per_rank, strict=True)] == single
