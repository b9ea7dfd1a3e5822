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
at the end of backward, each one share of every bucket (``fastbp._node_reduce``; faster
than MPI's all-reduce between processes; ``FASTBP_DDP_SHARED_MEMORY=0`` turns it off). A
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
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import serialization
from ._node_reduce import NodeAllReduce
from .core.hooks import register_walk_start_hook
from .core.observer import observer
from .core.tensor import Tensor
from .nn.module import Module

__all__ = [
    "DistributedError",
    "ReduceOp",
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

DEFAULT_TIMEOUT = 300.0
# Tags on the control communicator (a duplicate of the world, so that these small
# messages never match a user's point-to-point traffic).
_TAG_FAULT, _TAG_QUERY, _TAG_ANSWER, _TAG_PRINTED = 7101, 7102, 7103, 7104
# Environment variables by which MPI launchers tell a process it is one of several.
_LAUNCHER_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


class DistributedError(RuntimeError):
    """Another rank failed, or a collective did not complete within the timeout.

    ``failed_rank`` is the rank whose fault notice raised this error (None for a timeout).
    """

    def __init__(self, message: str, failed_rank: int | None = None) -> None:
        super().__init__(message)
        self.failed_rank = failed_rank


class ReduceOp:
    """Reduction operations, as ``torch.distributed.ReduceOp`` (plain strings also work)."""

    SUM = "sum"
    AVG = "mean"
    MAX = "max"
    MIN = "min"


class _Group:
    """The process group: the world communicator, a control duplicate, and the timeout."""

    def __init__(self, comm: Any, mpi: Any, timeout: float) -> None:
        self.comm, self.MPI, self.timeout = comm, mpi, timeout
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self.ctrl = None if comm is None or self.size == 1 else comm.Dup()
        self.waiting_for = ""  # what this rank is blocked in, answered to queries


_group: _Group | None = None


def running_under_mpi() -> bool:
    """Whether this process was started by an MPI launcher (``mpiexec``/``mpirun``/``srun``).

    Returns
    -------
    bool
        True when a launcher's environment variables are set.

    Example
    -------
    >>> isinstance(running_under_mpi(), bool)
    True
    """
    return any(v in os.environ for v in _LAUNCHER_VARS)


def init(timeout: float | None = None, comm: Any = None) -> None:
    """Join the process group given by the MPI environment (a world of one without it).

    Parameters
    ----------
    timeout : float, optional
        Seconds any collective may wait for the other ranks before raising
        :class:`DistributedError` and aborting the job. Default: the environment variable
        ``FASTBP_DIST_TIMEOUT``, else 300.
    comm : mpi4py.MPI.Comm, optional
        The communicator to use (default ``MPI.COMM_WORLD``).

    Raises
    ------
    ImportError
        If the process was started by ``mpiexec`` but mpi4py is not installed.
    ValueError
        If the timeout is not positive.

    Example
    -------
    >>> init()
    >>> is_initialized() and world_size() >= 1
    True
    """
    global _group
    if timeout is None:
        timeout = float(os.environ.get("FASTBP_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    if not timeout > 0:
        raise ValueError(f"init: timeout must be > 0 seconds, got {timeout}")
    try:
        from mpi4py import MPI
    except ImportError:
        if running_under_mpi() or comm is not None:
            raise ImportError(
                "fastbp.distributed.init: this process was started by an MPI launcher but "
                "mpi4py is not installed; pip install 'fastbp[mpi]' (mpi4py and mpich)"
            ) from None
        _group = _Group(None, None, timeout)
        return
    if _group is not None and _group.comm is not None:
        _group.timeout = timeout
        return
    _group = _Group(MPI.COMM_WORLD if comm is None else comm, MPI, timeout)
    if _group.size > 1 and sys.excepthook is not _excepthook:
        global _previous_excepthook
        _previous_excepthook = sys.excepthook
        sys.excepthook = _excepthook


def is_initialized() -> bool:
    """Whether :func:`init` has been called.

    Example
    -------
    >>> init(); is_initialized()
    True
    """
    return _group is not None


def _get() -> _Group:
    if _group is None:
        raise RuntimeError(
            "fastbp.distributed: the process group is not initialized; call "
            "fastbp.distributed.init() first (it works with or without mpiexec)"
        )
    if observer() is not None:
        raise RuntimeError(
            "fastbp.distributed does not work inside fb.trace: a traced step replays the "
            "recorded ops but not MPI calls or gradient hooks. Run the distributed step "
            "eagerly (without fb.trace)."
        )
    return _group


def rank() -> int:
    """This process's rank, from 0 (0 before :func:`init`, like a world of one).

    Example
    -------
    >>> init(); 0 <= rank() < world_size()
    True
    """
    return 0 if _group is None else _group.rank


def world_size() -> int:
    """The number of ranks (1 before :func:`init`).

    Example
    -------
    >>> init(); world_size() >= 1
    True
    """
    return 1 if _group is None else _group.size


_current_rank = rank  # for DistributedSampler, whose argument is called rank


# --------------------------------------------------------------------------- waiting and faults


def _wait(requests: list, what: str) -> None:
    """Wait for MPI ``requests``, watching for fault notices and the deadline."""
    g = _group
    testall = g.MPI.Request.Testall
    g.waiting_for = what
    start = time.monotonic()
    deadline = start + g.timeout
    polls = 0
    while not testall(requests):
        polls += 1
        # MPI moves a large non-blocking collective on one chunk per call: poll without
        # pause, as a blocking MPI_Wait does, and only after a while (a peer is late)
        # give the core back between polls.
        if polls % 256:
            continue
        _check_control(g)
        now = time.monotonic()
        if now > deadline:
            _timed_out(g, what)
        if now - start > _SPIN_SECONDS:
            time.sleep(0.0005)
    g.waiting_for = ""


_SPIN_SECONDS = 0.05


def _check_control(g: _Group) -> None:
    """Raise on a fault notice from another rank; answer liveness queries."""
    ctrl, mpi = g.ctrl, g.MPI
    if ctrl is None:
        return
    status = mpi.Status()
    while ctrl.iprobe(source=mpi.ANY_SOURCE, tag=mpi.ANY_TAG, status=status):
        source, tag = status.Get_source(), status.Get_tag()
        if tag not in (_TAG_FAULT, _TAG_QUERY, _TAG_ANSWER):
            return
        message = ctrl.recv(source=source, tag=tag)
        if tag == _TAG_FAULT:
            raise DistributedError(
                f"fastbp.distributed: rank {source} failed while rank {g.rank} was in "
                f"{g.waiting_for or 'training'}: {message}",
                failed_rank=source,
            )
        if tag == _TAG_QUERY:
            ctrl.isend(g.waiting_for, dest=source, tag=_TAG_ANSWER)


def _timed_out(g: _Group, what: str) -> None:
    """Ask every rank whether it is alive, then raise naming those that did not answer."""
    ctrl, mpi = g.ctrl, g.MPI
    others = [r for r in range(g.size) if r != g.rank]
    for r in others:
        ctrl.isend(what, dest=r, tag=_TAG_QUERY)
    answered: dict[int, str] = {}
    status = mpi.Status()
    end = time.monotonic() + min(2.0, g.timeout)
    while time.monotonic() < end and len(answered) < len(others):
        if ctrl.iprobe(source=mpi.ANY_SOURCE, tag=_TAG_ANSWER, status=status):
            src = status.Get_source()
            answered[src] = ctrl.recv(source=src, tag=_TAG_ANSWER)
        else:
            with contextlib.suppress(DistributedError):
                _check_control_queries_only(g)
            time.sleep(0.001)
    silent = [r for r in others if r not in answered]
    waiting = ", ".join(f"rank {r} in {w or 'training'}" for r, w in sorted(answered.items()))
    raise DistributedError(
        f"fastbp.distributed: {what} did not complete within {g.timeout:g} s (rank {g.rank}); "
        f"{'ranks' if len(silent) != 1 else 'rank'} {', '.join(map(str, silent)) or 'none'} "
        f"did not answer (dead, hung, or busy outside fastbp.distributed)"
        + (f"; waiting: {waiting}" if waiting else "")
        + ". Raise the limit with init(timeout=...) or FASTBP_DIST_TIMEOUT if a step is slow."
    )


def _check_control_queries_only(g: _Group) -> None:
    mpi, ctrl = g.MPI, g.ctrl
    status = mpi.Status()
    if ctrl.iprobe(source=mpi.ANY_SOURCE, tag=_TAG_QUERY, status=status):
        src = status.Get_source()
        ctrl.recv(source=src, tag=_TAG_QUERY)
        ctrl.isend(g.waiting_for, dest=src, tag=_TAG_ANSWER)


_previous_excepthook = sys.excepthook


def _excepthook(etype, value, tb) -> None:
    """Print the error, tell the other ranks which rank failed, and abort the MPI job.

    Without this a rank that raises would leave the others blocked in their next
    collective; aborting ends them all. The abort kills every rank at once, so it waits
    until the others have printed their side: a rank that fails first tells its peers and
    waits for each one's "printed" reply; a peer that heard of it prints, replies, then
    aborts. Under load a fixed pause was not enough: a peer could be killed mid-traceback.
    """
    _previous_excepthook(etype, value, tb)
    g = _group
    if g is None or g.ctrl is None:
        return
    try:
        sys.stderr.flush()
        if isinstance(value, DistributedError):
            if value.failed_rank is not None:
                reply = g.ctrl.isend("printed", dest=value.failed_rank, tag=_TAG_PRINTED)
                _poll_until([reply], seconds=1.0, g=g)
            time.sleep(0.2)  # the launcher forwards what was printed before the abort
        else:
            _tell_peers_and_wait_for_them(g, f"{etype.__name__}: {value}")
    finally:
        g.comm.Abort(1)


def _tell_peers_and_wait_for_them(g: _Group, notice: str) -> None:
    """Send the fault notice; wait for the peers that received it to report they printed."""
    peers = [r for r in range(g.size) if r != g.rank]
    sends = {r: g.ctrl.issend(notice, dest=r, tag=_TAG_FAULT) for r in peers}
    _poll_until(list(sends.values()), seconds=2.0, g=g)  # polling peers take it at once
    heard = {r for r, request in sends.items() if request.Test()}
    status = g.MPI.Status()
    end = time.monotonic() + 5.0
    while heard and time.monotonic() < end:
        if g.ctrl.iprobe(source=g.MPI.ANY_SOURCE, tag=_TAG_PRINTED, status=status):
            source = status.Get_source()
            g.ctrl.recv(source=source, tag=_TAG_PRINTED)
            heard.discard(source)
        else:
            time.sleep(0.001)
    time.sleep(0.2)


def _poll_until(requests: list, seconds: float, g: _Group) -> None:
    """Poll ``requests`` until all complete or ``seconds`` pass (no timeout error)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not g.MPI.Request.Testall(requests):
        time.sleep(0.001)


# --------------------------------------------------------------------------- collectives


_MPI_OPS = {"sum": "SUM", "mean": "SUM", "max": "MAX", "min": "MIN"}


def _op(op: str, dtype: np.dtype, who: str) -> Any:
    name = _MPI_OPS.get(str(op).lower())
    if name is None:
        raise ValueError(f"{who}: op must be one of sum, mean, max, min; got {op!r}")
    if op == "mean" and not np.issubdtype(dtype, np.floating):
        raise TypeError(f"{who}: op='mean' needs a floating array, got dtype {dtype}")
    return getattr(_group.MPI, name)


def _buffer(x: Any, who: str) -> np.ndarray:
    """The array behind ``x`` (a Tensor's data), checked to be a usable MPI buffer."""
    array = x.data if isinstance(x, Tensor) else x
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{who}: expected an ndarray or a Tensor, got {type(x).__name__}")
    if array.dtype.hasobject:
        raise TypeError(f"{who}: object arrays cannot be sent without pickling")
    return array


def _touched(x: Any) -> None:
    if isinstance(x, Tensor):
        x._version += 1  # written in place: saved-array guards must see it


class Work:
    """A started collective (``async_op=True``); :meth:`wait` finishes it."""

    def __init__(self, requests: list, finish: Any, what: str) -> None:
        self._requests, self._finish, self._what = requests, finish, what

    def is_completed(self) -> bool:
        """Whether the transfer has finished (without waiting)."""
        return self._requests is None or _group.MPI.Request.Testall(self._requests)

    def wait(self) -> None:
        """Wait (with the group's timeout) and finish the result in place."""
        if self._requests is None:
            return
        _wait(self._requests, self._what)
        self._requests = None
        if self._finish is not None:
            self._finish()


def all_reduce(tensor: Any, op: str = "sum", async_op: bool = False) -> Work | None:
    """Reduce ``tensor`` across all ranks, in place (as ``torch.distributed.all_reduce``).

    Parameters
    ----------
    tensor : ndarray or Tensor
        The local value; it holds the result afterwards, on every rank.
    op : {'sum', 'mean', 'max', 'min'} or ReduceOp
        ``'mean'`` divides the sum by the world size (floating dtypes only).
    async_op : bool
        Return a :class:`Work` to ``wait()`` on instead of waiting now.

    Returns
    -------
    Work or None

    Raises
    ------
    DistributedError
        If another rank failed or the timeout passed.

    Example
    -------
    >>> import numpy as np
    >>> init(); x = np.ones(3, np.float32); all_reduce(x, "mean"); x
    array([1., 1., 1.], dtype=float32)
    """
    g = _get()
    array = _buffer(tensor, "all_reduce")
    mpi_op = None if g.comm is None else _op(op, array.dtype, "all_reduce")
    if g.size == 1:
        _op_check_local(op, array.dtype, "all_reduce")
        return Work(None, None, "all_reduce") if async_op else None
    target = array if array.flags.c_contiguous and array.flags.writeable else None
    work_buf = target if target is not None else np.ascontiguousarray(array)
    request = g.comm.Iallreduce(g.MPI.IN_PLACE, work_buf, op=mpi_op)

    def finish() -> None:
        if target is None:
            array[...] = work_buf
        if op == "mean":
            np.multiply(array, array.dtype.type(1.0 / g.size), out=array)
        _touched(tensor)

    work = Work([request], finish, f"all_reduce({array.dtype}{list(array.shape)})")
    if async_op:
        return work
    work.wait()
    return None


def _op_check_local(op: str, dtype: np.dtype, who: str) -> None:
    if str(op).lower() not in _MPI_OPS:
        raise ValueError(f"{who}: op must be one of sum, mean, max, min; got {op!r}")
    if op == "mean" and not np.issubdtype(dtype, np.floating):
        raise TypeError(f"{who}: op='mean' needs a floating array, got dtype {dtype}")


def broadcast(tensor: Any, src: int = 0) -> None:
    """Copy rank ``src``'s ``tensor`` into ``tensor`` on every rank, in place.

    Parameters
    ----------
    tensor : ndarray or Tensor
        Same shape and dtype on every rank.
    src : int
        The rank whose value is sent.

    Raises
    ------
    ValueError
        If ``src`` is not a rank.

    Example
    -------
    >>> import numpy as np
    >>> init(); x = np.arange(3.0); broadcast(x, src=0); x
    array([0., 1., 2.])
    """
    g = _get()
    array = _buffer(tensor, "broadcast")
    if not 0 <= src < g.size:
        raise ValueError(f"broadcast: src={src} is not a rank of a world of size {g.size}")
    if g.size == 1:
        return
    buf = array if array.flags.c_contiguous and array.flags.writeable else array.copy()
    _wait([g.comm.Ibcast(buf, root=src)], f"broadcast({array.dtype}{list(array.shape)})")
    if buf is not array:
        array[...] = buf
    _touched(tensor)


def all_gather_into_tensor(output: Any, input: Any) -> None:
    """Gather every rank's ``input`` into ``output`` (shape ``(world_size * n, ...)``).

    Parameters
    ----------
    output : ndarray or Tensor
        C-contiguous, ``world_size`` times ``input`` along the first axis (or of shape
        ``(world_size, *input.shape)``); rank ``r``'s input lands in block ``r``.
    input : ndarray or Tensor
        This rank's block.

    Raises
    ------
    ValueError
        If the sizes do not fit.

    Example
    -------
    >>> import numpy as np
    >>> init(); out = np.zeros((world_size(), 2)); all_gather_into_tensor(out, np.ones(2)); out
    array([[1., 1.]])
    """
    g = _get()
    out, inp = _buffer(output, "all_gather"), _buffer(input, "all_gather")
    if out.size != inp.size * g.size or out.dtype != inp.dtype or not out.flags.c_contiguous:
        raise ValueError(
            f"all_gather: output {out.dtype}{list(out.shape)} must be C-contiguous with "
            f"{g.size} x {inp.size} elements of input's dtype {inp.dtype}{list(inp.shape)}"
        )
    if g.size == 1:
        out.reshape(-1)[...] = inp.reshape(-1)
    else:
        send = np.ascontiguousarray(inp)
        _wait([g.comm.Iallgather(send, out)], f"all_gather({inp.dtype}{list(inp.shape)})")
    _touched(output)


def all_gather(tensor_list: list, tensor: Any) -> None:
    """Fill ``tensor_list[r]`` with rank ``r``'s ``tensor`` (torch's signature).

    Parameters
    ----------
    tensor_list : list of ndarray or Tensor
        ``world_size`` arrays shaped like ``tensor``, written in place.
    tensor : ndarray or Tensor
        This rank's value.

    Example
    -------
    >>> import numpy as np
    >>> init(); out = [np.zeros(2) for _ in range(world_size())]
    >>> all_gather(out, np.full(2, 3.0)); out[0]
    array([3., 3.])
    """
    g = _get()
    inp = _buffer(tensor, "all_gather")
    if len(tensor_list) != g.size:
        raise ValueError(f"all_gather: tensor_list has {len(tensor_list)} entries, need {g.size}")
    gathered = np.empty((g.size, *inp.shape), inp.dtype)
    all_gather_into_tensor(gathered, inp)
    for r, dest in enumerate(tensor_list):
        _buffer(dest, "all_gather")[...] = gathered[r]
        _touched(dest)


def reduce_scatter_tensor(output: Any, input: Any, op: str = "sum") -> None:
    """Reduce ``input`` across ranks and keep block ``rank()`` of the result in ``output``.

    Parameters
    ----------
    output : ndarray or Tensor
        This rank's block, ``input.size / world_size`` elements.
    input : ndarray or Tensor
        The full array, same shape on every rank.
    op : {'sum', 'mean', 'max', 'min'}

    Example
    -------
    >>> import numpy as np
    >>> init(); out = np.zeros(2); reduce_scatter_tensor(out, np.ones(2 * world_size())); out
    array([1., 1.])
    """
    g = _get()
    out, inp = _buffer(output, "reduce_scatter"), _buffer(input, "reduce_scatter")
    if inp.size != out.size * g.size or out.dtype != inp.dtype:
        raise ValueError(
            f"reduce_scatter: input {inp.dtype}{list(inp.shape)} must have {g.size} x "
            f"{out.size} elements of output's dtype {out.dtype}{list(out.shape)}"
        )
    if g.size == 1:
        _op_check_local(op, inp.dtype, "reduce_scatter")
        out.reshape(-1)[...] = inp.reshape(-1)
    else:
        mpi_op = _op(op, inp.dtype, "reduce_scatter")
        recv = np.empty(out.size, out.dtype)
        request = g.comm.Ireduce_scatter_block(np.ascontiguousarray(inp), recv, op=mpi_op)
        _wait([request], f"reduce_scatter({inp.dtype}{list(inp.shape)})")
        if op == "mean":
            recv *= recv.dtype.type(1.0 / g.size)
        out.reshape(-1)[...] = recv
    _touched(output)


def reduce_scatter(output: Any, input_list: Sequence[Any], op: str = "sum") -> None:
    """Reduce ``input_list[r]`` across ranks into ``output`` on rank ``r`` (torch's signature).

    Parameters
    ----------
    output : ndarray or Tensor
        Written in place with the reduction of every rank's ``input_list[rank()]``.
    input_list : sequence of ndarray or Tensor
        ``world_size`` arrays shaped like ``output``.
    op : {'sum', 'mean', 'max', 'min'}

    Example
    -------
    >>> import numpy as np
    >>> init(); out = np.zeros(2)
    >>> reduce_scatter(out, [np.full(2, 5.0)] * world_size()); out / world_size()
    array([5., 5.])
    """
    g = _get()
    if len(input_list) != g.size:
        raise ValueError(f"reduce_scatter: input_list has {len(input_list)} entries, need {g.size}")
    stacked = np.stack([_buffer(x, "reduce_scatter") for x in input_list])
    reduce_scatter_tensor(output, stacked, op)


def barrier() -> None:
    """Wait until every rank has called :func:`barrier` (with the group's timeout).

    Example
    -------
    >>> init(); barrier()
    """
    g = _get()
    if g.size > 1:
        _wait([g.comm.Ibarrier()], "barrier")


def reduce_metrics(values: dict[str, float], weights: dict[str, float] | None = None) -> dict:
    """Average per-rank metrics across ranks, weighted by each rank's sample count.

    Parameters
    ----------
    values : dict of str to float
        This rank's metric values (e.g. mean loss and accuracy over its samples).
    weights : dict of str to float, optional
        Each metric's weight on this rank (its number of samples); default 1.

    Returns
    -------
    dict of str to float
        ``sum_r(w_r * v_r) / sum_r(w_r)`` for every key, the same on every rank.

    Example
    -------
    >>> init(); reduce_metrics({"loss": 0.5}, {"loss": 10})
    {'loss': 0.5}
    """
    keys = sorted(values)
    w = np.array([1.0 if weights is None else float(weights[k]) for k in keys])
    both = np.concatenate([w * np.array([float(values[k]) for k in keys]), w])
    if world_size() > 1:
        all_reduce(both, "sum")
    n = len(keys)
    return {k: float(both[i] / both[n + i]) for i, k in enumerate(keys)}


# --------------------------------------------------------------------------- DDP


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
    >>> init()
    >>> ddp = DistributedDataParallel(nn.Linear(3, 2))
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
        # Ranks on one machine average through a shared-memory window (see _node_reduce),
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
        >>> init(); ddp = DistributedDataParallel(nn.Linear(2, 1))
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
            self._used_request = _group.comm.Iallreduce(_group.MPI.IN_PLACE, self._used)
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
        g = _group
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
        >>> init(); ddp = DistributedDataParallel(nn.Linear(2, 1))
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
        g = _group
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
            if polls % 256:  # as _wait: spin, and look at faults and the clock now and then
                continue
            _check_control(g)
            now = time.monotonic()
            if now > deadline:
                _timed_out(g, what)
            if now - start > _SPIN_SECONDS:
                time.sleep(0.0005)
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


# --------------------------------------------------------------------------- data


class DistributedSampler:
    """Indices of this rank's shard of a dataset, reshuffled each epoch (torch's semantics).

    Every rank draws the same permutation (seeded by ``seed + epoch``, so call
    :meth:`set_epoch` each epoch) and takes every ``num_replicas``-th index from
    position ``rank``. When the length does not divide evenly, the permutation is
    padded by repeating its start (``drop_last=False``) or its tail is dropped
    (``drop_last=True``), so every rank gets the same number of samples.

    With ``shuffle`` the permutation is ``np.random.default_rng(seed + epoch)``'s, the one
    :class:`fastbp.data.DataLoader` draws for that seed: with ``B`` samples per rank, step
    ``k``'s global batch over all ranks is the single-process batch ``k`` of size ``N*B``.

    Parameters
    ----------
    dataset : int or sized
        The dataset, or its length.
    num_replicas : int, optional
        Number of ranks (default :func:`world_size`).
    rank : int, optional
        This rank (default :func:`rank`).
    shuffle : bool
        Permute every epoch (default True).
    seed : int
        Shared by all ranks.
    drop_last : bool
        Drop the tail instead of padding.

    Raises
    ------
    ValueError
        If ``rank`` is not in ``[0, num_replicas)``.

    Example
    -------
    >>> [list(DistributedSampler(5, num_replicas=2, rank=r, shuffle=False)) for r in (0, 1)]
    [[0, 2, 4], [1, 3, 0]]
    """

    def __init__(
        self,
        dataset: Any,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        n = int(dataset) if isinstance(dataset, (int, np.integer)) else len(dataset)
        num_replicas = world_size() if num_replicas is None else int(num_replicas)
        rank = _current_rank() if rank is None else int(rank)
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"DistributedSampler: rank {rank} must be in [0, num_replicas={num_replicas})"
            )
        self.dataset_len, self.num_replicas, self.rank = n, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch = 0
        if drop_last and n % num_replicas:
            self.num_samples = n // num_replicas  # torch's ceil((n - N) / N)
        else:
            self.num_samples = -(-n // num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of epoch ``epoch`` (the same on every rank)."""
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, as an int64 array."""
        n = self.dataset_len
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n)
        if self.total_size > n:  # pad by repeating from the start, as often as needed
            order = np.resize(order, self.total_size) if n else order
        else:
            order = order[: self.total_size]
        return order[self.rank : self.total_size : self.num_replicas].astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples


class ShardedLoader:
    """Batches of ``(x, y)`` over a :class:`DistributedSampler`'s shard of the data.

    Parameters
    ----------
    x, y : array_like
        The full dataset (every rank holds it; only the shard is read).
    batch_size : int
        Samples per rank per batch.
    sampler : DistributedSampler
        Call its ``set_epoch`` before iterating each epoch.
    drop_last : bool
        Drop a final incomplete batch.

    Example
    -------
    >>> import numpy as np
    >>> s = DistributedSampler(6, num_replicas=2, rank=1, shuffle=False)
    >>> [yb.tolist() for _, yb in ShardedLoader(np.zeros(6), np.arange(6), 2, s)]
    [[1, 3], [5]]
    """

    def __init__(
        self, x: Any, y: Any, batch_size: int, sampler: DistributedSampler, drop_last: bool = False
    ) -> None:
        self.x, self.y = np.asarray(x), np.asarray(y)
        if len(self.x) != len(self.y) or len(self.x) != sampler.dataset_len:
            raise ValueError(
                f"ShardedLoader: x has {len(self.x)} samples, y {len(self.y)}, the sampler "
                f"{sampler.dataset_len}; they must agree"
            )
        if int(batch_size) < 1:
            raise ValueError(f"ShardedLoader: batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.sampler, self.drop_last = int(batch_size), sampler, drop_last

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        idx = self.sampler.indices()
        bs = self.batch_size
        for start in range(0, len(self) * bs, bs):
            part = idx[start : start + bs]
            yield self.x[part], self.y[part]


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """Rank 0 writes ``obj`` with :func:`fastbp.save` (atomic); every rank waits for it.

    Parameters
    ----------
    obj : dict
        A state dict (see :func:`fastbp.save`); only rank 0's is written.
    path : str or os.PathLike
        The file.

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> init(); p = os.path.join(tempfile.mkdtemp(), "c.npz")
    >>> save_checkpoint({"step": 3}, p); load_checkpoint(p)["step"]
    3
    """
    error = None
    if rank() == 0:
        try:
            serialization.save(obj, path)
        except Exception as exc:  # the others must hear of it, not wait at the barrier
            error = exc
    failed = np.array([error is not None], np.int32)
    if world_size() > 1:
        all_reduce(failed, "max")
    if error is not None:
        raise error
    if failed[0]:
        raise DistributedError(f"save_checkpoint: rank 0 could not write {path}")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Every rank reads the checkpoint rank 0 wrote (the path must be visible to all ranks).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        As :func:`fastbp.load`.

    Example
    -------
    >>> import tempfile, os
    >>> init(); p = os.path.join(tempfile.mkdtemp(), "c.npz")
    >>> save_checkpoint({"epoch": 1}, p); load_checkpoint(p)
    {'epoch': 1}
    """
    if world_size() > 1:
        barrier()  # a save still being renamed into place by rank 0 is finished by now
    return serialization.load(path)
