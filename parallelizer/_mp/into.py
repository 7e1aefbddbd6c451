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
from collections.abc import Callable, Sequence
from typing import Any

from .. import semantics
from .._core import checks, memory, outbuf
from .._core.codec import raw_bytes
from .._core.limits import PARALLEL_COPY_MIN
from .._core.tags import CollTag
from . import collectives, wire
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
    """``gather(out=)`` off root: sends ``obj`` lazily, agrees, and waits until root has pulled it."""
    sent = endpoint.send_all(obj, (root,), wire.Kind.COLL, CollTag.GATHER, "the object gathered", lazy=True, wait=False)
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
    sent = endpoint.send_all(
        obj, (other,), wire.Kind.COLL, CollTag.ALLREDUCE, "the object reduced", lazy=True, wait=False
    )
    with collectives.pulled(endpoint, [sent]):
        inc = endpoint.receive(other, wire.Kind.COLL, CollTag.ALLREDUCE, what, lazy=True)
        mine = semantics.array_meta(obj)
        ufunc = _ufunc(op, mine, inc.array_meta())
        if ufunc is None:
            value = collectives.value(endpoint, inc, what)
            result = semantics.fold([obj, value] if other else [value, obj], func, "allreduce")  # both raise alike
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
