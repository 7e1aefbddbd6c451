"""Short GIL turns while main computes beside its dispatcher thread.

In a blocking ``map`` of a session with servers, main runs chunks itself
while the session's dispatcher thread, in the same process, hands the
servers theirs. When a server reports, the dispatcher wakes and asks for the
GIL; CPython gives it only after main's thread has held it for the switch
interval (5 ms by default). Meanwhile the server has nothing to do: a map of
1000 tasks of 1 ms on 2 processes took 524-534 ms instead of 500, and the
servers' first blocks left late.

:func:`short_turns` lowers the switch interval to :data:`TURN` while any
such map runs, and puts back what it found afterwards. It costs nothing
while the dispatcher sleeps (no thread asks for the GIL then) and, with 1000
tasks of 1 ms, brought the map to 507-511 ms. If the interval was already
shorter, or someone changes it while a map runs, theirs is left alone.

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
import sys
import threading
from collections.abc import Iterator

TURN = 5e-4
"""The switch interval (seconds) while main computes beside the dispatcher."""

_lock = threading.Lock()
_inside = 0  # maps running now, in any thread
_found: float | None = None  # the interval before the first of them, if we lowered it
_ours: float | None = None  # the interval we set (as getswitchinterval reports it)


@contextlib.contextmanager
def short_turns() -> Iterator[None]:
    """Within the block, the dispatcher thread gets the GIL within :data:`TURN` seconds."""
    global _inside, _found, _ours
    with _lock:
        if not _inside:
            found = sys.getswitchinterval()
            if found > TURN:
                sys.setswitchinterval(TURN)
                _found, _ours = found, sys.getswitchinterval()
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if not _inside and _found is not None:
                if sys.getswitchinterval() == _ours:  # nobody changed it meanwhile
                    sys.setswitchinterval(_found)
                _found = _ours = None
