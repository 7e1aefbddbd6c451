"""The stack of active parallelizers, innermost last.

``with par:`` and ``par.run(...)`` push ``par``; ``Parallelizer.lookup(None)``
returns the top. The stack belongs to the process, not to a thread, so code
running in threads started inside ``func`` finds the running parallelizer too.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Parallelizer

_lock = threading.Lock()
_stack: list[Parallelizer] = []


def push(par: Parallelizer) -> None:
    """Makes ``par`` the innermost active parallelizer."""
    with _lock:
        _stack.append(par)


def pop(par: Parallelizer) -> None:
    """Removes the innermost entry of ``par`` (entries above it stay)."""
    with _lock:
        for index in range(len(_stack) - 1, -1, -1):
            if _stack[index] is par:
                del _stack[index]
                return


def current() -> Parallelizer | None:
    """The innermost active parallelizer, or ``None``."""
    with _lock:
        return _stack[-1] if _stack else None
