"""Exceptions that happen on one process and are raised on another.

:func:`report` turns an exception into plain data (its type name, message,
formatted traceback, and the exception itself pickled when that round-trips);
:func:`rebuild` turns that data into a :class:`RemoteError` on the receiving
side, with the original exception as ``__cause__`` when it can be unpickled.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..errors import RemoteError
from . import pickling


def report(exc: BaseException) -> dict[str, Any]:
    """What another process needs to raise a :class:`RemoteError` for ``exc``."""
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    pickled: bytes | None
    try:
        pickled = pickling.dumps(exc, "the exception")
        pickling.loads(pickled, "the exception")  # must rebuild on the other side too
    except Exception:
        pickled = None
    kind = type(exc)
    qualified = kind.__module__ not in ("builtins", "__main__")
    name = f"{kind.__module__}.{kind.__qualname__}" if qualified else kind.__qualname__
    return {"exc_type": name, "message": str(exc), "traceback": text, "exception": pickled}


def rebuild(rank: int, info: dict[str, Any]) -> RemoteError:
    """The :class:`RemoteError` for a :func:`report` made on ``rank``."""
    error = RemoteError(rank, info["exc_type"], info["message"], info["traceback"])
    if info.get("exception") is not None:
        with contextlib.suppress(Exception):
            error.__cause__ = pickling.loads(info["exception"], "the remote exception")
    return error
