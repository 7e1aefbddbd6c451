"""The parallelizers a client/server session hands out: the client's view and a server's.

:class:`ClientView` (main) is a full :class:`~parallelizer.Parallelizer`
plus the pool calls (:class:`~parallelizer.pools.PoolCalls`): its
collectives involve the servers as ``ClientServerRunner`` promises, its
``map`` runs as tasks with main computing too. :class:`ServerView` (every
other process) takes part in the client's calls when a custom ``server``
makes them explicitly, and :meth:`ServerView.serve` runs the default loop.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

from . import semantics
from ._core import checks, remote
from ._core.codec import Sealed
from ._core.tags import Space
from ._pool import maps
from ._pool import messages as m
from ._pool.server import Server
from ._pool.session import Session
from .base import Parallelizer
from .pools import PoolCalls

__all__ = ["ClientView", "ServerView"]


class _SessionView(Parallelizer):
    """A parallelizer seen through a client/server session (wraps the group's own)."""

    def __init__(self, inner: Parallelizer) -> None:
        super().__init__(debug=False)
        self._inner = inner
        self._nesting = 1  # inside the inner parallelizer's run: started

    @property
    def id(self) -> int:
        """This process's rank (0 for the client).

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> ClientServerRunner(lambda parallelizer: parallelizer.id, parallelizer="serial").run()
            0
        """
        return self._inner.id

    @property
    def nprocs(self) -> int:
        """The size of the group, the client included.

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> ClientServerRunner(lambda parallelizer: parallelizer.nprocs, parallelizer="multiprocessing:2").run()
            2
        """
        return self._inner.nprocs

    @property
    def inner(self) -> Parallelizer:
        """The parallelizer the runner runs on.

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> ClientServerRunner(lambda parallelizer: parallelizer.inner, parallelizer="serial").run()
            SerialNonParallelizer(id=0, nprocs=1)
        """
        return self._inner

    # A session's messages go through its dispatcher, never through send/recv.
    def _send_to(self, obj: Any, dest: int, tag: int, space: Space) -> None:
        raise RuntimeError("send/recv are not available in a client/server session: use apply, push, submit, map")

    def _recv_from(self, source: int, tag: int, space: Space) -> Any:
        raise RuntimeError("send/recv are not available in a client/server session: use apply, push, submit, map")

    def _recv_from_any(self, tag: int, space: Space, block: bool) -> tuple[int, Any] | None:
        raise RuntimeError("send/recv are not available in a client/server session: use apply, push, submit, map")

    def _emit(self, text: str, file: Any) -> None:
        self._inner._emit(text, file)

    def _run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise RuntimeError("run() cannot be called inside a ClientServerRunner's client or server")

    def __reduce__(self) -> str | tuple[Any, ...]:
        return self._inner.__reduce__()


class ClientView(_SessionView, PoolCalls):
    """The parallelizer the client gets: main alone calls, the servers take part.

    ``map``, ``broadcast``, ``scatter`` and ``barrier`` involve the servers
    (root 0 only); ``gather``, ``allgather``, ``reduce`` and ``allreduce``
    return main's own object alone, since the servers contribute nothing.
    The pool calls (``apply``, ``push``, ``submit``, ... of
    :class:`~parallelizer.pools.PoolCalls`) are here too. It has a ``map``,
    so it can be passed where a pool is expected (``pool=`` of emcee,
    ``workers=view.map`` of scipy).

    Example:
        >>> from parallelizer import ClientServerRunner
        >>> def client(parallelizer=None):
        ...     scale = parallelizer.broadcast(10)  # the servers receive it too
        ...     return parallelizer.map(lambda x: scale * x, [1, 2, 3])
        >>> ClientServerRunner(client, parallelizer="multiprocessing:2").run()
        [10, 20, 30]
    """

    def __init__(self, inner: Parallelizer, session: Session) -> None:
        super().__init__(inner)
        self._pool_init(session)

    def _computing(self) -> int:
        return 1 + len(self._ranks)  # main computes its share of a map too

    def _check_servers(self) -> None:
        """Raises what a custom server raised outside any task (one failure per call, each once)."""
        failure = self._session.unseen_failure()
        if failure is not None:
            raise remote.rebuild(*failure)

    def _open(self) -> Session:
        session = super()._open()
        self._check_servers()
        return session

    @staticmethod
    def _root_zero(root: int) -> None:
        if root != 0:
            raise ValueError(f"root must be 0 in a ClientServerRunner client (main is the only caller), got {root}")

    def _deliver(self, name: str, payloads: list[Sealed | None]) -> None:
        session = self._open()
        for rank, payload in zip(self._ranks, payloads, strict=True):
            session.tell(rank, m.Deliver(name, 0, payload))

    def _bcast(self, obj: Any, root: int) -> Any:
        self._root_zero(root)
        payload = Sealed.of(obj, "the object broadcast")
        self._deliver("broadcast", [payload] * len(self._ranks))
        return obj

    def _scatter(self, data: Any, bounds: list[tuple[int, int]] | None, root: int) -> Any:
        self._root_zero(root)
        if bounds is None:  # refused: the servers never see it
            return data
        bounds = semantics.block_bounds(len(data), 1 + len(self._ranks))
        blocks = [Sealed.of(semantics.take_block(data, *span), "a scattered block") for span in bounds[1:]]
        self._deliver("scatter", blocks)  # type: ignore[arg-type]
        return semantics.root_block(data, *bounds[0])

    def _barrier(self) -> None:
        session = self._open()
        futures = [session.request(rank, lambda request: m.Deliver("barrier", request)) for rank in self._ranks]
        self._results_of(futures)

    def _results_of(self, futures: list[Any]) -> None:
        concurrent.futures.wait(futures)
        for future in futures:
            if future.exception() is not None:
                raise future.exception()

    # The servers contribute nothing: main's object alone.
    def _gather_list(self, obj: Any, root: int) -> list[Any] | None:
        self._root_zero(root)
        return [obj]

    def _gather(self, obj: Any, root: int) -> Any:
        self._root_zero(root)
        return semantics.join_gathered([obj])

    def _allgather(self, obj: Any) -> Any:
        return semantics.join_gathered([obj])

    def _reduce(self, obj: Any, op: object, func: Callable[[Any, Any], Any], root: int) -> Any:
        self._root_zero(root)
        return semantics.fold([obj], func, "reduce")

    def _allreduce(self, obj: Any, op: object, func: Callable[[Any, Any], Any]) -> Any:
        return semantics.fold([obj], func, "allreduce")

    def map(
        self,
        func: Callable[[Any], Any],
        data: Any,
        root: int = 0,
        *,
        vectorized: bool = False,
        schedule: str = "static",
        chunksize: int | None = None,
        progress: bool = False,
        callback: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Like :meth:`Parallelizer.map`, called by main alone; the servers work too.

        ``data`` may be any iterable (like the builtin ``map``). An exception
        in ``func`` is raised here as ``RemoteError``, naming the rank that ran
        the item (and the item); every process stays ready for the next call.
        ``callback``, if given, is called on main with each result in turn
        (as schwimmbad's pools do), for libraries that pass one.

        Example:
            >>> from parallelizer import ClientServerRunner, RemoteError
            >>> def client(parallelizer=None):
            ...     squares = parallelizer.map(lambda x: x * x, range(5), schedule="dynamic")
            ...     try:
            ...         parallelizer.map(lambda x: 1 / x, [1, 0])
            ...     except RemoteError as err:
            ...         return squares, err.exc_type
            >>> ClientServerRunner(client, parallelizer="multiprocessing:2").run()
            ([0, 1, 4, 9, 16], 'ZeroDivisionError')
        """
        root, chunksize = checks.check_map_arguments(func, root, self.nprocs, vectorized, schedule, chunksize, progress)
        self._root_zero(root)
        if callback is not None:
            checks.check_callable(callback, "callback")
        if not checks.is_splittable(data):
            try:
                data = list(data)
            except TypeError:
                raise TypeError(f"data must be an iterable, not {type(data).__name__}") from None
        self._check_running()
        result = maps.map_blocking(self._open(), self._ranks, func, data, vectorized, schedule, chunksize, progress)
        if callback is not None:
            for item in result:
                callback(item)
        return result

    def serve(self) -> None:
        """Only servers serve: raises ``RuntimeError`` on the client.

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> def client(parallelizer=None):
            ...     parallelizer.serve()
            >>> ClientServerRunner(client, parallelizer="serial").run()
            Traceback (most recent call last):
            ...
            RuntimeError: serve() is called on the servers of a ClientServerRunner, not by the client
        """
        raise RuntimeError("serve() is called on the servers of a ClientServerRunner, not by the client")


class ServerView(_SessionView):
    """The parallelizer a custom server gets: it takes part in the client's calls.

    A custom ``server`` receives it; it may do its own set-up, take part in
    the client's ``broadcast``, ``scatter`` and ``barrier`` explicitly (in the
    client's order), and call :meth:`serve` for the rest. While it waits in
    one of those, it runs the tasks that arrive meanwhile.

    Example:
        >>> from parallelizer import ClientServerRunner
        >>> def client(parallelizer=None):
        ...     parallelizer.broadcast({"model": "ising"})
        ...     return parallelizer.map(abs, [-1, -2, -3])
        >>> def server(parallelizer=None):
        ...     settings = parallelizer.broadcast(None)  # the client's first call
        ...     parallelizer.serve()  # then the default loop: the map
        >>> ClientServerRunner(client, server, parallelizer="multiprocessing:2").run()
        [1, 2, 3]
    """

    def __init__(self, inner: Parallelizer, server: Server) -> None:
        super().__init__(inner)
        self._server = server

    def _bcast(self, obj: Any, root: int) -> Any:
        deliver = self._server.expect("broadcast")
        assert deliver.payload is not None
        return deliver.payload.open("the object the client broadcast", 0)

    def _scatter(self, data: Any, bounds: list[tuple[int, int]] | None, root: int) -> Any:
        deliver = self._server.expect("scatter")
        assert deliver.payload is not None
        return deliver.payload.open("the block the client scattered", 0)

    def _barrier(self) -> None:
        self._server.reached_barrier(self._server.expect("barrier"))

    # A server contributes nothing to the client's gathers and reductions.
    def _gather_list(self, obj: Any, root: int) -> list[Any] | None:
        return None

    def _gather(self, obj: Any, root: int) -> Any:
        return None

    def _reduce(self, obj: Any, op: object, func: Callable[[Any, Any], Any], root: int) -> Any:
        return None

    def _allgather(self, obj: Any) -> Any:
        raise RuntimeError("servers of a ClientServerRunner cannot allgather: only the client sees the result")

    def _allreduce(self, obj: Any, op: object, func: Callable[[Any, Any], Any]) -> Any:
        raise RuntimeError("servers of a ClientServerRunner cannot allreduce: only the client sees the result")

    def map(
        self,
        func: Callable[[Any], Any] | None = None,
        data: Any = None,
        root: int = 0,
        *,
        vectorized: bool = False,
        schedule: str = "static",
        chunksize: int | None = None,
        progress: bool = False,
    ) -> Any:
        """Takes part in the client's maps: a server runs their tasks whenever it waits, so this returns at once.

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> def client(parallelizer=None):
            ...     return parallelizer.map(lambda x: -x, [1, 2, 3])
            >>> def server(parallelizer=None):
            ...     parallelizer.map()  # the client's maps; serve() runs the rest
            >>> ClientServerRunner(client, server, parallelizer="multiprocessing:2").run()
            [-1, -2, -3]
        """
        return None

    def serve(self) -> None:
        """Serves the client's calls until it has finished (the default server loop).

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> def server(parallelizer=None):
            ...     import math  # the server's own set-up goes here
            ...     parallelizer.serve()
            >>> def client(parallelizer=None):
            ...     return parallelizer.map(lambda x: x + 1, range(4))
            >>> ClientServerRunner(client, server, parallelizer="multiprocessing:2").run()
            [1, 2, 3, 4]
        """
        self._server.serve()
