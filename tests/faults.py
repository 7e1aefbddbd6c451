"""The fault matrix, shared by the multiprocessing tests and the MPI script:
each collective, and a body that fails on one rank before, between or after
two calls of it."""

from __future__ import annotations

import numpy as np


def _sendrecv(parallelizer):
    n, rank = parallelizer.nprocs, parallelizer.id
    parallelizer.send(rank, dest=(rank + 1) % n)
    return parallelizer.recv((rank - 1) % n)


CALLS = {
    "broadcast": lambda p: p.broadcast(np.arange(4) if p.on_main else None),
    "scatter": lambda p: p.scatter(list(range(10)) if p.on_main else None),
    "gather": lambda p: p.gather(np.full(3, p.id)),
    "allgather": lambda p: p.allgather(p.id),
    "reduce": lambda p: p.reduce(p.id, op="max"),
    "allreduce": lambda p: p.allreduce(np.ones(2)),
    "barrier": lambda p: p.barrier(),
    "map": lambda p: p.map(abs, list(range(-5, 5)) if p.on_main else None),
    "sendrecv": _sendrecv,
}
WHEN = ("before", "between", "after")


class InjectedFault(Exception):
    """The exception the failing rank raises."""


def failing_body(call, failing, when, parallelizer):
    """Calls ``CALLS[call]`` twice on every rank; ``failing`` raises at ``when``."""

    def maybe_fail(moment):
        if parallelizer.id == failing and moment == when:
            raise InjectedFault(f"rank {failing} fails {when} {call}")

    maybe_fail("before")
    CALLS[call](parallelizer)
    maybe_fail("between")
    CALLS[call](parallelizer)
    maybe_fail("after")
    return "ok"


def positions(nprocs):
    """Failing ranks to try: main, the first worker, the last worker."""
    return sorted({0, min(1, nprocs - 1), nprocs - 1})


def cannot_finish(call, failing, when, nprocs):
    """The ranks that can never return when ``failing`` fails ``before``/``between`` the calls.

    They need something from the failing rank in the call it skips: every
    rank in the all-to-all collectives, everyone but root when root fails a
    broadcast or scatter, root (rank 0) in those whose results it collects,
    the next rank in the ring of send/recv.
    """
    if when == "after":
        return set()
    everyone = set(range(nprocs))
    if call in ("allgather", "allreduce", "barrier"):
        return everyone
    if call in ("broadcast", "scatter"):
        return everyone if failing == 0 else {failing}
    if call in ("gather", "reduce", "map"):
        return {0, failing} if nprocs > 1 else {failing}
    if call == "sendrecv":
        return {failing, (failing + 1) % nprocs}
    raise ValueError(call)
