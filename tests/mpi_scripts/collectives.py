"""Collectives and the sampler under mpiexec (any world size); prints OK from every rank."""

import sys

import numpy as np

import fastbp as fb
import fastbp.distributed as dist

dist.init()
r, n = dist.rank(), dist.world_size()
assert dist.is_initialized() and n > 1

# all_reduce: sum, mean, max, min on arrays and Tensors, in place; non-contiguous views
x = np.arange(5, dtype=np.float32) + r
dist.all_reduce(x)
np.testing.assert_array_equal(x, n * np.arange(5) + n * (n - 1) / 2)
t = fb.tensor(np.full((2, 3), float(r)))
dist.all_reduce(t, "mean")
np.testing.assert_allclose(t.data, (n - 1) / 2)
m = np.array([r, -r, 7], np.int64)
dist.all_reduce(m, dist.ReduceOp.MAX)
np.testing.assert_array_equal(m, [n - 1, 0, 7])
m = np.array([r, -r], np.int32)
dist.all_reduce(m, "min")
np.testing.assert_array_equal(m, [0, -(n - 1)])
base = np.zeros((4, 4), np.float64)
view = base[:, 1]  # non-contiguous
view[...] = r + 1
dist.all_reduce(view)
assert np.all(base[:, 1] == n * (n + 1) / 2) and np.all(base[:, 0] == 0)
nan = np.array([np.nan if r == 0 else 1.0, np.inf, 0.0])
dist.all_reduce(nan)
assert np.isnan(nan[0]) and nan[1] == np.inf and nan[2] == 0
empty = np.zeros(0, np.float32)
dist.all_reduce(empty)
try:
    dist.all_reduce(np.zeros(2, np.int64), "mean")
    raise AssertionError("mean of ints accepted")
except TypeError as e:
    assert "floating" in str(e)
w = dist.all_reduce(np.ones(3), async_op=True)
w.wait()

# broadcast from every source
for src in range(n):
    b = np.full(3, r, np.int16)
    dist.broadcast(b, src=src)
    np.testing.assert_array_equal(b, src)
bt = fb.tensor([float(r)] * 2)
dist.broadcast(bt, src=n - 1)
np.testing.assert_array_equal(bt.data, n - 1)

# all_gather (torch's list form and the tensor form)
out = [np.zeros((2, 2), np.float32) for _ in range(n)]
dist.all_gather(out, np.full((2, 2), r, np.float32))
for k in range(n):
    np.testing.assert_array_equal(out[k], k)
flat = np.zeros(3 * n)
dist.all_gather_into_tensor(flat, np.arange(3.0) + 10 * r)
np.testing.assert_array_equal(flat, np.concatenate([np.arange(3.0) + 10 * k for k in range(n)]))

# reduce_scatter: rank k receives the sum over ranks of input_list[k]
inputs = [np.full(4, 100 * k + r, np.float64) for k in range(n)]
got = np.zeros(4)
dist.reduce_scatter(got, inputs)
np.testing.assert_array_equal(got, n * 100 * r + n * (n - 1) / 2)
got = np.zeros(2, np.float32)
dist.reduce_scatter_tensor(got, np.arange(2 * n, dtype=np.float32), "mean")
np.testing.assert_array_equal(got, [2 * r, 2 * r + 1])

dist.barrier()
metrics = dist.reduce_metrics({"loss": float(r), "acc": 1.0}, {"loss": r + 1, "acc": 1})
expect = sum(k * (k + 1) for k in range(n)) / sum(k + 1 for k in range(n))
assert abs(metrics["loss"] - expect) < 1e-12 and metrics["acc"] == 1.0

# DistributedSampler: shards disjoint (up to torch's padding), covering, equal-sized
for length in (0, 1, n - 1, n, 10, 11, 12, 37):
    for drop_last in (False, True):
        for shuffle in (False, True):
            s = dist.DistributedSampler(length, shuffle=shuffle, seed=3, drop_last=drop_last)
            s.set_epoch(2)
            mine = s.indices()
            assert len(mine) == len(s)
            gathered = np.zeros(n * len(mine), np.int64)
            dist.all_gather_into_tensor(gathered, mine)
            if drop_last:
                assert len(gathered) == length - length % n
                assert len(set(gathered.tolist())) == len(gathered)  # disjoint
            else:
                assert len(gathered) == -(-length // n) * n
                assert set(gathered.tolist()) == set(range(length))  # covering
                assert len(gathered) - len(set(gathered.tolist())) == len(gathered) - length
            if shuffle and length > 3:
                other = dist.DistributedSampler(length, shuffle=True, seed=3, drop_last=drop_last)
                other.set_epoch(3)
                assert not np.array_equal(other.indices(), mine) or len(mine) < 2
# The shared-memory mean DDP uses on one machine: buckets of both float dtypes, sizes that
# n does not divide, and one smaller than n (some ranks reduce nothing); several rounds, so
# one window for every round, and a buffer that is not the array put.
from mpi4py import MPI  # noqa: E402

from fastbp.distributed.group import _wait  # noqa: E402
from fastbp.distributed.node_reduce import NodeAllReduce  # noqa: E402

layout = [(7, np.dtype(np.float32)), (1, np.dtype(np.float64)), (1000, np.dtype(np.float32))]
reducer = NodeAllReduce.create(MPI.COMM_WORLD, MPI, layout, _wait)
assert reducer is not None  # mpiexec on one machine


def values(round_, rank, i, count, dtype):
    g = np.random.default_rng(100 * round_ + 10 * rank + i)
    return (g.standard_normal(count) * 10.0 ** g.integers(-3, 4, count)).astype(dtype)


for round_ in range(3):
    mine = [values(round_, r, i, c, d) for i, (c, d) in enumerate(layout)]
    out = [a.copy() if i == 1 else a for i, a in enumerate(mine)]  # the put array itself, or not
    for i, a in enumerate(mine):
        reducer.put(i, a)
    reducer.average(out)
    for i, (c, d) in enumerate(layout):
        everyone = [values(round_, k, i, c, d) for k in range(n)]
        expected = everyone[0] + everyone[1]
        for a in everyone[2:]:
            expected = expected + a
        expected = expected * d.type(1.0 / n)
        np.testing.assert_array_equal(out[i], expected, err_msg=f"round {round_} bucket {i}")
        first = out[i].copy()
        dist.broadcast(first, 0)
        np.testing.assert_array_equal(first, out[i])  # the same bits on every rank
sys.stdout.write(f"OK {r}\n")  # one write: lines of two ranks do not interleave
sys.stdout.flush()
