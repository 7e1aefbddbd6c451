"""Objects over MPI: point-to-point messages and broadcasts.

An object is encoded by :mod:`parallelizer._codec` into a pickle *body* and
out-of-band *buffers* (numpy data, never pickled). On the wire::

    send:   Send(header | buffer sizes | body)      one message when small
            [Send(body chunks)]                     body over CHUNK bytes
            Send(buffer chunks) ...                 straight from the array

    bcast:  Bcast(BLOCK bytes: header | sizes | body)   one call when it fits
            [Bcast(sizes | body, in chunks)]
            Bcast(buffer chunks) ...                    straight into the array

    bcast of a C-contiguous numpy array (flag ``FLAG_SLOT``):
            Bcast(BLOCK bytes: header | slot)           dtype and shape, no pickle
            Bcast(array chunks) ...                     straight into the new array

Every transfer moves at most ``CHUNK`` bytes, so messages over 2 GiB work
even with MPI-3 libraries (whose counts are C ints). Receivers learn a first
message's size with a matched probe (``Mprobe``), so nothing is preallocated.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Sequence
from typing import Any

from .._core import codec as _codec
from .._core import memory, pickling
from .._core.limits import MPI_BCAST_BLOCK as BLOCK
from .._core.limits import MPI_CHUNK as CHUNK
from .._core.limits import MPI_SLOT as SLOT
from .._core.limits import OUT_OF_BAND_MIN
from . import slots as _slots
from .runtime import load as _mpi

FLAG_SLOT = 0x80
"""In a broadcast's header: the body is a slot (:mod:`slots`) describing a
C-contiguous array whose bytes follow; never set by the codec."""

# codec flags, layout (0: body in the first message; 1: body follows), buffer count, body length
HEADER = struct.Struct("<BBxxIQ")
_SIZE = struct.Struct("<Q")


def c_bytes(array: Any) -> memoryview:
    """The bytes of ``array`` in C order (a copy only if it is not C-contiguous)."""
    if not array.flags.c_contiguous:
        import numpy

        array = numpy.ascontiguousarray(array)
    return _codec.raw_bytes(array)


def writable(view: memoryview) -> memoryview:
    """A writable view of the same bytes (a copy for read-only buffers).

    MPI_Bcast takes one buffer that is read on root and written elsewhere.
    """
    return view if not view.readonly else memoryview(bytearray(view))


def _pieces(view: memoryview) -> Sequence[memoryview]:
    """The slices of ``view`` that one MPI call each moves: ``CHUNK`` bytes at most, none for no bytes."""
    nbytes = view.nbytes
    if nbytes <= CHUNK:  # the usual case: the view itself, not sliced
        return (view,) if nbytes else ()
    return [view[start : start + CHUNK] for start in range(0, nbytes, CHUNK)]


def send_bytes(comm: Any, view: memoryview, dest: int, tag: int) -> None:
    """Sends a byte view in chunks of at most ``CHUNK`` bytes."""
    byte = _mpi().BYTE
    for piece in _pieces(view):
        comm.Send([piece, byte], dest, tag)


def isend_bytes(comm: Any, view: memoryview, dest: int, tag: int) -> list[Any]:
    """Like :func:`send_bytes`, without waiting: the requests to complete later."""
    byte = _mpi().BYTE
    return [comm.Isend([piece, byte], dest, tag) for piece in _pieces(view)]


def recv_bytes(comm: Any, view: memoryview, source: int, tag: int) -> None:
    """Receives into a byte view what :func:`send_bytes` sent."""
    byte = _mpi().BYTE
    for piece in _pieces(view):
        comm.Recv([piece, byte], source, tag)


def bcast_bytes(comm: Any, view: memoryview, root: int) -> None:
    """Broadcasts a byte view in chunks of at most ``CHUNK`` bytes."""
    byte = _mpi().BYTE
    for piece in _pieces(view):
        comm.Bcast([piece, byte], root)


def _sizes(encoded: _codec.Encoded) -> bytes:
    return b"".join(_SIZE.pack(buffer.nbytes) for buffer in encoded.buffers)


def _allocate(flags: int, body: bytes | bytearray, sizes: list[int]) -> list[Any]:
    if flags & _codec.FLAG_ARRAY:
        return [_codec.allocate_array(body)]
    return [_codec.allocate_bytes(size) for size in sizes]


def _parse_sizes(data: memoryview | bytes | bytearray, offset: int, count: int) -> list[int]:
    return [_SIZE.unpack_from(data, offset + 8 * i)[0] for i in range(count)]


# ---------------------------------------------------------------------- point to point


Prepared = tuple[bytes, bool, _codec.Encoded]
"""An object pickled for :func:`send_prepared`: the first message, whether it holds the body, the encoding."""


def prepare(obj: Any, what: str) -> Prepared:
    """``obj`` pickled for :func:`send_prepared`, so that a caller can pickle several objects before sending any.

    Raises:
        SerializationError: ``obj`` cannot be pickled; names ``what``.
    """
    encoded = _codec.encode(obj, what, by_value=False)
    sizes = _sizes(encoded)
    inline = HEADER.size + len(sizes) + len(encoded.body) <= CHUNK
    head = HEADER.pack(encoded.flags, 0 if inline else 1, len(encoded.buffers), len(encoded.body))
    return head + sizes + (encoded.body if inline else b""), inline, encoded


def send_obj(comm: Any, obj: Any, dest: int, tag: int, what: str) -> None:
    """Sends ``obj`` to ``dest`` (see the module docstring for the wire format)."""
    send_prepared(comm, prepare(obj, what), dest, tag)


def send_prepared(comm: Any, prepared: Prepared, dest: int, tag: int) -> None:
    """Sends what :func:`prepare` made."""
    first, inline, encoded = prepared
    MPI = _mpi()
    comm.Send([first, MPI.BYTE], dest, tag)
    if not inline:
        send_bytes(comm, memoryview(encoded.body), dest, tag)
    for buffer in encoded.buffers:
        send_bytes(comm, buffer, dest, tag)


def isend_obj(comm: Any, obj: Any, dest: int, tag: int, what: str) -> tuple[list[Any], Any]:
    """Like :func:`send_obj`, without waiting for the receiver.

    Returns:
        The requests to complete, and what must stay alive until they are.
    """
    first, inline, encoded = prepare(obj, what)
    MPI = _mpi()
    requests = [comm.Isend([first, MPI.BYTE], dest, tag)]
    if not inline:
        requests += isend_bytes(comm, memoryview(encoded.body), dest, tag)
    for buffer in encoded.buffers:
        requests += isend_bytes(comm, buffer, dest, tag)
    return requests, (first, encoded)


def recv_obj(comm: Any, source: int, tag: int, what: str) -> tuple[int, Any]:
    """Receives what :func:`send_obj` sent; ``source`` may be ``MPI.ANY_SOURCE``.

    Returns:
        ``(source, obj)``.
    """
    MPI = _mpi()
    status = MPI.Status()
    message = comm.Mprobe(source, tag, status)
    return _recv_matched(comm, message, status, tag, what)


def try_recv_obj(comm: Any, source: int, tag: int, what: str) -> tuple[int, Any] | None:
    """Like :func:`recv_obj`, or ``None`` at once if nothing has arrived."""
    MPI = _mpi()
    status = MPI.Status()
    message = comm.Improbe(source, tag, status)
    if message is None:
        return None
    return _recv_matched(comm, message, status, tag, what)


def recv_probed(comm: Any, message: Any, status: Any, tag: int, what: str) -> tuple[int, Any]:
    """Receives the object whose first message a probe matched (see :func:`recv_obj`)."""
    return _recv_matched(comm, message, status, tag, what)


def _recv_matched(comm: Any, message: Any, status: Any, tag: int, what: str) -> tuple[int, Any]:
    MPI = _mpi()
    source = status.Get_source()
    first = bytearray(status.Get_count(MPI.BYTE))
    message.Recv([first, MPI.BYTE])
    flags, layout, nbufs, body_len = HEADER.unpack_from(first, 0)
    sizes = _parse_sizes(first, HEADER.size, nbufs)
    offset = HEADER.size + 8 * nbufs
    if layout == 0:
        body: bytes | bytearray = bytes(first[offset : offset + body_len])
    else:
        body = bytearray(body_len)
        recv_bytes(comm, memoryview(body), source, tag)
    buffers = _allocate(flags, body, sizes)
    for buffer in buffers:
        recv_bytes(comm, _codec.raw_bytes(buffer), source, tag)
    return source, _codec.decode(flags, body, buffers, f"the message from rank {source} ({what})", source)


# ---------------------------------------------------------------------- broadcast


class Broadcaster:
    """Broadcasts objects over one communicator (keeps a reusable first block).

    Small objects, the most frequent, take a fast path: one pickle, one
    ``Bcast`` of the first block, one unpickle.
    """

    def __init__(self, comm: Any) -> None:
        MPI = _mpi()
        self.comm = comm
        self.rank = comm.Get_rank()
        self._block = bytearray(BLOCK)
        self._view = memoryview(self._block)
        self._spec = [self._block, MPI.BYTE]
        self._oob: list[memoryview] = []
        self._out_of_band = pickling.collector(self._oob, OUT_OF_BAND_MIN)
        # the last array description sent or received, so a loop over one shape encodes or decodes it once
        self._sent: tuple[Any, bytes] | None = None  # ((dtype, shape), slot bytes)
        self._received: tuple[bytes, Any] | None = None  # (slot bytes, ArrayMeta)

    def bcast(self, obj: Any, root: int) -> Any:
        """Root's ``obj`` on every rank (root gets ``obj`` itself)."""
        if self.rank == root:
            number = type(obj) in _slots.SMALL_TYPES  # the most frequent: one pickle, one Bcast
            if not (number and self._bcast_pickle(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL), root)):
                self._send(obj, root, f"the object broadcast from rank {root}")
            return obj
        self.comm.Bcast(self._spec, root)
        flags, layout, nbufs, body_len = HEADER.unpack_from(self._block, 0)
        if layout == 0 and nbufs == 0 and not flags:  # fast path: small pickle, all here
            body = self._view[HEADER.size : HEADER.size + body_len]
            try:
                return pickle.loads(body)
            except Exception:
                return _codec.decode(flags, bytes(body), [], f"the object broadcast from rank {root}", root)
        if flags == FLAG_SLOT:
            return self._receive_array(root)
        return self._receive_rest(flags, layout, nbufs, body_len, root)

    def _send_array(self, obj: Any, root: int) -> bool:
        """Broadcasts a C-contiguous array under a slot; ``False`` (nothing sent) if no slot describes it."""
        key = (obj.dtype, obj.shape)
        sent = self._sent
        if sent is None or sent[0] != key:
            slot = bytearray(SLOT)
            if _slots.encode(obj, memoryview(slot)).kind != _slots.ARRAY:
                return False
            sent = self._sent = (key, bytes(slot))
        HEADER.pack_into(self._block, 0, FLAG_SLOT, 0, 0, SLOT)
        self._block[HEADER.size : HEADER.size + SLOT] = sent[1]
        self.comm.Bcast(self._spec, root)
        bcast_bytes(self.comm, writable(_codec.raw_bytes(obj)), root)
        return True

    def _receive_array(self, root: int) -> Any:
        head = self._view[HEADER.size : HEADER.size + SLOT]
        received = self._received
        if received is None or head != received[0]:
            received = self._received = (bytes(head), _slots.decode(head).value)
        meta = received[1]
        array = memory.empty(meta.shape, meta.dtype)
        bcast_bytes(self.comm, _codec.raw_bytes(array), root)
        return array

    def _bcast_pickle(self, body: bytes, root: int) -> bool:
        """Broadcasts a plain pickle in the first block alone; ``False`` (nothing sent) if it does not fit."""
        if HEADER.size + len(body) > BLOCK:
            return False
        HEADER.pack_into(self._block, 0, 0, 0, 0, len(body))
        self._block[HEADER.size : HEADER.size + len(body)] = body
        self.comm.Bcast(self._spec, root)
        return True

    def _send(self, obj: Any, root: int, what: str) -> None:
        block = self._block
        encoded = None
        if _codec.is_plain_array(obj) and obj.flags.c_contiguous and self._send_array(obj, root):
            return
        if not _codec.is_plain_array(obj):
            self._oob.clear()
            try:  # plain pickle first: every rank shares __main__
                body = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL, buffer_callback=self._out_of_band)
            except Exception:
                body = None
            if body is not None and not self._oob and self._bcast_pickle(body, root):
                return
            if body is not None:
                encoded = _codec.Encoded(0, body, list(self._oob))
        if encoded is None:
            encoded = _codec.encode(obj, what, by_value=False)
        sizes = _sizes(encoded)
        fits = HEADER.size + len(sizes) + len(encoded.body) <= BLOCK
        HEADER.pack_into(block, 0, encoded.flags, 0 if fits else 1, len(encoded.buffers), len(encoded.body))
        if fits:
            block[HEADER.size : HEADER.size + len(sizes) + len(encoded.body)] = sizes + encoded.body
        self.comm.Bcast(self._spec, root)
        if not fits:
            bcast_bytes(self.comm, writable(memoryview(sizes + encoded.body)), root)
        for buffer in encoded.buffers:
            bcast_bytes(self.comm, writable(buffer), root)

    def _receive_rest(self, flags: int, layout: int, nbufs: int, body_len: int, root: int) -> Any:
        block = self._block
        if layout == 0:
            sizes_list = _parse_sizes(block, HEADER.size, nbufs)
            start = HEADER.size + 8 * nbufs
            body: bytes | bytearray = bytes(block[start : start + body_len])
        else:
            extra = bytearray(8 * nbufs + body_len)
            bcast_bytes(self.comm, memoryview(extra), root)
            sizes_list = _parse_sizes(extra, 0, nbufs)
            body = extra[8 * nbufs :]
        buffers = _allocate(flags, body, sizes_list)
        for buffer in buffers:
            bcast_bytes(self.comm, _codec.raw_bytes(buffer), root)
        return _codec.decode(flags, body, buffers, f"the object broadcast from rank {root}", root)
