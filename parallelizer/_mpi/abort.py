"""The one way a failing rank ends an MPI job.

An exception that escapes ``func`` in ``MPIParallelizer.run`` (or a script run
with ``python -m parallelizer``) would leave the other ranks waiting forever
in their next collective. Instead the failing rank writes its traceback to
stderr, every line prefixed with its rank, under a line that names its rank
and host (``[rank 3] rank 3 on node2 aborts the MPI job: ValueError``),
flushes, and calls ``MPI_Abort`` on ``COMM_WORLD``, which ends every process
of the job with a non-zero status.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
import time
from types import TracebackType
from typing import NoReturn

from .._core import remote
from .._core.limits import ABORT_REPORT_GRACE
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
    # the job at once. A moment's grace lets the report reach the terminal.
    time.sleep(ABORT_REPORT_GRACE)
    leftovers.remove()  # what MPI_Finalize would have removed: this job's shared memory
    with contextlib.suppress(Exception):
        runtime.load().COMM_WORLD.Abort(status)
    # MPI_Abort may return in the calling process (MPICH does, after telling
    # the launcher): nothing of this process may run on.
    os._exit(status)
