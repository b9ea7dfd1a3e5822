"""Data-parallel training across processes and machines over MPI (through mpi4py).

One process per rank, started by ``mpiexec -n N python train.py``; every rank holds a
full copy of the model, trains on its own shard of each global batch, and the ranks
average their gradients before each optimizer step, so N ranks at batch ``B`` compute
the same update as one process at batch ``N * B``::

    import fastbp.distributed as dist
    from fastbp.data import DataLoader
    dist.init()                                   # world of size 1 without mpiexec
    model = dist.DistributedDataParallel(build_model(seed=0))
    sampler = dist.DistributedSampler(len(x), shuffle=True, seed=0)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for xb, yb in DataLoader(x, y, batch_size // dist.world_size(), sampler=sampler):
            loss = F.cross_entropy(model(fb.from_numpy(xb)), yb)
            opt.zero_grad()
            loss.backward()        # gradients are averaged across ranks when this returns
            opt.step()

How the gradients are reduced
-----------------------------
:class:`DistributedDataParallel` groups the parameters, in reverse order (the order
backward finishes them), into buckets of about ``bucket_cap_mb``. Each parameter has a
post-accumulate-grad hook (:meth:`fastbp.Tensor.register_post_accumulate_grad_hook`):
when backward has finished a parameter's gradient, the hook copies it into its bucket
(a bucket of one parameter is reduced in place in ``p.grad``), and when a bucket is
complete a non-blocking ``Iallreduce`` starts for it while the walk goes on through the
earlier layers. When the last parameter is done, the hook waits for the buckets and
writes each one's average back into ``p.grad`` as soon as it arrives, so ``backward()``
returns with synchronized gradients and ``optimizer.step()`` needs no change. When every
rank runs on one machine, the parts of a complete bucket that the other ranks reduce
are instead copied into a shared-memory window, and the ranks average all buckets there
at the end of backward, each one share of every bucket (:mod:`.node_reduce`; faster than
MPI's all-reduce between processes; ``FASTBP_DDP_SHARED_MEMORY=0`` turns it off). A
walk-start hook (:func:`fastbp.core.hooks.register_walk_start_hook`) tells the wrapper
which parameters a backward will not reach: an error, or with
``find_unused_parameters=True`` zeros reduced at once, never a wait for a gradient
that will not come.

Faults
------
Every wait polls its MPI requests with a deadline (``init(timeout=...)`` or the
environment variable ``FASTBP_DIST_TIMEOUT``, default 300 s). A rank that raises tells the
others before aborting the job, so they stop with an error naming it; a rank that dies
or hangs is named after the timeout, as one that does not answer. Most launchers
(MPICH's hydra, OpenMPI) also end the whole job when a rank is killed.

Not supported: :func:`fastbp.trace` (a traced step replays ops, not the gradient hooks
and MPI calls): DDP and the collectives raise when called under a trace.

The modules
-----------
``group`` (the process group, waiting with a deadline, faults), ``collectives``,
``ddp`` (:class:`DistributedDataParallel`) with ``node_reduce`` (its shared-memory
average), ``sampler`` (sharded data) and ``checkpoint``; this package re-exports their
public names.
"""

from __future__ import annotations

from .checkpoint import load_checkpoint, save_checkpoint
from .collectives import (
    ReduceOp,
    Work,
    all_gather,
    all_gather_into_tensor,
    all_reduce,
    barrier,
    broadcast,
    reduce_metrics,
    reduce_scatter,
    reduce_scatter_tensor,
)
from .ddp import DistributedDataParallel
from .group import DistributedError, init, is_initialized, rank, running_under_mpi, world_size
from .sampler import DistributedSampler, ShardedLoader

__all__ = [
    "DistributedError",
    "ReduceOp",
    "Work",
    "init",
    "is_initialized",
    "rank",
    "world_size",
    "barrier",
    "all_reduce",
    "broadcast",
    "all_gather",
    "all_gather_into_tensor",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "running_under_mpi",
    "DistributedDataParallel",
    "DistributedSampler",
    "ShardedLoader",
    "save_checkpoint",
    "load_checkpoint",
    "reduce_metrics",
]
