"""``out=`` on the multiprocessing backend: arrays pulled straight into the caller's array.

Without ``out=`` a receiver pulls an array into a new one (``memory.empty``).
With it, the array is sent lazily: the receiver first reads the message's
header (dtype and shape), every process then tells the others whether its
``out`` can take its result (``agree``: one small allgather, so all raise the
same ``ValueError`` before any ``out`` is written), and only then does each
receiver pull the bytes into ``out`` itself: no new array, no second copy.
After an error the receivers drop the messages unread, which frees their
senders.

Results that are not one plain array in C order (lists, other objects,
Fortran-ordered arrays) are received as usual, and the same agreement
follows (:func:`parallelizer._core.outbuf.problem`): every process calls
``agree`` exactly once, whatever path it takes, so all stay in step.

Every function returns :class:`~parallelizer._core.outbuf.Written`, except
``scatter``'s refusal, which the caller raises on every process.
``allgather(out=)`` is :func:`collectives.allgather_all` with ``out``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from .. import semantics
from .._core import checks, memory, outbuf
from .._core.codec import raw_bytes
from .._core.limits import PARALLEL_COPY_MIN
from .._core.tags import CollTag
from . import wire
from .channel import Incoming
from .collectives import _join
from .endpoint import Endpoint
from .rendezvous import PendingSend

Agree = Callable[[str | None, str], None]
"""Raises ``ValueError`` on every process if any process's problem (``None``: fine) is not ``None``."""


def bcast(endpoint: Endpoint, obj: Any, root: int, out: Any, agree: Agree) -> Any:
    """``broadcast(out=)``: every receiver pulls root's array into its ``out``."""
    if endpoint.rank == root:
        others = [rank for rank in range(endpoint.nprocs) if rank != root]
        sent = endpoint.send_all(
            obj, others, wire.Kind.COLL, CollTag.BCAST, f"the object broadcast from rank {root}", lazy=True, wait=False
        )
        _agree_then_wait(endpoint, agree, outbuf.problem(out, obj), "broadcast", sent, write=(out, obj, obj))
        return outbuf.Written(semantics.own(obj) if out is None else out)
    return _receive(endpoint, endpoint.receive(root, wire.Kind.COLL, CollTag.BCAST, "broadcast", lazy=True), out, agree)


def scatter(
    endpoint: Endpoint, data: Any, bounds: list[tuple[int, int]] | None, root: int, out: Any, agree: Agree
) -> Any:
    """``scatter(out=)``: root announces every block (views, no copy); each process pulls its own into ``out``."""
    if endpoint.rank != root:
        inc = endpoint.receive(root, wire.Kind.COLL, CollTag.SCATTER, "scatter", lazy=True)
        if inc.array_meta() is None:  # maybe root's refusal, which the caller raises without agreeing
            value = _value(endpoint, inc, "scatter")
            if isinstance(value, checks.Refusal):
                return value
            agree(outbuf.problem(out, value), "scatter")
            return outbuf.Written(outbuf.write(out, value))
        return _receive(endpoint, inc, out, agree, "scatter")
    if bounds is None:  # refused: every other process gets the refusal instead of a block
        others = [rank for rank in range(endpoint.nprocs) if rank != root]
        endpoint.send_all(data, others, wire.Kind.COLL, CollTag.SCATTER, "a refusal")
        return data
    pending = [
        endpoint.post(
            semantics.take_block(data, *bounds[rank]),
            (rank,),
            wire.Kind.COLL,
            CollTag.SCATTER,
            f"block {rank} of scatter",
            lazy=True,
        )
        for rank in range(endpoint.nprocs)
        if rank != root
    ]
    mine = semantics.root_block(data, *bounds[root])
    _agree_then_wait(endpoint, agree, outbuf.problem(out, mine), "scatter", *pending, write=(out, mine, data))
    return outbuf.Written(mine if out is None else out)


def gather(endpoint: Endpoint, obj: Any, root: int, out: Any, agree: Agree) -> Any:
    """``gather(out=)``: root pulls every part straight into its slice of ``out``."""
    if endpoint.rank != root:
        sent = endpoint.send_all(
            obj, (root,), wire.Kind.COLL, CollTag.GATHER, "the object gathered", lazy=True, wait=False
        )
        _agree_then_wait(endpoint, agree, None, "gather", sent)
        return outbuf.Written(None)
    return _join(
        endpoint, outbuf.apart(obj, out), CollTag.GATHER, "gather", out, lambda problem: agree(problem, "gather")
    )


def _receive(endpoint: Endpoint, inc: Incoming, out: Any, agree: Agree, call: str = "broadcast") -> Any:
    """A receiver's half: check ``out`` against the header, agree, then pull into it (or a new array)."""
    meta = inc.array_meta()
    if meta is None or not inc.c_order:  # not one plain array in C order: receive it, then the generic rule
        value = _value(endpoint, inc, call)
        agree(outbuf.problem(out, value), call)
        return outbuf.Written(outbuf.write(out, value))
    try:
        agree(None if out is None else outbuf.unfit(out, meta.shape, meta.dtype), call)
    except BaseException:
        endpoint.rendezvous.release(inc)  # never pulled: its sender may go on
        raise
    target = memory.empty(meta.shape, meta.dtype) if out is None else out
    endpoint.pull_into([inc], [raw_bytes(target)])
    return outbuf.Written(target)


def _value(endpoint: Endpoint, inc: Incoming, call: str) -> Any:
    endpoint.complete(inc)
    return inc.value(f"the message from rank {inc.source} ({call})")


def _agree_then_wait(
    endpoint: Endpoint,
    agree: Agree,
    problem: str | None,
    call: str,
    *sent: PendingSend | None,
    write: tuple[Any, Any, Any] | None = None,
) -> None:
    """A sender's half: agree, then wait until the receivers have pulled (or, after an error, dropped) what it sent.

    ``write``: ``(out, value, source)``, this process's own result written
    into ``out`` once all agree; a large one in a thread while the others
    pull, unless ``out`` overlaps ``source``, the memory they pull from.
    """
    pending = [send for send in sent if send is not None]
    try:
        agree(problem, call)
    except BaseException:
        with contextlib.suppress(Exception):
            endpoint.wait_sent(*pending)
        raise
    if write is None or write[0] is None or write[0] is write[1]:
        endpoint.wait_sent(*pending)
        return
    out, value, source = write  # all agreed: value is an array out can take
    import numpy

    if not pending or value.nbytes < PARALLEL_COPY_MIN or numpy.may_share_memory(out, source):
        endpoint.wait_sent(*pending)
        outbuf.write(out, value)
        return
    copy = endpoint.threads().submit(outbuf.write, out, value)
    try:
        endpoint.wait_sent(*pending)
    finally:
        copy.result()
