"""Exceptions that happen on one process and are raised on another.

:func:`report` turns an exception into plain data (its type name, message,
formatted traceback, and the exception itself pickled when that round-trips);
:func:`rebuild` turns that data into a :class:`RemoteError` on the receiving
side, with the original exception as ``__cause__`` when it can be unpickled.

Reporting must never fail: an exception whose ``str()`` raises is described
by its type and ``repr`` (or its type alone), and one whose unpickling
raises, even ``KeyboardInterrupt``, arrives without its ``__cause__``.
"""

from __future__ import annotations

import reprlib
import socket
import traceback
from types import TracebackType
from typing import Any

from ..errors import RemoteError, RemoteSerializationError, SerializationError
from . import env, pickling

HOST = socket.gethostname()  # named in every report: "rank 3 on node2"


def describe(exc: BaseException) -> str:
    """``str(exc)``, or a description that does not call it when it raises.

    Example:
        >>> class Broken(Exception):
        ...     def __str__(self):
        ...         raise RuntimeError("no")
        >>> describe(ValueError("bad")), describe(Broken(1))
        ('bad', '<Broken(1): str() raised RuntimeError>')
    """
    try:
        return str(exc)
    except BaseException as failure:
        try:
            shown = repr(exc)
        except BaseException:
            shown = type(exc).__name__
        return f"<{shown}: str() raised {type(failure).__name__}>"


def format_traceback(exc: BaseException, tb: TracebackType | None = None) -> str:
    """The traceback of ``exc`` as text (from frame ``tb`` on, if given); never raises."""
    try:
        return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
    except BaseException:  # a broken __str__ deep in a chain, a broken traceback
        return f"{type(exc).__name__}: {describe(exc)}\n"


def _round_trips(exc: BaseException) -> bytes | None:
    """``exc`` pickled, if it also unpickles here (so it likely will elsewhere)."""
    try:
        pickled = pickling.dumps(exc, "the exception")
        pickling.loads(pickled, "the exception")
    except BaseException:  # unpicklable, or raising anything (even KeyboardInterrupt) when rebuilt
        return None
    return pickled


def type_name(exc: BaseException) -> str:
    """``ValueError``, or ``package.module.Error`` for exceptions outside builtins and ``__main__``."""
    kind = type(exc)
    qualified = kind.__module__ not in ("builtins", "__main__")
    return f"{kind.__module__}.{kind.__qualname__}" if qualified else kind.__qualname__


def report(exc: BaseException) -> dict[str, Any]:
    """What another process needs to raise a :class:`RemoteError` for ``exc``; never raises."""
    return {
        "exc_type": type_name(exc),
        "message": describe(exc),
        "traceback": format_traceback(exc),
        "exception": _round_trips(exc),
        "host": HOST,
        "serialization": isinstance(exc, SerializationError),
    }


def rebuild(rank: int, info: dict[str, Any]) -> RemoteError:
    """The :class:`RemoteError` for a :func:`report` made on ``rank``.

    A :class:`RemoteSerializationError` (also a ``TypeError``) when the
    report is of a :class:`SerializationError`.
    """
    kind = RemoteSerializationError if info.get("serialization") else RemoteError
    error = kind(rank, info["exc_type"], info["message"], info["traceback"], info.get("host", ""))
    pickled = info.get("exception")
    if pickled is not None:
        try:
            error.__cause__ = pickling.loads(pickled, "the remote exception")
        except BaseException:  # whatever unpickling raises here, the report itself arrives
            error.__cause__ = None
    return error


_LOCAL_ITEM = "_parallelizer_map_item"  # (rank, index in that rank's block), for root to make it global


def note_map_item(exc: BaseException, item: Any, index: int, first: int | None, rank: int) -> None:
    """Names, in a note of ``exc``, the item of a ``map`` on which ``func`` raised it.

    Args:
        exc: What ``func`` raised.
        item: The item (shown as a short ``reprlib`` repr).
        index: Its position in this process's block.
        first: Where that block starts in the map's data, when this process knows it.
        rank: This process's rank.

    Example:
        >>> exc = ZeroDivisionError("division by zero")
        >>> note_map_item(exc, 0, 1, 2, rank=1)
        >>> exc.__notes__
        ['(in map item 3: 0)']
        >>> exc = ValueError("bad")
        >>> note_map_item(exc, "x" * 100, 4, None, rank=2)
        >>> exc.__notes__
        ["(in map item 4 of rank 2's block: 'xxxxxxxxxxxx...xxxxxxxxxxxxx')"]
    """
    shown = reprlib.repr(item)
    if first is not None:
        exc.add_note(f"(in map item {first + index}: {shown})")
        return
    exc.add_note(f"(in map item {index} of rank {rank}'s block: {shown})")
    setattr(exc, _LOCAL_ITEM, (rank, index, shown))  # every exception has a __dict__ (BaseException's)


def locate_map_item(error: RemoteError, starts: list[int]) -> None:
    """Rewrites the note of a worker's failing ``map`` item with its index in the whole data.

    ``starts`` are where each rank's block begins. Changes ``error`` in place
    (its type stays); does nothing when the worker's exception did not travel
    (unpicklable) or was not raised by a map item.
    """
    cause = error.__cause__
    found = getattr(cause, _LOCAL_ITEM, None)
    if cause is None or not (isinstance(found, tuple) and len(found) == 3 and found[0] == error.rank):
        return
    rank, index, shown = found
    local = f"(in map item {index} of rank {rank}'s block: {shown})"
    located = f"(in map item {starts[rank] + index}: {shown})"
    error.remote_traceback = error.remote_traceback.replace(local, located)
    error.args = (error.rank, error.exc_type, error.message, error.remote_traceback)
    notes = getattr(cause, "__notes__", None)
    if isinstance(notes, list):
        cause.__notes__ = [located if note == local else note for note in notes]


def surface(exc: RemoteError) -> RemoteError:
    """``exc`` without the library's frames it crossed, to be raised from a public call.

    What the user sees is then their own call, the error, and the remote
    traceback; with ``PARALLELIZER_DEBUG=1`` the internal frames stay.

    Example:
        >>> try:
        ...     raise RemoteError(1, "ValueError", "no")
        ... except RemoteError as exc:
        ...     surface(exc).__traceback__ is None or env.debug_enabled()
        True
    """
    try:
        keep = env.debug_enabled()
    except ValueError:
        keep = True
    return exc if keep else exc.with_traceback(None)
