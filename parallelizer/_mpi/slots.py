"""What every rank contributes to a collective, told in one call.

Before ``gather``, ``allgather``, ``reduce`` and ``allreduce`` every rank puts a
fixed ``SLOT``-byte description of its object into one ``MPI_Allgather``
(``scatter`` broadcasts root's; with ``out=``, ``scatter`` and ``broadcast``
gather every rank's; a broadcast array carries root's in its first block):

* ``INLINE``: the object itself, pickled, when it is small (a number, a short
  string or tuple): for such objects this one call *is* the whole collective;
* ``ARRAY``: the dtype and shape of a numpy array, so that every rank takes the
  same decision (``semantics.concat_plan``) and the data moves with
  ``Gatherv``/``Allgatherv``/``Reduce`` straight into the result;
* ``LARGE``: anything else; it follows as an object message;
* ``EMPTY``: nothing (a scatter's non-root ranks).

With ``out=`` a slot also describes the rank's ``out`` (:class:`Slot`'s
``out``): the dtype and shape of a writable C-contiguous array, ``None``
where the rank passed ``out=None``, or :data:`ASK` for anything else. Every
rank then checks every ``out`` that matters from the same bytes, so all
agree before any data moves, with no further message (:data:`ASK`: the
ranks exchange their exact verdicts, a rare slow path).

Layout of a slot::

    kind | ndim | length | out kind | out ndim | out length | payload | out payload

Repeated calls on the same shapes cost no decoding: a round whose bytes
equal the previous round's (and that holds no ``INLINE`` object, whose
values must be fresh) is returned again, with the plans callers memoized
in :attr:`Round.memo`. Equal bytes mean equal descriptions, so the cache
is right whatever changes between calls.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, NamedTuple

from .. import semantics
from .._core.limits import MPI_SLOT as SLOT
from .runtime import load as _mpi

EMPTY, INLINE, ARRAY, LARGE = 0, 1, 2, 3
NO_OUT, OUT_ARRAY, OUT_ASK = 0, 1, 2
_HEAD = struct.Struct("<BBHBBH")  # kind, ndim, payload length; out kind, out ndim, out payload length
_PAYLOAD = SLOT - _HEAD.size
_MAX_NDIM = 12
_DTYPE_FIELD = 16
_NUMBER_HEADS = tuple(_HEAD.pack(INLINE, 0, length, NO_OUT, 0, 0) for length in range(_PAYLOAD + 1))
SMALL_TYPES = (int, float, complex, bool, type(None))
"""Types whose small values are pickled at once, with no other check (numbers, ``None``)."""


class _Ask:
    """An ``out`` the slot cannot vouch for: ask its rank for the exact verdict."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ASK"


ASK: Any = _Ask()
"""A slot's ``out`` that is not a plain writable C-contiguous array of a describable dtype."""


class Slot(NamedTuple):
    """One rank's description: its kind, the inline value or array meta, and its ``out``."""

    kind: int
    value: Any = None  # INLINE: the object; ARRAY: semantics.ArrayMeta
    out: Any = None  # None (no out, or out=None), semantics.ArrayMeta, or ASK


class Round:
    """One exchange's slots, in rank order, and what callers derived from them.

    Attributes:
        slots: Every rank's :class:`Slot`.
        memo: Plans computed from these slots (a cached round keeps them).
        inline: Whether every slot is ``INLINE``.
        reusable: Whether no slot is ``INLINE`` (whose values must be fresh objects each call).
    """

    __slots__ = ("inline", "memo", "reusable", "slots")

    def __init__(self, slots: list[Slot]) -> None:
        self.slots = slots
        self.memo: dict[Any, Any] = {}
        inline = [slot.kind == INLINE for slot in slots]
        self.inline = all(inline)
        self.reusable = not any(inline)

    def values(self, mine: Any, rank: int) -> list[Any]:
        """Every rank's inline object, in rank order, ``mine`` itself for ``rank`` (an all-``INLINE`` round)."""
        return [mine if index == rank else slot.value for index, slot in enumerate(self.slots)]


def _looks_small(obj: object) -> bool:
    """Cheap guess whether ``obj`` pickles into a slot (never pickles big things)."""
    if isinstance(obj, SMALL_TYPES):
        return True
    if isinstance(obj, (str, bytes)):
        return len(obj) <= _PAYLOAD
    if isinstance(obj, (tuple, list)):
        return len(obj) <= 8 and all(isinstance(item, (*SMALL_TYPES, str)) for item in obj)
    return False


