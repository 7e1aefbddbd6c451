"""One socket to one peer, and the objects that travel over it.

A :class:`Channel` owns a non-blocking socket: a :class:`wire.FrameReader` for
what comes in and a queue of byte views for what goes out (frames are never
interleaved: a frame's bytes are queued whole and flushed in order).

An :class:`Incoming` is a received data frame until its value is taken
(objects become frames with :mod:`parallelizer._core.codec`).
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from itertools import islice
from typing import Any

from .. import semantics
from .._core.codec import array_header, decode, raw_bytes
from . import wire

_IOV_MAX = 512  # views per sendmsg call (Linux allows 1024)


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

    def write(self, frame: bytes) -> int:
        """Writes one whole frame, with nothing queued before it, straight to the socket; returns where it ends.

        What the socket does not take now is queued (the usual small message
        needs no queue entry).

        Raises:
            OSError: The peer closed its end (``BrokenPipeError`` and the like).
        """
        assert not self.outq, "frames are never interleaved: queued bytes go first"
        self.queued += len(frame)
        try:
            count = self.sock.send(frame)
        except (BlockingIOError, InterruptedError):
            count = 0
        self.sent += count
        if count < len(frame):
            self.outq.append(memoryview(frame)[count:])
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
        dtype, shape, _ = array_header(self.frame.body)
        return semantics.ArrayMeta(dtype, shape) if shape else None

    @property
    def c_order(self) -> bool:
        """True if an array payload's bytes are in C order (Fortran order otherwise)."""
        return self.is_array and not array_header(self.frame.body)[2]

    def value(self, what: str) -> Any:
        """The object that was sent (its buffers must be in place).

        Raises:
            SerializationError: It cannot be unpickled here (``rank``: the sender).
        """
        return decode(self.frame.flags, self.frame.body, self.frame.inline, what, self.source)
