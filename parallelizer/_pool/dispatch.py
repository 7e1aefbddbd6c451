"""The dispatcher thread of a session: what it sends, what it receives, how it fails.

:class:`Dispatcher` is the half of :class:`~parallelizer._pool.session.Session`
that runs in the session's own thread and alone touches the transport: it
sends each server its outbox and batches of queued tasks, turns replies into
task outcomes, and handles failures (a dead server, a broken initializer, a
broken transport) so that nothing waits forever.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections import deque
from typing import Any

from .._core.transport import Transport
from ..errors import RemoteError, WorkerTerminatedError
from . import messages as m
from .link import Link, Waker
from .outcomes import settle
from .tasks import Record

MAX_BATCH = 64
"""The most tasks one message takes to a server."""

IN_FLIGHT = 2
"""Batches a server with quick tasks may hold at once (so it never waits for the next), once
the one it holds has shown progress: never a second one behind a batch that has not (a slow
task must not hold quick ones back; see ``Dispatcher._room``). A server reports the first half
of a batch as soon as it has run it, so the next batch arrives while it runs the second."""

QUICK_TASK = 1e-3
"""Tasks quicker than this on average (seconds) travel in batches, two batches in flight per
server. Slower ones go one at a time, to the first free server, as ``submit`` promises; a
session starts that way until it has seen how long its tasks take."""

BATCH_TIME = 2e-3
"""A batch of quick tasks is about this much work (seconds)."""

EXPECT_FOR = 10 * BATCH_TIME
"""How long (seconds) main expects the first report of a batch of quick tasks; see ``Dispatcher._expecting``."""


class Dispatcher:
    """The session state the dispatcher thread works on (set up by ``Session.__init__``)."""

    transport: Transport | None
    link: Link | None
    waker: Waker
    servers: list[int]
    workers: list[int]
    start_message: m.Start
    server_entry: Any
    bytes_sent: int
    broken: str | None
    crash: BaseException | None
    _cv: Any
    _jobs: deque[Any]
    _outbox: dict[int, deque[Any]]
    _running: dict[int, dict[int, Record]]
    _batches: dict[int, int]
    _batch_left: dict[int, int]
    _batch_of: dict[int, int]
    _silent: dict[int, dict[int, float]]
    _requests: dict[int, tuple[int, concurrent.futures.Future[Any]]]
    _dead: set[int]
    _gone: set[int]
    _stopped: set[int]
    _failures: list[tuple[int, dict[str, Any]]]
    _closing: bool
    _task_time: float | None
    _ready: deque[Record]
    numbers: Any

    def _next_unpinned(self) -> Record | None:
        raise NotImplementedError

    # ------------------------------------------------------------------ the dispatcher thread

    def _dispatch(self) -> None:
        link = self.link
        assert link is not None
        try:
            for rank in self.servers:
                link.send(rank, self.start_message)
            while True:
                for rank, message in self._take_work():
                    self.bytes_sent += m.payload_bytes(message)
                    link.send(rank, message)
                got = self._poll()
                if got is not None:
                    self._on_message(*got)
                    continue
                if self._finished():
                    break
                if self._work_waiting():
                    continue
                link.idle(self.waker, expecting=self._expecting())
            if self.transport is not None:
                self.transport._complete_sends()
        except BaseException as exc:  # the transport broke: nothing may wait on it any more
            self._crashed(exc)

    def _poll(self) -> tuple[int, Any] | None:
        assert self.link is not None
        try:
            return self.link.poll()
        except WorkerTerminatedError as exc:
            self._lost(exc.rank, exc)
        except RemoteError as exc:  # a server's process failed outside the session's care
            self._lost(exc.rank, exc)
        return None

    def _finished(self) -> bool:
        with self._cv:
            if not self._closing:
                return False
            if any(job.queue for job in self._jobs):
                return False
            live = [rank for rank in self.servers if rank not in self._dead]
            return all(rank in self._gone and not self._outbox[rank] for rank in live)

    def _work_waiting(self) -> bool:
        with self._cv:
            if self._closing and not any(job.queue for job in self._jobs):
                idle = [r for r in self.servers if r not in self._dead and not self._running[r]]
                if any(rank not in self._stopped for rank in idle):
                    return True
            live = [rank for rank in self.servers if rank not in self._dead]
            if any(self._outbox[rank] for rank in live):
                return True
            quick = self._quick()
            return bool(self._jobs) and any(
                self._batches[rank] < self._room(rank, quick) for rank in self.workers if rank not in self._dead
            )

    def _quick(self) -> bool:
        """Whether this session's tasks have been quick so far (see :data:`QUICK_TASK`)."""
        return self._task_time is not None and self._task_time < QUICK_TASK

    def _expecting(self) -> bool:
        """Whether a server's report is due soon and would let main send it more.

        Quick tasks are queued and a server holds a batch of them, sent in the
        last :data:`EXPECT_FOR` seconds, that has reported nothing yet (a
        batch that takes longer may hold a slow task: main then sleeps as usual).
        """
        if not self._quick() or not self._jobs:
            return False
        recent = time.monotonic() - EXPECT_FOR
        return any(sent > recent for rank in self.workers for sent in self._silent[rank].values())

    def _room(self, rank: int, quick: bool) -> int:
        """How many batches server ``rank`` may hold now.

        Slow tasks go one at a time. Quick ones two batches at a time, except
        behind a batch that has sent nothing back yet: it may hold a slow
        task, and what waits behind it would wait for that task.
        """
        if not quick or self._silent[rank]:
            return 1
        return IN_FLIGHT

    def _take_work(self) -> list[tuple[int, Any]]:
        """What to send now: every rank's outbox, batches for servers with room, and the end.

        A closing session tells each server to stop once no queued task is
        left and that server holds none (``shutdown()`` lets the queue run dry).
        """
        out: list[tuple[int, Any]] = []
        with self._cv:
            if self._closing and not any(job.queue for job in self._jobs):
                for rank in self.servers:
                    if rank not in self._dead and rank not in self._stopped and not self._running[rank]:
                        self._stopped.add(rank)
                        self._outbox[rank].append(m.Stop())
            for rank in self.servers:
                if rank in self._dead:
                    continue
                box = self._outbox[rank]
                while box:
                    item = box.popleft()
                    if isinstance(item, Record):
                        records = [item]
                        while box and isinstance(box[0], Record):
                            records.append(box.popleft())
                        calls = self._assign(rank, records)
                        if calls:
                            out.append((rank, m.Tasks(calls)))
                    else:
                        out.append((rank, item))
            if self.broken is None:
                queued = sum(len(job.queue) for job in self._jobs)
                live = [rank for rank in self.workers if rank not in self._dead]
                quick = self._quick()
                size = 1
                if quick:
                    by_time = int(BATCH_TIME / max(self._task_time or 0.0, 1e-6))
                    size = max(1, min(MAX_BATCH, by_time, queued // (2 * max(1, len(live)))))
                for rank in live:
                    if self._batches[rank] >= self._room(rank, quick):
                        continue
                    records = []
                    while len(records) < size:
                        record = self._next_unpinned()
                        if record is None:
                            break
                        records.append(record)
                    calls = self._assign(rank, records, counted=True)
                    if calls:
                        out.append((rank, m.Tasks(calls)))
        return out

    def _assign(self, rank: int, records: list[Record], counted: bool = False) -> list[m.Call]:
        calls = []
        batch = next(self.numbers)
        for record in records:
            if record.pinned is not None and not record.task.set_running_or_notify_cancel():
                continue
            record.rank = rank
            self._running[rank][record.number] = record
            calls.append(m.Call(record.number, record.payload))
            if counted:
                self._batch_of[record.number] = batch
        if counted and calls:
            self._batches[rank] += 1
            self._batch_left[batch] = len(calls)
            self._silent[rank][batch] = time.monotonic()
        return calls

    def _on_message(self, rank: int, message: Any) -> None:
        kind = type(message)
        if kind is m.Results:
            running, records = self._running[rank], []
            with self._cv:  # once for the whole batch
                for outcome in message.outcomes:
                    records.append(running.pop(outcome.task, None))
                    self._count_done(rank, outcome.task)
            for outcome, record in zip(message.outcomes, records, strict=True):
                took = outcome.completed - outcome.started
                self._task_time = took if self._task_time is None else 0.8 * self._task_time + 0.2 * took
                if record is not None:
                    settle(record.task, outcome, rank, message.host)
        elif kind is m.Done:
            with self._cv:
                _, future = self._requests.pop(message.request, (rank, None))
            if future is not None:
                future.set_result((rank, message.outcome))
        elif kind is m.Failed:
            if message.initializer:
                self._break(message.report)
            else:
                with self._cv:
                    self._failures.append((rank, message.report))
        elif kind is m.Bye:
            with self._cv:
                self._gone.add(rank)
        else:
            raise RuntimeError(f"main received an unknown message {message!r} from rank {rank}")

    def _count_done(self, rank: int, number: int) -> None:
        batch = self._batch_of.pop(number, None)
        if batch is None:
            return
        self._silent[rank].pop(batch, None)
        self._batch_left[batch] -= 1
        if not self._batch_left[batch]:
            del self._batch_left[batch]
            self._batches[rank] -= 1

    # ------------------------------------------------------------------ failures

    def _lost(self, rank: int, error: BaseException) -> None:
        """Server ``rank`` died: its tasks and requests fail, everything else goes on."""
        if self.transport is not None:
            self.transport._excuse(rank)
        with self._cv:
            if rank in self._dead:
                return
            self._dead.add(rank)
            records = list(self._running[rank].values())
            self._running[rank].clear()
            for record in records:
                batch = self._batch_of.pop(record.number, None)
                self._batch_left.pop(batch, None)  # type: ignore[arg-type]
            self._batches[rank] = 0
            self._silent[rank] = {}
            pinned = [item for item in self._outbox[rank] if isinstance(item, Record)]
            self._outbox[rank].clear()
            requests = [future for number, (owner, future) in list(self._requests.items()) if owner == rank]
            self._requests = {n: (o, f) for n, (o, f) in self._requests.items() if o != rank}
        self._replace(rank)  # first: a client woken by the failures below sees the group whole again
        dead = error if isinstance(error, WorkerTerminatedError) else WorkerTerminatedError(rank, None, str(error))
        for record in records + pinned:
            if not record.task.done():
                record.task.set_exception(dead)
        for future in requests:
            future.set_exception(dead)

    def _replace(self, rank: int) -> None:
        """Where the transport can, a new process takes the dead one's place (objects it held are gone)."""
        if self.transport is None or self.server_entry is None or self._closing:
            return
        if not self.transport._replace(rank, self.server_entry):
            return
        with self._cv:
            self._dead.discard(rank)
            self._gone.discard(rank)
            self._stopped.discard(rank)
            self._outbox[rank] = deque([self.start_message])

    def _break(self, report: dict[str, Any] | None) -> None:
        """An executor's initializer failed: every queued and later task fails."""
        from concurrent.futures import BrokenExecutor

        message = report["message"] if report else "unknown error"
        text = report["traceback"] if report else message
        logging.getLogger("concurrent.futures").critical("Exception in initializer:\n%s", text.rstrip())
        with self._cv:
            self.broken = f"an initializer failed: {message}"
            error = BrokenExecutor(f"A process in the pool was broken: {self.broken}")
            doomed = list(self._ready)
            self._ready.clear()
            while self._jobs:
                doomed.extend(self._jobs.popleft().queue)
        for record in doomed:
            if not record.task.done():
                record.task.set_exception(error)

    def _crashed(self, exc: BaseException) -> None:
        with self._cv:
            self.crash = exc
            waiting = [r for running in self._running.values() for r in running.values()]
            waiting += [r for job in self._jobs for r in job.queue]
            waiting += [r for box in self._outbox.values() for r in box if isinstance(r, Record)]
            futures = [future for _, future in self._requests.values()]
            self._jobs.clear()
            self._requests.clear()
        for record in waiting:
            if not record.task.done():
                record.task.set_exception(exc)
        for future in futures:
            if not future.done():
                future.set_exception(exc)

    def _cancel_queued(self) -> None:
        for job in self._jobs:
            for record in job.queue:
                record.task.cancel()
        self._jobs.clear()
