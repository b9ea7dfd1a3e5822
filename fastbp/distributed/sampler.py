"""Sharded data: each rank's disjoint part of a dataset, reshuffled every epoch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .group import rank as _current_rank  # DistributedSampler has an argument called rank
from .group import world_size


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
