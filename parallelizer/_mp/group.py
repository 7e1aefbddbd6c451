"""Main's side of a multiprocessing group: start, run, abort, stop.

One ``run`` is one *epoch*. Who sends what, for ``par.run(func)`` on three
processes, when everything goes well::

    main (rank 0)                 worker 1                   worker 2
    ---------------------------------------------------------------------------
    start():  launch workers; SETUP(pids, sys.path, token) --> both, once
    run():    epoch += 1
              RUN(epoch, func, args) ------------------> both
              func(parallelizer=view)   func(...)                 func(...)
                 collectives: COLL/USER frames between any pair, tagged
                 with the epoch; large arrays pulled by the receiver (CMA)
              FINISHED(epoch) --> all   FINISHED --> all           FINISHED --> all
              wait until every worker said FINISHED(epoch); return main's result
    stop():   STOP --------------------------------------> both exit 0

How a failure travels::

    worker raises  --> ERROR(epoch, report) to main; main, wherever it waits,
                       raises RemoteError; sends ABORT(epoch) to all
    main raises    --> ABORT(epoch) to all workers
    ABORT(epoch)   --> a worker still inside func unwinds (RunAborted) at its
                       next wait, and says nothing: main already knows
    worker dies    --> main sees its socket close or its sentinel fire:
                       WorkerTerminatedError; the group is broken and the next
                       run starts a fresh one

Messages of an earlier epoch are dropped by everyone (their senders
released), so the next ``run`` starts clean.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any

from .._core import memory
from .._core.limits import EXIT_STATUS_WAIT, IDLE_POLL, KILL_GRACE, REAP_POLL, STOP_GRACE
from ..errors import WorkerTerminatedError
from . import launch, wire
from .endpoint import Endpoint
from .protocol import MainProtocol
from .worker import ViewFactory

_live_groups: weakref.WeakSet[Group] = weakref.WeakSet()


def _inherited() -> dict[str, Any]:
    """What a worker takes over from main at set-up: the import path and multiprocessing's key."""
    return {"sys_path": list(sys.path), "authkey": bytes(multiprocessing.current_process().authkey)}


def _stop_all_at_exit() -> None:
    for group in list(_live_groups):
        group.stop(None)


def _disown_in_child() -> None:
    """In a process forked from main (a library's helper), the groups are main's, not ours.

    The child lets go of its copy of every lifeline, so the workers still
    die with main even if the child lives on; every later call on a group
    (stop at exit, abort while unwinding) then leaves the workers alone.
    """
    for group in list(_live_groups):
        group.disown()


atexit.register(_stop_all_at_exit)
os.register_at_fork(after_in_child=_disown_in_child)


