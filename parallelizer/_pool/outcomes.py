"""Outcomes becoming results: what a task's future gets, and what a blocking call raises.

A task's future gets its value, or *the task's own exception* (its type, as
``concurrent.futures`` raises it) with a :class:`~parallelizer.RemoteError`
naming the rank, carrying the remote traceback, as its ``__cause__``; where
the exception could not be sent back, the ``RemoteError`` itself. Blocking
calls (``apply``, ``map``, ...) raise the ``RemoteError`` instead, with the
original as its cause (:func:`as_remote_error`). A result that cannot be
unpickled on main fails its own task as a ``RemoteError`` naming the rank
that sent it.
"""

from __future__ import annotations

import time

from .._core import remote
from ..errors import RemoteError, SerializationError
from . import messages as m
from .capture import captured
from .tasks import LocalCall, Task, call_locally


def run_on_main(task: Task, call: LocalCall) -> None:
    """Runs ``call`` on main for ``task``: its value, or its exception as a server's would arrive."""
    started = time.time()
    error: BaseException | None = None
    with captured() as output:
        try:
            value = call_locally(call)
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            error = exc
    task.metadata.update(
        rank=0,
        host=remote.HOST,
        started=started,
        completed=time.time(),
        stdout=output["stdout"].getvalue(),
        stderr=output["stderr"].getvalue(),
    )
    if task.done():
        return
    if error is None:
        task.set_result(value)
    else:
        task.set_exception(own_exception(remote_error_of(error, 0)))


def settle(task: Task, outcome: m.Outcome, rank: int, host: str) -> None:
    """Gives ``task`` its outcome: the value, or the task's own exception with the remote one as cause."""
    task.metadata.update(
        rank=rank,
        host=host,
        started=outcome.started,
        completed=outcome.completed,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
    )
    if task.done():
        return
    if outcome.ok:
        assert outcome.payload is not None
        try:
            value = outcome.payload.open(f"the result of task {outcome.task} from rank {rank}", rank)
        except SerializationError as exc:
            task.set_exception(remote_error_of(exc, rank))
            return
        task.set_result(value)
        return
    assert outcome.report is not None
    task.set_exception(own_exception(remote.rebuild(rank, outcome.report)))


def remote_error_of(exc: BaseException, rank: int) -> RemoteError:
    """A failure on main that concerns what ``rank`` sent, as the RemoteError naming ``rank``."""
    error = remote.rebuild(rank, remote.report(exc))
    error.__cause__ = exc
    return error


def own_exception(error: RemoteError) -> BaseException:
    """The task's own exception (its type, as concurrent.futures raises it) with ``error`` as its cause.

    Where the original could not be sent back, the RemoteError itself.
    """
    original = error.__cause__
    if isinstance(original, BaseException) and not isinstance(original, RemoteError):
        error.__cause__ = None
        original.__cause__ = error
        return original
    return error


def as_remote_error(exc: BaseException) -> BaseException:
    """What a blocking call raises for a task's exception: the RemoteError, with the original as cause."""
    cause = exc.__cause__
    if isinstance(cause, RemoteError) and not isinstance(exc, RemoteError):
        exc.__cause__ = None
        cause.__cause__ = exc
        return cause
    return exc
