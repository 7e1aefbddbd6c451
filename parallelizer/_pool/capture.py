"""What a task prints, captured for its ``metadata`` (and still shown).

While a task runs, the thread that runs it writes through
:data:`sys.stdout`/:data:`sys.stderr` into a buffer of its own as well as
to the real stream, a whole line at a time (so the lines of processes that
print at once do not cut into each other); other threads (the client's, on
main) write as usual. The streams are wrapped once, on the first capture, by
a proxy that routes each thread's writes.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

_local = threading.local()
_installed_lock = threading.Lock()


class _Router(io.TextIOBase):
    """Stands for a standard stream: copies a capturing thread's writes into its buffer."""

    def __init__(self, name: str, real: TextIO) -> None:
        self.name = name
        self.real = real

    def write(self, text: str) -> int:
        buffers = getattr(_local, "buffers", None)
        if buffers is None:
            return self.real.write(text)
        buffers[self.name].write(text)
        pending = buffers["_" + self.name]
        pending.write(text)
        if "\n" in text:
            whole, _, rest = pending.getvalue().rpartition("\n")
            self.real.write(whole + "\n")
            self.real.flush()
            pending.seek(0)
            pending.truncate()
            pending.write(rest)
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def fileno(self) -> int:
        return self.real.fileno()

    def isatty(self) -> bool:
        return self.real.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _install() -> None:
    with _installed_lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if not isinstance(stream, _Router):
                setattr(sys, name, _Router(name, stream))


@contextlib.contextmanager
def captured() -> Iterator[dict[str, io.StringIO]]:
    """Captures what this thread prints while the block runs: ``{"stdout": ..., "stderr": ...}``."""
    _install()
    buffers = {name: io.StringIO() for name in ("stdout", "stderr", "_stdout", "_stderr")}
    outer = getattr(_local, "buffers", None)
    _local.buffers = buffers
    try:
        yield buffers
    finally:
        _local.buffers = outer
        for name in ("stdout", "stderr"):  # a last line without its newline
            rest = buffers["_" + name].getvalue()
            if rest:
                stream = getattr(sys, name)
                stream.write(rest)
                stream.flush()
