"""The collectives of the MPI backend, on mpi4py's buffer methods.

Arrays move with ``Scatterv``/``Gatherv``/``Allgatherv``/``Reduce``/
``Allreduce`` straight between numpy memory; a small description first (the
slots of :mod:`slots`: root's broadcast for ``scatter``, every rank's in one
``Allgather`` for the others) tells every rank what comes and which path to
take, so all ranks always agree. The plans derived from a description
(counts, displacements, the MPI op) are kept with it, so a loop over the
same shapes derives them once. Everything else travels as object messages
(:mod:`messages`).

When a count or displacement of a ``v`` collective does not fit the C int of
an MPI-3 library, the array moves with chunked point-to-point messages instead.

With ``out=`` an array result is received straight into the caller's array
(no new array, no copy). Each rank's slot also describes its ``out``, so
every rank checks every ``out`` that matters from the same bytes before any
data moves (``scatter`` then gathers the slots instead of broadcasting
root's); where a slot cannot vouch for an ``out`` (read-only, not
C-contiguous, not an array) the ranks exchange their exact verdicts, and
arrays a slot cannot describe (structured dtypes) take the older paths:
a pickled header and :meth:`Collectives.agree_out` for ``scatter``,
:mod:`broadcast_into` for ``broadcast``. When the result is not an array,
the collective runs as without ``out`` and the generic rule of
:mod:`parallelizer._core.outbuf` raises or copies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import semantics
from .._core import checks, outbuf
from .._core import codec as _codec
from .._core import memory as _memory
from .._core.tags import CollTag
from .._core.transport import receive_all, refused_part
from ..errors import SerializationError
from . import broadcast_into, messages, plans, slots
from .runtime import load as _mpi
from .slots import ARRAY, EMPTY, INLINE, Round, SlotExchange

_UNKNOWN: Any = object()  # not in a memo yet


class Collectives:
    """Scatter, gather and reductions over one communicator."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.broadcaster = messages.Broadcaster(comm)
        self.slots = SlotExchange(comm)
        self._words: Any = None  # int64 buffers of agree_out and broadcast_into (numpy, made on first use)
        self._scatter_plan: plans.ScatterPlan | None = None  # for the last slot root broadcast

    def _buffers(self) -> Any:
        if self._words is None:
            import numpy

            self._words = (numpy.zeros(1, dtype=numpy.int64), numpy.zeros(6, dtype=numpy.int64))
        return self._words

    def agree_out(self, problem: str | None, call: str) -> None:
        """Raises on every rank if any rank's ``out`` cannot take its result (before data moves)."""
        MPI = _mpi()
        flag = self._buffers()[0]
        flag[0] = 0 if problem is None else 1
        self.comm.Allreduce(MPI.IN_PLACE, [flag, MPI.INT64_T], MPI.MAX)
        if flag[0]:
            outbuf.check_all(self.comm.allgather(problem), call)

    def bcast_into(self, obj: Any, root: int, out: Any) -> Any:
        """``broadcast(out=)``: root's array straight into every ``out`` after one slot exchange.

        Root's slot describes its array, every rank's its ``out``; where all
        fit, one ``Bcast`` moves the data (ranks that passed ``out=None`` get
        a new array). Arrays a slot cannot describe take :mod:`broadcast_into`'s
        path, anything else the plain broadcast (the generic rule then checks).
        """
        array = self.rank == root and _codec.is_plain_array(obj)
        found = self.slots.exchange(obj, slots.out_state(out), empty=not array)
        head = found.slots[root]
        if head.kind != ARRAY:
            if head.kind == EMPTY:  # root has no plain array
                return self.bcast(obj, root)
            written = broadcast_into.try_direct(self.comm, self._buffers()[1], obj, root, out)
            return self.bcast(obj, root) if written is None else written
        meta = head.value
        self._agree(
            found,
            ("broadcast", root),
            lambda: [meta] * self.size,
            lambda: None if out is None else outbuf.unfit(out, meta.shape, meta.dtype),
        )
        if self.rank != root:
            target = _memory.empty(meta.shape, meta.dtype) if out is None else out
            messages.bcast_bytes(self.comm, _codec.raw_bytes(target), root)
            return outbuf.Written(target)
        messages.bcast_bytes(self.comm, messages.writable(messages.c_bytes(obj)), root)
        if out is None:
            return outbuf.Written(semantics.own(obj))
        if out is not obj:
            import numpy

            numpy.copyto(out, obj, casting="no")
        return outbuf.Written(out)

    # ------------------------------------------------------------------ broadcast

    def bcast(self, obj: Any, root: int) -> Any:
        """``broadcast``."""
        return self.broadcaster.bcast(obj, root)

    # ------------------------------------------------------------------ agreement on out=

    def _agree(
        self,
        found: Round,
        key: tuple[str, int | None],
        wanted: Callable[[], list[Any]],
        problem: Callable[[], str | None],
    ) -> None:
        """Raises on every rank if an ``out`` cannot take its result, before any data moves.

        Args:
            found: The exchange, whose slots describe every rank's ``out``.
            key: The call and its root (the verdict is kept with ``found``).
            wanted: Every rank's result as an ``ArrayMeta``, ``None`` where ``out`` is ignored.
            problem: This rank's exact verdict (:func:`outbuf.unfit`), for the slow path.
        """
        fine = found.memo.get(key)
        if fine is None:
            pairs = zip(found.slots, wanted(), strict=True)
            fine = found.memo[key] = all(plans.out_fits(slot.out, want) for slot, want in pairs)
        if not fine:  # a slot could not vouch for an out: the exact verdicts decide
            outbuf.check_all(self.comm.allgather(problem()), key[0])

    # ------------------------------------------------------------------ scatter

    def scatter(self, data: Any, bounds: list[tuple[int, int]] | None, root: int, out: Any = outbuf.NOT_GIVEN) -> Any:
        """``scatter``: arrays with ``Scatterv`` after root's slot, other sequences as object messages."""
        into = out is not outbuf.NOT_GIVEN
        array = self.rank == root and bounds is not None and _codec.is_plain_array(data)
        found: Round | None = None
        if into:
            found = self.slots.exchange(data, slots.out_state(out), empty=not array)
            head = found.slots[root]
        else:
            head = self.slots.broadcast(data, root, empty=not array)
        if head.kind != ARRAY:  # not an array with a slot's description
            return self._scatter_general(data, bounds, root, out)
        plan = self._scatter_plan if found is None else found.memo.get("scatter")
        if plan is None or plan.head is not head:
            plan = plans.ScatterPlan(head, self.size)
            if found is None:
                self._scatter_plan = plan
            else:
                found.memo["scatter"] = plan
        dtype, trailing = head.value.dtype, head.value.shape[1:]
        start, stop = plan.bounds[self.rank]
        if found is not None:
            self._agree(
                found,
                ("scatter", root),
                lambda: [semantics.ArrayMeta(dtype, (b - a, *trailing)) for a, b in plan.bounds],
                lambda: None if out is None else outbuf.unfit(out, (stop - start, *trailing), dtype),
            )
        MPI = _mpi()
        if self.rank == root:
            import numpy

            sendbuf = messages.c_bytes(data)
            mine = semantics.root_block(data, start, stop)
            # into out: MPI copies root's block, as it copies into any receive buffer (overlapping
            # the other ranks' transfers); an out that overlaps data gets it after, by numpy
            direct = into and out is not None and plan.fits and not numpy.may_share_memory(out, data)
            if plan.fits:
                receive = [_codec.raw_bytes(out), MPI.BYTE] if direct else MPI.IN_PLACE
                self.comm.Scatterv([sendbuf, plan.counts, plan.displs, MPI.BYTE], receive, root)
            else:
                for rank in range(self.size):
                    if rank != root:
                        view = sendbuf[plan.displs[rank] : plan.displs[rank] + plan.counts[rank]]
                        messages.send_bytes(self.comm, view, rank, CollTag.SCATTER)
            if into and out is not None:
                if not direct:
                    numpy.copyto(out, mine, casting="no")
                return outbuf.Written(out)
            return outbuf.Written(mine) if into else mine
        block = out if into and out is not None else _memory.empty((stop - start, *trailing), dtype)
        view = _codec.raw_bytes(block)
        if plan.fits:
            self.comm.Scatterv(None, [view, MPI.BYTE], root)
        else:
            messages.recv_bytes(self.comm, view, root, CollTag.SCATTER)
        return outbuf.Written(block) if into else block

    def _scatter_general(self, data: Any, bounds: list[tuple[int, int]] | None, root: int, out: Any) -> Any:
        """``scatter`` after a pickled header: refusals, object sequences, arrays a slot cannot describe."""
        MPI = _mpi()
        into = out is not outbuf.NOT_GIVEN
        if self.rank == root:
            if bounds is None:  # refused: the header tells every other process
                self.bcast(data, root)
                return data
            if _codec.is_plain_array(data):
                self.bcast(("array", data.dtype, data.shape[1:], len(data)), root)
                mine = semantics.root_block(data, *bounds[root])
                if into:
                    self.agree_out(None if out is None else outbuf.unfit(out, mine.shape, mine.dtype), "scatter")
                counts, displs = plans.block_bytes(bounds, data.dtype, data.shape[1:])
                sendbuf = messages.c_bytes(data)
                if plans.counts_fit(counts, displs):
                    self.comm.Scatterv([sendbuf, counts, displs, MPI.BYTE], MPI.IN_PLACE, root)
                else:
                    for rank in range(self.size):
                        if rank != root:
                            view = sendbuf[displs[rank] : displs[rank] + counts[rank]]
                            messages.send_bytes(self.comm, view, rank, CollTag.SCATTER)
                if into and out is not None:
                    import numpy

                    numpy.copyto(out, mine, casting="no")
                    return outbuf.Written(out)
                return outbuf.Written(mine) if into else mine
            others = [rank for rank in range(self.size) if rank != root]
            try:  # every block pickled before any is sent: one root cannot pickle is refused to all
                blocks = [
                    messages.prepare(semantics.take_block(data, *bounds[rank]), f"block {rank} of scatter")
                    for rank in others
                ]
            except SerializationError as exc:
                refusal = refused_part(exc, root)
                self.bcast(refusal, root)
                refusal.raise_it()
            self.bcast(("objects",), root)
            for rank, block in zip(others, blocks, strict=True):
                messages.send_prepared(self.comm, block, rank, CollTag.SCATTER)
            return semantics.root_block(data, *bounds[root])
        header = self.bcast(None, root)
        if type(header) is checks.Refusal:  # the caller raises it, as root does: no agreement on out
            return header
        if header[0] == "objects":
            return messages.recv_obj(self.comm, root, CollTag.SCATTER, "scatter")[1]
        _, dtype, trailing, length = header
        bounds = semantics.block_bounds(length, self.size)
        start, stop = bounds[self.rank]
        shape = (stop - start, *trailing)
        if into:
            self.agree_out(None if out is None else outbuf.unfit(out, shape, dtype), "scatter")
        block = out if into and out is not None else _memory.empty(shape, dtype)
        view = _codec.raw_bytes(block)
        counts, displs = plans.block_bytes(bounds, dtype, trailing)
        if plans.counts_fit(counts, displs):
            self.comm.Scatterv(None, [view, MPI.BYTE], root)
        else:
            messages.recv_bytes(self.comm, view, root, CollTag.SCATTER)
        return outbuf.Written(block) if into else block

    # ------------------------------------------------------------------ gather

    def gather_list(self, obj: Any, root: int, found: Round | None = None) -> list[Any] | None:
        """Every rank's object on root, in rank order, as sent (no concatenation)."""
        slots_ = (self.slots.exchange(obj) if found is None else found).slots
        if self.rank != root:
            if slots_[self.rank].kind != INLINE:
                try:
                    messages.send_obj(self.comm, obj, root, CollTag.GATHER, "the object gathered")
                except SerializationError as exc:  # a refusal goes in its place
                    refusal = refused_part(exc, self.rank)
                    messages.send_obj(self.comm, refusal, root, CollTag.GATHER, "a refusal")
                    refusal.raise_it()
            return None

        def part(rank: int) -> Any:
            if rank == root:
                return obj
            slot = slots_[rank]
            return slot.value if slot.kind == INLINE else self._recv_part(rank)

        return receive_all(range(self.size), part)

    def _recv_part(self, rank: int) -> Any:
        return messages.recv_obj(self.comm, rank, CollTag.GATHER, "gather")[1]

    def gather(self, obj: Any, root: int, out: Any = outbuf.NOT_GIVEN) -> Any:
        """``gather``: concatenated arrays with ``Gatherv``, else a list."""
        into = out is not outbuf.NOT_GIVEN
        target = out if into and self.rank == root else None  # off root out is ignored
        found = self.slots.exchange(obj, None if target is None else slots.out_state(target))
        if found.inline:  # small objects: the exchange was the whole gather
            if self.rank != root:
                return None
            return found.values(obj, root)
        return self._gather_round(obj, root, found, into, target)

    def gather_plain(self, obj: Any, root: int) -> Any:
        """``gather`` without ``out``: small objects straight from the exchange's bytes."""
        listed = self.slots.exchange_values(obj)
        if isinstance(listed, list):  # the exchange was the whole gather
            return listed if self.rank == root else None
        return self._gather_round(obj, root, listed, False, None)

    def _gather_round(self, obj: Any, root: int, found: Round, into: bool, target: Any) -> Any:
        """The rest of ``gather`` after an exchange that was not the whole of it."""
        layout = plans.concat_layout(found)
        if layout is None:
            parts = self.gather_list(obj, root, found)
            return None if parts is None else semantics.join_gathered(parts)
        result = layout.result
        if into:
            self._agree(
                found,
                ("gather", root),
                lambda: [result if rank == root else None for rank in range(self.size)],
                lambda: None if target is None else outbuf.unfit(target, result.shape, result.dtype),
            )
            if self.rank == root and target is None:
                target = _memory.empty(result.shape, result.dtype)
            self._gatherv(outbuf.apart(obj, target), target, layout.counts, layout.displs, root, layout.fits)
            return outbuf.Written(target)
        received = _memory.empty(result.shape, result.dtype) if self.rank == root else None
        self._gatherv(obj, received, layout.counts, layout.displs, root, layout.fits)
        return received

    def allgather(self, obj: Any, out: Any = outbuf.NOT_GIVEN) -> Any:
        """``allgather``: concatenated arrays with ``Allgatherv``, else a list."""
        into = out is not outbuf.NOT_GIVEN
        listed = self.slots.exchange_values(obj) if not into else self.slots.exchange(obj, slots.out_state(out))
        if isinstance(listed, list):
            return listed
        found = listed
        if found.inline:
            return found.values(obj, self.rank)
        layout = plans.concat_layout(found)
        if layout is None:  # rank 0 joins the parts and broadcasts them (or what it could not receive)
            return self._from_0(lambda: self.gather_list(obj, 0, found), semantics.join_gathered)
        result = layout.result
        if into:
            self._agree(
                found,
                ("allgather", None),
                lambda: [result] * self.size,
                lambda: None if out is None else outbuf.unfit(out, result.shape, result.dtype),
            )
        target = out if into and out is not None else _memory.empty(result.shape, result.dtype)
        if into:
            obj = outbuf.apart(obj, target)
        MPI = _mpi()
        if layout.fits:
            self.comm.Allgatherv(
                messages.c_bytes(obj), [_codec.raw_bytes(target), layout.counts, layout.displs, MPI.BYTE]
            )
        else:
            self._gatherv(obj, target if self.rank == 0 else None, layout.counts, layout.displs, 0, False)
            messages.bcast_bytes(self.comm, _codec.raw_bytes(target), 0)
        return outbuf.Written(target) if into else target

    def _gatherv(self, obj: Any, out: Any, counts: list[int], displs: list[int], root: int, fits: bool) -> None:
        MPI = _mpi()
        mine = messages.c_bytes(obj)
        if fits:
            recv = [_codec.raw_bytes(out), counts, displs, MPI.BYTE] if self.rank == root else None
            self.comm.Gatherv(mine, recv, root)
        elif self.rank != root:
            messages.send_bytes(self.comm, mine, root, CollTag.GATHER)
        else:
            target = _codec.raw_bytes(out)
            for rank in range(self.size):
                view = target[displs[rank] : displs[rank] + counts[rank]]
                if rank == root:
                    view[:] = mine
                else:
                    messages.recv_bytes(self.comm, view, rank, CollTag.GATHER)

    # ------------------------------------------------------------------ reductions

    def reduce(
        self, obj: Any, op: object, func: Callable[[Any, Any], Any], root: int | None, out: Any = outbuf.NOT_GIVEN
    ) -> Any:
        """``reduce`` to ``root``, or ``allreduce`` when ``root`` is None."""
        receives = root is None or self.rank == root
        if out is outbuf.NOT_GIVEN:  # the most frequent first: values that fit their slots
            listed = self.slots.exchange_values(obj)
            if isinstance(listed, list):  # the same values everywhere: all raise alike
                return semantics.fold(listed, func, "allreduce" if root is None else "reduce") if receives else None
            found = listed
        call = "allreduce" if root is None else "reduce"
        into = out is not outbuf.NOT_GIVEN
        target = out if into and receives else None  # off root out is ignored
        if into:
            found = self.slots.exchange(obj, None if target is None else slots.out_state(target))
        if found.inline:
            if not receives:
                return None
            return semantics.fold(
                found.values(obj, self.rank), func, call
            )  # the same values everywhere: all raise alike
        native: tuple[Any, Any] | None = None
        if isinstance(op, str):
            native = found.memo.get(("native", op), _UNKNOWN)
            if native is _UNKNOWN:
                native = found.memo[("native", op)] = plans.native_op(op, found.slots)
        if native is not None:
            meta = found.slots[0].value
            if not into:
                return self._reduce_native(obj, native, meta, root, None, False)
            self._agree(
                found,
                (call, root),
                lambda: [meta if root is None or rank == root else None for rank in range(self.size)],
                lambda: None if target is None else outbuf.unfit(target, meta.shape, meta.dtype),
            )
            return outbuf.Written(self._reduce_native(obj, native, meta, root, target, True))
        if root is not None:
            parts = self.gather_list(obj, root, found)
            return None if parts is None else semantics.fold(parts, func, call)
        return self._from_0(lambda: self.gather_list(obj, 0, found), lambda parts: semantics.fold(parts, func, call))

    def _from_0(self, gather: Callable[[], Any], compute: Callable[[Any], Any]) -> Any:
        """``compute(gather())`` on rank 0, broadcast; ``gather()`` alone elsewhere (it sends).

        An error only rank 0 meets (a part it cannot unpickle, values it
        cannot combine, a result it cannot pickle) travels as a refusal
        instead: every process raises it. A process that could not pickle its
        own part (it sent a refusal instead) raises its error once it has
        rank 0's outcome.
        """
        own = None
        if self.rank != 0:
            try:
                gather()
            except SerializationError as exc:  # its part went as a refusal (refused_part): raised below
                own = checks.Refusal(exc)
            outcome = None
        else:
            try:
                outcome = compute(gather())
            except TypeError as exc:
                outcome = checks.Refusal(exc)
        try:
            outcome = self.bcast(outcome, 0)
        except SerializationError as exc:
            if exc.rank is not None or self.rank != 0:
                raise
            outcome = self.bcast(checks.Refusal(exc), 0)  # (nothing was sent)
        checks.refused(own)
        checks.refused(outcome)
        return outcome

    def _reduce_native(
        self, obj: Any, native: tuple[Any, Any], meta: semantics.ArrayMeta, root: int | None, out: Any, mine: bool
    ) -> Any:
        """The reduction with MPI's own op into ``out`` (checked; ``mine``: the caller's), or a new array."""
        import numpy

        MPI = _mpi()
        op, datatype = native
        send = numpy.ascontiguousarray(obj)
        receives = root is None or self.rank == root
        if receives and out is None:
            out = _memory.empty(meta.shape, meta.dtype)
            mine = False
        send_spec: Any = [send, datatype]
        if mine and receives and numpy.may_share_memory(send, out):
            if send.__array_interface__["data"][0] == out.__array_interface__["data"][0]:
                send_spec = MPI.IN_PLACE  # allreduce(a, out=a): in place, as MPI does it
            else:
                send_spec = [send.copy(), datatype]
        if root is None:
            self.comm.Allreduce(send_spec, [out, datatype], op)
            return out
        self.comm.Reduce(send_spec, [out, datatype] if receives else None, op, root)
        return out if receives else None
