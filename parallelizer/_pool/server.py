"""A server's side of a session: run tasks, keep objects, answer main.

::

    Start --> [initializer] --> custom server(parallelizer=view) or the default loop
      Tasks     run each call (its output captured), reply Results
      Keep      keep an object, or the result of a function (build); reply Done
      Pull      reply Done with this process's copy
      Free      drop objects
      Deliver   a custom server's broadcast/scatter/barrier takes it (the loop
                acknowledges barriers, drops the rest)
      Stop      reply Bye, leave the session

Nothing a call does can break the session: whatever it raises (also when
its arguments cannot be unpickled here, or its result cannot be pickled) is
sent back as that task's outcome, and the server goes on.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from .._core import remote
from .._core.codec import Sealed
from .._core.transport import Transport
from ..errors import CollectiveMismatchError
from . import messages as m
from .capture import captured
from .link import Link
from .objects import Store

FLUSH_AFTER = 0.005
"""A server sends the outcomes of a batch so far once it has worked this long (seconds)."""

_CAUGHT = (Exception, SystemExit, KeyboardInterrupt)


def run_call(payload: Sealed, what: str, source: int | None) -> m.Outcome:
    """Runs a sealed ``(func, args, kwargs)`` here; its outcome, whatever happens (never raises)."""
    started = time.time()
    with captured() as output:
        try:
            func, args, kwargs = payload.open(what, source)
            value = func(*args, **kwargs)
            result: Sealed | None = Sealed.of(value, f"the result of {what}", by_value=False)
            report = None
        except _CAUGHT as exc:
            result, report = None, remote.report(exc)
    return m.Outcome(
        0,
        report is None,
        result,
        report,
        started,
        time.time(),
        output["stdout"].getvalue(),
        output["stderr"].getvalue(),
    )


def open_kept(keep: m.Keep, source: int | None) -> Any:
    """The object a Keep asks to keep: the pushed object, or what the build function returns here."""
    what = f"remote object #{keep.handle}"
    if not keep.build:
        return keep.payload.open(what, source)
    func, args, kwargs = keep.payload.open(f"the build of {what}", source)
    return func(*args, **kwargs)


class Server:
    """One server process in one session."""

    def __init__(self, transport: Transport, start: m.Start) -> None:
        self.rank = transport.id
        self.link = Link(transport)
        self.session = start.session
        self.store = Store(start.session)
        self.host = remote.HOST
        self.stopped = False
        self.failed_initializer = False
        self._held: deque[Any] = deque()  # messages a custom server's own call did not take
        self._start = start

    # ------------------------------------------------------------------ the loop

    def begin(self) -> None:
        """Enters the session: the store opens, the executor's initializer runs."""
        self.store.__enter__()
        if self._start.initializer is not None:
            outcome = run_call(self._start.initializer, "the initializer", 0)
            if not outcome.ok:
                assert outcome.report is not None
                self.failed_initializer = True
                self.link.send(0, m.Failed(outcome.report, initializer=True))

    def end(self) -> None:
        """Leaves the session: every object is dropped."""
        self.store.__exit__()

    def serve(self) -> None:
        """Handles main's messages until it ends the session."""
        while not self.stopped:
            self.handle(self._next())

    def _next(self) -> Any:
        if self._held:
            return self._held.popleft()
        return self.link.receive()[1]

    def handle(self, message: Any) -> None:
        """Acts on one message from main."""
        kind = type(message)
        if kind is m.Tasks:
            self._run(message.calls)
        elif kind is m.Keep:
            self._keep(message)
        elif kind is m.Pull:
            self._pull(message)
        elif kind is m.Free:
            for handle in message.handles:
                self.store.objects.pop(handle, None)
        elif kind is m.Deliver:
            if message.name == "barrier":  # the default loop reaches every barrier at once
                self._done(message.request, True)
        elif kind is m.Stop:
            self.stopped = True
            self.link.send(0, m.Bye())
        else:
            raise RuntimeError(f"server rank {self.rank} received an unknown message {message!r}")

    # ------------------------------------------------------------------ a custom server's own calls

    def expect(self, name: str) -> m.Deliver:
        """Serves main's messages until the client's ``name`` call arrives (a custom server's call).

        Raises:
            CollectiveMismatchError: The client made another call, or ended the
                session; the message is kept for the default loop.
        """
        while True:
            message = self._next()
            if type(message) is m.Deliver:
                if message.name == name:
                    return message
                self._held.appendleft(message)
                raise CollectiveMismatchError(
                    f"server rank {self.rank} called {name}, but the client (rank 0) called {message.name}"
                )
            if type(message) is m.Stop:
                self._held.appendleft(message)
                raise CollectiveMismatchError(
                    f"server rank {self.rank} called {name}, but the client (rank 0) ended the session"
                )
            self.handle(message)

    def reached_barrier(self, deliver: m.Deliver) -> None:
        """A custom server's barrier: tells main this server got there."""
        self._done(deliver.request, True)

    # ------------------------------------------------------------------ work

    def _run(self, calls: list[m.Call]) -> None:
        outcomes = m.Results([], self.host)
        flushed = time.monotonic()
        half = len(calls) // 2 - 1  # its results go at once: main then sends the next batch (dispatch.IN_FLIGHT)
        for index, call in enumerate(calls):
            if self.failed_initializer:
                outcome = m.Outcome(call.task, False, None, _initializer_failed(self.rank))
            else:
                outcome = run_call(call.payload, f"task {call.task}", 0)
                outcome.task = call.task
            outcomes.outcomes.append(outcome)
            if index == len(calls) - 1 or index == half or time.monotonic() - flushed > FLUSH_AFTER:
                self.link.send(0, outcomes)
                outcomes = m.Results([], self.host)
                flushed = time.monotonic()

    def _keep(self, keep: m.Keep) -> None:
        try:
            self.store.objects[keep.handle] = open_kept(keep, 0)
            outcome = m.Outcome(keep.request, True, None, None)
        except _CAUGHT as exc:
            outcome = m.Outcome(keep.request, False, None, remote.report(exc))
        self.link.send(0, m.Done(keep.request, outcome))

    def _pull(self, pull: m.Pull) -> None:
        try:
            payload = Sealed.of(self.store.get(pull.handle), f"remote object #{pull.handle}", by_value=False)
            outcome = m.Outcome(pull.request, True, payload, None)
        except _CAUGHT as exc:
            outcome = m.Outcome(pull.request, False, None, remote.report(exc))
        self.link.send(0, m.Done(pull.request, outcome))

    def _done(self, request: int, ok: bool) -> None:
        self.link.send(0, m.Done(request, m.Outcome(request, ok, None, None)))


def _initializer_failed(rank: int) -> dict[str, Any]:
    from concurrent.futures import BrokenExecutor

    return remote.report(BrokenExecutor(f"the initializer failed on rank {rank}: its tasks cannot run"))
