"""The process group: joining it, who is who, and waiting on MPI without hanging forever.

:func:`init` wraps the MPI world (or, without ``mpiexec``, a world of one). Every wait of
the package goes through :func:`_wait`, which polls its MPI requests with the group's
deadline and watches a control communicator for fault notices: a rank that raises tells
the others before aborting the job (:func:`_excepthook`), and a wait that passes the
deadline asks every rank whether it is alive, then raises naming those that are not.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

from ..core.observer import observer

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
        _between_polls(g, polls, start, deadline, what)
    g.waiting_for = ""


_SPIN_SECONDS = 0.05


def _between_polls(g: _Group, polls: int, start: float, deadline: float, what: str) -> None:
    """What a loop polling MPI requests does after its ``polls``-th unfinished test.

    MPI moves a large non-blocking collective on one chunk per call: poll without pause,
    as a blocking MPI_Wait does; every 256th time look at fault notices and the clock,
    and after a while (a peer is late) give the core back between polls.
    """
    if polls % 256:
        return
    _check_control(g)
    now = time.monotonic()
    if now > deadline:
        _timed_out(g, what)
    if now - start > _SPIN_SECONDS:
        time.sleep(0.0005)


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
