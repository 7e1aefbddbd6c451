"""Main's side of a multiprocessing group: start, run, abort, stop.

``run`` is one *epoch*: main sends ``RUN(epoch)`` with ``func`` and its
arguments to every worker, runs ``func`` itself, says ``FINISHED``, and waits
until every worker has said ``FINISHED`` too. Any failure (an exception on
main, ``ERROR`` from a worker, a dead worker) ends the epoch: main sends
``ABORT(epoch)`` so the workers still inside ``func`` unwind, and raises.
Messages of an earlier epoch are dropped by everyone, so the next ``run``
starts clean. A dead worker breaks the group (its sockets are gone): the
next ``run`` starts a fresh one.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import _memory
from ..errors import WorkerTerminatedError
from . import launch, wire
from .endpoint import Endpoint

STOP_GRACE = 5.0
"""Seconds workers get to exit after STOP before they are terminated."""

KILL_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL when stopping stragglers."""

_live_groups: weakref.WeakSet[Group] = weakref.WeakSet()


def _stop_all_at_exit() -> None:
    for group in list(_live_groups):
        group.stop(None)


atexit.register(_stop_all_at_exit)


class Group:
    """The worker processes of one started MultiprocessingParallelizer."""

    def __init__(self, nprocs: int, start_method: str, token: str, debug: bool) -> None:
        self.nprocs = nprocs
        self.debug = debug
        self.start_method = start_method
        self.token = token
        self.epoch = 0
        self.running = False
        self.broken = False
        self.endpoint: Endpoint | None = None
        self.workers: list[launch.WorkerProcess] = []
        self._lifeline: int | None = None
        self._threads: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Starts the workers (asynchronously) and sends them their set-up."""
        if self.nprocs == 1:
            self.endpoint = Endpoint(0, 1, {}, {0: os.getpid()})
            return
        launched = launch.launch(self.nprocs, self.start_method)
        self.workers = launched.workers
        self._lifeline = launched.lifeline
        pids = {0: os.getpid(), **{worker.rank: worker.pid for worker in self.workers}}
        endpoint = Endpoint(0, self.nprocs, launched.sockets, pids)
        for worker in self.workers:
            if worker.sentinel is not None:
                endpoint.add_sentinel(worker.sentinel, worker.rank)
        endpoint.exit_status = self._exit_status
        self.endpoint = endpoint
        setup = {"pids": pids, "sys_path": list(sys.path), "token": self.token, "debug": self.debug}
        endpoint.post(setup, self.worker_ranks, wire.SETUP, 0, "the set-up of the workers")
        self.broken = False
        _live_groups.add(self)

    @property
    def worker_ranks(self) -> list[int]:
        """Ranks ``1 .. nprocs-1``."""
        return list(range(1, self.nprocs))

    def stop(self, exc: BaseException | None) -> None:
        """Stops the workers: politely (STOP), then SIGTERM, then SIGKILL.

        After Ctrl-C (``exc`` is a KeyboardInterrupt) nobody waits politely.
        """
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
                endpoint.control(rank, wire.STOP)
            deadline = time.monotonic() + STOP_GRACE
            endpoint.wait_exit(lambda: alive() and time.monotonic() < deadline)
        for signum, grace in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, KILL_GRACE)):
            if not alive():
                break
            for worker in self.workers:
                worker.signal(signum)
            deadline = time.monotonic() + grace
            while alive() and time.monotonic() < deadline:
                time.sleep(0.01)
        endpoint.close()
        for worker in self.workers:
            worker.close()
        self.workers = []
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None
        _memory.release()

    def threads(self) -> ThreadPoolExecutor:
        """A few threads for copies that may run side by side (GIL released)."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=max(2, min(self.nprocs, launch.usable_cpus())))
        return self._threads

    def _exit_status(self, rank: int) -> int | None:
        return self.workers[rank - 1].wait(timeout=2.0)

    # ------------------------------------------------------------------ run

    def run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], view: Any) -> Any:
        """One epoch: ``func`` on every process; returns main's result."""
        if self.broken:
            self.stop(None)
            self.start()
        endpoint = self.endpoint
        assert endpoint is not None
        endpoint.poll()  # a worker may have died while idle since the last run
        for worker in self.workers:
            if worker.poll() is not None:  # the OS knows even before its sentinel fires
                endpoint.dead.setdefault(worker.rank, worker.poll())
        if endpoint.dead:
            self.broken = True  # the next run starts a fresh group
            rank = min(endpoint.dead)
            raise WorkerTerminatedError(rank, self._exit_status(rank), "while idle between runs")
        self.epoch += 1
        endpoint.begin_epoch(self.epoch)
        sent = endpoint.post((func, args, kwargs), self.worker_ranks, wire.RUN, 0, "func and its arguments of run()")
        self.running = True
        try:
            result = func(*args, parallelizer=view, **kwargs)
            endpoint.finish_epoch()
            endpoint.wait_sent(sent)
            endpoint.wait_finished(self.worker_ranks)
        except BaseException as exc:
            self._abort(exc)
            raise
        finally:
            self.running = False
        return result

    def _abort(self, exc: BaseException) -> None:
        """Tells the workers to give up this epoch (or kills them, if we must)."""
        endpoint = self.endpoint
        assert endpoint is not None
        if endpoint.dead or isinstance(exc, (WorkerTerminatedError, KeyboardInterrupt, SystemExit)):
            self.broken = True
        for rank in self.worker_ranks:
            endpoint.control(rank, wire.ABORT)
