"""Short GIL turns while main computes beside its dispatcher thread.

When main runs tasks itself (its share of a blocking ``map``, its own call
of ``apply``) in a session with servers, the session's dispatcher thread,
in the same process, hands the servers theirs. When a server reports, the
dispatcher wakes and asks for the GIL; CPython gives it only after main's
thread has held it for the switch interval (5 ms by default). Meanwhile the
server has nothing to do: a map of 1000 tasks of 1 ms on 2 processes took
534 ms instead of 500, and the servers' first blocks left late.

:func:`short_turns` lowers the switch interval to :data:`TURN` while main
computes so, and puts back what it found afterwards; 1000 tasks of 1 ms
then take 508-511 ms. If the interval was already shorter, or someone
changes it meanwhile, theirs is left alone.

Costs: on the multiprocessing backend the dispatcher sleeps until a message
comes, and asks for the GIL only then. Under MPI it wakes to poll (every
0.1-1 ms), so main's thread is interrupted about every millisecond instead
of every 5. Other threads of the program computing during such a call
switch more often too (the interval is the process's).

Example:
    >>> import sys
    >>> before = sys.getswitchinterval()
    >>> with short_turns():
    ...     sys.getswitchinterval() <= TURN
    True
    >>> sys.getswitchinterval() == before
    True
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

TURN = 5e-4
"""The switch interval (seconds) while main computes beside the dispatcher."""

_lock = threading.Lock()
_inside = 0  # blocks running now, in any thread
_found: float | None = None  # the interval before the first of them, if we lowered it
_ours: float | None = None  # the interval we set (as getswitchinterval reports it)
_generation = 0  # a forked child starts a new one: blocks entered before the fork count no more


def _set(seconds: float) -> None:
    # setswitchinterval truncates to whole microseconds: half a microsecond more
    # gives back exactly what getswitchinterval reported
    sys.setswitchinterval(seconds + 5e-7)


def _enter(entered: list[int]) -> None:
    """Counts a block in (the caller holds the lock); ``entered`` records that it was."""
    global _inside, _found, _ours
    if not _inside:
        found = sys.getswitchinterval()
        if found > TURN:
            _set(TURN)
            _found, _ours = found, sys.getswitchinterval()
    _inside += 1
    entered.append(_generation)  # no call between the count and its record: nothing can interrupt


def _leave() -> None:
    """Counts a block out (the caller holds the lock); the last one puts the interval back."""
    global _inside, _found, _ours
    _inside -= 1
    if not _inside and _found is not None:
        if sys.getswitchinterval() == _ours:  # nobody changed it meanwhile
            _set(_found)
        _found = _ours = None


@contextlib.contextmanager
def short_turns() -> Iterator[None]:
    """Within the block, a thread waiting for the GIL gets it after :data:`TURN` seconds, not 5 ms.

    Blocks may nest and overlap in several threads: the interval is lowered
    by the first and put back by the last to end (unless someone changed it
    meanwhile, or it was at most :data:`TURN` already).

    Yields:
        Nothing.
    """
    entered: list[int] = []
    try:
        with _lock:
            _enter(entered)
        yield
    finally:
        if entered and entered[0] == _generation:
            with _lock:
                _leave()


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's other threads: nothing of theirs to wait for."""
    global _lock, _inside, _found, _ours, _generation
    _lock = threading.Lock()
    _generation += 1
    if _found is not None and sys.getswitchinterval() == _ours:
        _set(_found)
    _inside, _found, _ours = 0, None, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
