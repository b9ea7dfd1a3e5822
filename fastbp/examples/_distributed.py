"""``--distributed`` for the MNIST examples: one object holding what differs per rank.

:class:`Ranks` is built from the ``--distributed`` flag. Without it, it is a world of one
and every method does what a single-process run does, so an example's training loop has
no ``if distributed`` branches::

    ranks = Ranks(args.distributed, "fastbp.examples.mnist_cnn")
    per_rank = ranks.per_rank_batch(global_batch)   # exits if not a multiple of N
    train_model = ranks.wrap(model)                 # DistributedDataParallel under N > 1
    ranks.seed_epoch(seed, epoch)                   # each rank its own dropout masks
    loader = ranks.epoch_loader(x, y, global_batch, seed, epoch)
    loss = ranks.epoch_mean(train_epoch(train_model, optimizer, loader), loader)
    accuracy = ranks.evaluate(evaluate, model, x_test, y_test)
    if ranks.is_main: print(...); save(...)
    ranks.wait_for_main()

The shards come from :class:`fastbp.distributed.DistributedSampler` through
``DataLoader(..., sampler=...)``: its permutation for epoch ``e`` is the one the
single-process loader draws with seed ``seed + e``, so step ``k``'s global batch over all
ranks is the single-process batch ``k``, and N ranks at ``B / N`` train as one at ``B``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

import fastbp as fb
from fastbp.data import DataLoader
from fastbp.nn import Module

__all__ = ["Ranks"]


class Ranks:
    """The process group of a ``--distributed`` run, or a world of one without the flag.

    Parameters
    ----------
    distributed : bool
        Join the MPI process group (``mpiexec -n N python -m <prog> --distributed``);
        without ``mpiexec`` this prints a notice and runs as a world of one.
    prog : str
        The example's module, for that notice.

    Example
    -------
    >>> ranks = Ranks(False, "fastbp.examples.mnist_mlp")
    >>> ranks.world, ranks.is_main, ranks.per_rank_batch(128)
    (1, True, 128)
    """

    def __init__(self, distributed: bool, prog: str) -> None:
        self.dist = None
        if distributed:
            from fastbp import distributed as dist  # the top layer: only examples import it

            if not dist.running_under_mpi():
                print(
                    f"--distributed: not started by mpiexec; running as a world of size 1 "
                    f"(use: mpiexec -n 2 python -m {prog} --distributed)",
                    file=sys.stderr,
                    flush=True,
                )
            dist.init()
            self.dist = dist
        self.world = 1 if self.dist is None else self.dist.world_size()
        self.rank = 0 if self.dist is None else self.dist.rank()
        self.is_main = self.rank == 0  # only rank 0 prints, draws progress, plots and saves

    def per_rank_batch(self, global_batch: int) -> int:
        """Samples per rank per step; exits when ``global_batch`` does not split evenly.

        Parameters
        ----------
        global_batch : int
            ``--batch-size``: the batch of one step over all ranks.

        Returns
        -------
        int
        """
        per_rank, uneven = divmod(global_batch, self.world)
        if uneven or not per_rank:
            raise SystemExit(
                f"error: --batch-size {global_batch} must be a multiple of the {self.world} "
                "ranks (it is the global batch, split across them)"
            )
        return per_rank

    def wrap(self, model: Module) -> Module:
        """``model`` for training: wrapped in DistributedDataParallel when distributed."""
        return model if self.dist is None else self.dist.DistributedDataParallel(model)

    def epoch_loader(
        self, x: np.ndarray, y: np.ndarray, global_batch: int, seed: int, epoch: int
    ) -> DataLoader:
        """This rank's loader for epoch ``epoch`` (from 0), shuffled with ``seed + epoch``.

        Parameters
        ----------
        x, y : np.ndarray
            The whole training set (every rank holds it; each reads its shard).
        global_batch : int
            Samples per step over all ranks.
        seed : int
            Run seed.
        epoch : int
            Epoch index, from 0.

        Returns
        -------
        DataLoader
            Over all of ``(x, y)`` in one process; over this rank's
            :class:`~fastbp.distributed.DistributedSampler` shard otherwise.

        Example
        -------
        >>> ranks = Ranks(False, "example")
        >>> [len(yb) for _, yb in ranks.epoch_loader(np.zeros(5), np.arange(5), 2, 0, 0)]
        [2, 2, 1]
        """
        if self.dist is None:
            return DataLoader(x, y, global_batch, shuffle=True, seed=seed + epoch)
        sampler = self.dist.DistributedSampler(len(x), shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return DataLoader(x, y, self.per_rank_batch(global_batch), sampler=sampler)

    def seed_epoch(self, seed: int, epoch: int) -> None:
        """Give each rank its own random stream for epoch ``epoch`` (dropout masks).

        With one generator state on every rank, rank ``r``'s sample ``i`` of a batch
        would get the same dropout mask as every other rank's sample ``i``. Seeded by
        ``(seed, epoch, rank)``, the masks differ across ranks and a run resumed at an
        epoch draws what the uninterrupted run drew. One process: nothing changes (its
        stream continues, and a checkpoint stores it).

        Parameters
        ----------
        seed : int
            Run seed.
        epoch : int
            Epoch index, from 0.
        """
        if self.dist is not None:
            state = np.random.SeedSequence([seed, epoch, self.rank]).generate_state(2)
            fb.manual_seed(int(state[0]) << 32 | int(state[1]))

    def epoch_mean(self, value: float, loader: DataLoader) -> float:
        """The mean over all ranks of ``value``, this rank's mean over ``loader``'s samples.

        Parameters
        ----------
        value : float
            E.g. the mean training loss of this rank's epoch.
        loader : DataLoader
            The loader of that epoch (from :meth:`epoch_loader`): each rank's value is
            weighted by the number of samples of its shard.

        Returns
        -------
        float
            The same on every rank.
        """
        if self.dist is None:
            return value
        return self.dist.reduce_metrics({"v": value}, {"v": len(loader.sampler)})["v"]

    def evaluate(
        self,
        evaluate: Callable[..., float],
        model: Module,
        x: np.ndarray,
        y: np.ndarray,
        *args: Any,
    ) -> float:
        """Accuracy on ``(x, y)``: each rank scores a slice, the counts are summed.

        Every rank holds the same weights, so the slices together give exactly the
        accuracy one process computes on all of ``x`` in ``1 / world`` of the time.

        Parameters
        ----------
        evaluate : callable
            ``evaluate(model, x, y, *args)`` returning the accuracy on ``(x, y)``.
        model : nn.Module
        x, y : np.ndarray
        *args
            Passed on to ``evaluate``.

        Returns
        -------
        float
            The same on every rank.
        """
        if self.dist is None:
            return evaluate(model, x, y, *args)
        lo, hi = (len(x) * self.rank) // self.world, (len(x) * (self.rank + 1)) // self.world
        accuracy = evaluate(model, x[lo:hi], y[lo:hi], *args) if hi > lo else 0.0
        counts = np.array([round(accuracy * (hi - lo)), hi - lo], np.int64)
        self.dist.all_reduce(counts, "sum")
        return float(counts[0] / counts[1]) if counts[1] else float("nan")

    def wait_for_main(self) -> None:
        """Every rank waits here until rank 0 is done (with a checkpoint, say)."""
        if self.dist is not None and self.world > 1:
            self.dist.barrier()
