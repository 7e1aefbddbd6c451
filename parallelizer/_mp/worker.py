"""The life of a worker process: set up, then run what main sends until STOP.

::

    spawned (spawn_main) or forked (launch._fork) -> serve()
        -> guard against main's death (lifeline thread, PR_SET_PDEATHSIG)
        -> SETUP from main: pids, sys.path, the group's identity -> make_view(...)
        -> loop: RUN(epoch) -> func(*args, parallelizer=view, **kwargs)
                   returned -> FINISHED to everyone
                   raised   -> ERROR(report) to main
                   aborted  -> nothing (main already knows)
                 STOP -> exit 0

The worker does not know the public class its view is an instance of:
whoever starts it passes ``make_view`` (:mod:`parallelizer.mp` does).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

from .._core import context, pickling, remote
from . import wire
from .channel import Incoming
from .endpoint import Endpoint
from .protocol import EXIT_ORPHANED, RunAborted, WorkerProtocol, exit_now

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class View(Protocol):
    """What the worker needs of the parallelizer ``func`` receives."""

    def _begin_run(self) -> None: ...


ViewFactory = Callable[[dict[str, Any], int, int, Endpoint], View]
"""``make_view(setup, rank, nprocs, endpoint)``: the parallelizer a worker's ``func`` gets.

``setup`` is what main sent: the group's ``token`` and its ``debug`` and
``timeout`` settings (and ``pids``, ``sys_path``)."""


def spawn_argv(rank: int, nprocs: int, parent: int, lifeline: int, deathsig: bool, fds: dict[int, int]) -> list[str]:
    """The command-line arguments a spawned worker decodes with :func:`parse_spawn_argv`."""
    pairs = ",".join(f"{peer}:{fd}" for peer, fd in fds.items())
    return [str(rank), str(nprocs), str(parent), str(lifeline), str(int(deathsig)), pairs]


def parse_spawn_argv(argv: list[str]) -> dict[str, Any]:
    """Decodes :func:`spawn_argv`.

    Example:
        >>> parse_spawn_argv(spawn_argv(2, 3, 100, 5, True, {0: 7, 1: 8}))["fds"]
        {0: 7, 1: 8}
    """
    rank, nprocs, parent, lifeline, deathsig, pairs = argv
    fds = {}
    for item in filter(None, pairs.split(",")):
        peer, fd = item.split(":")
        fds[int(peer)] = int(fd)
    return {
        "rank": int(rank),
        "nprocs": int(nprocs),
        "parent": int(parent),
        "lifeline": int(lifeline),
        "deathsig": bool(int(deathsig)),
        "fds": fds,
    }


def spawn_main(argv: list[str], make_view: ViewFactory) -> None:
    """Entry point of a spawned worker (see ``launch._spawn``)."""
    args = parse_spawn_argv(argv)
    sockets = {peer: socket.socket(fileno=fd) for peer, fd in args.pop("fds").items()}
    exit_now(serve(sockets=sockets, make_view=make_view, **args))


def serve(
    rank: int,
    nprocs: int,
    sockets: dict[int, socket.socket],
    lifeline: int,
    parent: int,
    deathsig: bool,
    make_view: ViewFactory,
) -> int:
    """Runs the worker until main says STOP; returns the exit status."""
    _guard_parent(lifeline, parent, deathsig)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is main's to handle
    protocol = WorkerProtocol(rank)
    endpoint = Endpoint(rank, nprocs, sockets, pids={}, protocol=protocol)
    view = None
    while True:
        while not protocol.next_command_ready():  # idle: nothing to raise; main's EOF exits
            endpoint.loop.pump(block=True)
        command = protocol.commands.popleft()
        if not isinstance(command, Incoming):  # STOP
            break
        if command.frame.kind == wire.Kind.SETUP:
            setup = command.value("the set-up sent by main")  # pids: already taken by the endpoint
            sys.path[:] = setup["sys_path"]
            # multiprocessing's key, as its own children get it: Manager proxies and
            # Connections made by main then work here too
            multiprocessing.current_process().authkey = setup["authkey"]
            endpoint.timeout = setup["timeout"]
            endpoint.set_polls(setup["polls"])  # main's choice: every process picks the same algorithms
            view = make_view(setup, rank, nprocs, endpoint)
            continue
        assert view is not None, "RUN before SETUP"
        _run_one(endpoint, protocol, view, command)
    endpoint.close()
    return 0


def _run_one(endpoint: Endpoint, protocol: WorkerProtocol, view: View, command: Incoming) -> None:
    epoch = command.epoch
    endpoint.begin_epoch(epoch)
    if protocol.abort_epoch >= epoch:
        return  # main gave this run up before we got to it
    try:
        func, args, kwargs = command.value("func and its arguments of run()")
        view._begin_run()  # as main does at every run
        context.push(view)
        try:
            func(*args, parallelizer=view, **kwargs)
        finally:
            context.pop(view)
    except RunAborted:
        return
    except BaseException as exc:
        endpoint.control(0, wire.Kind.ERROR, body=error_report(exc))
        return
    for rank in endpoint.loop.channels:
        endpoint.control(rank, wire.Kind.FINISHED)


def error_report(exc: BaseException) -> bytes:
    """What main needs to raise a RemoteError for ``exc``, as bytes."""
    return pickling.dumps(remote.report(exc), "the error report")


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
