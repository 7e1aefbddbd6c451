"""The collectives of the MPI backend, on mpi4py's buffer methods.

Arrays move with ``Scatterv``/``Gatherv``/``Allgatherv``/``Reduce``/
``Allreduce`` straight between numpy memory; a small header (a broadcast for
``scatter``, the slot exchange of :mod:`slots` for the others) first tells
every rank what comes and which path to take, so all ranks always agree.
Everything else travels as object messages (:mod:`messages`).

When a count or displacement of a ``v`` collective does not fit the C int of
an MPI-3 library, the array moves with chunked point-to-point messages instead.

With ``out=`` an array result is received straight into the caller's array
(no new array, no copy) once every rank knows every ``out`` fits: the ranks
agree in one ``Allreduce`` of a flag (:meth:`Collectives.agree_out`) before
any data moves. When the result is not an array, or an ``out`` does not fit
in a way the flag cannot describe, the collective runs as without ``out``
and the generic rule of :mod:`parallelizer._core.outbuf` raises or copies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import semantics
from .._core import checks, outbuf
from .._core import codec as _codec
from .._core import memory as _memory
from .._core.tags import CollTag
from .._core.transport import receive_all
from . import broadcast_into, messages
from .runtime import load as _mpi
from .slots import ARRAY, INLINE, Slot, SlotExchange

INT_MAX = 2**31 - 1

NATIVE_LARGE_COUNTS = True
"""Whether the MPI library takes counts over ``INT_MAX`` (MPI-4); set at start-up."""

_NAMED_OPS = {"sum": "SUM", "prod": "PROD", "min": "MIN", "max": "MAX"}


def _fits(*numbers: list[int]) -> bool:
    return NATIVE_LARGE_COUNTS or all(n <= INT_MAX for values in numbers for n in values)


class Collectives:
    """Scatter, gather and reductions over one communicator."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.broadcaster = messages.Broadcaster(comm)
        self.slots = SlotExchange(comm)
        self._words: Any = None  # int64 buffers of agree_out and broadcast_into (numpy, made on first use)

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
        """``broadcast(out=)``: a plain array straight into ``out``, else as :meth:`bcast`."""
        written = broadcast_into.try_direct(self.comm, self._buffers()[1], obj, root, out)
        return self.bcast(obj, root) if written is None else written

    # ------------------------------------------------------------------ broadcast

    def bcast(self, obj: Any, root: int) -> Any:
        """``broadcast``."""
        return self.broadcaster.bcast(obj, root, f"the object broadcast from rank {root}")

    # ------------------------------------------------------------------ scatter

    def scatter(self, data: Any, bounds: list[tuple[int, int]] | None, root: int, out: Any = outbuf.NOT_GIVEN) -> Any:
        """``scatter``: arrays with ``Scatterv``, other sequences as object messages."""
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
                row = data.dtype.itemsize * _rows(data.shape[1:])
                counts = [(stop - start) * row for start, stop in bounds]
                displs = [start * row for start, _ in bounds]
                sendbuf = messages.c_bytes(data)
                if _fits(counts, displs):
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
            self.bcast(("objects",), root)
            for rank in range(self.size):
                if rank != root:
                    messages.send_obj(
                        self.comm,
                        semantics.take_block(data, *bounds[rank]),
                        rank,
                        CollTag.SCATTER,
                        f"block {rank} of scatter",
                    )
            return semantics.root_block(data, *bounds[root])
        header = self.bcast(None, root)
        checks.refused(header)
        if header[0] == "objects":
            return messages.recv_obj(self.comm, root, CollTag.SCATTER, "scatter")[1]
        _, dtype, trailing, length = header
        start, stop = semantics.block_bounds(length, self.size)[self.rank]
        shape = (stop - start, *trailing)
        if into:
            self.agree_out(None if out is None else outbuf.unfit(out, shape, dtype), "scatter")
        block = out if into and out is not None else _memory.empty(shape, dtype)
        view = _codec.raw_bytes(block)
        row = dtype.itemsize * _rows(trailing)
        counts = [(b - a) * row for a, b in semantics.block_bounds(length, self.size)]
        displs = [a * row for a, _ in semantics.block_bounds(length, self.size)]
        if _fits(counts, displs):
            self.comm.Scatterv(None, [view, MPI.BYTE], root)
        else:
            messages.recv_bytes(self.comm, view, root, CollTag.SCATTER)
        return outbuf.Written(block) if into else block

    # ------------------------------------------------------------------ gather

    def gather_list(self, obj: Any, root: int, slots: list[Slot] | None = None) -> list[Any] | None:
        """Every rank's object on root, in rank order, as sent (no concatenation)."""
        slots = self.slots.exchange(obj) if slots is None else slots
        if self.rank != root:
            if slots[self.rank].kind != INLINE:
                messages.send_obj(self.comm, obj, root, CollTag.GATHER, "the object gathered")
            return None

        def part(rank: int) -> Any:
            if rank == root:
                return obj
            slot = slots[rank]
            return slot.value if slot.kind == INLINE else self._recv_part(rank)

        return receive_all(range(self.size), part)

    def _recv_part(self, rank: int) -> Any:
        return messages.recv_obj(self.comm, rank, CollTag.GATHER, "gather")[1]

    def gather(self, obj: Any, root: int, out: Any = outbuf.NOT_GIVEN) -> Any:
        """``gather``: concatenated arrays with ``Gatherv``, else a list."""
        slots = self.slots.exchange(obj)
        if all(slot.kind == INLINE for slot in slots):  # small objects: the exchange was the whole gather
            if self.rank != root:
                return None
            return [obj if rank == root else slot.value for rank, slot in enumerate(slots)]
        plan = _same_dtype_plan(slots)
        if plan is None:
            parts = self.gather_list(obj, root, slots)
            return None if parts is None else semantics.join_gathered(parts)
        counts, displs = _byte_layout(plan, slots)
        if out is not outbuf.NOT_GIVEN:
            target = out if self.rank == root else None
            self.agree_out(None if target is None else outbuf.unfit(target, plan.shape, plan.dtype), "gather")
            if self.rank == root and target is None:
                target = _memory.empty(plan.shape, plan.dtype)
            self._gatherv(_apart(obj, target), target, counts, displs, root)
            return outbuf.Written(target)
        result = _memory.empty(plan.shape, plan.dtype) if self.rank == root else None
        self._gatherv(obj, result, counts, displs, root)
        return result

    def allgather(self, obj: Any, out: Any = outbuf.NOT_GIVEN) -> Any:
        """``allgather``: concatenated arrays with ``Allgatherv``, else a list."""
        slots = self.slots.exchange(obj)
        if all(slot.kind == INLINE for slot in slots):
            return [obj if rank == self.rank else slot.value for rank, slot in enumerate(slots)]
        plan = _same_dtype_plan(slots)
        if plan is None:
            parts = self.gather_list(obj, 0, slots)
            return semantics.join_gathered(self.bcast(parts, 0))
        counts, displs = _byte_layout(plan, slots)
        into = out is not outbuf.NOT_GIVEN
        if into:
            self.agree_out(None if out is None else outbuf.unfit(out, plan.shape, plan.dtype), "allgather")
        target = out if into and out is not None else _memory.empty(plan.shape, plan.dtype)
        obj = _apart(obj, target)
        MPI = _mpi()
        if _fits(counts, displs):
            self.comm.Allgatherv(messages.c_bytes(obj), [_codec.raw_bytes(target), counts, displs, MPI.BYTE])
        else:
            self._gatherv(obj, target if self.rank == 0 else None, counts, displs, 0)
            messages.bcast_bytes(self.comm, _codec.raw_bytes(target), 0)
        return outbuf.Written(target) if into else target

    def _gatherv(self, obj: Any, out: Any, counts: list[int], displs: list[int], root: int) -> None:
        MPI = _mpi()
        mine = messages.c_bytes(obj)
        if _fits(counts, displs):
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
        call = "allreduce" if root is None else "reduce"
        slots = self.slots.exchange(obj)
        if all(slot.kind == INLINE for slot in slots):
            if root is not None and self.rank != root:
                return None
            values = [obj if rank == self.rank else slot.value for rank, slot in enumerate(slots)]
            return semantics.fold(values, func, call)  # the same values everywhere: all raise alike
        native = _native_op(op, slots)
        if native is not None:
            if out is outbuf.NOT_GIVEN:
                return self._reduce_native(obj, native, slots[0].value, root, None)
            meta = slots[0].value
            target = out if root is None or self.rank == root else None
            self.agree_out(None if target is None else outbuf.unfit(target, meta.shape, meta.dtype), call)
            return outbuf.Written(self._reduce_native(obj, native, meta, root, target))
        if root is not None:
            parts = self.gather_list(obj, root, slots)
            return None if parts is None else semantics.fold(parts, func, call)
        parts = self.gather_list(obj, 0, slots)
        outcome: Any = None
        if parts is not None:
            try:
                outcome = semantics.fold(parts, func, call)
            except TypeError as exc:  # only rank 0 knows: everyone raises it
                outcome = checks.Refusal(exc)
        outcome = self.bcast(outcome, 0)
        checks.refused(outcome)
        return outcome

    def _reduce_native(self, obj: Any, op_name: str, meta: semantics.ArrayMeta, root: int | None, out: Any) -> Any:
        """The reduction with MPI's own op, into ``out`` (checked) or a new array where it is ``None``."""
        import numpy

        MPI = _mpi()
        op = getattr(MPI, op_name)
        datatype = MPI.Datatype.fromcode(meta.dtype.char)  # predefined: the ops are defined on it
        send = numpy.ascontiguousarray(obj)
        receives = root is None or self.rank == root
        if receives and out is None:
            out = _memory.empty(meta.shape, meta.dtype)
        send_spec: Any = [send, datatype]
        if receives and numpy.may_share_memory(send, out):
            if send.__array_interface__["data"][0] == out.__array_interface__["data"][0]:
                send_spec = MPI.IN_PLACE  # allreduce(a, out=a): in place, as MPI does it
            else:
                send_spec = [send.copy(), datatype]
        if root is None:
            self.comm.Allreduce(send_spec, [out, datatype], op)
            return out
        self.comm.Reduce(send_spec, [out, datatype] if receives else None, op, root)
        return out if receives else None


