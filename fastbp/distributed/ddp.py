"""``DistributedDataParallel``: average the gradients across ranks during backward.

See the package docstring (:mod:`fastbp.distributed`) for how the buckets are reduced.
"""

from __future__ import annotations

import contextlib
import os
import time
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..core.hooks import register_walk_start_hook
from ..core.observer import observer
from ..core.tensor import Tensor
from ..nn.module import Module
from .collectives import broadcast
from .group import _between_polls, _get, _Group, _wait, rank, world_size
from .node_reduce import NodeAllReduce


class _Bucket:
    """Parameters whose gradients are reduced together, in one flat buffer.

    A bucket of one parameter has no buffer of its own: its all-reduce runs in place on
    the gradient backward produced (no copy in, no copy out), which matters for a large
    layer's weight, often the last gradient backward finishes.
    """

    def __init__(self, index: int, params: list[tuple[str, Tensor]]) -> None:
        self.index = index
        self.params = params
        self.dtype = params[0][1].data.dtype
        sizes = [p.data.size for _, p in params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.size = int(self.offsets[-1])
        self.flat = np.zeros(self.size, self.dtype) if len(params) > 1 else None
        self.buffer: np.ndarray | None = None  # what this backward's all-reduce runs on
        self.pending = len(params)
        self.request: Any = None

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def stage(self, i: int, grad: np.ndarray | None) -> None:
        """Put parameter ``i``'s local gradient (None: zero) into the buffer."""
        if self.flat is None:
            shape = self.params[0][1].data.shape
            if grad is None:
                grad = np.zeros(shape, self.dtype)
            elif not (
                grad.flags.c_contiguous and grad.flags.writeable and grad.dtype == self.dtype
            ):
                grad = np.array(grad, self.dtype, order="C")  # reduce a copy, not a view
            self.buffer = grad.reshape(-1)
            return
        lo, hi = self.offsets[i], self.offsets[i + 1]
        if grad is None:
            self.flat[lo:hi] = 0
        else:
            self.flat[lo:hi] = grad.reshape(-1)
        self.buffer = self.flat


class DistributedDataParallel(Module):
    """Wrap ``module`` so that backward averages its gradients across all ranks.

    Shaped like ``torch.nn.parallel.DistributedDataParallel``: at wrap time rank 0's
    parameters are broadcast to every rank (after checking that all ranks hold the same
    parameter names, shapes and dtypes); during each backward the gradients, in buckets
    of about ``bucket_cap_mb`` filled in reverse parameter order, are all-reduced
    (``Iallreduce``) as soon as every gradient in a bucket is final, overlapping the rest
    of the backward walk. When the last gradient is done the wrapper waits for all
    buckets and writes the averages into ``p.grad``, so ``loss.backward()`` returns with
    the same gradients on every rank, equal to one process's gradient of the mean loss
    over the concatenated batch.

    Every backward through the wrapped model must reach every parameter, unless
    ``find_unused_parameters=True``: then a parameter this backward does not reach (an
    unused branch, possibly different on each rank) counts as a zero gradient on this
    rank, its bucket is launched as soon as the walk starts, and a parameter that no rank
    used keeps its ``.grad`` (None after ``zero_grad``), as in torch.

    Does not work inside :func:`fastbp.trace` (it raises when called under a trace).

    Parameters
    ----------
    module : nn.Module
        The model; every rank must build the same architecture.
    bucket_cap_mb : float
        Target bucket size in MiB (torch's default 25). Smaller buckets start
        communicating earlier in backward; larger ones send fewer messages.
    broadcast_buffers : bool
        Broadcast rank 0's buffers (``named_buffers()``, e.g. BatchNorm's running
        statistics) at wrap time and before each forward in training mode, as torch.
    find_unused_parameters : bool
        Allow backwards that do not reach some parameters (see above); costs one small
        extra all-reduce per step (which parameters each rank used). Without it, such a
        backward raises before it starts, naming the parameters.

    Raises
    ------
    RuntimeError
        If the process group is not initialized, or under :func:`fastbp.trace`; at
        ``backward()``, if it would not reach some parameters and
        ``find_unused_parameters`` is False.
    ValueError
        If the ranks' parameters differ in names, shapes or dtypes (naming the first
        difference and the ranks).

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> import fastbp.distributed as dist
    >>> dist.init()
    >>> ddp = dist.DistributedDataParallel(nn.Linear(3, 2))
    >>> ddp(fb.ones(4, 3)).sum().backward()
    >>> ddp.module.weight.grad.shape
    (3, 2)
    """

    def __init__(
        self,
        module: Module,
        bucket_cap_mb: float = 25.0,
        broadcast_buffers: bool = True,
        find_unused_parameters: bool = False,
    ) -> None:
        super().__init__()
        g = _get()
        if not bucket_cap_mb > 0:
            raise ValueError(
                f"DistributedDataParallel: bucket_cap_mb must be > 0, got {bucket_cap_mb}"
            )
        self.module = module
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._check_same_parameters(g, [(n, p.data.shape, p.data.dtype) for n, p in named])
        for _, p in module.named_parameters():
            broadcast(p, src=0)
        self.bucket_cap_mb = bucket_cap_mb
        self.broadcast_buffers = broadcast_buffers
        # As torch, the buffers are found at wrap time: a model without any skips the
        # walk over its modules before every forward.
        self._has_buffers = bool(self._buffers_to_sync())
        if broadcast_buffers:
            for b in self._buffers_to_sync():
                broadcast(b, src=0)
        self._named = named
        self.buckets = self._make_buckets(named, int(bucket_cap_mb * 2**20))
        self._where: dict[int, tuple[_Bucket, int]] = {}
        for bucket in self.buckets:
            for i, (_, p) in enumerate(bucket.params):
                self._where[id(p)] = (bucket, i)
        self._ready: set[int] = set()
        self._next_launch = 0
        self._sync_enabled = True
        self._sync_this_backward = True
        self.find_unused_parameters = bool(find_unused_parameters)
        self._used = np.zeros(len(named), np.int32)  # per parameter, summed over ranks
        self._used_request: Any = None
        self._index = {id(p): k for k, (_, p) in enumerate(named)}
        self.wait_seconds = 0.0  # time the last synchronization waited (exposed comm)
        self.overlapped_bytes = 0  # of it, bytes whose all-reduce was done before the wait
        # Ranks on one machine average through a shared-memory window (see node_reduce),
        # unless FASTBP_DDP_SHARED_MEMORY=0; None: MPI's Iallreduce, bucket by bucket.
        self._node: NodeAllReduce | None = None
        if g.size > 1 and os.environ.get("FASTBP_DDP_SHARED_MEMORY", "1").strip() != "0":
            layout = [(b.size, b.dtype) for b in self.buckets]
            self._node = NodeAllReduce.create(g.comm, g.MPI, layout, _wait)
        # A world of one has nothing to average: no hooks, backward runs as without DDP.
        self._handles = []
        if g.size > 1:
            self._handles = [
                p.register_post_accumulate_grad_hook(self._grad_ready) for _, p in named
            ]
            # A weak reference: the global hook list must not keep the wrapper alive.
            self_ref = weakref.ref(self)

            def walk_started(reached: dict) -> None:
                ddp = self_ref()
                if ddp is not None:
                    ddp._walk_started(reached)

            handle = register_walk_start_hook(walk_started)
            weakref.finalize(self, handle.remove)
            self._handles.append(handle)

    # -- wrap-time checks
    @staticmethod
    def _check_same_parameters(g: _Group, signature: list[tuple]) -> None:
        if g.size == 1:
            return
        text = [(n, tuple(s), str(d)) for n, s, d in signature]
        everyone = g.comm.allgather(text)  # small metadata, once: pickling is fine here
        for r, theirs in enumerate(everyone):
            if theirs == everyone[0]:
                continue
            for i in range(max(len(theirs), len(everyone[0]))):
                a = everyone[0][i] if i < len(everyone[0]) else None
                b = theirs[i] if i < len(theirs) else None
                if a != b:
                    raise ValueError(
                        f"DistributedDataParallel: rank {r} has a different model from rank "
                        f"0: parameter #{i} is {_describe(b)} on rank {r} but {_describe(a)} "
                        f"on rank 0. Build the same architecture on every rank."
                    )

    @staticmethod
    def _make_buckets(named: list[tuple[str, Tensor]], cap: int) -> list[_Bucket]:
        buckets: list[_Bucket] = []
        current: list[tuple[str, Tensor]] = []
        size = 0
        for name, p in reversed(named):  # backward finishes the last layers first
            if current and (size + p.data.nbytes > cap or p.data.dtype != current[0][1].dtype):
                buckets.append(_Bucket(len(buckets), current))
                current, size = [], 0
            current.append((name, p))
            size += p.data.nbytes
        if current:
            buckets.append(_Bucket(len(buckets), current))
        return buckets

    # -- forward
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Checked before Module.__call__ reports the call to a tracer: nothing is recorded.
        if observer() is not None:
            raise RuntimeError(
                "DistributedDataParallel does not work inside fb.trace: a traced step "
                "replays the recorded ops but not the gradient hooks and MPI all-reduces. "
                "Run the distributed training step eagerly (without fb.trace)."
            )
        return super().__call__(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the wrapped module; the next backward synchronizes unless in :meth:`no_sync`."""
        if self._ready:
            missing = [n for n, p in self._named if id(p) not in self._ready]
            raise RuntimeError(
                "DistributedDataParallel: the previous backward did not finish reducing the "
                f"gradients; no gradient reached {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''}. If some parameters do not take part "
                "in the loss, pass find_unused_parameters=True to DistributedDataParallel."
            )
        self._sync_this_backward = self._sync_enabled
        if self._has_buffers and self.broadcast_buffers and self.training and world_size() > 1:
            # As torch: rank 0's buffers (e.g. BatchNorm's running statistics, which each
            # rank updates from its own shard) are the ones every rank uses and keeps.
            for buf in self._buffers_to_sync():
                broadcast(buf, src=0)
        return self.module(*args, **kwargs)

    def _buffers_to_sync(self) -> list:
        named = getattr(self.module, "named_buffers", None)
        return [] if named is None else [b for _, b in named() if b is not None]

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Within this context, forward+backward accumulate gradients locally.

        The first backward after a forward outside the context reduces the accumulated
        gradients, as in torch.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp import nn
        >>> import fastbp.distributed as dist
        >>> dist.init(); ddp = dist.DistributedDataParallel(nn.Linear(2, 1))
        >>> with ddp.no_sync():
        ...     ddp(fb.ones(1, 2)).sum().backward()
        >>> ddp(fb.ones(1, 2)).sum().backward()
        >>> ddp.module.bias.grad
        array([2.], dtype=float32)
        """
        previous = self._sync_enabled
        self._sync_enabled = False
        try:
            yield
        finally:
            self._sync_enabled = previous

    # -- backward
    def _walk_started(self, reached: dict) -> None:
        """Walk-start hook: learn which parameters this backward will never reach."""
        if not self._sync_this_backward or self._ready:
            return
        missing = [(n, p) for n, p in self._named if id(p) not in reached]
        if len(missing) == len(self._named):
            return  # a backward that does not go through this model
        if self.find_unused_parameters:
            # Which parameters each rank used: first, so every rank issues this
            # collective before any bucket's, whatever its hooks do.
            for k, (_, p) in enumerate(self._named):
                self._used[k] = id(p) in reached or p.grad is not None
            g = _get()
            self._used_request = g.comm.Iallreduce(g.MPI.IN_PLACE, self._used)
        elif missing:
            names = ", ".join(n for n, _ in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise RuntimeError(
                f"DistributedDataParallel: this backward (rank {rank()}) does not reach "
                f"{len(missing)} of the model's parameters: {names}. Every rank would wait "
                "for their gradients. If the model skips parameters in some steps (an "
                "unused branch), pass find_unused_parameters=True; otherwise make every "
                "output that uses them part of the loss."
            )
        for _, p in missing:  # this rank's contribution: its accumulated grad, else zero
            self._mark_ready(p)
        if missing:
            self._launch_ready()

    def _grad_ready(self, p: Tensor) -> None:
        """Post-accumulate-grad hook: ``p.grad`` is final for this backward."""
        if not self._sync_this_backward:
            return
        if id(p) in self._ready:
            raise RuntimeError(
                f"DistributedDataParallel: parameter {self._named[self._index[id(p)]][0]} "
                "received a second gradient before the first was reduced (two backwards "
                "after one forward?); run forward again before each backward, or use no_sync()"
            )
        if self._mark_ready(p):
            self._launch_ready()
        if len(self._ready) == len(self._where):
            self.finish_gradient_synchronization()
        elif self._next_launch and self._node is None:
            # MPI moves a non-blocking collective on only inside MPI calls (without an
            # asynchronous progress thread): a test per finished gradient keeps the
            # buckets already sent moving while backward computes.
            self.buckets[self._next_launch - 1].request.Test()

    def _mark_ready(self, p: Tensor) -> bool:
        """Stage ``p``'s gradient in its bucket; whether that completed the bucket."""
        bucket, i = self._where[id(p)]
        self._ready.add(id(p))
        bucket.stage(i, p.grad)
        bucket.pending -= 1
        return bucket.pending == 0

    def _launch_ready(self) -> None:
        # Buckets start strictly in order: every rank must issue its collectives in the
        # same sequence, whatever order its hooks fired in.
        g = _get()
        while self._next_launch < len(self.buckets):
            bucket = self.buckets[self._next_launch]
            if bucket.pending:
                return
            if self._node is not None:
                self._node.put(bucket.index, bucket.buffer)  # while the gradient is in cache
            else:
                bucket.request = g.comm.Iallreduce(g.MPI.IN_PLACE, bucket.buffer, op=g.MPI.SUM)
            self._next_launch += 1

    def finish_gradient_synchronization(self) -> None:
        """Wait for every bucket's all-reduce and write the averaged gradients to ``p.grad``.

        Runs by itself at the end of each backward (when the last parameter's gradient
        is done); calling it again does nothing. Parameters the backward did not reach
        count as zero here (the hooks normally do that with
        ``find_unused_parameters=True``).

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp import nn
        >>> import fastbp.distributed as dist
        >>> dist.init(); ddp = dist.DistributedDataParallel(nn.Linear(2, 1))
        >>> ddp.finish_gradient_synchronization()  # nothing pending: does nothing
        """
        if not self._ready:
            return
        for _, p in self._named:
            if id(p) not in self._ready:
                self._mark_ready(p)
        self._launch_ready()
        t0 = time.perf_counter()
        try:
            if self._used_request is not None:
                _wait([self._used_request], "all_reduce(parameters used)")
            self._wait_and_average()
        finally:
            self.wait_seconds = time.perf_counter() - t0
            self._ready.clear()
            self._next_launch = 0
            self._used_request = None
            for bucket in self.buckets:
                bucket.pending, bucket.request, bucket.buffer = len(bucket.params), None, None

    def _wait_and_average(self) -> None:
        """Write each bucket's average back as soon as its all-reduce completes."""
        g = _get()
        unused = self._used if self.find_unused_parameters else None
        if self._node is not None:
            self.overlapped_bytes = 0
            self._node.average([bucket.buffer for bucket in self.buckets])
            for bucket in self.buckets:
                self._write_back(bucket, None, unused)
            return
        scale = {}
        outstanding = list(self.buckets)
        count = len(outstanding)
        what = f"DistributedDataParallel's all-reduce of {count} gradient bucket" + "s" * (
            count != 1
        )
        g.waiting_for = what
        deadline = time.monotonic() + g.timeout
        start, polls = time.monotonic(), 0
        first = True
        while outstanding:
            done = [b for b in outstanding if b.request.Test()]
            if first:  # finished under backward (for the benchmark's time split)
                self.overlapped_bytes = sum(b.nbytes for b in done)
                first = False
            for bucket in done:
                outstanding.remove(bucket)
                s = scale.get(bucket.dtype) or scale.setdefault(
                    bucket.dtype, bucket.dtype.type(1.0 / g.size)
                )
                self._write_back(bucket, s, unused)
            if done or not outstanding:
                continue
            polls += 1
            _between_polls(g, polls, start, deadline, what)
        g.waiting_for = ""

    def _write_back(self, bucket: _Bucket, scale: Any, used: np.ndarray | None) -> None:
        # scale None: the buffer holds the mean already (the shared-memory path)
        buffer = bucket.buffer
        for i, (_, p) in enumerate(bucket.params):
            if used is not None and not used[self._index[id(p)]]:
                continue  # no rank used it: its .grad stays as it is, as in torch
            lo, hi = bucket.offsets[i], bucket.offsets[i + 1]
            mean = buffer[lo:hi].reshape(p.data.shape)
            if bucket.flat is None:  # reduced in place: the gradient itself, or its copy
                if scale is not None:
                    np.multiply(mean, scale, out=mean)
                p.grad = mean
            elif p.grad is not None and p.grad.flags.writeable and p.grad.shape == mean.shape:
                if scale is None:
                    p.grad[...] = mean
                else:
                    np.multiply(mean, scale, out=p.grad)
            else:
                p.grad = mean.copy() if scale is None else mean * scale

    def extra_repr(self) -> str:
        sizes = ", ".join(f"{b.nbytes / 2**20:.2f}" for b in self.buckets)
        return f"world_size={world_size()}, buckets MiB=[{sizes}]"


def _describe(entry: tuple | None) -> str:
    if entry is None:
        return "missing"
    name, shape, dtype = entry
    return f"{name!r} {dtype}{list(shape)}"
