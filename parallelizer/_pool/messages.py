"""The client/server protocol: every message of a session, by name and field.

Main (the client's process) and each server exchange these objects, one per
message, tagged ``CollTag.SESSION``. What the user passes (functions,
arguments, pushed objects, results) travels *sealed*
(:class:`~parallelizer._core.codec.Sealed`): a message always unpickles, and
a payload that does not fails alone, naming the task it belongs to.

The messages sent for every task (``Call``, ``Outcome``, ``Tasks``,
``Results``) pickle as their constructor's arguments (``__reduce__``): a
slotted dataclass's own pickling looks its fields up each time, several
times slower.

Main to a server::

    Start(session, server)          a session begins (server: a custom server function, or None)
    Tasks([Call, ...])              run these, reply with Results
    Keep(handle, payload, build)    keep an object (push), or run a function and keep its result (build)
    Pull(request, handle)           send back your copy of an object
    Free(handles)                   drop these objects
    Deliver(name, payload)          the client's broadcast/scatter/barrier, for a custom server
    Stop()                          the session ends: reply Bye
    Final()                         (--pool mode) the script ended: no more sessions

A server to main::

    Results([Outcome, ...])         how tasks went (values, errors, times, output)
    Done(request, outcome)          a Keep, Pull or barrier is done
    Failed(report)                  the custom server function raised (outside any task)
    Bye()                           the server left the session
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._core.codec import Sealed


@dataclass(slots=True)
class Call:
    """One task: ``func(*args, **kwargs)``, sealed together; ``task`` is its number."""

    task: int
    payload: Sealed  # (func, args, kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Call, (self.task, self.payload))


@dataclass(slots=True)
class Outcome:
    """How one task (or request) went on the process that ran it."""

    task: int
    ok: bool
    payload: Sealed | None  # the value (ok) or None
    report: dict[str, Any] | None  # the error report (not ok)
    started: float = 0.0
    completed: float = 0.0
    stdout: str = ""
    stderr: str = ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            Outcome,
            (self.task, self.ok, self.payload, self.report, self.started, self.completed, self.stdout, self.stderr),
        )


@dataclass(slots=True)
class Start:
    """A session begins; ``server`` is the custom server function (sealed), or None."""

    session: str
    server: Sealed | None = None
    initializer: Sealed | None = None  # (initializer, initargs) of an executor


@dataclass(slots=True)
class Tasks:
    """Tasks for this server, in the order they are to run."""

    calls: list[Call]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Tasks, (self.calls,))


@dataclass(slots=True)
class Keep:
    """Keep the object ``payload`` (a push) or the result of running it (a build) as ``handle``."""

    request: int
    handle: int
    payload: Sealed
    build: bool = False


@dataclass(slots=True)
class Pull:
    """Send back this server's copy of ``handle``."""

    request: int
    handle: int


@dataclass(slots=True)
class Free:
    """Drop these objects."""

    handles: list[int]


@dataclass(slots=True)
class Deliver:
    """The client's ``broadcast``/``scatter``/``barrier``, taken by a custom server's own call."""

    name: str
    request: int
    payload: Sealed | None = None


@dataclass(slots=True)
class Stop:
    """The session ends."""


@dataclass(slots=True)
class Final:
    """``python -m parallelizer --pool``: the script on rank 0 ended, the servers exit."""


@dataclass(slots=True)
class Results:
    """How a batch of tasks went, on ``host``."""

    outcomes: list[Outcome] = field(default_factory=list)
    host: str = ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (Results, (self.outcomes, self.host))


@dataclass(slots=True)
class Done:
    """A request (Keep, Pull, Deliver of a barrier) is done."""

    request: int
    outcome: Outcome


@dataclass(slots=True)
class Failed:
    """The custom server function (or an executor's initializer) raised, outside any task."""

    report: dict[str, Any]
    initializer: bool = False


@dataclass(slots=True)
class Bye:
    """The server left the session."""


def payload_bytes(message: Any) -> int:
    """The bytes of user data (sealed payloads) a message carries."""
    if isinstance(message, Tasks):
        return sum(call.payload.nbytes for call in message.calls)
    payload = getattr(message, "payload", None)
    return payload.nbytes if isinstance(payload, Sealed) else 0