class Group:
    """The worker processes of one started MultiprocessingParallelizer.

    Args:
        nprocs: The size of the group, main included.
        start_method: ``"spawn"`` or ``"fork"``.
        settings: The parallelizer's ``token`` (identity), ``debug`` and
            ``timeout``, sent to the workers.
        make_view: How a forked worker builds its parallelizer.
    """

    def __init__(self, nprocs: int, start_method: str, settings: dict[str, Any], make_view: ViewFactory) -> None:
        self.nprocs = nprocs
        self.settings = settings
        self.start_method = start_method
        self.make_view = make_view
        self.epoch = 0
        self.running = False
        self.broken = False
        self.endpoint: Endpoint | None = None
        self.protocol = MainProtocol()
        self.workers: list[launch.WorkerProcess] = []
        self._lifeline: int | None = None
        self._spare_lifelines: list[int] = []  # of replacement workers
        self._owner = os.getpid()  # only the process that started the group may act on it

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Starts the workers (asynchronously) and sends them their set-up."""
        self._owner = os.getpid()
        self.protocol = MainProtocol()
        if self.nprocs == 1:
            self.endpoint = Endpoint(0, 1, {}, {0: os.getpid()}, self.protocol)
            self.endpoint.timeout = self.settings["timeout"]
            return
        launched = launch.launch(self.nprocs, self.start_method, self.make_view)
        self.workers = launched.workers
        self._lifeline = launched.lifeline
        pids = {0: os.getpid(), **{worker.rank: worker.pid for worker in self.workers}}
        endpoint = Endpoint(0, self.nprocs, launched.sockets, pids, self.protocol)
        endpoint.timeout = self.settings["timeout"]
        for worker in self.workers:
            if worker.sentinel is not None:
                endpoint.loop.add_sentinel(worker.sentinel, worker.rank)
        self.protocol.exit_status = self._exit_status
        self.endpoint = endpoint
        setup = {"pids": pids, "polls": endpoint.polls, **_inherited(), **self.settings}
        endpoint.post(setup, self.worker_ranks, wire.Kind.SETUP, 0, "the set-up of the workers")
        self.broken = False
        _live_groups.add(self)

    def owned(self) -> bool:
        """False in a process forked from the one that started the group."""
        return os.getpid() == self._owner

    def disown(self) -> None:
        """Forgets the group without touching its workers (in a forked child)."""
        _live_groups.discard(self)
        if self._lifeline is not None and not self.owned():
            os.close(self._lifeline)
        self._lifeline = None
        self.endpoint = None
        self.workers = []

    @property
    def worker_ranks(self) -> list[int]:
        """Ranks ``1 .. nprocs-1``."""
        return list(range(1, self.nprocs))

    def stop(self, exc: BaseException | None) -> None:
        """Stops the workers: politely (STOP), then SIGTERM, then SIGKILL.

        After Ctrl-C (``exc`` is a KeyboardInterrupt) nobody waits politely.
        """
        if not self.owned():
            self.disown()
            return
        _live_groups.discard(self)
        endpoint = self.endpoint
        if endpoint is None:
            return
        self.endpoint = None
        hurry = isinstance(exc, (KeyboardInterrupt, SystemExit)) or self.broken

        def alive() -> bool:
            return any(worker.poll() is None for worker in self.workers)

        if not hurry:
            for rank in self.worker_ranks:
                endpoint.control(rank, wire.Kind.STOP)
            deadline = time.monotonic() + STOP_GRACE
            while alive() and time.monotonic() < deadline and endpoint.loop.watching():
                endpoint.loop.pump(block=True, timeout_ms=int(IDLE_POLL * 1000))  # prints, EOFs
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if not alive():
                break
            for worker in self.workers:
                worker.signal(signum)
            deadline = time.monotonic() + KILL_GRACE
            while alive() and time.monotonic() < deadline:
                time.sleep(REAP_POLL)
        endpoint.close()
        for worker in self.workers:
            worker.close()
        self.workers = []
        for lifeline in [self._lifeline, *self._spare_lifelines]:
            if lifeline is not None:
                os.close(lifeline)
        self._lifeline = None
        self._spare_lifelines = []
        memory.release()

    def replace(self, rank: int, entry: Callable[..., Any]) -> None:
        """Starts a new process as dead worker ``rank``, to run ``entry`` in the current run.

        The replacement is connected to main alone (a client/server session
        needs no more), so the group counts as broken: the next ``run``
        starts a fresh one.
        """
        endpoint = self.endpoint
        assert endpoint is not None and self.owned()
        sock, worker, lifeline = launch.launch_one(rank, self.nprocs)
        dead = self.workers[rank - 1]
        if dead.sentinel is not None:
            endpoint.loop.drop_sentinel(dead.sentinel)
        dead.close()
        self.workers[rank - 1] = worker
        self._spare_lifelines.append(lifeline)
        if worker.sentinel is not None:
            endpoint.loop.add_sentinel(worker.sentinel, rank)
        endpoint.rejoin(rank, sock, worker.pid)
        self.protocol.excused.discard(rank)
        setup = {"pids": {0: os.getpid(), rank: worker.pid}, "polls": endpoint.polls, **_inherited(), **self.settings}
        endpoint.post(setup, [rank], wire.Kind.SETUP, 0, "the set-up of a replacement worker")
        endpoint.post((entry, (), {}), [rank], wire.Kind.RUN, 0, "the session entry of a replacement worker")
        self.broken = True

    def _exit_status(self, rank: int) -> int | None:
        return self.workers[rank - 1].wait(timeout=EXIT_STATUS_WAIT)

    # ------------------------------------------------------------------ run

    def run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], view: object) -> Any:
        """One epoch: ``func`` on every process; returns main's result."""
        if not self.owned():
            raise RuntimeError(
                f"this MultiprocessingParallelizer's workers belong to process {self._owner}; "
                f"process {os.getpid()} (forked from it) cannot run on them"
            )
        if self.broken:
            self.stop(None)
            self.start()
        endpoint = self.endpoint
        assert endpoint is not None
        endpoint.poll()  # a worker may have died while idle since the last run
        dead = self.protocol.dead
        for worker in self.workers:
            if worker.poll() is not None:  # the OS knows even before its sentinel fires
                dead.setdefault(worker.rank, worker.poll())
        if dead:
            self.broken = True  # the next run starts a fresh group
            rank = min(dead)
            raise WorkerTerminatedError(rank, self.protocol.status_of(rank), "while idle between runs")
        self.epoch += 1
        endpoint.begin_epoch(self.epoch)
        sent = endpoint.post(
            (func, args, kwargs), self.worker_ranks, wire.Kind.RUN, 0, "func and its arguments of run()"
        )
        self.running = True
        try:
            result = func(*args, parallelizer=view, **kwargs)
            if not self.owned():  # a child forked inside func returned through run: not ours to finish
                return result
            for rank in self.worker_ranks:
                endpoint.control(rank, wire.Kind.FINISHED)
            endpoint.wait_sent(sent)
            finished = self.protocol.finished

            excused = self.protocol.excused

            def running() -> list[int]:
                return [rank for rank in self.worker_ranks if finished.get(rank) != self.epoch and rank not in excused]

            endpoint.wait(lambda: not running(), None, "the end of run (workers still in func)", running)
            if excused:  # a session went on without a dead worker: the next run starts a fresh group
                self.broken = True
        except BaseException as exc:
            self._abort(exc)
            raise
        finally:
            self.running = False
        return result

    def _abort(self, exc: BaseException) -> None:
        """Tells the workers to give up this epoch (or kills them, if we must)."""
        endpoint = self.endpoint
        if endpoint is None or not self.owned():  # a forked child unwinding: the run is main's
            return
        if self.protocol.dead or isinstance(exc, (WorkerTerminatedError, TimeoutError, KeyboardInterrupt, SystemExit)):
            self.broken = True  # a dead or stuck worker: the next run starts a fresh group
        for rank in self.worker_ranks:
            endpoint.control(rank, wire.Kind.ABORT)
