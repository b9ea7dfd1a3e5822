"""Collectives on arrays and tensors, through mpi4py's buffer interface (no pickling).

Each one checks its arguments on every rank, starts the non-blocking MPI call and waits
for it with the group's deadline (:func:`fastbp.distributed.group._wait`); ``all_reduce``
can also return a :class:`Work` to wait on later. A tensor written in place has its
version bumped, so that a saved-array guard sees the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.tensor import Tensor
from .group import _get, _wait, world_size


class ReduceOp:
    """Reduction operations, as ``torch.distributed.ReduceOp`` (plain strings also work)."""

    SUM = "sum"
    AVG = "mean"
    MAX = "max"
    MIN = "min"


_MPI_OPS = {"sum": "SUM", "mean": "SUM", "max": "MAX", "min": "MIN"}


def _op(mpi: Any, op: str, dtype: np.dtype, who: str) -> Any:
    """The MPI reduction for ``op`` (None without MPI), once ``op`` and ``dtype`` are checked."""
    name = _MPI_OPS.get(str(op).lower())
    if name is None:
        raise ValueError(f"{who}: op must be one of sum, mean, max, min; got {op!r}")
    if op == "mean" and not np.issubdtype(dtype, np.floating):
        raise TypeError(f"{who}: op='mean' needs a floating array, got dtype {dtype}")
    return None if mpi is None else getattr(mpi, name)


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
        return self._requests is None or _get().MPI.Request.Testall(self._requests)

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
    >>> import fastbp.distributed as dist
    >>> dist.init(); x = np.ones(3, np.float32); dist.all_reduce(x, "mean"); x
    array([1., 1., 1.], dtype=float32)
    """
    g = _get()
    array = _buffer(tensor, "all_reduce")
    mpi_op = _op(g.MPI, op, array.dtype, "all_reduce")
    if g.size == 1:
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
    >>> import fastbp.distributed as dist
    >>> dist.init(); x = np.arange(3.0); dist.broadcast(x, src=0); x
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
    >>> import fastbp.distributed as dist
    >>> dist.init(); out = np.zeros((dist.world_size(), 2))
    >>> dist.all_gather_into_tensor(out, np.ones(2)); out
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
    >>> import fastbp.distributed as dist
    >>> dist.init(); out = [np.zeros(2) for _ in range(dist.world_size())]
    >>> dist.all_gather(out, np.full(2, 3.0)); out[0]
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
    >>> import fastbp.distributed as dist
    >>> dist.init(); out = np.zeros(2)
    >>> dist.reduce_scatter_tensor(out, np.ones(2 * dist.world_size())); out
    array([1., 1.])
    """
    g = _get()
    out, inp = _buffer(output, "reduce_scatter"), _buffer(input, "reduce_scatter")
    if inp.size != out.size * g.size or out.dtype != inp.dtype:
        raise ValueError(
            f"reduce_scatter: input {inp.dtype}{list(inp.shape)} must have {g.size} x "
            f"{out.size} elements of output's dtype {out.dtype}{list(out.shape)}"
        )
    mpi_op = _op(g.MPI, op, inp.dtype, "reduce_scatter")
    if g.size == 1:
        out.reshape(-1)[...] = inp.reshape(-1)
    else:
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
    >>> import fastbp.distributed as dist
    >>> dist.init(); out = np.zeros(2)
    >>> dist.reduce_scatter(out, [np.full(2, 5.0)] * dist.world_size()); out / dist.world_size()
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
    >>> import fastbp.distributed as dist
    >>> dist.init(); dist.barrier()
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
    >>> import fastbp.distributed as dist
    >>> dist.init(); dist.reduce_metrics({"loss": 0.5}, {"loss": 10})
    {'loss': 0.5}
    """
    keys = sorted(values)
    w = np.array([1.0 if weights is None else float(weights[k]) for k in keys])
    both = np.concatenate([w * np.array([float(values[k]) for k in keys]), w])
    if world_size() > 1:
        all_reduce(both, "sum")
    n = len(keys)
    return {k: float(both[i] / both[n + i]) for i, k in enumerate(keys)}