def _meta_payload(dtype: Any, shape: tuple[int, ...]) -> bytes | None:
    """The payload describing an array of this dtype and shape, or ``None`` if it has none."""
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or len(shape) > _MAX_NDIM:
        return None
    code: bytes = dtype.str.encode("ascii")
    if len(code) >= _DTYPE_FIELD:
        return None
    return bytes([len(code)]) + code.ljust(_DTYPE_FIELD - 1, b"\0") + struct.pack(f"<{len(shape)}Q", *shape)


def _read_meta(payload: memoryview, ndim: int) -> semantics.ArrayMeta:
    import numpy

    size = payload[0]
    dtype = numpy.dtype(bytes(payload[1 : 1 + size]).decode("ascii"))
    return semantics.ArrayMeta(dtype, tuple(struct.unpack_from(f"<{ndim}Q", payload, _DTYPE_FIELD)))


def _describe(obj: Any, room: int) -> tuple[int, int, bytes, Any]:
    """``(kind, ndim, payload, value)`` of ``obj``, its payload at most ``room`` bytes."""
    if type(obj) in SMALL_TYPES:  # the most frequent case first: a number
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        if len(data) <= room:
            return INLINE, 0, data, obj
    meta = semantics.array_meta(obj)
    if meta is not None:
        payload = _meta_payload(meta.dtype, meta.shape)
        if payload is not None and len(payload) <= room:
            return ARRAY, len(meta.shape), payload, meta
    if _looks_small(obj):
        try:
            data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        except Exception:
            data = b""
        if data and len(data) <= room:
            return INLINE, 0, data, obj
    return LARGE, 0, b"", None


def out_state(out: Any) -> tuple[Any, ...] | None:
    """What a slot says of ``out``: ``None`` (not given, or ``None``), ``(dtype, shape)``, or ``()`` (ask)."""
    if out is None:
        return None
    if type(out).__name__ == "MaskedArray" or not semantics.is_ndarray(out):
        return ()
    flags = out.flags
    if not (flags.writeable and flags.c_contiguous):
        return ()
    return (out.dtype, out.shape)


def encode(obj: Any, slot: memoryview, out: tuple[Any, ...] | None = None, *, empty: bool = False) -> Slot:
    """Writes the description of ``obj`` (nothing if ``empty``) and of an ``out`` into ``slot``.

    Args:
        obj: The rank's object.
        slot: ``SLOT`` writable bytes.
        out: :func:`out_state` of the rank's ``out``.
        empty: Describe no object (``EMPTY``).

    Returns:
        What it wrote.
    """
    out_payload = b""
    out_kind, out_ndim, out_value = NO_OUT, 0, None
    if out is not None:
        out_kind, out_value = OUT_ASK, ASK
        if out:
            found = _meta_payload(*out)
            if found is not None and len(found) <= _PAYLOAD // 2:
                out_kind, out_ndim, out_payload = OUT_ARRAY, len(out[1]), found
                out_value = semantics.ArrayMeta(*out)
    if empty:
        kind, ndim, payload, value = EMPTY, 0, b"", None
    else:
        kind, ndim, payload, value = _describe(obj, _PAYLOAD - len(out_payload))
    _HEAD.pack_into(slot, 0, kind, ndim, len(payload), out_kind, out_ndim, len(out_payload))
    end = _HEAD.size + len(payload)
    slot[_HEAD.size : end] = payload
    slot[end : end + len(out_payload)] = out_payload
    return Slot(kind, value, out_value)


def decode(slot: memoryview) -> Slot:
    """Reads a description written by :func:`encode`."""
    kind, ndim, length, out_kind, out_ndim, out_length = _HEAD.unpack_from(slot, 0)
    end = _HEAD.size + length
    payload = slot[_HEAD.size : end]
    out: Any = None
    if out_kind == OUT_ASK:
        out = ASK
    elif out_kind == OUT_ARRAY:
        out = _read_meta(slot[end : end + out_length], out_ndim)
    if kind == INLINE:
        return Slot(INLINE, pickle.loads(payload), out)
    if kind == ARRAY:
        return Slot(ARRAY, _read_meta(payload, ndim), out)
    return Slot(kind, None, out)


