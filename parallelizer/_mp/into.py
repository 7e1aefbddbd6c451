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
follows (:func:`collectives.written`): every process calls ``agree`` exactly
once, whatever path it takes, so all stay in step. A root's refusal (a
``scatter`` of data it cannot split, a reduction it cannot compute) is
returned instead, with no agreement: the caller raises it on every process.

``gather(out=)`` and ``allgather(out=)`` are :func:`collectives.gather_into`
and :func:`collectives.allgather_all` with ``out``. Reductions of arrays of
one dtype and shape with a named op write the result into ``out`` with the
op's ufunc (the same values as :func:`semantics.fold`, in the same order);
two processes that each have a CPU exchange their arrays, pulling the
other's straight into ``out``, with no new array at all. ``agree`` takes this
process's verdict (``None``: its ``out`` fits) and raises ``ValueError`` on
every process if any verdict is not ``None``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .. import semantics
from .._core import checks, memory, outbuf
from .._core.codec import raw_bytes
from .._core.limits import FOLD_PIECE, PARALLEL_COPY_MIN
from .._core.tags import CollTag
from .._core.transport import receive_all, refused_parts
from ..errors import SerializationError
from . import collectives, wire
from .channel import Incoming
from .endpoint import Endpoint
from .rendezvous import PendingSend

Agree = Callable[[str | None], None]


def bcast(endpoint: Endpoint, obj: Any, root: int, out: Any, agree: Agree, call: str = "broadcast") -> Any:
    """``broadcast(out=)``: every receiver pulls root's array into its ``out``."""
    if endpoint.rank != root:
        return _receive(endpoint, root, CollTag.BCAST, out, agree, call)
    if type(obj) is checks.Refusal:  # (a reduction root could not compute)
        return collectives.refuse(endpoint, obj, root, CollTag.BCAST)
    sent = endpoint.send_all(
        obj,
        collectives.all_but(endpoint, root),
        wire.Kind.COLL,
        CollTag.BCAST,
        f"the object broadcast from rank {root}",
        lazy=True,
        wait=False,
    )
    _agree_as_sender(endpoint, agree, outbuf.problem(out, obj), [sent])
    if out is None or not semantics.is_ndarray(obj):  # (a result that is None ignores out)
        collectives.wait_pulled(endpoint, [sent])
        return outbuf.Written(semantics.own(obj) if out is None else outbuf.write(out, obj))
    _write_while_pulled(endpoint, out, obj, obj, [sent])
    return outbuf.Written(out)


def scatter(
    endpoint: Endpoint, data: Any, bounds: list[tuple[int, int]] | None, root: int, out: Any, agree: Agree
) -> Any:
    """``scatter(out=)``: root announces every block (views, no copy); each process pulls its own into ``out``."""
    if endpoint.rank != root:
        return _receive(endpoint, root, CollTag.SCATTER, out, agree, "scatter")
    if bounds is None:  # refused: every other process gets the refusal instead of a block
        return collectives.refuse(endpoint, data, root, CollTag.SCATTER)
    pending = collectives.post_blocks(endpoint, data, bounds, root, lazy=True)
    mine = semantics.root_block(data, *bounds[root])
    _agree_as_sender(endpoint, agree, outbuf.problem(out, mine), pending)
    if out is None or not semantics.is_ndarray(mine):
        collectives.wait_pulled(endpoint, pending)
        return outbuf.Written(mine if out is None else outbuf.write(out, mine))
    _write_while_pulled(endpoint, out, mine, data, pending)
    return outbuf.Written(out)


def gather_part(endpoint: Endpoint, obj: Any, root: int, agree: Agree) -> Any:
    """``gather(out=)`` off root: sends ``obj`` lazily, agrees, and waits until root has pulled it.

    An ``obj`` it cannot pickle goes as a refusal, raised at once: the caller
    joins the agreement, as root does when it meets the refusal.
    """
    try:
        sent = endpoint.send_all(
            obj, (root,), wire.Kind.COLL, CollTag.GATHER, "the object gathered", lazy=True, wait=False
        )
    except SerializationError as exc:
        collectives.refuse_part(endpoint, exc, (root,), CollTag.GATHER).raise_it()
    _agree_as_sender(endpoint, agree, None, [sent])
    collectives.wait_pulled(endpoint, [sent])
    return outbuf.Written(None)


def _receive(endpoint: Endpoint, root: int, tag: int, out: Any, agree: Agree, call: str) -> Any:
    """A receiver's half: check ``out`` against root's header, agree, then pull into it (or a new array)."""
    inc = endpoint.receive(root, wire.Kind.COLL, tag, call, lazy=True)
    meta = inc.array_meta()
    if meta is None or not inc.c_order:  # not one plain array in C order: receive it, then the generic rule
        got = collectives.value(endpoint, inc, call)
        return got if type(got) is checks.Refusal else collectives.written(got, out, agree)
    try:
        agree(None if out is None else outbuf.unfit(out, meta.shape, meta.dtype))
    except BaseException:
        endpoint.rendezvous.release(inc)  # never pulled: its sender may go on
        raise
    target = memory.empty(meta.shape, meta.dtype) if out is None else out
    endpoint.pull_into([inc], [raw_bytes(target)], what=call)
    return outbuf.Written(target)


