"""The one way a failing rank ends an MPI job.

An exception that escapes ``func`` in ``MPIParallelizer.run`` (or a script run
with ``python -m parallelizer``) would leave the other ranks waiting forever
in their next collective. Instead the failing rank writes its traceback to
stderr, every line prefixed with its rank, under a line that names its rank
and host (``[rank 3] rank 3 on node2 aborts the MPI job: ValueError``),
flushes, waits until the launcher has read it from the pipe (at most
``ABORT_REPORT_GRACE``), and calls ``MPI_Abort`` on ``COMM_WORLD``, which
ends every process of the job with a non-zero status.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import runpy
import stat
import sys
import termios
import time
from types import TracebackType
from typing import NoReturn

from .._core import remote
from .._core.limits import ABORT_DRAIN_POLL, ABORT_REPORT_GRACE
from . import leftovers, runtime

_CLI_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cli.py")

ABORT_STATUS = 1


def report(exc: BaseException, rank: int | None) -> None:
    """Writes ``exc``'s traceback to stderr, each line prefixed with the rank.

    The frames of the machinery that ran the user's code (``runpy``,
    ``python -m parallelizer``) are left out: the traceback starts where the
    user's script does.
    """
    prefix = f"[rank {rank}] " if rank is not None else ""
    where = f"rank {rank} on {remote.HOST}" if rank is not None else remote.HOST
    headline = f"{where} aborts the MPI job: {remote.type_name(exc)}"
    lines = [headline, *remote.format_traceback(exc, _first_user_frame(exc.__traceback__)).splitlines()]
    text = "\n".join(prefix + line for line in lines) + "\n"
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    # The process's own stderr: a replaced sys.stderr (a test runner's
    # capture) dies with the process before anyone reads it.
    stream = sys.__stderr__ or sys.stderr
    with contextlib.suppress(Exception):
        stream.write(text)
        stream.flush()


def _first_user_frame(tb: TracebackType | None) -> TracebackType | None:
    first = tb
    while first is not None and _is_launcher_frame(first.tb_frame.f_code.co_filename):
        first = first.tb_next
    return first or tb


def _is_launcher_frame(filename: str) -> bool:
    return filename in ("<frozen runpy>", runpy.__file__, _CLI_FILE)


def _unread(fd: int) -> int | None:
    """Bytes written to ``fd`` that its reader has not taken yet, or ``None`` where unknown."""
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            return 0  # written to the file already
        if stat.S_ISFIFO(mode):
            request = termios.FIONREAD  # a pipe's one buffer: what the reader has not read
        elif stat.S_ISSOCK(mode):
            request = termios.TIOCOUTQ  # a socket's send queue (SIOCOUTQ)
        else:
            return None
        buffer = bytearray(4)
        fcntl.ioctl(fd, request, buffer)
    except (OSError, AttributeError):
        return None
    return int.from_bytes(buffer, sys.byteorder, signed=True)


def wait_until_read(fd: int, limit: float) -> float:
    """Waits until the reader of ``fd`` (the launcher) has taken all we wrote, at most ``limit`` seconds.

    A pipe or socket is watched until it is empty, then given one more
    short poll for the launcher to pass the text on; anything else (a
    terminal) gets the whole ``limit``.

    Returns:
        The seconds waited.

    Example:
        >>> import os
        >>> read, write = os.pipe()
        >>> _ = os.write(write, b"report")
        >>> wait_until_read(write, 0.05) >= 0.05  # nobody reads: the whole limit
        True
        >>> _ = os.read(read, 100)
        >>> wait_until_read(write, 5.0) < 1.0  # read: no more waiting
        True
    """
    began = time.monotonic()
    deadline = began + limit
    while True:
        left = _unread(fd)
        now = time.monotonic()
        if left == 0:
            time.sleep(min(ABORT_DRAIN_POLL, max(0.0, deadline - now)))
            return time.monotonic() - began
        if now >= deadline:
            return now - began
        time.sleep(min(ABORT_DRAIN_POLL, deadline - now) if left is not None else deadline - now)


def exit_status(exc: BaseException) -> int:
    """The status the job ends with: a ``SystemExit``'s code, else 1."""
    if isinstance(exc, SystemExit) and isinstance(exc.code, int) and exc.code != 0:
        return exc.code
    return ABORT_STATUS


def abort(exc: BaseException, rank: int | None = None) -> NoReturn:
    """Reports ``exc`` and ends the whole job (``MPI_Abort``).

    Without MPI running, raises ``SystemExit`` with the same status instead.
    With MPI, never returns and runs no more Python code of this process.
    """
    if rank is None and runtime.initialized():
        rank = runtime.load().COMM_WORLD.Get_rank()
    report(exc, rank)
    status = exit_status(exc)
    if not runtime.initialized():
        raise SystemExit(status)  # a normal exit: atexit handlers still clean up
    # The launcher forwards our stderr asynchronously; MPI_Abort makes it kill
    # the job at once: the report must have left the pipe first.
    wait_until_read(2, ABORT_REPORT_GRACE)
    leftovers.remove()  # what MPI_Finalize would have removed: this job's shared memory
    with contextlib.suppress(Exception):
        runtime.load().COMM_WORLD.Abort(status)
    # MPI_Abort may return in the calling process (MPICH does, after telling
    # the launcher): nothing of this process may run on.
    os._exit(status)
