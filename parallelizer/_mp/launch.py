"""Starting the worker processes of a group.

``spawn`` (the default) starts a fresh interpreter that runs the entry point
``parallelizer.mp:_spawned_worker`` (which calls
:func:`parallelizer._mp.worker.spawn_main`). It receives exactly its own
sockets (``pass_fds``) and never imports the main script: functions defined
there travel by value (cloudpickle), so scripts need no
``if __name__ == "__main__":`` guard and the main script's imports are not
repeated in every worker. Safe whatever threads main has.

``fork`` copies the main process (``os.fork``): the fastest start, since
nothing is imported again, but unsafe when main runs threads (BLAS pools,
Jupyter's own threads); Python 3.14 stopped making it the default for that
reason, and so do we.

Every worker also gets the read end of a *lifeline* pipe whose write end only
main holds: when main dies, however it dies, the read returns EOF and the
worker exits. On Linux workers additionally ask the kernel to kill them when
their parent exits (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

from .._core.limits import REAP_POLL
from . import worker
from .protocol import exit_now

START_METHODS = ("spawn", "fork")
DEFAULT_START_METHOD = "spawn"

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); from parallelizer.mp import _spawned_worker; "
    "_spawned_worker(sys.argv[2:])"
)
_CLEANUP_WAIT = 5.0  # seconds to reap workers killed because launching failed


class WorkerProcess:
    """A started worker: its pid, a sentinel fd (readable once it exited), its exit status."""

    def __init__(self, rank: int, pid: int, popen: subprocess.Popen[bytes] | None) -> None:
        self.rank = rank
        self.pid = pid
        self._popen = popen
        self._status: int | None = None
        self.sentinel: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self.sentinel = os.pidfd_open(pid)
            except OSError:
                self.sentinel = None

    def poll(self) -> int | None:
        """The exit status (minus the signal number if killed), or ``None`` while running."""
        if self._status is None:
            if self._popen is not None:
                self._status = self._popen.poll()
            else:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    return None
                if pid:
                    self._status = os.waitstatus_to_exitcode(status)
        return self._status

    def wait(self, timeout: float) -> int | None:
        """Waits up to ``timeout`` seconds for the process to end; its status or ``None``."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self.sentinel is not None:
                select.select([self.sentinel], [], [], remaining)
            else:
                time.sleep(min(remaining, REAP_POLL))
        return self._status

    def signal(self, signum: int) -> None:
        """Sends ``signum`` unless the process has already been reaped."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def close(self) -> None:
        """Closes the sentinel fd."""
        if self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None


class Launched:
    """What :func:`launch` started: main's sockets, the workers, the lifeline."""

    def __init__(self, sockets: dict[int, socket.socket], workers: list[WorkerProcess], lifeline: int) -> None:
        self.sockets = sockets
        self.workers = workers
        self.lifeline = lifeline


def launch(nprocs: int, start_method: str, make_view: worker.ViewFactory) -> Launched:
    """Starts ranks ``1 .. nprocs-1`` and connects every pair of processes.

    Returns at once: workers finish starting while main goes on.

    Args:
        nprocs: The size of the group, main included.
        start_method: ``"spawn"`` or ``"fork"``.
        make_view: What a forked worker builds its parallelizer with (a
            spawned one imports it from ``parallelizer.mp``).
    """
    pairs = {(a, b): socket.socketpair() for a in range(nprocs) for b in range(a + 1, nprocs)}

    def end(owner: int, peer: int) -> socket.socket:
        low, high = min(owner, peer), max(owner, peer)
        return pairs[(low, high)][0 if owner == low else 1]

    lifeline_read, lifeline_write = os.pipe()
    deathsig = threading.current_thread() is threading.main_thread()
    workers: list[WorkerProcess] = []
    try:
        for rank in range(1, nprocs):
            mine = {peer: end(rank, peer) for peer in range(nprocs) if peer != rank}
            if start_method == "fork":
                others = [sock for pair in pairs.values() for sock in pair if all(sock is not m for m in mine.values())]
                fds = [lifeline_write] + [w.sentinel for w in workers if w.sentinel is not None]
                workers.append(_fork(rank, nprocs, mine, lifeline_read, deathsig, others, fds, make_view))
            else:
                workers.append(_spawn(rank, nprocs, mine, lifeline_read, deathsig))
    except BaseException:
        for started in workers:
            started.signal(signal.SIGKILL)
            started.wait(_CLEANUP_WAIT)
            started.close()
        for pair in pairs.values():
            for sock in pair:
                sock.close()
        os.close(lifeline_write)
        raise
    finally:
        os.close(lifeline_read)
    main_sockets = {peer: end(0, peer) for peer in range(1, nprocs)}
    for pair in pairs.values():  # main keeps only its own ends
        for sock in pair:
            if all(sock is not mine for mine in main_sockets.values()):
                sock.close()
    return Launched(main_sockets, workers, lifeline_write)


def launch_one(rank: int, nprocs: int) -> tuple[socket.socket, WorkerProcess, int]:
    """Spawns one process as ``rank``, connected to main alone (it replaces a dead worker).

    Returns:
        Main's end of its socket, the process, and the write end of its lifeline.
    """
    mains, theirs = socket.socketpair()
    lifeline_read, lifeline_write = os.pipe()
    deathsig = threading.current_thread() is threading.main_thread()
    try:
        started = _spawn(rank, nprocs, {0: theirs}, lifeline_read, deathsig)
    except BaseException:
        mains.close()
        os.close(lifeline_write)
        raise
    finally:
        theirs.close()
        os.close(lifeline_read)
    return mains, started, lifeline_write


def _spawn(rank: int, nprocs: int, sockets: dict[int, socket.socket], lifeline: int, deathsig: bool) -> WorkerProcess:
    fds = {peer: sock.fileno() for peer, sock in sockets.items()}
    argv = [sys.executable, "-c", _BOOTSTRAP, _PACKAGE_PARENT]
    argv += worker.spawn_argv(rank, nprocs, os.getpid(), lifeline, deathsig, fds)
    popen = subprocess.Popen(argv, pass_fds=[lifeline, *(sock.fileno() for sock in sockets.values())], close_fds=True)
    return WorkerProcess(rank, popen.pid, popen)


def _fork(
    rank: int,
    nprocs: int,
    sockets: dict[int, socket.socket],
    lifeline: int,
    deathsig: bool,
    other_sockets: list[socket.socket],
    other_fds: list[int],
    make_view: worker.ViewFactory,
) -> WorkerProcess:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return WorkerProcess(rank, pid, None)
    status = 1
    try:  # in the child: keep only this worker's sockets and the lifeline
        for sock in other_sockets:
            sock.close()
        for fd in other_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        status = worker.serve(rank, nprocs, sockets, lifeline, parent, deathsig, make_view)
    except BaseException:
        traceback.print_exc()
    finally:
        exit_now(status)
    raise AssertionError("unreachable")  # pragma: no cover