def _apart(obj: Any, target: Any) -> Any:
    """``obj``, or a copy of it where it shares memory with the array it is gathered into."""
    if target is None:
        return obj
    import numpy

    return obj.copy() if numpy.may_share_memory(obj, target) else obj


def _rows(trailing: tuple[int, ...]) -> int:
    count = 1
    for extent in trailing:
        count *= extent
    return count


def _same_dtype_plan(slots: list[Slot]) -> semantics.ConcatPlan | None:
    """The concat plan when every rank sent an array of the result's dtype."""
    if not all(slot.kind == ARRAY for slot in slots):
        return None
    plan = semantics.concat_plan([slot.value for slot in slots])
    if plan is None or any(slot.value.dtype != plan.dtype for slot in slots):
        return None
    return plan


def _byte_layout(plan: semantics.ConcatPlan, slots: list[Slot]) -> tuple[list[int], list[int]]:
    row = plan.dtype.itemsize * _rows(plan.shape[1:])
    counts = [slot.value.shape[0] * row for slot in slots]
    displs = [offset * row for offset in plan.offsets]
    return counts, displs


def _native_op(op: object, slots: list[Slot]) -> str | None:
    """The MPI op for a named reduction of equal numeric arrays, else ``None``."""
    if not isinstance(op, str) or not all(slot.kind == ARRAY for slot in slots):
        return None
    first = slots[0].value
    if any(slot.value != first for slot in slots):
        return None
    kinds = "iuf" if op in ("min", "max") else "iufc"
    if first.dtype.kind not in kinds or not first.dtype.isnative or not _has_mpi_type(first.dtype):
        return None
    return _NAMED_OPS[op]


def _has_mpi_type(dtype: Any) -> bool:
    try:
        _mpi().Datatype.fromcode(dtype.char)
    except (KeyError, ValueError):
        return False
    return True