class SlotExchange:
    """Runs the exchange over one communicator (buffers and the last round are reused)."""

    def __init__(self, comm: Any) -> None:
        MPI = _mpi()
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._mine = bytearray(SLOT)
        self._all = bytearray(SLOT * self.size)
        self._mine_spec = [self._mine, MPI.BYTE]
        self._all_spec = [self._all, MPI.BYTE]
        self._views = [memoryview(self._all)[rank * SLOT : (rank + 1) * SLOT] for rank in range(self.size)]
        # an INLINE slot's pickle and what follows it (pickle.loads ignores the bytes after its end)
        self._pickles = [view[_HEAD.size :] for view in self._views]
        self._last_key: Any = None  # what _mine describes, when it holds no INLINE object
        self._last_slot = Slot(EMPTY)
        self._last_all = b""
        self._last_round: Round | None = None
        self._root_bytes = b""
        self._root_slot = Slot(EMPTY)

    def _encode(self, obj: Any, out: tuple[Any, ...] | None, empty: bool) -> Slot:
        """Fills ``_mine``; the bytes of an array described the call before are still there."""
        if type(obj) in SMALL_TYPES and out is None and not empty and self._write_number(obj):
            return Slot(INLINE, obj)
        last = self._last_key  # (type, dtype, shape, out) of the array described last, or (None, None, None, out)
        if last is not None:
            if empty:
                if last[0] is None and out == last[3]:
                    return self._last_slot
            elif type(obj) is last[0] and obj.shape == last[2] and obj.dtype == last[1] and out == last[3]:
                return self._last_slot  # (an exact numpy array, as the last one was)
        mine = encode(obj, memoryview(self._mine), out, empty=empty)
        if mine.kind == ARRAY:
            self._last_key = (type(obj), mine.value.dtype, mine.value.shape, out)
        else:
            self._last_key = (None, None, None, out) if mine.kind == EMPTY else None
        self._last_slot = mine
        return mine

    def _write_number(self, obj: Any) -> bool:
        """Writes a number's ``INLINE`` slot into ``_mine`` at once; ``False`` (nothing written) if it is too long."""
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        if len(data) > _PAYLOAD:
            return False
        self._last_key = None  # _mine no longer holds the array described last
        self._mine[: _HEAD.size + len(data)] = _NUMBER_HEADS[len(data)] + data
        return True

    def exchange(self, obj: Any, out: tuple[Any, ...] | None = None, *, empty: bool = False) -> Round:
        """Every rank's :class:`Slot`, in rank order (this rank's from ``obj`` itself).

        Args:
            obj: This rank's object.
            out: :func:`out_state` of this rank's ``out`` (``None``: no ``out``).
            empty: Describe no object.
        """
        mine = self._encode(obj, out, empty)
        self.comm.Allgather(self._mine_spec, self._all_spec)
        return self._round(mine)

    def exchange_values(self, obj: Any) -> list[Any] | Round:
        """Every rank's object, in rank order, when all are ``INLINE``; else :meth:`exchange`'s round.

        The same call as :meth:`exchange` with no ``out`` (so ranks may mix the
        two). A list means the exchange was the whole collective: this rank's
        entry is ``obj`` itself, the others' are unpickled. A round of small
        numbers, the most frequent, is read straight from the bytes, with no
        :class:`Slot` or :class:`Round`.
        """
        if type(obj) in SMALL_TYPES and self._write_number(obj):  # a number: at once
            self.comm.Allgather(self._mine_spec, self._all_spec)
            if self._all[::SLOT].count(INLINE) == self.size:  # every rank's object is in its slot
                me = self.rank
                return [obj if rank == me else pickle.loads(data) for rank, data in enumerate(self._pickles)]
            return self._round(Slot(INLINE, obj))  # (not all inline: never a list)
        found = self.exchange(obj)
        return found.values(obj, self.rank) if found.inline else found

    def _round(self, mine: Slot) -> Round:
        """The :class:`Round` of the bytes the last ``Allgather`` brought (``mine``: this rank's slot)."""
        last = self._last_round
        if last is not None and self._all == self._last_all:
            return last
        me = self.rank
        found = Round([mine if rank == me else decode(view) for rank, view in enumerate(self._views)])
        if found.reusable:
            self._last_round, self._last_all = found, bytes(self._all)
        else:
            self._last_round = None
        return found

    def broadcast(self, obj: Any, root: int, *, empty: bool = False) -> Slot:
        """Root's :class:`Slot` of ``obj`` (of nothing if ``empty``) on every rank.

        The same :class:`Slot` object comes back while root's bytes stay the
        same, so callers may key what they derive on its identity.
        """
        if self.rank == root:
            mine = self._encode(obj, None, empty)
            self.comm.Bcast(self._mine_spec, root)
            return mine
        self.comm.Bcast(self._mine_spec, root)
        self._last_key = None  # _mine now holds root's bytes, not what this rank described last
        if self._mine == self._root_bytes:
            return self._root_slot
        found = decode(memoryview(self._mine))
        self._root_bytes, self._root_slot = (bytes(self._mine), found) if found.kind != INLINE else (b"", found)
        return found
