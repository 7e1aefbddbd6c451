"""Debug mode under MPI: waiting for a rank that has returned from ``func`` raises.

MPI's blocking receives cannot tell that the awaited rank will never send.
In debug mode every rank, on returning from ``func`` in ``run``, sends each
other rank a *finished* notice (the run's number) on the debug
communicator, and receives never block inside MPI: they probe for the
message and for notices in turn, pausing a little longer each time (up to
:data:`MAX_PAUSE`), so a rank waiting on one that has finished raises
:class:`~parallelizer.DeadlockError` instead of waiting forever. The debug
signature exchange goes the same way, so a rank that calls one collective
more than another gets a :class:`~parallelizer.CollectiveMismatchError`.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import DeadlockError
from .runtime import load as _mpi

FINISHED_TAG = 1
SIGNATURE_TAG = 2
MAX_PAUSE = 0.001
"""Longest pause between two probes of a waiting receive (seconds)."""


class FinishNotices:
    """The finished notices of one communicator's ranks, and receives that heed them."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.run = 0
        self._finished: dict[int, int] = {}  # rank -> last run it returned from
        self._sends: list[Any] = []

    def begin_run(self) -> None:
        """A run starts on this rank."""
        self.run += 1

    def end_run(self) -> None:
        """This rank returned from ``func``: tell every other rank."""
        MPI = _mpi()
        MPI.Request.Waitall(self._sends)
        self._sends = [self.comm.isend(self.run, rank, FINISHED_TAG) for rank in range(self.size) if rank != self.rank]

    def finished(self, rank: int) -> bool:
        """True once ``rank`` has returned from ``func`` in this run (as far as notices tell)."""
        return self._finished.get(rank) == self.run

    def _take_notices(self) -> None:
        MPI = _mpi()
        status = MPI.Status()
        while self.comm.Iprobe(MPI.ANY_SOURCE, FINISHED_TAG, status):
            self._finished[status.Get_source()] = max(
                self._finished.get(status.Get_source(), 0), self.comm.recv(source=status.Get_source(), tag=FINISHED_TAG)
            )

    def probe(self, comm: Any, source: int, tag: int, what: str, matched: bool = True) -> tuple[Any, Any]:
        """Waits for a message like ``comm.Mprobe`` (or ``comm.Probe``); ``source`` may be ``ANY_SOURCE``.

        Returns:
            The matched message (``None`` when not ``matched``) and its status.

        Raises:
            DeadlockError: Every rank it could come from has returned from ``func``.
        """
        MPI = _mpi()
        status = MPI.Status()
        others = [rank for rank in range(self.size) if rank != self.rank]
        senders = others if source == MPI.ANY_SOURCE else [source]

        def look() -> Any:
            if matched:
                return comm.Improbe(source, tag, status)
            return True if comm.Iprobe(source, tag, status) else None

        pause = 1e-6
        while True:
            message = look()
            if message is not None:
                return (message if matched else None), status
            self._take_notices()
            if all(self.finished(rank) for rank in senders):
                message = look()  # sent just before the notice
                if message is not None:
                    return (message if matched else None), status
                ranks = ", ".join(map(str, senders))
                raise DeadlockError(
                    f"rank {self.rank} waits in {what} for rank(s) {ranks}, which already returned from func "
                    "without sending what it waits for (do all processes call the same collectives in the same order?)"
                )
            time.sleep(pause)
            pause = min(2 * pause, MAX_PAUSE)

    def exchange(self, mine: Any, absent: Any) -> list[Any]:
        """Every rank's signature, in rank order; ``absent`` stands for a rank that has returned.

        Rank 0 collects them and sends the list back.
        """
        if self.size == 1:
            return [mine]
        if self.rank != 0:
            self.comm.send(mine, 0, SIGNATURE_TAG)
            self.probe(self.comm, 0, SIGNATURE_TAG, "the debug-mode check of a collective", matched=False)
            signatures: list[Any] = self.comm.recv(source=0, tag=SIGNATURE_TAG)
            return signatures
        collected = [mine]
        for rank in range(1, self.size):
            try:
                self.probe(self.comm, rank, SIGNATURE_TAG, "the debug-mode check", matched=False)
            except DeadlockError:
                collected.append(absent)
                continue
            collected.append(self.comm.recv(source=rank, tag=SIGNATURE_TAG))
        for rank, signature in enumerate(collected):
            if rank and signature is not absent:
                self.comm.send(collected, rank, SIGNATURE_TAG)
        return collected
