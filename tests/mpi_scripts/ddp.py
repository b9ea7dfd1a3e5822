"""DDP under mpiexec -n 2: equal to one process on the concatenated batch; no_sync;
mismatched models; fb.trace refused; checkpoint and resume. Prints OK from every rank."""

import os
import sys
import tempfile

import numpy as np

import fastbp as fb
import fastbp.distributed as dist
import fastbp.nn.functional as F
from fastbp import nn, optim

dist.init()
r, n = dist.rank(), dist.world_size()
B = 64  # per rank


def model_(seed, hidden=16):
    fb.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, hidden), nn.ReLU(), nn.Linear(hidden, 5))


def data(step):
    g = np.random.default_rng(1000 + step)
    return g.standard_normal((n * B, 20)).astype(np.float32), g.integers(0, 5, n * B)


def make_opt(name, params):
    if name == "sgd":
        return optim.SGD(params, lr=0.05, momentum=0.9)
    return optim.Adam(params, lr=1e-2)


for name in ("sgd", "adam"):
    for cap in (25.0, 0.0005):  # one bucket; several small ones
        # rank r starts from a different seed: the wrap must broadcast rank 0's weights
        ddp = dist.DistributedDataParallel(model_(seed=r), bucket_cap_mb=cap)
        ref = model_(seed=0)
        opt, ref_opt = make_opt(name, ddp.parameters()), make_opt(name, ref.parameters())
        if cap < 1:
            assert len(ddp.buckets) > 1, ddp.buckets
        # the path the test asked for: shared memory (the default on one machine), or MPI's
        assert (ddp._node is not None) == (os.environ.get("FASTBP_DDP_SHARED_MEMORY") != "0")
        for step in range(20):
            x, y = data(step)
            mine = slice(r * B, (r + 1) * B)
            loss = F.cross_entropy(ddp(fb.from_numpy(x[mine])), y[mine])
            opt.zero_grad()
            loss.backward()
            opt.step()
            ref_loss = F.cross_entropy(ref(fb.from_numpy(x)), y)
            ref_opt.zero_grad()
            ref_loss.backward()
            ref_opt.step()
        for (k, a), (_, b) in zip(
            ddp.module.named_parameters(), ref.named_parameters(), strict=True
        ):
            np.testing.assert_allclose(a.data, b.data, rtol=2e-5, atol=2e-6, err_msg=f"{name} {k}")
        # identical on every rank, bit for bit
        for p in ddp.parameters():
            first = p.data.copy()
            dist.broadcast(first, 0)
            np.testing.assert_array_equal(first, p.data)

