"""Pools: main drives the other processes (pymor's WorkerPool, IPython parallel's views).

The calls below exist on a ``ClientServerRunner`` client's view and on an
:class:`~parallelizer.executor.Executor`. All of them are built on one
primitive, a task (:class:`Task`, a ``concurrent.futures.Future``) run by a
session's dispatcher (:mod:`parallelizer._pool`):

* ``apply``/``apply_only``: a function on every process, or on one;
* ``push``/``build``/``pull``: objects every process keeps (:class:`RemoteObject`);
* ``submit``/``map_async``/``imap``/``imap_unordered``: work that goes on
  while main does something else;
* ``starmap`` and the blocking ``map`` of the client view (main computes too).

Example:
    A pymor-style pool: push a model once, then call functions on every
    process that find their own copy of it::

        >>> import numpy as np
        >>> from parallelizer import ClientServerRunner
        >>> def client(parallelizer=None):
        ...     model = parallelizer.push({"scale": 2.0})
        ...     snapshots = parallelizer.push(np.arange(6.0), scatter=True)  # each process: its block
        ...     sums = parallelizer.apply(lambda m, s: float(m["scale"] * s.sum()), model, snapshots)
        ...     return sum(sums), parallelizer.pull(snapshots)
        >>> ClientServerRunner(client, parallelizer="multiprocessing:2").run()
        (30.0, array([0., 1., 2., 3., 4., 5.]))
"""

from __future__ import annotations

import concurrent.futures
import functools
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import semantics
from ._core import checks, memory
from ._core.codec import Sealed
from ._pool import maps
from ._pool import messages as m
from ._pool.objects import RemoteObject
from ._pool.outcomes import as_remote_error, remote_error_of, run_on_main
from ._pool.session import Session
from ._pool.tasks import Record, Task
from .pool_interface import PoolInterface

__all__ = ["PoolCalls", "RemoteObject", "Task"]


def _keep(request: int, number: int, payload: Sealed) -> m.Keep:
    return m.Keep(request, number, payload)


def _frozen(obj: object) -> bool:
    """True for objects that cannot change: str, bytes, numbers, None, tuples of those, read-only arrays."""
    if obj is None or isinstance(obj, (str, bytes, int, float, complex)):
        return True
    if isinstance(obj, (tuple, frozenset)):
        return all(_frozen(item) for item in obj)
    return semantics.is_ndarray(obj) and not obj.flags.writeable  # type: ignore[attr-defined]


def _own_copy(obj: Any) -> Any:
    """A copy of ``obj`` that shares nothing with it (what a pushing process keeps).

    A large array goes into warm memory (:mod:`parallelizer._core.memory`), as
    the copies the other processes receive do.
    """
    if semantics.is_exact_ndarray(obj):
        import numpy

        fortran = bool(obj.flags.f_contiguous and not obj.flags.c_contiguous)
        copy = memory.empty(obj.shape, obj.dtype, fortran)
        numpy.copyto(copy, obj)
        return copy
    return Sealed.of(obj, "the pushed object").open("the pushed object")


