"""The one way a failing rank ends an MPI job.

An exception that escapes ``func`` in ``MPIParallelizer.run`` (or a script run
with ``python -m parallelizer``) would leave the other ranks waiting forever
in their next collective. Instead the failing rank writes its traceback to
stderr, every line prefixed with its rank, flushes, and calls ``MPI_Abort``
on ``COMM_WORLD``, which ends every process of the job with a non-zero status.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from typing import NoReturn

from .._core.limits import ABORT_REPORT_GRACE
from . import runtime

ABORT_STATUS = 1


def report(exc: BaseException, rank: int | None) -> None:
    """Writes ``exc``'s traceback to stderr, each line prefixed with the rank."""
    prefix = f"[rank {rank}] " if rank is not None else ""
    lines = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).splitlines()
    text = "\n".join(prefix + line for line in lines) + "\n"
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    # The process's own stderr: a replaced sys.stderr (a test runner's
    # capture) dies with the process before anyone reads it.
    stream = sys.__stderr__ or sys.stderr
    with contextlib.suppress(Exception):
        stream.write(text)
        stream.flush()


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
    with contextlib.suppress(Exception):
        runtime.load().COMM_WORLD.Abort(status)
    # MPI_Abort may return in the calling process (MPICH does, after telling
    # the launcher): nothing of this process may run on.
    os._exit(status)
