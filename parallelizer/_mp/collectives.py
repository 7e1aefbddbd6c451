"""The collectives the multiprocessing backend does better than the generic ones.

* ``bcast``: root announces the object to every process at once; each pulls
  the array data out of root's memory in parallel.
* ``scatter``: root announces every block at once (views, no copy); the
  others pull theirs in parallel.
* ``gather``: when the parts concatenate (see ``semantics.concat_plan``),
  root allocates the result and pulls each part straight into its slice, in
  threads, while it copies its own part: one copy per byte, in parallel.

When every process has a CPU of its own (:attr:`Endpoint.polls`, the same on
every process), waiting processes are awake, and three collectives use
algorithms where processes send at once instead of through rank 0:

* ``barrier``: the dissemination barrier. In round ``k`` each process
  signals rank ``+2**k`` and waits for rank ``-2**k`` (modulo the size);
  after ``ceil(log2(nprocs))`` rounds every process has heard, through some
  chain, from every other, so all leave at about the same time (the linear
  barrier lets rank 0 go one message earlier than the rest).
* ``allgather``: each process sends its object to every other one, and each
  joins the parts as ``gather`` does: one message's time instead of two (a
  gather to rank 0, then its broadcast), and the same bytes moved: each part
  reaches each other process once, as the broadcast result did.
* ``allreduce`` on two processes: each sends its value to the other, and both
  fold the two in rank order: one message's time instead of two. The op is
  called on both, with the same values in the same order, so an op that
  gives the same result for the same values (every named op does) gives
  both the same result, or raises the same error on both; an op that
  behaves differently on different processes may make them differ. (On
  more processes, sending every value to every process would move more
  bytes than a gather and a broadcast of the result: the linear algorithm
  stays.)

A group with more processes than CPUs keeps the linear algorithms: there a
process waits for the scheduler rather than for the wire, and more messages
cost more.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from .. import semantics
from .._core import checks, memory, outbuf
from .._core.codec import encode, raw_bytes
from .._core.limits import PARALLEL_COPY_MIN
from .._core.tags import CollTag
from .._core.transport import receive_all, refused_part, refused_parts
from ..errors import SerializationError
from . import wire
from .channel import Incoming
from .endpoint import Endpoint
from .rendezvous import PendingSend


def bcast(endpoint: Endpoint, obj: Any, root: int) -> Any:
    """``broadcast`` over ``endpoint``."""
    if endpoint.rank == root:
        endpoint.send_all(
            obj, all_but(endpoint, root), wire.Kind.COLL, CollTag.BCAST, f"the object broadcast from rank {root}"
        )
        return obj
    return endpoint.recv(root, wire.Kind.COLL, CollTag.BCAST, "broadcast")


def scatter(endpoint: Endpoint, data: Any, bounds: list[tuple[int, int]] | None, root: int) -> Any:
    """``scatter`` over ``endpoint``."""
    if endpoint.rank != root:
        return endpoint.recv(root, wire.Kind.COLL, CollTag.SCATTER, "scatter")
    if bounds is None:  # refused: every other process gets the refusal instead of a block
        return refuse(endpoint, data, root, CollTag.SCATTER)
    endpoint.wait_sent(*post_blocks(endpoint, data, bounds, root))
    return semantics.root_block(data, *bounds[root])


def refuse(endpoint: Endpoint, refusal: Any, root: int, tag: int) -> Any:
    """Sends root's refusal to every other process in place of what they wait for; returns it."""
    return refuse_part(endpoint, refusal, all_but(endpoint, root), tag)


def refuse_part(
    endpoint: Endpoint, refusal: checks.Refusal | SerializationError, dests: Collection[int], tag: int
) -> checks.Refusal:
    """Sends a refusal to ``dests`` in place of what they wait for; returns it.

    ``refusal`` is a :class:`checks.Refusal`, or the ``SerializationError``
    met pickling what this process had to send (its own part): then
    :func:`refused_part` makes the refusal.
    """
    if not isinstance(refusal, checks.Refusal):
        refusal = refused_part(refusal, endpoint.rank)
    endpoint.send_all(refusal, dests, wire.Kind.COLL, tag, "a refusal")
    return refusal


