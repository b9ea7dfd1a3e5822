"""Averaging DDP's gradient buckets through memory shared by the ranks of one machine.

Between processes on one machine, MPI's all-reduce sends every message through a small
shared buffer, a piece at a time, and reduces each piece as it arrives. When all ranks
can map one MPI shared-memory window, the reduction needs no messages at all: each rank
copies its buckets into its own slot of the window; after a barrier, rank ``r`` adds up
the ``r``-th share of every bucket from all the slots, scales it by ``1/N`` and writes the
mean back to its slot; after a second barrier, every rank copies the other shares of the
mean out of their owners' slots. That is one copy in, ``1/N`` of the additions, one copy
out, and two barriers; measured between two pinned ranks here, 1.5 MiB took 0.10 ms
against 0.23 ms for MPICH's ``Allreduce``.

Every element of the mean is computed once, by the rank that owns its share, so all
ranks end with the same bits. With two ranks the sum ``a + b`` and the scale by ``0.5``
are what the all-reduce path computes, bit for bit.

Each rank's slot is double-buffered: backward ``k`` uses half ``k % 2``. A rank can then
start writing the next backward's gradients while a slower peer still copies the last
mean out of the other half; the first barrier of the next reduction orders the two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .kernels.reduce import mean_of_copies

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
        half = max(total, _ALIGN)
        self.window = mpi.Win.Allocate_shared(2 * half, 1, comm=comm)
        # A passive epoch for the window's whole life: Sync() then orders this rank's
        # stores before the barrier that lets the peers read them.
        self.window.Lock_all(mpi.MODE_NOCHECK)
        memory = []
        for k in range(self.size):
            buffer, _ = self.window.Shared_query(k)
            memory.append(np.ndarray(buffer=buffer, dtype=np.uint8, shape=(2 * half,)))
        # slots[phase][rank][bucket]: flat views of each rank's copy of each bucket
        self.slots = [
            [
                [
                    memory[k][phase * half + off :].view(np.dtype(dtype))[:count]
                    for off, (count, dtype) in zip(offsets, layout, strict=True)
                ]
                for k in range(self.size)
            ]
            for phase in range(2)
        ]
        self.shares = []  # per bucket, the (lo, hi) element range each rank reduces
        for count, _ in layout:
            step = -(-count // self.size)
            self.shares.append(
                [(min(count, k * step), min(count, (k + 1) * step)) for k in range(self.size)]
            )
        self.scales = [np.dtype(dtype).type(1.0 / self.size) for _, dtype in layout]
        self.phase = 0

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
        """Copy this rank's flat ``values`` of bucket ``index`` into its slot."""
        self.slots[self.phase][self.rank][index][...] = values

    def average(self, buffers: list[np.ndarray]) -> None:
        """Overwrite each flat buffer with the mean over ranks of what :meth:`put` copied.

        ``buffers[i]`` is bucket ``i``'s local flat array (it may be the array that was
        put). Collective: every rank calls it once per reduction, after putting every bucket.
        """
        slots, r = self.slots[self.phase], self.rank
        self._barrier("the shared-memory all-reduce (copying in)")
        for i, buffer in enumerate(buffers):
            lo, hi = self.shares[i][r]
            if lo == hi:
                continue
            copies = tuple(slots[k][i] for k in range(self.size))  # summed in rank order
            mean_of_copies(copies, lo, hi, self.scales[i], buffer, slots[r][i])
        self._barrier("the shared-memory all-reduce (reducing)")
        for i, buffer in enumerate(buffers):
            for k, (lo, hi) in enumerate(self.shares[i]):
                if k != r and lo < hi:
                    buffer[lo:hi] = slots[k][i][lo:hi]
        self.phase ^= 1

    def _barrier(self, what: str) -> None:
        self.window.Sync()
        self._wait([self.comm.Ibarrier()], what)
        self.window.Sync()
