"""The life of a worker process: set up, then run what main sends until STOP.

::

    spawn_main / fork child
        -> guard against main's death (lifeline thread, PR_SET_PDEATHSIG)
        -> SETUP from main: pids, sys.path, the group's identity
        -> loop: RUN(epoch) -> func(*args, parallelizer=view, **kwargs)
                   returned -> FINISHED to everyone
                   raised   -> ERROR(report) to main
                   aborted  -> nothing (main already knows)
                 STOP -> exit 0
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
from typing import Any

from .. import _context, _pickling, _remote
from . import wire
from .endpoint import EXIT_ORPHANED, Endpoint, RunAborted, exit_now
from .launch import spawn_args

_PR_SET_PDEATHSIG = 1


def spawn_main(argv: list[str]) -> None:
    """Entry point of a spawned worker (see ``launch._spawn``)."""
    args = spawn_args(argv)
    sockets = {peer: socket.socket(fileno=fd) for peer, fd in args.pop("fds").items()}
    exit_now(serve(sockets=sockets, **args))


def serve(rank: int, nprocs: int, sockets: dict[int, socket.socket], lifeline: int, parent: int, deathsig: bool) -> int:
    """Runs the worker until main says STOP; returns the exit status."""
    _guard_parent(lifeline, parent, deathsig)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is main's to handle
    endpoint = Endpoint(rank, nprocs, sockets, pids={})
    view = None
    while True:
        command = endpoint.next_command()
        if isinstance(command, wire.Frame):  # STOP
            break
        if command.frame.kind == wire.SETUP:
            setup = command.value("the set-up sent by main")  # pids: already taken by the endpoint
            sys.path[:] = setup["sys_path"]
            from ..mp import MultiprocessingParallelizer

            view = MultiprocessingParallelizer._worker_view(setup["token"], rank, nprocs, endpoint, setup["debug"])
            continue
        assert view is not None, "RUN before SETUP"
        _run_one(endpoint, view, command)
    if view is not None:
        view._close_worker_view()
    endpoint.close()
    return 0


def _run_one(endpoint: Endpoint, view: Any, command: Any) -> None:
    epoch = command.epoch
    endpoint.begin_epoch(epoch)
    if endpoint.abort_epoch >= epoch:
        return  # main gave this run up before we got to it
    try:
        func, args, kwargs = command.value("func and its arguments of run()")
        view._collective_count = 0  # as main does at every run
        _context.push(view)
        try:
            func(*args, parallelizer=view, **kwargs)
        finally:
            _context.pop(view)
    except RunAborted:
        return
    except BaseException as exc:
        endpoint.control(0, wire.ERROR, body=error_report(exc))
        return
    endpoint.finish_epoch()


def error_report(exc: BaseException) -> bytes:
    """What main needs to raise a RemoteError for ``exc``, as bytes."""
    return _pickling.dumps(_remote.report(exc), "the error report")


def _guard_parent(lifeline: int, parent: int, deathsig: bool) -> None:
    """Makes sure this worker never outlives main."""
    if deathsig and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # main died before we could watch it
        exit_now(EXIT_ORPHANED)

    def watch() -> None:
        try:
            while os.read(lifeline, 1):
                pass
        except OSError:
            pass
        exit_now(EXIT_ORPHANED)

    threading.Thread(target=watch, name="parallelizer-lifeline", daemon=True).start()