def post_blocks(
    endpoint: Endpoint, data: Any, bounds: list[tuple[int, int]], root: int, lazy: bool = False
) -> list[PendingSend]:
    """Announces every other process's block of root's ``data`` (views, no copy); what :meth:`wait_sent` waits for.

    Every block is pickled before any is sent: if one cannot be, every other
    process gets a refusal instead (:func:`refuse_part`), and root raises it.
    """
    others = all_but(endpoint, root)
    try:
        blocks = [encode(semantics.take_block(data, *bounds[rank]), f"block {rank} of scatter") for rank in others]
    except SerializationError as exc:
        refuse_part(endpoint, exc, others, CollTag.SCATTER).raise_it()
    return [
        endpoint.post(None, (rank,), wire.Kind.COLL, CollTag.SCATTER, "a block of scatter", lazy=lazy, encoded=block)
        for rank, block in zip(others, blocks, strict=True)
    ]


def gather(endpoint: Endpoint, obj: Any, root: int) -> Any:
    """``gather`` over ``endpoint``; root runs its copies side by side in the endpoint's threads."""
    if endpoint.rank != root:
        try:
            endpoint.send_all(obj, (root,), wire.Kind.COLL, CollTag.GATHER, "the object gathered", lazy=True)
        except SerializationError as exc:  # a refusal goes in its place
            refuse_part(endpoint, exc, (root,), CollTag.GATHER).raise_it()
        return None
    return _join(endpoint, obj, CollTag.GATHER, "gather")


def gather_into(endpoint: Endpoint, obj: Any, root: int, out: Any, agree: Callable[[str | None], None]) -> Any:
    """``gather(out=)`` on root: every part pulled straight into its slice of ``out``, once all agree."""
    return _join(endpoint, obj, CollTag.GATHER, "gather", out, agree)


def _join(
    endpoint: Endpoint,
    obj: Any,
    tag: int,
    what: str,
    out: Any = outbuf.NOT_GIVEN,
    agree: Callable[[str | None], None] | None = None,
) -> Any:
    """This process's ``obj`` and the lazy messages every other one sent with ``tag``, joined as ``gather`` joins them.

    When the parts concatenate, the result is allocated once (or is ``out``)
    and each part is pulled straight into its slice: one copy per byte, no
    part held twice. With ``out`` (``agree`` given), ``agree`` is called
    once with this process's verdict on ``out`` before anything is pulled
    (it raises on every process if any verdict is bad; the parts are then
    dropped unread), and the result comes back as ``outbuf.Written``.
    """
    me, ranks = endpoint.rank, range(endpoint.nprocs)
    mine = semantics.array_meta(obj)
    if mine is None:  # no plan concatenates the parts: receive each whole (a small one straight from its socket)
        parts = receive_all(
            ranks, lambda rank: obj if rank == me else endpoint.recv(rank, wire.Kind.COLL, tag, what, lazy=True)
        )
        return _joined(semantics.join_gathered(parts), out, agree)
    incoming = {rank: endpoint.receive(rank, wire.Kind.COLL, tag, what, lazy=True) for rank in ranks if rank != me}
    metas = [mine if rank == me else incoming[rank].array_meta() for rank in ranks]
    plan = semantics.concat_plan(metas)
    if plan is None:  # not all raw arrays: receive the objects, then join them as gather says
        parts = receive_all(ranks, lambda rank: obj if rank == me else value(endpoint, incoming[rank], what))
        return _joined(semantics.join_gathered(parts), out, agree)
    import numpy

    if agree is not None:
        try:
            agree(None if out is None else outbuf.unfit(out, plan.shape, plan.dtype))
        except BaseException:
            for inc in incoming.values():  # never pulled: their senders may go on
                endpoint.rendezvous.release(inc)
            raise
    threads = endpoint.threads()
    result = memory.empty(plan.shape, plan.dtype) if agree is None or out is None else out

    def part(rank: int) -> Any:
        start = plan.offsets[rank]
        meta = metas[rank]
        assert meta is not None
        return result[start : start + meta.shape[0]]

    own = threads.submit(numpy.copyto, part(me), obj) if obj.nbytes >= PARALLEL_COPY_MIN else None
    if own is None:
        part(me)[...] = obj
    # Parts of the result's dtype in C order are pulled straight into their slice.
    same = [rank for rank in incoming if metas[rank].dtype == plan.dtype and incoming[rank].c_order]  # type: ignore[union-attr]
    endpoint.pull_into(
        [incoming[rank] for rank in same], [raw_bytes(part(rank)) for rank in same], threads=threads, what=what
    )
    for rank in incoming:
        if rank not in same:  # another dtype or order: receive it, then convert while copying
            part(rank)[...] = value(endpoint, incoming[rank], what)
    if own is not None:
        own.result()
    return result if agree is None else outbuf.Written(result)


def _joined(joined: Any, out: Any, agree: Callable[[str | None], None] | None) -> Any:
    """A result that is not one concatenated array: as it is, or (``out=``) checked by all, then put in ``out``."""
    return joined if agree is None else written(joined, out, agree)


