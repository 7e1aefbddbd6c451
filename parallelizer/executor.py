"""``par.executor()``: a ``concurrent.futures.Executor`` over a group's processes.

It speaks ``concurrent.futures`` (``submit``, ``map``, ``shutdown``, futures
that ``wait``/``as_completed`` understand) and has the pool calls of
:mod:`parallelizer.pools` too. Where it runs its tasks depends on where it
is made:

* plain main code on the serial or multiprocessing backend (a script, a
  notebook, a test's ``setUp``): it starts what it needs and lives until
  ``shutdown()``; a group of one runs the tasks in a thread of main;
* SPMD code (inside ``run``, or every rank of an ``mpiexec`` job): every
  process calls it; main gets the executor, the others serve until main
  shuts it down and then get ``None`` (mpi4py's ``MPICommExecutor`` idiom);
* ``mpiexec -n N python -m parallelizer --pool script.py``: only rank 0 runs
  the script, and every executor it makes is served by the other ranks.

Example:
    >>> from parallelizer import MultiprocessingParallelizer
    >>> with MultiprocessingParallelizer(nprocs=2).executor() as executor:
    ...     list(executor.map(pow, [2, 3], [5, 2]))
    [32, 9]
"""

from __future__ import annotations

import concurrent.futures
import itertools
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import semantics
from ._core import checks, context
from ._core.codec import Sealed
from ._pool import messages as m
from ._pool.maps import apply_chunk
from ._pool.session import Session
from .base import Parallelizer
from .pools import PoolCalls, Task
from .runner import owned_by, serve_session

__all__ = ["Executor", "start", "start_pool"]


