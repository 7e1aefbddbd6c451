"""``ClientServerRunner``: main runs ordinary code, the other processes serve it.

Scientific libraries often want one process in control and a ``map``-like
callable for the parallel part: scipy's ``workers=`` or a sampler's ``pool=``.
``ClientServerRunner`` gives exactly that on every backend::

    main (client)                        other processes (servers)
    client(parallelizer=ClientView)      server(parallelizer=ServerView) or serve()
      par.map(f, data)    --- MAP ---->    run their share of f over data
      par.broadcast(x)    --- BCAST -->    receive x
      par.scatter(d)      --- SCATTER ->   receive their block
      par.barrier()       --- BARRIER ->   reach the barrier
      (returns / raises)  --- STOP --->    serve() returns; report how it went

Every call the client makes starts with a small command broadcast from main,
so the servers always know what comes next. ``gather``/``reduce`` on the
client need no servers: they contribute nothing, so the result is main's own
object alone. An exception in a mapped item reaches the client as
``RemoteError`` (under MPI too: nothing aborts) and the servers keep serving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import semantics
from ._core import checks, context, mapping, remote
from ._core.tags import CollTag, Space
from .base import Parallelizer
from .errors import CollectiveMismatchError

__all__ = ["ClientServerRunner", "ClientView", "ServerView"]

_STOP, _BCAST, _SCATTER, _BARRIER, _MAP = "stop", "broadcast", "scatter", "barrier", "map"


class _SessionView(Parallelizer):
    """A parallelizer seen through a client/server session (wraps the real one)."""

    def __init__(self, inner: Parallelizer) -> None:
        # The client's commands already tell the servers what comes next: a
        # server's call that does not match raises CollectiveMismatchError.
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

    def _send_to(self, obj: Any, dest: int, tag: int, space: Space) -> None:
        self._inner._send_to(obj, dest, tag, space)

    def _recv_from(self, source: int, tag: int, space: Space) -> Any:
        return self._inner._recv_from(source, tag, space)

    def _recv_from_any(self, tag: int, space: Space, block: bool) -> tuple[int, Any] | None:
        return self._inner._recv_from_any(tag, space, block)

    def _emit(self, text: str, file: Any) -> None:
        self._inner._emit(text, file)

    def _run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise RuntimeError("run() cannot be called inside a ClientServerRunner's client or server")

    def __reduce__(self) -> str | tuple[Any, ...]:
        return self._inner.__reduce__()


class ClientView(_SessionView):
    """The parallelizer the client gets: main alone calls the collectives.

    ``map``, ``broadcast``, ``scatter`` and ``barrier`` involve the servers
    (root 0 only); ``gather``, ``allgather``, ``reduce`` and ``allreduce``
    return main's own object alone, since the servers contribute nothing.
    It has a ``map``, so it can be passed where a pool is expected
    (``pool=`` of emcee, ``workers=view.map`` of scipy).

    Example:
        >>> from parallelizer import ClientServerRunner
        >>> def client(parallelizer=None):
        ...     scale = parallelizer.broadcast(10)  # the servers receive it too
        ...     return parallelizer.map(lambda x: scale * x, [1, 2, 3])
        >>> ClientServerRunner(client, parallelizer="multiprocessing:2").run()
        [10, 20, 30]
    """

    def __init__(self, inner: Parallelizer) -> None:
        super().__init__(inner)
        self._stopped = False
        self._reported: set[int] = set()  # servers whose failure the client has seen

    def _command(self, *command: Any) -> None:
        got = self._inner._recv_any(CollTag.COMMAND, Space.COLL, block=False)
        if got is not None:  # a server failed outside a task: tell the client now
            source, report = got
            self._reported.add(source)
            raise remote.rebuild(source, report)
        self._inner._bcast(command, 0)

    @staticmethod
    def _root_zero(root: int) -> None:
        if root != 0:
            raise ValueError(f"root must be 0 in a ClientServerRunner client (main is the only caller), got {root}")

    def _bcast(self, obj: Any, root: int) -> Any:
        self._root_zero(root)
        self._command(_BCAST)
        return self._inner._bcast(obj, 0)

    def _scatter(self, data: Any, bounds: list[tuple[int, int]] | None, root: int) -> Any:
        self._root_zero(root)
        self._command(_SCATTER)
        return self._inner._scatter(data, bounds, 0)

    def _barrier(self) -> None:
        self._command(_BARRIER)
        self._inner._barrier()

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
        return semantics.fold([obj], func)

    def _allreduce(self, obj: Any, op: object, func: Callable[[Any, Any], Any]) -> Any:
        return semantics.fold([obj], func)

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
    ) -> Any:
        """Like :meth:`Parallelizer.map`, called by main alone; the servers work too.

        ``data`` may be any iterable (like the builtin ``map``). An exception
        in ``func`` is raised here as ``RemoteError``, naming the rank that ran
        the item; every process stays ready for the next call.

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
        if not checks.is_splittable(data):
            try:
                data = list(data)
            except TypeError:
                raise TypeError(f"data must be an iterable, not {type(data).__name__}") from None
        self._command(_MAP, func, vectorized, schedule, chunksize)
        return mapping.run_map(self._inner, func, data, 0, vectorized, schedule, chunksize, progress, capture=True)

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

    def stop_servers(self) -> list[tuple[int, Any]]:
        """Ends the servers' loops.

        ``ClientServerRunner.run`` calls it when the client has returned or
        raised; the client itself does not need to.

        Returns:
            ``(rank, report)`` of every server that failed outside a task and
            whose failure the client has not seen yet.

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> with SerialNonParallelizer() as par:
            ...     ClientView(par).stop_servers()
            []
        """
        if self._stopped:
            return []
        self._stopped = True
        self._inner._bcast((_STOP,), 0)
        reports = self._inner._gather_list(None, 0) or []
        unseen = []
        for rank, report in enumerate(reports):
            if report is None:
                continue
            if rank not in self._reported:
                # its early notice is still on the way: take it, nothing may linger
                self._inner._recv(rank, CollTag.COMMAND, Space.COLL)
                unseen.append((rank, report))
        return unseen