def written(result: Any, out: Any, agree: Callable[[str | None], None]) -> outbuf.Written:
    """``out=``'s generic rule for a result already here: every process checks its ``out``, then it is written."""
    agree(outbuf.problem(out, result))
    return outbuf.Written(outbuf.write(out, result))


def value(endpoint: Endpoint, inc: Incoming, what: str = "gather") -> Any:
    """The object of a message that may have been sent lazily (its buffers pulled into new memory)."""
    endpoint.complete(inc, what)
    return inc.value(f"the message from rank {inc.source} ({what})")


def barrier(endpoint: Endpoint, what: str = "barrier()") -> None:
    """The dissemination barrier over ``endpoint`` (see the module docstring); ``what`` names the call."""
    rank, nprocs = endpoint.rank, endpoint.nprocs
    step = 1
    while step < nprocs:
        endpoint.send_all(None, ((rank + step) % nprocs,), wire.Kind.COLL, CollTag.BARRIER, "a barrier's signal")
        # The signal of rank - step comes once that rank has heard from the ranks
        # before it that this one has not heard from yet: a timeout names them all.
        late = sorted((rank - back) % nprocs for back in range(step, min(2 * step, nprocs)))
        endpoint.recv((rank - step) % nprocs, wire.Kind.COLL, CollTag.BARRIER, what, late=late)
        step *= 2


def allreduce_pair(endpoint: Endpoint, obj: Any, func: Callable[[Any, Any], Any], what: str = "allreduce()") -> Any:
    """``allreduce`` on a group of two: each sends ``obj`` to the other, then both fold in rank order.

    An error of the fold (values it cannot combine) is raised on both, as
    both fold the same values; nobody waits for a message that will not come.
    """
    other = 1 - endpoint.rank
    try:
        endpoint.send_all(obj, (other,), wire.Kind.COLL, CollTag.ALLREDUCE, "the object reduced")
    except SerializationError as exc:  # a refusal goes in its place; raised below, on both
        obj = refuse_part(endpoint, exc, (other,), CollTag.ALLREDUCE)
    theirs = endpoint.recv(other, wire.Kind.COLL, CollTag.ALLREDUCE, what)
    parts = [obj, theirs] if other else [theirs, obj]
    if type(theirs) is checks.Refusal or type(obj) is checks.Refusal:
        refused_parts(parts)
    return semantics.fold(parts, func, "allreduce")


def allgather_all(
    endpoint: Endpoint,
    obj: Any,
    what: str = "allgather()",
    out: Any = outbuf.NOT_GIVEN,
    agree: Callable[[str | None], None] | None = None,
) -> Any:
    """``allgather``: every process sends ``obj`` to every other one, then joins the parts as ``gather`` does.

    The parts are sent lazily: each process pulls the others' arrays straight
    into its result (:func:`_join`; into ``out`` after ``agree``), and waits
    until the others have pulled its own. Every part is received before the
    first error that unpickling one met is raised (:func:`receive_all`), so
    no process is left waiting.
    """
    rank, nprocs = endpoint.rank, endpoint.nprocs
    others = [(rank + step) % nprocs for step in range(1, nprocs)]  # each starts with its next neighbour
    try:
        sent = endpoint.send_all(
            obj, others, wire.Kind.COLL, CollTag.ALLGATHER, "the object allgathered", lazy=True, wait=False
        )
    except SerializationError as exc:  # a refusal goes in its place: every process raises it once joined
        obj, sent = refuse_part(endpoint, exc, others, CollTag.ALLGATHER), None
    with pulled(endpoint, [sent]):
        return _join(endpoint, obj, CollTag.ALLGATHER, what, out, agree)


def all_but(endpoint: Endpoint, root: int) -> list[int]:
    """Every rank but ``root``."""
    return [rank for rank in range(endpoint.nprocs) if rank != root]


def wait_pulled(endpoint: Endpoint, sent: Sequence[PendingSend | None]) -> None:
    """Until the receivers have pulled (or dropped) what this process sent lazily (``None``: nothing to wait for)."""
    endpoint.wait_sent(*[send for send in sent if send is not None])


@contextlib.contextmanager
def pulled(endpoint: Endpoint, sent: Sequence[PendingSend | None]) -> Iterator[None]:
    """On leaving, :func:`wait_pulled`: also after an error, which then stays the one raised.

    The others pull from this process's memory, so it returns only once they
    have; after an error of its own, a missing or dead process would fail
    that wait too, less clearly.
    """
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            wait_pulled(endpoint, sent)
        raise
    wait_pulled(endpoint, sent)
