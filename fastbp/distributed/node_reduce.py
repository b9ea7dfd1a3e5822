"""Averaging DDP's gradient buckets through memory shared by the ranks of one machine.

Between processes on one machine, MPI's all-reduce sends every message through a small
shared buffer, a piece at a time, and reduces each piece as it arrives. When all ranks
can map one MPI shared-memory window, the reduction needs no messages at all. Each bucket
is cut into ``N`` shares, one per rank. During backward each rank copies into its slot of
the window only the shares the others reduce (its own share never leaves its gradient);
after a barrier, rank ``r`` adds up share ``r`` from its own gradient and the others'
slots, scales it by ``1/N``, and writes the mean to its gradient and to its slot; after
a second barrier, every rank copies the other shares of the mean out of their owners'
slots. That is ``(N-1)/N`` of a copy in, ``1/N`` of the additions, ``(N-1)/N`` of a copy
out, and two barriers; measured between two pinned ranks here, the put and the average
of 1.53 MiB took 0.06 ms against 0.17 ms for MPICH's ``Allreduce`` (a sum, unscaled).

Every element of the mean is computed once, by the rank that owns its share, adding the
copies in rank order, so all ranks end with the same bits. With two ranks the sum
``a + b`` and the scale by ``0.5`` are what the all-reduce path computes, bit for bit.

One window serves every reduction, with no double buffer: a rank writes its slot's
shares of the others during backward, and they read them only between the two barriers
of the reduction before; it writes its own share of the slot only between the barriers,
and the others copy it out before they reach the next reduction's first barrier.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..kernels.reduce import mean_of_copies

__all__ = ["NodeAllReduce"]

_ALIGN = 64  # bytes: each bucket starts on its own cache line


class NodeAllReduce:
    """The mean over ranks of a fixed list of flat buckets, through a shared window.

    Build it with :meth:`create` (collective over ``comm``), which returns None when the
    ranks are not all on one machine.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        The ranks taking part; all must share memory.
    mpi : module
        ``mpi4py.MPI``.
    layout : list of (int, numpy.dtype)
        Element count and dtype of each bucket, the same on every rank.
    wait : callable
        ``wait(requests, what)`` blocks until the MPI requests complete (with the caller's
        deadline and fault checks).

    Example
    -------
    >>> from mpi4py import MPI  # doctest: +SKIP
    >>> layout = [(3, np.dtype("f4"))]  # one bucket of 3 float32
    >>> reducer = NodeAllReduce.create(MPI.COMM_WORLD, MPI, layout, wait)  # doctest: +SKIP
    >>> grad = np.ones(3, np.float32); reducer.put(0, grad)  # doctest: +SKIP
    >>> reducer.average([grad])  # doctest: +SKIP
    """

    def __init__(self, comm: Any, mpi: Any, layout: list[tuple[int, np.dtype]], wait) -> None:
        self.comm, self._wait = comm, wait
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        offsets, total = [], 0
        for count, dtype in layout:
            offsets.append(total)
            total += -(-count * np.dtype(dtype).itemsize // _ALIGN) * _ALIGN
        total = max(total, _ALIGN)
        self.window = mpi.Win.Allocate_shared(total, 1, comm=comm)
        # A passive epoch for the window's whole life: Sync() then orders this rank's
        # stores before the barrier that lets the peers read them.
        self.window.Lock_all(mpi.MODE_NOCHECK)
        # slots[rank][bucket]: a flat view of each rank's slot of each bucket
        self.slots = []
        for k in range(self.size):
            buffer, _ = self.window.Shared_query(k)
            memory = np.ndarray(buffer=buffer, dtype=np.uint8, shape=(total,))
            self.slots.append(
                [
                    memory[off:].view(np.dtype(dtype))[:count]
                    for off, (count, dtype) in zip(offsets, layout, strict=True)
                ]
            )
        self.shares = []  # per bucket, the (lo, hi) element range each rank reduces
        for count, _ in layout:
            step = -(-count // self.size)
            self.shares.append(
                [(min(count, k * step), min(count, (k + 1) * step)) for k in range(self.size)]
            )
        self.scales = [np.dtype(dtype).type(1.0 / self.size) for _, dtype in layout]

    @classmethod
    def create(
        cls, comm: Any, mpi: Any, layout: list[tuple[int, np.dtype]], wait: Callable
    ) -> NodeAllReduce | None:
        """A reducer over ``comm`` if all its ranks share one machine's memory, else None.

        Collective: every rank of ``comm`` must call it, with the same ``layout``.
        """
        node = comm.Split_type(mpi.COMM_TYPE_SHARED)
        if node.Get_size() != comm.Get_size():
            node.Free()
            return None
        return cls(node, mpi, layout, wait)

    def put(self, index: int, values: np.ndarray) -> None:
        """Copy the shares of this rank's flat ``values`` of bucket ``index`` that the
        other ranks reduce into its slot (its own share stays in ``values``)."""
        slot = self.slots[self.rank][index]
        for k, (lo, hi) in enumerate(self.shares[index]):
            if k != self.rank and lo < hi:
                slot[lo:hi] = values[lo:hi]

    def average(self, buffers: list[np.ndarray]) -> None:
        """Overwrite each flat buffer with the mean over ranks of what :meth:`put` copied.

        ``buffers[i]`` is bucket ``i``'s local flat array, holding the values put (the
        array put, or an equal one). Collective: every rank calls it once per reduction,
        after putting every bucket.
        """
        slots, r = self.slots, self.rank
        self._barrier("the shared-memory all-reduce (copying in)")
        for i, buffer in enumerate(buffers):
            lo, hi = self.shares[i][r]
            if lo == hi:
                continue
            # summed in rank order, this rank's copy read from its own gradient
            copies = tuple(buffer if k == r else slots[k][i] for k in range(self.size))
            mean_of_copies(copies, lo, hi, self.scales[i], buffer, slots[r][i])
        self._barrier("the shared-memory all-reduce (reducing)")
        for i, buffer in enumerate(buffers):
            for k, (lo, hi) in enumerate(self.shares[i]):
                if k != r and lo < hi:
                    buffer[lo:hi] = slots[k][i][lo:hi]

    def _barrier(self, what: str) -> None:
        self.window.Sync()
        self._wait([self.comm.Ibarrier()], what)
        self.window.Sync()