class ServerView(_SessionView):
    """The parallelizer a server gets: it takes part in the client's calls.

    A custom ``server`` receives it; it may do its own set-up, take part in
    the client's calls explicitly (``broadcast``, ``scatter``, ``barrier``,
    ``map`` in the client's order), and call :meth:`serve` for the rest.

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

    def __init__(self, inner: Parallelizer) -> None:
        super().__init__(inner)
        self._pending: tuple[Any, ...] | None = None
        self.stopped = False

    def _next_command(self) -> tuple[Any, ...]:
        pending, self._pending = self._pending, None
        if pending is not None:
            return pending
        received: tuple[Any, ...] = self._inner._bcast(None, 0)
        return received

    def _expect(self, name: str) -> tuple[Any, ...]:
        if self.stopped:
            raise RuntimeError(f"server rank {self.id} called {name} after the client finished")
        command = self._next_command()
        if command[0] != name:
            self._pending = command  # serve() will still handle it
            raise CollectiveMismatchError(
                f"server rank {self.id} called {name}, but the client (rank 0) called {command[0]}"
            )
        return command

    def _bcast(self, obj: Any, root: int) -> Any:
        self._expect(_BCAST)
        return self._inner._bcast(None, 0)

    def _scatter(self, data: Any, bounds: list[tuple[int, int]] | None, root: int) -> Any:
        self._expect(_SCATTER)
        return self._inner._scatter(None, None, 0)

    def _barrier(self) -> None:
        self._expect(_BARRIER)
        self._inner._barrier()

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
        """Takes part in the client's next ``map``; the client's arguments apply.

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> def client(parallelizer=None):
            ...     return parallelizer.map(lambda x: -x, [1, 2, 3])
            >>> def server(parallelizer=None):
            ...     parallelizer.map()  # the client's first map; then serve() runs the rest
            >>> ClientServerRunner(client, server, parallelizer="multiprocessing:2").run()
            [-1, -2, -3]
        """
        self._serve_map(self._expect(_MAP))
        return None

    def _serve_map(self, command: tuple[Any, ...]) -> None:
        _, func, vectorized, schedule, chunksize = command
        mapping.run_map(self._inner, func, None, 0, vectorized, schedule, chunksize, False, capture=True)

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
        while not self.stopped:
            command = self._next_command()
            name = command[0]
            if name == _STOP:
                self.stopped = True
            elif name == _MAP:
                self._serve_map(command)
            elif name == _BCAST:
                self._inner._bcast(None, 0)
            elif name == _SCATTER:
                self._inner._scatter(None, None, 0)
            elif name == _BARRIER:
                self._inner._barrier()
            else:  # pragma: no cover - the client only sends the commands above
                raise RuntimeError(f"server rank {self.id} received an unknown command {name!r}")


class ClientServerRunner:
    """Runs ``client`` on main while the other processes serve its calls.

    Args:
        client: Called on main as ``client(*args, parallelizer=view, **kwargs)``;
            inside, ``view.map`` (and ``broadcast``, ``scatter``, ``gather``,
            ``reduce``, ``barrier`` with root 0) use every process.
        server: Called on the other processes as ``server(parallelizer=view)``
            instead of the default loop; it may call ``view.serve()`` to run the
            default loop itself (after its own set-up). If it returns before
            the client has finished, the default loop serves the rest.
        parallelizer: Anything ``Parallelizer.lookup`` takes (default: ``None``,
            so serial unless launched by mpiexec or configured otherwise).

    Example:
        >>> from parallelizer import ClientServerRunner
        >>> def client(xs, parallelizer=None):
        ...     return parallelizer.map(lambda x: x * x, xs)
        >>> ClientServerRunner(client, parallelizer="serial").run([1, 2, 3])
        [1, 4, 9]
    """

    def __init__(
        self,
        client: Callable[..., Any],
        server: Callable[..., Any] | None = None,
        parallelizer: Any = None,
    ) -> None:
        checks.check_callable(client, "client")
        if server is not None:
            checks.check_callable(server, "server")
        self.client = client
        self.server = server
        self.parallelizer = parallelizer

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the client on main and the servers elsewhere.

        Returns:
            On main, the client's result; elsewhere ``None``.

        Raises:
            Exception: Whatever the client raised (a failed task as
                ``RemoteError``); ``RemoteError`` for a server that failed
                outside a task.

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> def client(n, parallelizer=None, power=2):
            ...     return parallelizer.map(lambda x: x**power, range(n))
            >>> runner = ClientServerRunner(client, parallelizer="multiprocessing:2")
            >>> runner.run(4, power=3)
            [0, 1, 8, 27]
        """
        par = Parallelizer.lookup(self.parallelizer)
        outcome = par.run(_session, self.client, self.server, args, kwargs)
        if not par.on_main:
            return None
        error, result, failures = outcome
        if error is not None:
            raise error
        if failures:
            first = remote.rebuild(*failures[0])
            for rank, report in failures[1:]:  # one exception, every failure named
                first.add_note(f"server rank {rank} failed too: {report['exc_type']}: {report['message']}")
            raise first
        return result


def _session(
    client: Callable[..., Any],
    server: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    parallelizer: Parallelizer,
) -> Any:
    """What every process runs: the client on main, a server elsewhere."""
    if parallelizer.on_main:
        client_view = ClientView(parallelizer)
        error: BaseException | None = None
        result = None
        context.push(client_view)
        try:
            result = client(*args, parallelizer=client_view, **kwargs)
        except Exception as exc:
            error = exc
        finally:
            context.pop(client_view)
        reports = client_view.stop_servers()
        return error, result, reports
    server_view = ServerView(parallelizer)
    report = None
    context.push(server_view)
    try:
        if server is None:
            server_view.serve()
        else:
            try:
                server(parallelizer=server_view)
            except Exception as exc:
                report = remote.report(exc)
                parallelizer._send(report, 0, CollTag.COMMAND, Space.COLL)
            server_view.serve()
    finally:
        context.pop(server_view)
    parallelizer._gather_list(None if report is None else report, 0)
    return None