class Executor(concurrent.futures.Executor, PoolCalls):
    """A ``concurrent.futures.Executor`` whose tasks run on a group's processes.

    Made by ``par.executor()``; see :mod:`parallelizer.executor`.

    Example:
        >>> from parallelizer import SerialNonParallelizer
        >>> with SerialNonParallelizer().executor() as executor:
        ...     task = executor.submit(sum, [1, 2, 3])
        ...     task.result(), task.metadata["rank"]
        (6, 0)
    """

    def __init__(self, session: Session, stop: Callable[[bool], None]) -> None:
        self._pool_init(session)
        self._stop = stop
        self._shutdown_lock = threading.Lock()
        self._shut = False
        self._group: Callable[[], Parallelizer | None] = lambda: None  # whose background session it is
        _running.add(self)

    @property
    def _broken(self) -> str | bool:
        """Why the executor cannot run tasks any more (an initializer failed), else False."""
        return self._session.broken or False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Task:
        """Schedules ``fn(*args, **kwargs)``; returns its :class:`~parallelizer.pools.Task` at once.

        Raises:
            RuntimeError: After ``shutdown``.
            concurrent.futures.BrokenExecutor: An initializer failed.
        """
        with self._shutdown_lock:
            if self._broken:
                raise concurrent.futures.BrokenExecutor(self._broken)
            if self._shut:
                raise RuntimeError("cannot schedule new futures after shutdown")
            return PoolCalls.submit(self, fn, *args, **kwargs)

    def close(self) -> None:
        """Takes no more work; what was submitted still runs (``shutdown(wait=False)``)."""
        super().close()
        self.shutdown(wait=False)

    def join(self) -> None:
        """Waits until the submitted work is done and the processes left (``close`` first).

        Raises:
            ValueError: The pool is still running.
        """
        if not self._pool_closed:
            raise ValueError("Pool is still running: call close() or terminate() before join()")
        self.shutdown(wait=True)

    def terminate(self) -> None:
        """Cancels what has not started and stops (``shutdown(cancel_futures=True)``)."""
        super().terminate()
        self.shutdown(wait=True, cancel_futures=True)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        callback: Callable[[Any], Any] | None = None,
    ) -> Any:
        """``fn`` over the iterables, as ``concurrent.futures.Executor.map``: an iterator of results.

        Every call is scheduled at once; results come in order, and the first
        that raised raises when reached. ``timeout`` counts from this call;
        ``chunksize`` items travel (and run) together.

        With ``callback`` (what schwimmbad-style code passes), it is called on
        main with each result in turn, and the results come back as a list.

        Raises:
            TimeoutError: A result is not ready ``timeout`` seconds after the call.
            ValueError: ``chunksize`` is less than 1.
        """
        if callback is not None:
            results = []
            for item in self.map(fn, *iterables, timeout=timeout, chunksize=chunksize):
                callback(item)
                results.append(item)
            return results
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        deadline = None if timeout is None else timeout + time.monotonic()
        items = list(zip(*iterables, strict=False))
        if chunksize == 1:
            tasks = [self.submit(fn, *args) for args in items]
        else:
            spans = semantics.dynamic_chunks(len(items), 1, chunksize)
            tasks = [self.submit(apply_chunk, fn, items[start:stop], False, True, start) for start, stop in spans]
        return _results(tasks, deadline, chunksize > 1)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stops taking tasks; ends the session (the serving processes leave it) once the queue is done.

        Args:
            wait: Return only when every task has finished and the session ended.
            cancel_futures: Cancel the tasks that have not started.
        """
        if threading.current_thread() is self._session._thread:
            wait = False  # a done-callback (it runs in the session's thread) cannot wait for that thread
        with self._shutdown_lock:
            first = not self._shut
            self._shut = True
        if cancel_futures:
            with self._session._cv:
                self._session._cancel_queued()
        if wait:
            self._end()
        elif first:
            threading.Thread(target=self._end, name="parallelizer-shutdown", daemon=True).start()

    def _end(self) -> None:
        """Ends the session (waiting for its queue); the executor is then no longer running."""
        try:
            self._stop(True)
        finally:
            _running.discard(self)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)


def _results(tasks: list[Task], deadline: float | None, chunked: bool) -> Iterator[Any]:
    """Yields the tasks' results in order (``chunked``: each task's list, flattened); cancels the rest if left."""
    tasks = list(reversed(tasks))
    try:
        while tasks:  # no local name keeps a yielded result alive
            remaining = None if deadline is None else deadline - time.monotonic()
            if chunked:
                yield from tasks.pop().result(remaining)
            else:
                yield tasks.pop().result(remaining)
    finally:
        for task in tasks:
            task.cancel()


class _Served:
    """What ``executor()`` returns on the processes that served: falsy, and ``with`` gives ``None``."""

    def __bool__(self) -> bool:
        return False

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return "<served: no executor on this process>"


NO_EXECUTOR = _Served()

#: Executors not yet shut down, or still ending their session. Held strongly:
#: one the script dropped without shutting it down still owns its session (and,
#: under ``--pool``, the serving ranks), so it is shut down at exit, as
#: ``concurrent.futures`` joins its pools' threads.
_running: set[Executor] = set()


def live_executor(par: Parallelizer) -> Executor | None:
    """The executor running on ``par``'s processes, from main, and not shut down, if any."""
    for executor in list(_running):
        if executor._group() is par and not executor._shut:
            return executor
    return None


def shut_down_on(par: Parallelizer) -> None:
    """Shuts down (waiting for their work) the executors still open on ``par``'s processes."""
    for executor in list(_running):
        if executor._group() is par:
            executor.shutdown(wait=True)


def _shut_down_at_exit() -> None:
    """At interpreter exit, before ``atexit`` stops the groups: executors still open finish their work.

    (As ``concurrent.futures`` does; runs in ``threading._shutdown``, while
    the executors' threads still work.)
    """
    for executor in list(_running):
        try:
            executor.shutdown(wait=True)
        except Exception as exc:  # the others still finish theirs
            print(f"parallelizer: shutting down {executor!r} at exit failed: {exc!r}", file=sys.stderr)


