"""Main's side of a client/server session: a dispatcher thread hands out tasks.

::

    client thread(s)                dispatcher thread (owns the transport)        servers
    ----------------                --------------------------------------        -------
    submit(f, x) -> Task  --queue-> Tasks([Call, ...]) ---------------------->  run them
                                    (at most two batches in flight each;
                                     batches grow with the queue)
                                    <----------------------------------------  Results
    Task.result()   <-- set_result  (outcomes opened here: one that does not
                                     unpickle fails its own task)
    push/pull/barrier --outbox-->   Keep/Pull/Deliver to one rank ---------->  Done

The client never touches the transport while a session runs: it queues
work and waits on futures, and may run queued tasks of a blocking call
itself (main works too). Every failure has a place to go: a task's error
fails that task, a dead server fails the tasks it held (the others go on),
a custom server's error waits for the client's next call, and a broken
transport fails everything still waiting. Nothing waits forever.

Without servers (the serial backend, a group of one) a thread of main runs
the tasks one at a time, so ``submit`` returns at once there too.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .._core import checks, remote
from .._core.codec import Sealed
from .._core.transport import Transport
from ..errors import RemoteError, WorkerTerminatedError
from . import messages as m
from .link import Link, Waker
from .objects import Store, sealing
from .outcomes import run_on_main, settle
from .tasks import Record, Task

MAX_BATCH = 64
"""The most tasks one message takes to a server."""

IN_FLIGHT = 2
"""Batches a server may hold at once (so it never waits for the next)."""


class Job:
    """A queue of unassigned tasks (all submits share one; a blocking map has its own)."""

    __slots__ = ("queue",)

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self.queue: deque[Record] = deque(records)


class Session:
    """Main's side of one session.

    Args:
        transport: The group's transport, or ``None`` without servers.
        servers: The ranks that serve (all but main).
        max_workers: At most this many servers run unpinned tasks.
        start: The :class:`~parallelizer._pool.messages.Start` every server gets
            (its ``session`` is filled in here).
    """

    def __init__(
        self, transport: Transport | None, servers: list[int], max_workers: int | None, start: m.Start
    ) -> None:
        self.id = start.session = uuid.uuid4().hex
        self.start_message = start
        self.store = Store(self.id)
        self.transport = transport
        self.servers = list(servers)
        self.workers = self.servers[:max_workers] if max_workers is not None else list(self.servers)
        self.link = Link(transport) if transport is not None and self.servers else None
        self.waker = Waker()
        self.numbers = itertools.count(1)
        self.submits = Job()
        self._cv = threading.Condition()
        self._jobs: deque[Job] = deque()
        self._outbox: dict[int, deque[Any]] = {rank: deque() for rank in self.servers}
        self._running: dict[int, dict[int, Record]] = {rank: {} for rank in self.servers}
        self._batches: dict[int, int] = dict.fromkeys(self.servers, 0)
        self._batch_left: dict[int, int] = {}  # batch number -> tasks still out
        self._batch_of: dict[int, int] = {}  # task number -> batch number
        self._requests: dict[int, tuple[int, concurrent.futures.Future[Any]]] = {}
        self._dead: set[int] = set()
        self._gone: set[int] = set()  # said Bye
        self._failures: list[tuple[int, dict[str, Any]]] = []  # custom servers' errors, not yet raised
        self.broken: str | None = None  # an executor's initializer failed
        self._closing = False
        self.crash: BaseException | None = None
        self.bytes_sent = 0
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life

    def begin(self, initializer: Callable[[], None] | None = None, owner: Any = None) -> None:
        """Opens main's store and starts the dispatcher (or, without servers, a local runner).

        Args:
            initializer: Runs before the first task, where main runs tasks itself.
            owner: The parallelizer whose transport the dispatcher uses: its
                one-caller lock is held by the dispatcher thread meanwhile, so
                calls on it from any other thread are refused.
        """
        self.store.__enter__()
        self._initializer = initializer
        started = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            lock = getattr(owner, "_caller_lock", None)
            if lock is not None:
                if not lock.acquire(blocking=False):
                    failure.append(
                        RuntimeError(f"a session cannot start while another thread is inside {owner._caller}")
                    )
                    started.set()
                    return
                owner._caller = "a client/server session"
            started.set()
            try:
                self._dispatch() if self.link is not None else self._run_locally()
            finally:
                if lock is not None:
                    owner._caller = None
                    lock.release()

        self._thread = threading.Thread(target=main, name="parallelizer-session", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self.store.__exit__()
            raise failure[0]

    def end(self, cancel: bool = True) -> None:
        """Ends the session: queued tasks are cancelled (``cancel``), servers leave, the thread ends."""
        with self._cv:
            self._closing = True
            if cancel:
                self._cancel_queued()
            for rank in self.servers:
                if rank not in self._dead:
                    self._outbox[rank].append(m.Stop())
            self._cv.notify_all()
        self.waker.wake()
        if self._thread is not None:
            self._thread.join()
        self.store.__exit__()
        self.waker.close()

    def unseen_failure(self) -> tuple[int, dict[str, Any]] | None:
        """The earliest custom server error the client has not been told of (now it has), if any."""
        with self._cv:
            return self._failures.pop(0) if self._failures else None

    def unseen_failures(self) -> list[tuple[int, dict[str, Any]]]:
        """Custom servers' errors the client has not been told of (and forgets them)."""
        with self._cv:
            failures, self._failures = self._failures, []
        return failures

    # ------------------------------------------------------------------ what the client asks

    def seal(self, call: tuple[Any, ...], what: str) -> tuple[Sealed, bool]:
        """Seals a call ``(func, args, kwargs)`` in this session; also says whether it names remote objects."""
        with sealing(self.id) as used:
            payload = Sealed.of(call, what)
        return payload, bool(used)

    def record(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], pinned: int | None, job: Any
    ) -> Record:
        """A task for ``func(*args, **kwargs)``, sealed (pinned to a rank, or in ``job``), not yet queued."""
        checks.check_callable(func, "func")
        payload, uses_handles = self.seal((func, args, kwargs), "func and its arguments")
        local = self.local_call(payload, uses_handles, func, args, kwargs)
        return Record(next(self.numbers), payload, local, pinned, Task(), job)

    def local_call(
        self, payload: Sealed, uses_handles: bool, func: Callable[..., Any], args: Any, kwargs: Any
    ) -> Callable[[], Any]:
        """How main runs a call itself: directly, or through its payload when it names remote objects."""
        if not uses_handles:
            return lambda: func(*args, **kwargs)

        def through_payload() -> Any:
            func_, args_, kwargs_ = payload.open("the call")
            return func_(*args_, **kwargs_)

        return through_payload

    def submit(self, record: Record) -> None:
        """Queues a task: pinned to its rank, or in its job (the shared one by default)."""
        with self._cv:
            if self.crash is not None:
                record.task.set_exception(self.crash)
                return
            if record.pinned is not None:
                if record.pinned in self._dead:
                    record.task.set_exception(WorkerTerminatedError(record.pinned, None, "before its task was sent"))
                    return
                self._outbox[record.pinned].append(record)
            else:
                job = record.job if isinstance(record.job, Job) else self.submits
                job.queue.append(record)
                if job not in self._jobs:
                    self._jobs.append(job)
            self._cv.notify_all()
        self.waker.wake()

    def add_job(self, job: Job) -> None:
        """Queues a job's tasks (a blocking map's chunks), after those queued before."""
        with self._cv:
            self._jobs.append(job)
            self._cv.notify_all()
        self.waker.wake()

    def steal(self, job: Job) -> Record | None:
        """Takes the next unassigned task of ``job`` for main to run itself, or ``None``."""
        with self._cv:
            while job.queue:
                record = job.queue.popleft()
                if record.task.set_running_or_notify_cancel():
                    return record
        return None

    def request(self, rank: int, message: Callable[[int], Any]) -> concurrent.futures.Future[Any]:
        """Sends ``message(request_number)`` to ``rank``; the future gets the reply's outcome."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._cv:
            if rank in self._dead or self.crash is not None:
                future.set_exception(self.crash or WorkerTerminatedError(rank, None, "before the request was sent"))
                return future
            number = next(self.numbers)
            self._requests[number] = (rank, future)
            self._outbox[rank].append(message(number))
            self._cv.notify_all()
        self.waker.wake()
        return future

    def tell(self, rank: int, message: Any) -> None:
        """Sends ``message`` to ``rank``; nothing comes back."""
        with self._cv:
            if rank not in self._dead:
                self._outbox[rank].append(message)
        self.waker.wake()

    # ------------------------------------------------------------------ running tasks on main

    def run_here(self, record: Record) -> None:
        """Runs a task on main, in the calling thread; its outcome goes to its task."""
        run_on_main(record.task, record.local)

    def _run_locally(self) -> None:
        """Without servers: a thread of main runs every task, one at a time, in order."""
        if self._initializer is not None:
            try:
                self._initializer()
            except Exception as exc:
                self._break(remote.report(exc))
        while True:
            with self._cv:
                record = self._next_unpinned()
                while record is None and not self._closing:
                    self._cv.wait()
                    record = self._next_unpinned()
                if record is None:
                    return
            self.run_here(record)

    def _next_unpinned(self) -> Record | None:
        while self._jobs:
            job = self._jobs[0]
            while job.queue:
                record = job.queue.popleft()
                if record.task.set_running_or_notify_cancel():
                    return record
            self._jobs.popleft()
        return None

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
                link.idle(self.waker)
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
            live = [rank for rank in self.servers if rank not in self._dead]
            return all(rank in self._gone and not self._outbox[rank] for rank in live)

    def _work_waiting(self) -> bool:
        with self._cv:
            live = [rank for rank in self.servers if rank not in self._dead]
            if any(self._outbox[rank] for rank in live):
                return True
            return bool(self._jobs) and any(
                self._batches[rank] < IN_FLIGHT for rank in self.workers if rank not in self._dead
            )

    def _take_work(self) -> list[tuple[int, Any]]:
        """What to send now: every rank's outbox, and batches for servers with room."""
        out: list[tuple[int, Any]] = []
        with self._cv:
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
                size = max(1, min(MAX_BATCH, queued // (2 * max(1, len(live)))))
                for rank in live:
                    if self._batches[rank] >= IN_FLIGHT:
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
        return calls

    def _on_message(self, rank: int, message: Any) -> None:
        kind = type(message)
        if kind is m.Results:
            for outcome in message.outcomes:
                with self._cv:
                    record = self._running[rank].pop(outcome.task, None)
                    self._count_done(rank, outcome.task)
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
            pinned = [item for item in self._outbox[rank] if isinstance(item, Record)]
            self._outbox[rank].clear()
            requests = [future for number, (owner, future) in list(self._requests.items()) if owner == rank]
            self._requests = {n: (o, f) for n, (o, f) in self._requests.items() if o != rank}
        dead = error if isinstance(error, WorkerTerminatedError) else WorkerTerminatedError(rank, None, str(error))
        for record in records + pinned:
            if not record.task.done():
                record.task.set_exception(dead)
        for future in requests:
            future.set_exception(dead)

    def _break(self, report: dict[str, Any] | None) -> None:
        """An executor's initializer failed: every queued and later task fails."""
        from concurrent.futures import BrokenExecutor

        message = report["message"] if report else "unknown error"
        with self._cv:
            self.broken = f"an initializer failed: {message}"
            error = BrokenExecutor(f"A process in the pool was broken: {self.broken}")
            while self._jobs:
                for record in self._jobs.popleft().queue:
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
