"""The group protocol: runs (epochs), who finished, who failed, who died.

Main and the workers keep different state, so each has its own class; both
answer the one question every wait asks, :meth:`Protocol.check`: *can what
I wait for still come?* When it cannot, ``check`` raises what ends the wait:

* on main: a worker's ``ERROR`` of this run (as :class:`RemoteError`), a
  dead worker (:class:`WorkerTerminatedError`);
* on a worker: main's ``ABORT`` of this run, or a dead peer it waits for
  (both unwind ``func`` with :class:`RunAborted`);
* on both: every process waited for has already returned from ``func``
  (:class:`DeadlockError`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import deque
from collections.abc import Callable, Collection
from typing import Any

from .._core import pickling, remote
from ..errors import DeadlockError, RemoteError, WorkerTerminatedError
from . import wire
from .channel import Incoming

EXIT_ORPHANED = 70
"""Exit status of a worker whose main process went away."""


class RunAborted(BaseException):
    """Unwinds a worker's ``func`` when main gives up the run (internal).

    A BaseException, so ``except Exception`` in user code does not stop it.
    """


def exit_now(status: int) -> None:
    """Ends this worker process at once, after flushing its output."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def remote_error(rank: int, body: Any) -> RemoteError:
    """Rebuilds the RemoteError a worker reported (the original as ``__cause__``)."""
    return remote.rebuild(rank, pickling.loads(body, f"the error report of rank {rank}"))


class Protocol:
    """What both sides know of the group: the run, who finished it, who died."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.epoch = 0
        self.finished: dict[int, int] = {}  # rank -> last epoch it returned from func
        self.dead: dict[int, int | None] = {}  # rank -> exit status (None: not known yet)

    def begin(self, epoch: int) -> None:
        """Starts run ``epoch``."""
        self.epoch = epoch

    def on_command(self, inc: Incoming) -> None:
        """A command from main (RUN, SETUP) has arrived."""
        raise RuntimeError(f"rank {self.rank} received a command from rank {inc.source}: only workers take commands")

    def on_control(self, source: int, frame: wire.Frame) -> None:
        """Handles a frame of the group protocol."""
        if frame.kind == wire.Kind.FINISHED:
            self.finished[source] = frame.epoch
        else:
            raise RuntimeError(f"rank {self.rank} received an unexpected frame {frame!r} from rank {source}")

    def on_eof(self, rank: int) -> None:
        """The socket to ``rank`` closed."""
        self.dead_peer(rank)

    def dead_peer(self, rank: int) -> None:
        """Notes that process ``rank`` is gone."""
        self.dead.setdefault(rank, None)

    def sender_gave_up(self, epoch: int) -> None:
        """A message of run ``epoch`` vanished from its sender's memory (its run was aborted)."""

    def check(self, waiting_on: Collection[int] | None, what: str) -> None:
        """Raises if what this process waits for in ``what`` can never come."""
        if waiting_on and all(self.finished.get(rank) == self.epoch for rank in waiting_on):
            ranks = ", ".join(str(rank) for rank in sorted(waiting_on))
            raise DeadlockError(
                f"rank {self.rank} waits in {what} for rank(s) {ranks}, which already returned from func "
                "without sending what it waits for (do all processes call the same collectives in the same order?)"
            )


class MainProtocol(Protocol):
    """Main's side: the workers' errors of this run, their deaths, their prints."""

    def __init__(self) -> None:
        super().__init__(0)
        self.errors: list[tuple[int, Any]] = []  # (rank, error report) of this run
        self.excused: set[int] = set()  # dead workers a session goes on without (the group is broken)
        self.exit_status: Callable[[int], int | None] = lambda rank: None
        self.on_print: Callable[[str], None] = _print_to_stdout

    def begin(self, epoch: int) -> None:
        super().begin(epoch)
        self.errors.clear()

    def on_control(self, source: int, frame: wire.Frame) -> None:
        if frame.kind == wire.Kind.ERROR:
            if frame.epoch == self.epoch:
                self.errors.append((source, frame.body))
        elif frame.kind == wire.Kind.PRINT:
            self.on_print(bytes(frame.body).decode("utf-8", "replace"))
        else:
            super().on_control(source, frame)

    def status_of(self, rank: int) -> int | None:
        """The exit status of dead worker ``rank`` (asked of the OS once)."""
        status = self.dead.get(rank)
        if status is None:
            status = self.dead[rank] = self.exit_status(rank)
        return status

    def check(self, waiting_on: Collection[int] | None, what: str) -> None:
        if self.errors:
            raise remote_error(*self.errors[0])
        for rank in self.dead:
            if rank not in self.excused:
                raise WorkerTerminatedError(rank, self.status_of(rank), f"while main waited in {what}")
        super().check(waiting_on, what)


class WorkerProtocol(Protocol):
    """A worker's side: main's commands (SETUP, RUN, STOP) and aborts."""

    def __init__(self, rank: int) -> None:
        super().__init__(rank)
        self.abort_epoch = -1  # main gave up this epoch
        self.commands: deque[Incoming | wire.Frame] = deque()  # RUN / SETUP data, STOP frames

    def on_command(self, inc: Incoming) -> None:
        self.commands.append(inc)

    def on_control(self, source: int, frame: wire.Frame) -> None:
        if frame.kind == wire.Kind.ABORT:
            self.abort_epoch = max(self.abort_epoch, frame.epoch)
        elif frame.kind == wire.Kind.STOP:
            self.commands.append(frame)
        else:
            super().on_control(source, frame)

    def on_eof(self, rank: int) -> None:
        if rank == 0:  # main is gone, or closed us after STOP: nothing left to do
            stopping = any(isinstance(command, wire.Frame) for command in self.commands)
            exit_now(0 if stopping else EXIT_ORPHANED)
        super().on_eof(rank)

    def sender_gave_up(self, epoch: int) -> None:
        if epoch == self.epoch:
            self.abort_epoch = max(self.abort_epoch, epoch)

    def next_command_ready(self) -> bool:
        """True when main's next command has fully arrived."""
        return bool(self.commands) and (not isinstance(self.commands[0], Incoming) or self.commands[0].ready)

    def check(self, waiting_on: Collection[int] | None, what: str) -> None:
        if self.abort_epoch == self.epoch:
            raise RunAborted
        if waiting_on is not None and any(rank in self.dead for rank in waiting_on):
            raise RunAborted
        super().check(waiting_on, what)


def _print_to_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