def _agree_as_sender(endpoint: Endpoint, agree: Agree, problem: str | None, sent: Sequence[PendingSend | None]) -> None:
    """A sender's half of the agreement; after an error, it waits until the receivers have dropped what it sent.

    (On success the caller waits, after starting its own copy into ``out``.)
    """
    try:
        agree(problem)
    except BaseException:
        with contextlib.suppress(Exception):
            collectives.wait_pulled(endpoint, sent)
        raise


def _write_while_pulled(
    endpoint: Endpoint, out: Any, value: Any, source: Any, sent: Sequence[PendingSend | None]
) -> None:
    """This process's own array result into ``out`` while the others pull what it sent, then waits for them.

    A large copy runs in a thread beside the pulls, unless ``out`` overlaps
    ``source``, the memory they pull from (then it waits first).
    """
    import numpy

    if out is value or value.nbytes < PARALLEL_COPY_MIN or numpy.may_share_memory(out, source):
        collectives.wait_pulled(endpoint, sent)
        outbuf.write(out, value)
        return
    copy = endpoint.threads().submit(outbuf.write, out, value)
    try:
        collectives.wait_pulled(endpoint, sent)
    finally:
        copy.result()


_UFUNCS = {"sum": "add", "prod": "multiply", "min": "minimum", "max": "maximum"}
"""The numpy ufunc of each named op: what it applies to two arrays of one dtype and shape."""


def _ufunc(op: object, *metas: semantics.ArrayMeta | None) -> Any:
    """The ufunc that folds arrays with these descriptions into ``out``, or ``None`` (then ``semantics.fold``).

    Only for numbers and booleans in native byte order, whose result has
    their dtype: elsewhere numpy may choose another (strings grow, a swapped
    byte order comes back native) or refuse the op, which ``fold`` reports.
    """
    first = metas[0]
    if not isinstance(op, str) or first is None or any(meta != first for meta in metas):
        return None
    if first.dtype.kind not in "biufc" or not first.dtype.isnative:
        return None
    import numpy

    return getattr(numpy, _UFUNCS[op])


def fold_into(parts: list[Any], op: object, func: Callable[[Any, Any], Any], out: Any, agree: Agree, call: str) -> Any:
    """The reduction of ``parts`` (in rank order, all here) into ``out`` once all agree; ``Written``.

    Raises ``CombineError`` before agreeing when the values cannot be combined.
    """
    ufunc = None if out is None else _ufunc(op, *map(semantics.array_meta, parts))
    if ufunc is None or len(parts) < 2:
        return collectives.written(semantics.fold(parts, func, call), out, agree)
    agree(outbuf.unfit(out, parts[0].shape, parts[0].dtype))
    parts = [outbuf.apart(part, out) for part in parts]  # this process's own part may be out itself
    ufunc(parts[0], parts[1], out=out)
    for part in parts[2:]:
        ufunc(out, part, out=out)
    return outbuf.Written(out)


def reduce_root(
    endpoint: Endpoint, obj: Any, root: int, op: object, func: Callable[[Any, Any], Any], out: Any, agree: Agree
) -> Any:
    """``reduce(out=)`` on root: the other parts are read a piece at a time and folded straight into ``out``.

    The others send with :func:`gather_part`. Where :func:`fold_into` would
    use a ufunc (arrays of one dtype and shape, a named op) and this process
    may read the senders' memory, no array of a part's size is made: every
    :data:`FOLD_PIECE` bytes of a part are read into one small scratch array
    and folded into the same piece of ``out`` at once, the parts in rank
    order (the values :func:`semantics.fold` gives). Anything else is
    received whole, then folded by :func:`fold_into`. ``Written``.
    """
    ranks = range(endpoint.nprocs)
    incoming = {
        rank: endpoint.receive(rank, wire.Kind.COLL, CollTag.GATHER, "reduce", lazy=True)
        for rank in ranks
        if rank != root
    }
    metas = [semantics.array_meta(obj) if rank == root else incoming[rank].array_meta() for rank in ranks]
    ufunc = None if out is None or len(metas) < 2 else _ufunc(op, *metas)
    if ufunc is None or not all(inc.c_order for inc in incoming.values()):
        parts = receive_all(ranks, lambda rank: obj if rank == root else collectives.value(endpoint, incoming[rank]))
        return fold_into(parts, op, func, out, agree, "reduce")
    meta = metas[root]
    assert meta is not None
    try:
        agree(outbuf.unfit(out, meta.shape, meta.dtype))
    except BaseException:
        for inc in incoming.values():  # never read: their senders may go on
            endpoint.rendezvous.release(inc)
        raise
    own = outbuf.apart(obj, out)
    sources: list[Any] = [
        (own if own.flags.c_contiguous else own.copy()).reshape(-1) if rank == root else incoming[rank]
        for rank in ranks
    ]
    for index, source in enumerate(sources):
        if type(source) is Incoming and not endpoint.rendezvous.readable(source):  # here already, or streamed
            sources[index] = collectives.value(endpoint, source).reshape(-1)
    _fold_pieces(endpoint, sources, ufunc, out)
    return outbuf.Written(out)