threading._register_atexit(_shut_down_at_exit)  # type: ignore[attr-defined]


def start_pool(par: Parallelizer, max_workers: int | None) -> Any:
    """What ``par.pool()`` returns: see :meth:`parallelizer.Parallelizer.pool`."""
    from .pool_interface import ClientPool, ServingPool
    from .views import ClientView

    if isinstance(par, ClientView):
        return ClientPool(par)
    if par.nprocs > 1 and par._connected() and not par.on_main:
        return ServingPool(lambda: serve_session(par), par.nprocs - 1, par.id)
    return start(par, max_workers, None, ())


def start(
    par: Parallelizer, max_workers: int | None, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]
) -> Executor | _Served:
    """What ``par.executor(...)`` returns: see the module docstring."""
    if max_workers is not None:
        max_workers = checks.check_int(max_workers, "max_workers")
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
    if initializer is not None:
        checks.check_callable(initializer, "initializer")
    initargs = tuple(initargs)
    servers = list(range(1, par.nprocs))
    init = None if initializer is None else Sealed.of((initializer, initargs, {}), "the initializer and initargs")
    start_message = m.Start("", initializer=init)
    local_init = None if initializer is None else (lambda: initializer(*initargs))
    if not servers:
        session = Session(None, [], max_workers, start_message)
        session.begin(local_init)
        return Executor(session, lambda wait: session.end(cancel=False))
    if not par._spmd_here():  # multiprocessing, from main's own code: a session in the background
        return _in_background(par, servers, max_workers, start_message)
    if not par.on_main:  # SPMD: the others serve until main shuts the executor down
        serve_session(par)
        return NO_EXECUTOR
    session = Session(par, servers, max_workers, start_message, serve_session)
    running = owned_by(par, session, cancel=False)
    running.__enter__()
    executor = Executor(session, lambda wait: running.__exit__(None, None, None))
    executor._group = weakref.ref(par)
    return executor


_background: dict[int, tuple[concurrent.futures.Future[Executor], threading.Event, dict[str, Any]]] = {}
_keys = itertools.count(1)


def _in_background(par: Parallelizer, servers: list[int], max_workers: int | None, start_message: m.Start) -> Executor:
    """Starts the group and runs a session in a thread of main, until the executor shuts down."""
    for earlier in list(_running):  # one shut down without waiting may still be ending its session
        if earlier._group() is par and earlier._shut:
            earlier._stop(True)
    if live_executor(par) is not None:
        raise RuntimeError(
            "this group already serves an executor: shut that one down first, or submit to it "
            "(one session at a time runs on a group's processes)"
        )
    made: concurrent.futures.Future[Executor] = concurrent.futures.Future()
    stop = threading.Event()
    key = next(_keys)
    _background[key] = (made, stop, {"servers": servers, "max_workers": max_workers, "start": start_message})

    def thread_main() -> None:
        context.keep_to_this_thread()  # main's lookup(None) stays what it was
        try:
            with par:
                par.run(_background_session, key)
        except BaseException as exc:
            if not made.done():
                made.set_exception(exc)
        finally:
            _background.pop(key, None)
            context.keep_to_this_thread(False)

    thread = threading.Thread(target=thread_main, name="parallelizer-executor", daemon=True)
    thread.start()
    executor = made.result()

    def shut(wait: bool) -> None:
        stop.set()
        if wait:
            thread.join()

    executor._stop = shut
    executor._group = weakref.ref(par)
    return executor


def _background_session(key: int, parallelizer: Parallelizer) -> None:
    """The run of a background executor: main's session lasts until shutdown; the others serve it."""
    if not parallelizer.on_main:
        serve_session(parallelizer)
        return
    made, stop, settings = _background[key]
    session = Session(parallelizer, settings["servers"], settings["max_workers"], settings["start"], serve_session)
    with owned_by(parallelizer, session, cancel=False):
        made.set_result(Executor(session, lambda wait: None))
        stop.wait()
