"""The stack of active parallelizers, innermost last.

``with par:`` and ``par.run(...)`` push ``par`` (a worker pushes its own view
while it runs ``func``); ``Parallelizer.lookup(None)`` returns the top. The
stack belongs to the process, not to a thread, so code running in threads
started inside ``func`` finds the running parallelizer too.

The engine never needs to know what a parallelizer is, so the stack holds
plain objects; :meth:`parallelizer.Parallelizer.lookup` reads it.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_stack: list[object] = []


def push(par: object) -> None:
    """Makes ``par`` the innermost active parallelizer."""
    with _lock:
        _stack.append(par)


def pop(par: object) -> None:
    """Removes the innermost entry of ``par`` (entries above it stay)."""
    with _lock:
        for index in range(len(_stack) - 1, -1, -1):
            if _stack[index] is par:
                del _stack[index]
                return


def current() -> object | None:
    """The innermost active parallelizer, or ``None``."""
    with _lock:
        return _stack[-1] if _stack else None