def _fold_pieces(endpoint: Endpoint, sources: list[Any], ufunc: Any, out: Any) -> None:
    """``out`` = ``sources[0]`` op ``sources[1]`` op ..., a piece at a time.

    A source is a flat array or a lazy message read piece by piece; every
    such message's sender is released at the end, also after an error.
    """
    rendezvous = endpoint.rendezvous
    flat = out.reshape(-1)
    itemsize = out.dtype.itemsize
    step = max(1, FOLD_PIECE // itemsize)
    scratch = _scratch(out.dtype, min(step, flat.size))
    reading: dict[int, OSError | None] = {  # the messages still read piece by piece, and why a read failed
        index: None for index, source in enumerate(sources) if type(source) is Incoming
    }

    def piece(index: int, start: int, stop: int, into: Any) -> Any:
        source = sources[index]
        if index not in reading:
            return source[start:stop]
        error = rendezvous.read_piece(source, start * itemsize, into)
        if error is None:
            return into
        if not rendezvous.refused(error):
            reading[index] = error
            raise _ReadFailed
        # this process may not read the sender's memory: it streams the whole part instead
        del reading[index]
        sources[index] = collectives.value(endpoint, source).reshape(-1)
        return sources[index][start:stop]

    try:
        for start in range(0, flat.size, step):
            stop = min(start + step, flat.size)
            target, spare = flat[start:stop], scratch[: stop - start]
            ufunc(piece(0, start, stop, target), piece(1, start, stop, spare), out=target)
            for index in range(2, len(sources)):
                ufunc(target, piece(index, start, stop, spare), out=target)
    except _ReadFailed:
        pass  # the wait below raises what the failed read means (a dead sender, an abandoned run)
    finally:
        for index, error in reading.items():
            rendezvous.pieces_read(sources[index], error)
    incs = [sources[index] for index in reading]
    endpoint.wait(lambda: all(inc.ready for inc in incs), [inc.source for inc in incs], "reduce()")
    if any(error is not None for error in reading.values()):
        raise RuntimeError("reduce(): a part could not be read from its sender")  # (the wait raises first)


_scratches = threading.local()


def _scratch(dtype: Any, count: int) -> Any:
    """``count`` items of ``dtype`` (at most :data:`FOLD_PIECE` bytes) in memory each thread keeps for this."""
    import numpy

    buffer = getattr(_scratches, "buffer", None)
    if buffer is None:
        buffer = _scratches.buffer = bytearray(FOLD_PIECE)
    return numpy.frombuffer(buffer, dtype=dtype, count=count)


class _ReadFailed(Exception):
    """A piece could not be read from its sender (``_fold_pieces``)."""


def allreduce_pair(
    endpoint: Endpoint, obj: Any, op: object, func: Callable[[Any, Any], Any], out: Any, agree: Agree, what: str
) -> Any:
    """``allreduce(out=)`` on two processes: each pulls the other's array straight into ``out``, then folds in place.

    ``obj`` must not share memory with ``out`` (the other process may still
    be pulling it). Both processes choose the way from what both know (the
    op and the two arrays' descriptions); other values take
    :func:`collectives.allreduce_pair`'s way, then the generic rule.
    """
    other = 1 - endpoint.rank
    try:
        sent = endpoint.send_all(
            obj, (other,), wire.Kind.COLL, CollTag.ALLREDUCE, "the object reduced", lazy=True, wait=False
        )
    except SerializationError as exc:  # a refusal goes in its place; raised below, on both
        obj, sent = collectives.refuse_part(endpoint, exc, (other,), CollTag.ALLREDUCE), None
    with collectives.pulled(endpoint, [sent]):
        inc = endpoint.receive(other, wire.Kind.COLL, CollTag.ALLREDUCE, what, lazy=True)
        mine = semantics.array_meta(obj)
        ufunc = _ufunc(op, mine, inc.array_meta())
        if ufunc is None:
            value = collectives.value(endpoint, inc, what)
            parts = [obj, value] if other else [value, obj]
            refused_parts(parts)  # before agreeing: the caller joins the agreement
            result = semantics.fold(parts, func, "allreduce")  # both raise alike
            return collectives.written(result, out, agree)
        assert mine is not None
        try:
            agree(None if out is None else outbuf.unfit(out, mine.shape, mine.dtype))
        except BaseException:
            endpoint.rendezvous.release(inc)
            raise
        target = memory.empty(mine.shape, mine.dtype) if out is None else out
        if inc.c_order:
            endpoint.pull_into([inc], [raw_bytes(target)], what=what)
            theirs = target
        else:  # Fortran order: received whole, then combined into target
            theirs = collectives.value(endpoint, inc, what)
        ufunc(*((obj, theirs) if other else (theirs, obj)), out=target)
        return outbuf.Written(target)
