"""One socket to one peer, and the objects that travel over it.

A :class:`Channel` owns a non-blocking socket: a :class:`wire.FrameReader` for
what comes in and a queue of byte views for what goes out (frames are never
interleaved: a frame's bytes are queued whole and flushed in order).

:func:`encode` turns an object into a frame body and its out-of-band buffers;
an :class:`Incoming` is a received data frame until its value is taken.
"""

from __future__ import annotations

import contextlib
import pickle
import socket
from collections import deque
from itertools import islice
from typing import Any

from .. import _pickling, semantics
from . import memory, wire

OUT_OF_BAND_MIN = 1 << 16
"""Buffers from this size on leave the pickle stream (protocol 5)."""

CMA_MIN = 1 << 18
"""Out-of-band buffers from this size on are pulled by the receiver (CMA)
rather than streamed through the socket."""

_IOV_MAX = 512  # views per sendmsg call (Linux allows 1024)


def raw_bytes(buffer: Any) -> memoryview:
    """A flat, unsigned-byte view of any contiguous buffer (C or Fortran order)."""
    return pickle.PickleBuffer(buffer).raw()


def address_of(buffer: Any) -> int:
    """The memory address of a contiguous buffer's first byte."""
    import numpy

    view = numpy.frombuffer(raw_bytes(buffer), dtype=numpy.uint8)
    return int(view.ctypes.data)


class Channel:
    """The socket to one peer: incoming frames and queued outgoing bytes."""

    __slots__ = ("closed", "fd", "mask", "outq", "queued", "rank", "reader", "sent", "sock")

    def __init__(self, rank: int, sock: socket.socket, reader: wire.FrameReader) -> None:
        sock.setblocking(False)
        self.rank = rank
        self.sock = sock
        self.fd = sock.fileno()
        self.reader = reader
        self.outq: deque[memoryview] = deque()
        self.queued = 0  # bytes ever queued
        self.sent = 0  # bytes ever written
        self.closed = False
        self.mask = 0  # poll events currently registered

    def enqueue(self, parts: list[Any]) -> int:
        """Queues a frame's parts; returns the stream offset at which it ends."""
        for part in parts:
            view = part if isinstance(part, memoryview) and part.format == "B" else raw_bytes(part)
            if view.nbytes:
                self.outq.append(view)
                self.queued += view.nbytes
        return self.queued

    def flush(self) -> None:
        """Writes as much of the queue as the socket takes without blocking.

        Raises:
            OSError: The peer closed its end (``BrokenPipeError`` and the like).
        """
        outq = self.outq
        while outq:
            try:
                count = self.sock.sendmsg(list(islice(outq, _IOV_MAX)))
            except (BlockingIOError, InterruptedError):
                return
            self.sent += count
            while count:
                head = outq[0]
                if count >= head.nbytes:
                    count -= head.nbytes
                    outq.popleft()
                else:
                    outq[0] = head[count:]
                    count = 0

    def close(self) -> None:
        """Closes the socket; queued bytes are dropped."""
        self.closed = True
        self.outq.clear()
        with contextlib.suppress(OSError):
            self.sock.close()


class Encoded:
    """An object as it is sent: frame flags, body, and out-of-band buffers."""

    __slots__ = ("body", "buffers", "flags")

    def __init__(self, flags: int, body: bytes, buffers: list[memoryview]) -> None:
        self.flags = flags
        self.body = body
        self.buffers = buffers


def encode(obj: Any, what: str) -> Encoded:
    """Serializes ``obj`` for sending.

    A numpy array (of a dtype without Python objects) travels as its dtype and
    shape plus its raw memory, without pickling the data. Anything else is
    pickled (protocol 5, cloudpickle), with buffers of at least
    :data:`OUT_OF_BAND_MIN` bytes (numpy arrays inside dicts, lists, ...)
    taken out of the stream.

    Raises:
        SerializationError: ``obj`` cannot be pickled; names ``what``.
    """
    if semantics.is_ndarray(obj) and not obj.dtype.hasobject:
        if not (obj.flags.c_contiguous or obj.flags.f_contiguous):
            obj = obj.copy(order="C")
        fortran = bool(obj.flags.f_contiguous and not obj.flags.c_contiguous)
        body = pickle.dumps((obj.dtype, obj.shape, fortran), pickle.HIGHEST_PROTOCOL)
        return Encoded(wire.FLAG_ARRAY, body, [raw_bytes(obj)])
    buffers: list[memoryview] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: keep it in the stream
            return True
        if raw.nbytes < OUT_OF_BAND_MIN:
            return True
        buffers.append(raw)
        return False

    return Encoded(0, _pickling.dumps(obj, what, buffer_callback=out_of_band), buffers)


def allocate_array(body: bytes | bytearray) -> Any:
    """The array an ``FLAG_ARRAY`` frame's data is received into."""
    dtype, shape, fortran = pickle.loads(body)
    return memory.empty(shape, dtype, fortran)


def allocate_bytes(nbytes: int) -> Any:
    """Writable memory for an out-of-band buffer (not zero-filled)."""
    return memory.empty((nbytes,), "uint8")


class Incoming:
    """A received data frame (``USER``, ``COLL`` or ``RUN``).

    ``ready`` is False while its buffers are still to be pulled or streamed;
    ``arrival`` orders messages across sources (for receive-from-any).
    """

    __slots__ = ("acked", "arrival", "frame", "ready", "source", "targets")

    def __init__(self, source: int, frame: wire.Frame, arrival: int) -> None:
        self.source = source
        self.frame = frame
        self.arrival = arrival
        self.ready = not any(mode == wire.MODE_CMA for mode, _, _ in frame.descs)
        self.acked = self.ready
        self.targets: list[Any] | None = None

    @property
    def epoch(self) -> int:
        """The run this message belongs to."""
        return self.frame.epoch

    @property
    def is_array(self) -> bool:
        """True if the payload is one numpy array (no pickle)."""
        return bool(self.frame.flags & wire.FLAG_ARRAY)

    def array_meta(self) -> semantics.ArrayMeta | None:
        """Dtype and shape of an array payload of one or more dimensions, else ``None``."""
        if not self.is_array:
            return None
        dtype, shape, _ = pickle.loads(self.frame.body)
        return semantics.ArrayMeta(dtype, tuple(shape)) if len(shape) else None

    def value(self, what: str) -> Any:
        """The object that was sent (its buffers must be in place)."""
        frame = self.frame
        if self.is_array:
            array = frame.inline[0]
            return allocate_array(frame.body) if array is None else array
        return _pickling.loads(frame.body, what, buffers=frame.inline)


def local_copy(source: int, kind: int, tag: int, epoch: int, encoded: Encoded, arrival: int) -> Incoming:
    """The message a process sends to itself: the same frame, with copies of the buffers."""
    frame = wire.Frame(kind, encoded.flags, tag, epoch, 0, [(wire.MODE_INLINE, b.nbytes, 0) for b in encoded.buffers])
    frame.body = encoded.body
    if encoded.flags & wire.FLAG_ARRAY:
        array = allocate_array(encoded.body)
        raw_bytes(array)[:] = encoded.buffers[0]
        frame.inline = [array]
    else:
        frame.inline = [bytearray(buffer) for buffer in encoded.buffers]
    return Incoming(source, frame, arrival)
