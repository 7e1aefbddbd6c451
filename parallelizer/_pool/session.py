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
import contextlib
import itertools
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .._core import checks, remote
from .._core.codec import Sealed
from .._core.transport import Transport
from ..errors import WorkerTerminatedError
from . import messages as m
from .dispatch import Dispatcher
from .link import Link, Waker
from .objects import Store, seal
from .outcomes import run_on_main
from .tasks import LocalCall, Record, Task
from .turns import short_turns


class Job:
    """A queue of unassigned tasks (all submits share one; a blocking map has its own)."""

    __slots__ = ("queue",)

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self.queue: deque[Record] = deque(records)


class Session(Dispatcher):
    """Main's side of one session.

    Args:
        transport: The group's transport, or ``None`` without servers.
        servers: The ranks that serve (all but main).
        max_workers: At most this many servers run unpinned tasks.
        start: The :class:`~parallelizer._pool.messages.Start` every server gets
            (its ``session`` is filled in here).
    """

    def __init__(
        self,
        transport: Transport | None,
        servers: list[int],
        max_workers: int | None,
        start: m.Start,
        server_entry: Callable[..., Any] | None = None,
    ) -> None:
        self.id = start.session = uuid.uuid4().hex
        self.start_message = start
        self.server_entry = server_entry  # what a replacement for a dead server runs
        self.store = Store(self.id)
        self.transport = transport
        self.servers = list(servers)
        self.workers = self.servers[:max_workers] if max_workers is not None else list(self.servers)
        self.link = Link(transport) if transport is not None and self.servers else None
        self.waker = Waker()
        self.numbers = itertools.count(1)  # tasks and requests
        self.handles = itertools.count(1)  # remote objects
        self.submits = Job()
        self._cv = threading.Condition()
        self._jobs: deque[Job] = deque()
        self._outbox: dict[int, deque[Any]] = {rank: deque() for rank in self.servers}
        self._running: dict[int, dict[int, Record]] = {rank: {} for rank in self.servers}
        self._batches: dict[int, int] = dict.fromkeys(self.servers, 0)
        self._batch_left: dict[int, int] = {}  # batch number -> tasks still out
        self._batch_of: dict[int, int] = {}  # task number -> batch number
        self._silent: dict[int, dict[int, float]] = {rank: {} for rank in self.servers}  # batch -> sent, no result yet
        self._task_time: float | None = None  # how long tasks take on average (seconds)
        self._ready: deque[Record] = deque()  # without servers: tasks handed to main's runner
        self._local_busy = False
        self._requests: dict[int, tuple[int, concurrent.futures.Future[Any]]] = {}
        self._dead: set[int] = set()
        self._gone: set[int] = set()  # said Bye
        self._stopped: set[int] = set()  # were told to Stop
        self._failures: list[tuple[int, dict[str, Any]]] = []  # custom servers' errors, not yet raised
        self.broken: str | None = None  # an executor's initializer failed
        self._closing = False
        self._ended = False
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
        if self.transport is not None:
            self.transport._check_threads()
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
        """Ends the session: queued tasks are cancelled (``cancel``), servers leave, the thread ends.

        Calling it again waits for the end (and does nothing more).
        """
        with self._cv:
            if self._ended:
                ended = True
            else:
                ended, self._ended = False, True
        if ended:
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join()
            return
        with self._cv:
            self._closing = True
            if cancel:
                self._cancel_queued()
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

    def record(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], pinned: int | None, job: Any
    ) -> Record:
        """A task for ``func(*args, **kwargs)``, sealed (pinned to a rank, or in ``job``), not yet queued."""
        checks.check_callable(func, "func")
        payload, local = self.seal_call(func, args, kwargs, "func and its arguments")
        return Record(next(self.numbers), payload, local, pinned, Task(), job)

    def seal_call(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], what: str
    ) -> tuple[Sealed, LocalCall]:
        """A call sealed in this session, and how main runs it itself.

        Main runs the call directly, or through its payload when it names
        remote objects (each process, main included, gets its own copy).
        """
        call = (func, args, kwargs)
        payload, uses_handles = seal(self.id, call, what)
        if not uses_handles:
            return payload, call

        def through_payload() -> Any:
            func_, args_, kwargs_ = payload.open("the call")
            return func_(*args_, **kwargs_)

        return payload, through_payload

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
            elif not self._hand_to_idle(record):
                job = record.job if isinstance(record.job, Job) else self.submits
                job.queue.append(record)
                if job not in self._jobs:
                    self._jobs.append(job)
            if self.link is None:  # main's runner may wait for work (the dispatcher sleeps on the waker)
                self._cv.notify_all()
        self.waker.wake()

    def _hand_to_idle(self, record: Record) -> bool:
        """Gives a task to an idle process at once, so it is running before ``submit`` returns.

        With nothing queued ahead of it, the first free process takes it now
        (not when the dispatcher next wakes): a ``shutdown(cancel_futures=True)``
        right after cannot cancel it. Called with the lock held.
        """
        if self._jobs or self.broken is not None or record.job is not None:
            return False
        if self.link is None:  # without servers: main's runner, if it waits for work
            if self._local_busy or self._ready:
                return False
            if record.task.set_running_or_notify_cancel():
                self._ready.append(record)
            return True
        for rank in self.workers:
            if rank not in self._dead and not self._batches[rank] and not self._outbox[rank]:
                if record.task.set_running_or_notify_cancel():
                    calls = self._assign(rank, [record], counted=True)
                    self._outbox[rank].append(m.Tasks(calls))
                return True
        return False

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

    def working_beside(self) -> contextlib.AbstractContextManager[None]:
        """Where main computes while this session's dispatcher thread feeds the servers.

        The dispatcher then gets the GIL in short turns (:func:`~parallelizer._pool.turns.short_turns`),
        so a server is not kept waiting for main's; without servers nothing changes.
        """
        return short_turns() if self.link is not None else contextlib.nullcontext()

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
                self._local_busy = False
                record = self._ready.popleft() if self._ready else self._next_unpinned()
                while record is None and not self._closing:
                    self._cv.wait()
                    record = self._ready.popleft() if self._ready else self._next_unpinned()
                if record is None:
                    return
                self._local_busy = True
            self.run_here(record)
            del record  # drop the task, its function and result: nothing of it outlives it here

    def _next_unpinned(self) -> Record | None:
        while self._jobs:
            job = self._jobs[0]
            while job.queue:
                record = job.queue.popleft()
                if record.task.set_running_or_notify_cancel():
                    return record
            self._jobs.popleft()
        return None
