"""The stack of active parallelizers, innermost last.

``with par:`` and ``par.run(...)`` push ``par`` (a worker pushes its own view
while it runs ``func``); ``Parallelizer.lookup(None)`` returns the top. The
stack belongs to the process, not to a thread, so code running in threads
started inside ``func`` finds the running parallelizer too. The exception is
a thread that runs a group in the background (an executor made from main's
code, see :func:`keep_to_this_thread`): what it pushes, only it sees.

The engine never needs to know what a parallelizer is, so the stack holds
plain objects; :meth:`parallelizer.Parallelizer.lookup` reads it.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_stack: list[tuple[object, int]] = []  # (parallelizer, the thread that pushed it)
_private: set[int] = set()  # threads whose entries the other threads do not see


def push(par: object) -> None:
    """Makes ``par`` the innermost active parallelizer."""
    with _lock:
        _stack.append((par, threading.get_ident()))


def pop(par: object) -> None:
    """Removes the innermost entry of ``par`` (entries above it stay)."""
    with _lock:
        for index in range(len(_stack) - 1, -1, -1):
            if _stack[index][0] is par:
                del _stack[index]
                return


def current() -> object | None:
    """The innermost active parallelizer this thread may see, or ``None``."""
    me = threading.get_ident()
    with _lock:
        for par, owner in reversed(_stack):
            if owner == me or owner not in _private:
                return par
        return None


def keep_to_this_thread(private: bool = True) -> None:
    """From now on (until called with ``False``), what this thread pushes only it sees.

    A background executor's thread runs its group with ``with par:``; main's
    ``Parallelizer.lookup(None)`` must not start returning that group.
    """
    with _lock:
        if private:
            _private.add(threading.get_ident())
        else:
            _private.discard(threading.get_ident())
