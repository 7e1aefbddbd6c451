"""``ClientServerRunner``: main runs ordinary code, the other processes serve it.

Scientific libraries often want one process in control and a ``map``-like
callable for the parallel part: scipy's ``workers=`` or a sampler's
``pool=``. ``ClientServerRunner`` gives exactly that on every backend::

    main (client)                               other processes (servers)
    client(parallelizer=ClientView)             server(parallelizer=ServerView), then serve()
      par.map(f, data)       tasks  ---->         run them (main runs some too)
      par.submit(f, x)       a task ---->         the first free server runs it
      par.push(obj)          Keep   ---->         keep a copy
      par.broadcast(x)       Deliver --->         a custom server's broadcast() takes it
      par.barrier()          Deliver <-->         every server reaches it
      (returns / raises)     Stop   ---->         leave the session

Everything rides on the session machinery of :mod:`parallelizer._pool`: a
dispatcher thread on main owns the group's transport while the client runs,
so tasks go on while the client computes. The client function runs on main
only and is never pickled (it may hold locks, open files, samplers); only a
custom ``server`` function travels to the servers. ``gather``/``reduce`` on
the client need no servers: they contribute nothing, so the result is
main's own object alone. An exception in a mapped item reaches the client
as ``RemoteError`` (under MPI too: nothing aborts) and the servers keep
serving.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from ._core import checks, context, remote
from ._core.codec import Sealed
from ._pool import messages as m
from ._pool.link import Link
from ._pool.server import Server
from ._pool.session import Session
from .base import Parallelizer
from .views import ClientView, ServerView

__all__ = ["ClientServerRunner", "ClientView", "ServerView"]

_lock = threading.Lock()
_clients: dict[int, tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = {}  # on main only
_tokens = itertools.count(1)


class ClientServerRunner:
    """Runs ``client`` on main while the other processes serve its calls.

    Args:
        client: Called on main as ``client(*args, parallelizer=view, **kwargs)``
            (never pickled); inside, ``view.map``, the pool calls, and
            ``broadcast``, ``scatter``, ``gather``, ``reduce``, ``barrier``
            with root 0 use every process.
        server: Called on the other processes as ``server(parallelizer=view)``
            before the default loop; it may call ``view.serve()`` to run the
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
        token = next(_tokens)
        with _lock:
            _clients[token] = (self.client, args, kwargs)
        try:
            server = None if self.server is None else Sealed.of(self.server, "the server function")
            outcome = par.run(session_entry, token, server)
        finally:
            with _lock:
                _clients.pop(token, None)
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


def session_entry(token: int, server: Sealed | None, parallelizer: Parallelizer) -> Any:
    """What every process runs: the client on main, a server elsewhere."""
    if not parallelizer.on_main:
        serve_session(parallelizer)
        return None
    client, args, kwargs = _clients[token]
    start = m.Start("", server)
    session = Session(parallelizer, list(range(1, parallelizer.nprocs)), None, start, serve_session)
    view = ClientView(parallelizer, session)
    error: BaseException | None = None
    result = None
    with owned_by(parallelizer, session):
        context.push(view)
        try:
            result = client(*args, parallelizer=view, **kwargs)
        except Exception as exc:
            error = exc
        finally:
            context.pop(view)
            view._closed = True
            view._end_handles()
    return error, result, session.unseen_failures()


class owned_by:
    """Runs ``session`` on ``parallelizer`` for the block: begins it, ends it (servers leave) on exit.

    While it runs, its dispatcher thread owns the parallelizer's transport,
    so the parallelizer's own calls from other threads are refused.
    """

    def __init__(self, parallelizer: Parallelizer, session: Session, *, cancel: bool = True) -> None:
        self.parallelizer = parallelizer
        self.session = session
        self.cancel = cancel

    def __enter__(self) -> Session:
        self.session.begin(None, owner=self.parallelizer)
        return self.session

    def __exit__(self, *exc: object) -> None:
        self.session.end(cancel=self.cancel)


def serve_session(parallelizer: Parallelizer, start: m.Start | None = None) -> None:
    """A server's whole session: wait for Start, run the custom server (if any), then serve until Stop."""
    link = Link(parallelizer)
    if start is None:
        _, message = link.receive()
        if not isinstance(message, m.Start):
            raise RuntimeError(f"server rank {parallelizer.id} expected the start of a session, got {message!r}")
        start = message
    server = Server(parallelizer, start)
    server.begin()
    view = ServerView(parallelizer, server)
    context.push(view)
    try:
        if start.server is not None:
            try:
                func = start.server.open("the server function", 0)
                func(parallelizer=view)
            except Exception as exc:
                link.send(0, m.Failed(remote.report(exc)))
        server.serve()
    finally:
        context.pop(view)
        server.end()
        parallelizer._complete_sends()


def serve_pool(parallelizer: Parallelizer) -> None:
    """``python -m parallelizer --pool`` on ranks > 0: serve every session rank 0 starts, until Final."""
    link = Link(parallelizer)
    while True:
        _, message = link.receive()
        if isinstance(message, m.Final):
            return
        if not isinstance(message, m.Start):
            raise RuntimeError(f"server rank {parallelizer.id} expected the start of a session, got {message!r}")
        serve_session(parallelizer, message)


def end_pool(parallelizer: Parallelizer) -> None:
    """``python -m parallelizer --pool`` on rank 0, once the script ended: the servers exit."""
    link = Link(parallelizer)
    for rank in range(1, parallelizer.nprocs):
        link.send(rank, m.Final())
    parallelizer._complete_sends()