# no_sync: two local backwards, then one synchronized: the average of the accumulated sums
ddp = dist.DistributedDataParallel(model_(0))
ref = model_(0)
x, y = data(99)
halves = (
    [slice(k * B, k * B + B // 2) for k in range(n)],
    [slice(k * B + B // 2, (k + 1) * B) for k in range(n)],
)
with ddp.no_sync():
    F.cross_entropy(ddp(fb.from_numpy(x[halves[0][r]])), y[halves[0][r]]).backward()
local = ddp.module[0].weight.grad.copy()
F.cross_entropy(ddp(fb.from_numpy(x[halves[1][r]])), y[halves[1][r]]).backward()
for part in halves:
    idx = np.concatenate([np.arange(n * B)[s] for s in part])
    F.cross_entropy(ref(fb.from_numpy(x[idx])), y[idx]).backward()
np.testing.assert_allclose(ddp.module[0].weight.grad, ref[0].weight.grad, rtol=1e-5, atol=1e-7)
assert not np.allclose(local, ddp.module[0].weight.grad)


# unused parameters (find_unused_parameters=True): a branch taken on some ranks only, a
# layer no rank uses; several steps, so a bucket left waiting would hang (time out) here
class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.never = nn.Linear(3, 2), nn.Linear(3, 2), nn.Linear(3, 2)

    def forward(self, x, branch):
        return self.a(x) if branch == 0 else self.b(x)


fb.manual_seed(0)
ddp = dist.DistributedDataParallel(Two(), bucket_cap_mb=1e-5, find_unused_parameters=True)
assert len(ddp.buckets) == 6  # one per parameter: buckets of unused ones must start too
fb.manual_seed(0)
ref = Two()
opt = optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
ref_opt = optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
for step in range(4):
    x, _ = data(step)
    branch = [(r + step) % 2 for r in range(n)]  # step 1: rank 0 takes b, rank 1 takes a
    if step == 3:
        branch = [1] * n  # a unused on every rank: its grad stays None, as torch
    opt.zero_grad()
    ddp(fb.from_numpy(x[r * B : (r + 1) * B, :3]), branch[r]).sum().backward()
    if step == 3:
        assert ddp.module.a.weight.grad is None and ddp.module.never.bias.grad is None
    opt.step()
    ref_opt.zero_grad()
    total = sum(ref(fb.from_numpy(x[k * B : (k + 1) * B, :3]), branch[k]).sum() for k in range(n))
    (total * (1.0 / n)).backward()
    ref_opt.step()
for (k, a), (_, b) in zip(ddp.module.named_parameters(), ref.named_parameters(), strict=True):
    np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-6, err_msg=k)
assert ddp.module.never.weight.grad is None

# without find_unused_parameters, a backward that misses parameters raises before it
# starts, naming them (here on every rank, so none is left waiting)
ddp2 = dist.DistributedDataParallel(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))
ddp2(fb.ones(1, 2))
try:
    ddp2.module[1](fb.ones(1, 2)).sum().backward()
    raise AssertionError("a backward missing parameters was accepted")
except RuntimeError as e:
    assert "0.weight, 0.bias" in str(e) and "find_unused_parameters=True" in str(e), e
assert ddp2.module[1].weight.grad is None  # nothing ran
ddp2(fb.ones(1, 2)).sum().backward()  # a full backward works
assert ddp2.module[0].weight.grad is not None

# buffers (BatchNorm's running statistics): rank 0's are broadcast before each forward
if hasattr(nn, "BatchNorm1d"):
    fb.manual_seed(0)
    ddp = dist.DistributedDataParallel(nn.Sequential(nn.Linear(20, 8), nn.BatchNorm1d(8)))
    for step in range(3):
        x, y = data(step)
        ddp(fb.from_numpy(x[r * B : (r + 1) * B])).sum().backward()
    mean = next(b for n_, b in ddp.module.named_buffers() if n_.endswith("running_mean"))
    theirs = mean.data.copy()
    dist.broadcast(theirs, 0)
    assert not np.array_equal(theirs, mean.data) or r == 0  # updated from each rank's shard
    # the same batch everywhere: after rank 0's statistics are broadcast, all update alike
    ddp(fb.from_numpy(x[:8]))
    for _, b in ddp.module.named_buffers():
        theirs = np.array(b.data, copy=True)
        dist.broadcast(theirs, 0)
        np.testing.assert_array_equal(theirs, b.data)

# fb.trace refuses DDP with a clear error
ddp = dist.DistributedDataParallel(model_(0))
try:
    fb.trace(lambda xb: ddp(xb).sum())(fb.ones(2, 20))
    raise AssertionError("trace accepted")
except RuntimeError as e:
    assert "fb.trace" in str(e), e

# mismatched models: a clear error on every rank, naming the parameter
try:
    dist.DistributedDataParallel(model_(0, hidden=16 if r == 0 else 17))
    raise AssertionError("mismatch accepted")
except ValueError as e:
    assert "'0.weight'" in str(e) and "rank 1" in str(e), e

# checkpoint / resume: 2 epochs uninterrupted == 1 epoch, save, rebuild from file, 1 epoch
X = np.random.default_rng(5).standard_normal((203, 20)).astype(np.float32)
Y = np.random.default_rng(6).integers(0, 5, 203)
path = os.path.join(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(), "ckpt.npz")


def epochs(ddp, opt, first, last):
    sampler = dist.DistributedSampler(len(X), shuffle=True, seed=11)
    for epoch in range(first, last):
        sampler.set_epoch(epoch)
        for xb, yb in dist.ShardedLoader(X, Y, 16, sampler):
            loss = F.cross_entropy(ddp(fb.from_numpy(xb)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()


ddp = dist.DistributedDataParallel(model_(0))
opt = optim.Adam(ddp.parameters(), lr=1e-2)
epochs(ddp, opt, 0, 2)
straight = [p.data.copy() for p in ddp.parameters()]

ddp = dist.DistributedDataParallel(model_(0))
opt = optim.Adam(ddp.parameters(), lr=1e-2)
epochs(ddp, opt, 0, 1)
checkpoint = {"model": ddp.module.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}
dist.save_checkpoint(checkpoint, path)
del ddp, opt
state = dist.load_checkpoint(path)
ddp = dist.DistributedDataParallel(model_(seed=123 + r))  # different init: the file must win
ddp.module.load_state_dict(state["model"])
opt = optim.Adam(ddp.parameters(), lr=1e-2)
opt.load_state_dict(state["optimizer"])
epochs(ddp, opt, state["epoch"], 2)
for a, b in zip(straight, ddp.parameters(), strict=True):
    np.testing.assert_array_equal(a, b.data)
sys.stdout.write(f"OK {r}\n")  # one write: lines of two ranks do not interleave
sys.stdout.flush()
