"""What every rank contributes to a gather or reduction, told in one call.

Before ``gather``, ``allgather``, ``reduce`` and ``allreduce`` every rank puts a
fixed ``SLOT``-byte description of its object into one ``MPI_Allgather``:

* ``INLINE``: the object itself, pickled, when it is small (a number, a short
  string or tuple): for such objects this one call *is* the whole collective;
* ``ARRAY``: the dtype and shape of a numpy array, so that every rank takes the
  same decision (``semantics.concat_plan``) and the data moves with
  ``Gatherv``/``Allgatherv``/``Reduce`` straight into the result;
* ``LARGE``: anything else; it follows as an object message.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, NamedTuple

from .. import semantics
from .._core.limits import MPI_SLOT as SLOT
from .runtime import load as _mpi

INLINE, ARRAY, LARGE = 1, 2, 3
_HEAD = struct.Struct("<BBH")  # kind, ndim, payload length
_PAYLOAD = SLOT - _HEAD.size
_MAX_NDIM = 12
_DTYPE_FIELD = 16
_SMALL_TYPES = (int, float, complex, bool, type(None))


class Slot(NamedTuple):
    """One rank's description: its kind and the inline value or array meta."""

    kind: int
    value: Any = None  # INLINE: the object; ARRAY: semantics.ArrayMeta


def _looks_small(obj: object) -> bool:
    """Cheap guess whether ``obj`` pickles into a slot (never pickles big things)."""
    if isinstance(obj, _SMALL_TYPES):
        return True
    if isinstance(obj, (str, bytes)):
        return len(obj) <= _PAYLOAD
    if isinstance(obj, (tuple, list)):
        return len(obj) <= 8 and all(isinstance(item, (*_SMALL_TYPES, str)) for item in obj)
    return False


def _inline(obj: Any, data: bytes, slot: memoryview) -> Slot:
    """Writes ``obj``, pickled as ``data`` (at most ``_PAYLOAD`` bytes), into ``slot``."""
    _HEAD.pack_into(slot, 0, INLINE, 0, len(data))
    slot[_HEAD.size : _HEAD.size + len(data)] = data
    return Slot(INLINE, obj)


def encode(obj: Any, slot: memoryview) -> Slot:
    """Writes ``obj``'s description into ``slot``; returns what it wrote."""
    if type(obj) in _SMALL_TYPES:  # the most frequent case first: a number
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        if len(data) <= _PAYLOAD:
            return _inline(obj, data, slot)
    meta = semantics.array_meta(obj)
    if meta is not None and not meta.dtype.hasobject:
        code = meta.dtype.str.encode("ascii")
        if (
            meta.dtype.fields is None
            and meta.dtype.subdtype is None
            and len(code) < _DTYPE_FIELD
            and len(meta.shape) <= _MAX_NDIM
        ):
            payload = bytes([len(code)]) + code.ljust(_DTYPE_FIELD - 1, b"\0")
            payload += struct.pack(f"<{len(meta.shape)}Q", *meta.shape)
            _HEAD.pack_into(slot, 0, ARRAY, len(meta.shape), len(payload))
            slot[_HEAD.size : _HEAD.size + len(payload)] = payload
            return Slot(ARRAY, meta)
    if _looks_small(obj):
        try:
            data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        except Exception:
            data = b""
        if data and len(data) <= _PAYLOAD:
            return _inline(obj, data, slot)
    _HEAD.pack_into(slot, 0, LARGE, 0, 0)
    return Slot(LARGE)


def decode(slot: memoryview) -> Slot:
    """Reads a description written by :func:`encode`."""
    kind, ndim, length = _HEAD.unpack_from(slot, 0)
    payload = slot[_HEAD.size : _HEAD.size + length]
    if kind == INLINE:
        return Slot(INLINE, pickle.loads(payload))
    if kind == ARRAY:
        import numpy

        size = payload[0]
        dtype = numpy.dtype(bytes(payload[1 : 1 + size]).decode("ascii"))
        shape = struct.unpack_from(f"<{ndim}Q", payload, _DTYPE_FIELD)
        return Slot(ARRAY, semantics.ArrayMeta(dtype, tuple(shape)))
    return Slot(LARGE)


class SlotExchange:
    """Runs the exchange over one communicator (buffers are reused)."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._mine = bytearray(SLOT)
        self._all = bytearray(SLOT * self.size)

    def exchange(self, obj: Any) -> list[Slot]:
        """Every rank's :class:`Slot`, in rank order (this rank's from ``obj`` itself)."""
        MPI = _mpi()
        mine = encode(obj, memoryview(self._mine))
        self.comm.Allgather([self._mine, MPI.BYTE], [self._all, MPI.BYTE])
        view = memoryview(self._all)
        return [
            mine if rank == self.rank else decode(view[rank * SLOT : (rank + 1) * SLOT]) for rank in range(self.size)
        ]