class PoolCalls(PoolInterface):
    """The pool calls of a session (see the module docstring); needs ``self._session``."""

    _session: Session

    def _pool_init(self, session: Session) -> None:
        self._session = session
        self._pushed: dict[tuple[int, bool], tuple[Any, weakref.ref[RemoteObject]]] = {}
        self._handles: weakref.WeakSet[RemoteObject] = weakref.WeakSet()
        self._closed = False

    # ------------------------------------------------------------------ helpers

    def _open(self) -> Session:
        """The session, once it is known to be running (raises what the client must hear first)."""
        if self._closed:
            raise RuntimeError("this pool's session has ended")
        session = self._session
        if session.crash is not None:
            raise RuntimeError("the session's transport failed") from session.crash
        return session

    @property
    def _ranks(self) -> list[int]:
        """The serving processes still alive, in rank order."""
        session = self._session
        return [rank for rank in session.servers if rank not in session._dead]

    def _record(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], pinned: int | None, job: Any
    ) -> Record:
        return self._open().record(func, args, kwargs, pinned, job)

    def _computing(self) -> int:
        return max(1, len(self._ranks))

    def _everywhere(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Task]:
        """Runs ``func`` on every serving process (pinned) and on main; the tasks in rank order."""
        session = self._open()
        checks.check_callable(func, "func")
        payload, local = session.seal_call(func, args, kwargs, "func and its arguments")
        records = [Record(next(session.numbers), payload, local, rank, Task()) for rank in self._ranks]
        for record in records:
            session.submit(record)
        mine = Task()
        with session.working_beside():
            run_on_main(mine, local)
        return [mine] + [record.task for record in records]

    # ------------------------------------------------------------------ every process, or one

    def apply(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> list[Any]:
        """``func(*args, **kwargs)`` on every process of the group, main included.

        Returns:
            The results in rank order.

        Raises:
            RemoteError: ``func`` raised somewhere (the first failing rank).

        Example:
            >>> import os
            >>> from parallelizer import ClientServerRunner
            >>> client = lambda parallelizer=None: len(set(parallelizer.apply(os.getpid)))
            >>> ClientServerRunner(client, parallelizer="multiprocessing:3").run()
            3
        """
        return maps.results(self._everywhere(func, args, kwargs))

    def apply_only(self, rank: int, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """What ``func(*args, **kwargs)`` returns when run on process ``rank`` alone.

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> def client(parallelizer=None):
            ...     return parallelizer.apply_only(1, lambda: "hi from 1")
            >>> ClientServerRunner(client, parallelizer="multiprocessing:2").run()
            'hi from 1'
        """
        session = self._open()
        rank = checks.check_rank(rank, 1 + len(session.servers), "rank")
        record = self._record(func, args, kwargs, rank or None, None)
        if rank == 0:
            run_on_main(record.task, record.local)
        else:
            session.submit(record)
        return maps.results([record.task])[0]

    # ------------------------------------------------------------------ remote objects

    def push(self, obj: Any, *, scatter: bool = False) -> RemoteObject:
        """Every process keeps its own copy of ``obj`` (``scatter=True``: its block of the sequence).

        Pushing the very same object again while its handle lives returns
        that handle and sends nothing, when ``obj`` cannot change.

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> def client(parallelizer=None):
            ...     blocks = parallelizer.push(list(range(10)), scatter=True)
            ...     return parallelizer.apply(len, blocks)
            >>> ClientServerRunner(client, parallelizer="multiprocessing:3").run()
            [4, 3, 3]
        """
        session = self._open()
        checks.check_bool(scatter, "scatter")
        key = (id(obj), scatter)
        known = self._pushed.get(key)
        if known is not None and known[0] is obj and (handle := known[1]()) is not None and not handle.removed:
            return handle
        ranks = self._ranks
        if scatter:
            blocks = semantics.split(checks.as_splittable(obj, "obj"), 1 + len(ranks))
        else:
            blocks = [obj] * (1 + len(ranks))
        number = next(session.handles)
        payloads = [Sealed.of(block, "the pushed object") for block in blocks[1:]]
        futures = [
            session.request(rank, functools.partial(_keep, number=number, payload=payload))
            for rank, payload in zip(ranks, payloads, strict=True)
        ]
        session.store.objects[number] = _own_copy(blocks[0])
        handle = self._handle(number, scatter, futures)
        if _frozen(obj):
            self._pushed[key] = (obj, weakref.ref(handle))
        return handle

    def build(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> RemoteObject:
        """Every process runs ``func(*args, **kwargs)`` and keeps what it returns (nothing is sent back).

        For what cannot travel: a solver, an open file, a C handle.

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> def client(parallelizer=None):
            ...     counter = parallelizer.build(dict, calls=0)
            ...     return parallelizer.apply(lambda c: type(c).__name__, counter)
            >>> ClientServerRunner(client, parallelizer="multiprocessing:2").run()
            ['dict', 'dict']
        """
        session = self._open()
        checks.check_callable(func, "func")
        payload, local = session.seal_call(func, args, kwargs, "func of build and its arguments")
        number = next(session.handles)
        futures = [
            session.request(rank, lambda request: m.Keep(request, number, payload, build=True)) for rank in self._ranks
        ]
        mine = Task()
        with session.working_beside():
            run_on_main(mine, local)
        try:
            session.store.objects[number] = maps.results([mine])[0]
        except BaseException:
            concurrent.futures.wait(futures)
            self._free(number)
            raise
        return self._handle(number, False, futures)

    def _handle(self, number: int, scatter: bool, futures: list[concurrent.futures.Future[Any]]) -> RemoteObject:
        """The handle of a push/build, once every process has kept its copy."""
        concurrent.futures.wait(futures)
        for future in futures:
            rank, outcome = future.result() if future.exception() is None else (None, None)
            if outcome is None or not outcome.ok:
                self._free(number)
                error = future.exception()
                if error is not None:
                    raise as_remote_error(error)
                assert outcome is not None and outcome.report is not None and rank is not None
                from ._core import remote

                raise remote.rebuild(rank, outcome.report)
        handle = RemoteObject(self._session.id, number, scatter, self._remove)
        self._handles.add(handle)
        return handle

    def pull(self, handle: RemoteObject) -> Any:
        """Every process's current copy of ``handle``'s object.

        Returns:
            For ``push(..., scatter=True)``: the blocks joined as ``gather``
            joins them; otherwise the list of copies in rank order.
        """
        session = self._open()
        self._check_handle(handle)
        futures = [session.request(rank, lambda request: m.Pull(request, handle.handle)) for rank in self._ranks]
        parts = [session.store.get(handle.handle)]
        concurrent.futures.wait(futures)
        for future in futures:
            if future.exception() is not None:
                raise as_remote_error(future.exception())  # type: ignore[arg-type]
            rank, outcome = future.result()
            if not outcome.ok:
                from ._core import remote

                raise remote.rebuild(rank, outcome.report)
            try:
                parts.append(outcome.payload.open(f"remote object #{handle.handle} from rank {rank}", rank))
            except Exception as exc:
                raise remote_error_of(exc, rank) from None
        return semantics.join_gathered(parts) if handle.scatter else parts

    def _check_handle(self, handle: object) -> None:
        if not isinstance(handle, RemoteObject):
            raise TypeError(f"handle must be a RemoteObject, not {type(handle).__name__}")
        if handle.session != self._session.id:
            raise ValueError(f"remote object #{handle.handle} belongs to another session")
        if handle.removed:
            raise ValueError(f"remote object #{handle.handle} was removed")

    def _remove(self, handle: RemoteObject) -> None:
        if handle.session == self._session.id and not self._closed:
            self._free(handle.handle)
        self._pushed = {key: value for key, value in self._pushed.items() if value[1]() is not handle}

    def _free(self, number: int) -> None:
        session = self._session
        session.store.objects.pop(number, None)
        for rank in self._ranks:
            session.tell(rank, m.Free([number]))

    def _end_handles(self) -> None:
        for handle in list(self._handles):
            handle._end()
        self._pushed.clear()

    # ------------------------------------------------------------------ asynchronous work

    def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Task:
        """Runs ``func(*args, **kwargs)`` on the first free serving process; returns at once.

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> def client(parallelizer=None):
            ...     tasks = [parallelizer.submit(pow, 2, n) for n in range(5)]
            ...     return [task.result(timeout=60) for task in tasks]
            >>> ClientServerRunner(client, parallelizer="multiprocessing:2").run()
            [1, 2, 4, 8, 16]
        """
        self._check_running()
        record = self._record(func, args, kwargs, None, None)
        self._session.submit(record)
        return self._track(record.task)

    def map_async(self, func: Callable[..., Any], data: Any, **map_options: Any) -> Task:
        """Starts ``map(func, data, **map_options)``; the task's result is what ``map`` returns.

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> def client(parallelizer=None):
            ...     task = parallelizer.map_async(abs, range(-3, 3))
            ...     return task.get(timeout=60)
            >>> ClientServerRunner(client, parallelizer="multiprocessing:2").run()
            [3, 2, 1, 0, 1, 2]
        """
        unknown = set(map_options) - {"vectorized", "chunksize", "schedule", "progress"}
        if unknown:
            raise TypeError(f"map_async() got unexpected keyword arguments {sorted(unknown)}")
        vectorized = checks.check_bool(map_options.get("vectorized", False), "vectorized")
        chunksize = checks.check_chunksize(map_options.get("chunksize"))
        checks.check_schedule(map_options.get("schedule", "static"))
        data = maps.as_sequence(data)
        chunks = semantics.dynamic_chunks(len(data), 1 + len(self._ranks), chunksize)
        records = maps.chunk_records(self._session, func, data, chunks, vectorized, False, None)
        for record in records:
            self._session.submit(record)
        return maps.joined([record.task for record in records], vectorized)

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Any]) -> list[Any]:
        """``[func(*args) for args in iterable]``, computed by every process (main too).

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> client = lambda parallelizer=None: parallelizer.starmap(pow, [(2, 3), (3, 2)])
            >>> ClientServerRunner(client, parallelizer="multiprocessing:2").run()
            [8, 9]
        """
        return maps.map_blocking(self._open(), self._ranks, func, list(iterable), False, "dynamic", None, False, True)  # type: ignore[no-any-return]

    def imap(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int = 1) -> Iterator[Any]:
        """Like ``multiprocessing.Pool.imap``: results in input order, each as soon as it is ready."""
        tasks = self._chunked(func, iterable, chunksize)
        return (item for task in tasks for item in task.result())

    def imap_unordered(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int = 1) -> Iterator[Any]:
        """Like ``multiprocessing.Pool.imap_unordered``: results as soon as they are ready, any order."""
        tasks = self._chunked(func, iterable, chunksize)
        return (item for task in concurrent.futures.as_completed(tasks) for item in task.result())

    def _chunked(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int) -> list[Task]:
        size = checks.check_chunksize(chunksize)
        data = list(iterable)
        chunks = semantics.dynamic_chunks(len(data), 1, size or 1)
        records = maps.chunk_records(self._session, func, data, chunks, False, False, None)
        for record in records:
            self._session.submit(record)
        return [record.task for record in records]

    # ------------------------------------------------------------------ a blocking map, main computing too
