"""Checkpoints: rank 0 writes (atomically, as :func:`fastbp.save`), every rank can read."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import serialization
from .collectives import all_reduce, barrier
from .group import DistributedError, rank, world_size


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
    >>> import fastbp.distributed as dist
    >>> dist.init(); p = os.path.join(tempfile.mkdtemp(), "c.npz")
    >>> dist.save_checkpoint({"step": 3}, p); dist.load_checkpoint(p)["step"]
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
    >>> import fastbp.distributed as dist
    >>> dist.init(); p = os.path.join(tempfile.mkdtemp(), "c.npz")
    >>> dist.save_checkpoint({"epoch": 1}, p); dist.load_checkpoint(p)
    {'epoch': 1}
    """
    if world_size() > 1:
        barrier()  # a save still being renamed into place by rank 0 is finished by now
    return serialization.load(path)
