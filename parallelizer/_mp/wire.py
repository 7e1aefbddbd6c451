"""The frames exchanged over the sockets between processes of a group.

A frame is a fixed header, one descriptor per out-of-band buffer, the body
(a pickle, or an array's dtype and shape), then the bytes of the buffers that
travel *inline*::

    +--------+-----------------+------+----------------------+
    | header | nbufs x BUFDESC | body | inline buffer bytes  |
    +--------+-----------------+------+----------------------+

A buffer either travels inline, or stays in the sender's memory and is
*pulled* by the receiver with cross-memory attach (``MODE_CMA``: the
descriptor holds its address); the receiver then answers ``ACK`` with the
frame's token, or ``NACK`` if it could not pull, and the sender streams the
bytes in a ``BUFDATA`` frame instead.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Any

from .._core import codec as _codec

# header: kind, flags, nbufs, tag, epoch, token, body length
HEADER = struct.Struct("<BBHiIQQ")
# buffer descriptor: mode, size in bytes, address in the sender (MODE_CMA)
BUFDESC = struct.Struct("<BQQ")

MODE_INLINE = 0
MODE_CMA = 1


class Kind(enum.IntEnum):
    """What a frame is (the first byte of its header)."""

    # data frames (matched by recv)
    USER = 1  # send/recv, tag = user tag
    COLL = 2  # collectives' traffic, tag = CollTag
    # rendezvous of large buffers (rendezvous.py)
    ACK = 3  # receiver pulled the CMA buffers of frame `token`
    NACK = 4  # receiver cannot pull: stream them (BUFDATA)
    BUFDATA = 5  # the bytes of frame `token`'s buffers, inline
    # group protocol (protocol.py)
    SETUP = 6  # main -> worker, once: who is who
    RUN = 7  # main -> worker: run func for `epoch`
    ERROR = 8  # worker -> main: func raised in `epoch`
    ABORT = 9  # main -> worker: give up `epoch`
    FINISHED = 10  # anyone -> everyone: returned from func in `epoch`
    STOP = 11  # main -> worker: exit
    PRINT = 12  # worker -> main: text to print


DATA_KINDS = frozenset({Kind.USER, Kind.COLL, Kind.RUN, Kind.SETUP})
"""Frames that carry an object (and may carry buffers to pull)."""

COMMAND_KINDS = frozenset({Kind.RUN, Kind.SETUP})
"""Data frames a worker queues as commands instead of delivering to a mailbox."""

FLAG_ARRAY = _codec.FLAG_ARRAY  # body is (dtype, shape, fortran order); one buffer: the data
FLAG_LAZY = 2  # receiver pulls only when the consumer says where to


class Frame:
    """A received frame; ``inline`` holds its inline buffers by index."""

    __slots__ = ("body", "descs", "epoch", "flags", "inline", "kind", "tag", "token")

    def __init__(self, kind: int, flags: int, tag: int, epoch: int, token: int, descs: list[tuple[int, int, int]]):
        self.kind = kind
        self.flags = flags
        self.tag = tag
        self.epoch = epoch
        self.token = token
        self.descs = descs
        self.body: bytes | bytearray = b""
        self.inline: list[Any] = [None] * len(descs)

    def __repr__(self) -> str:
        name = Kind(self.kind).name if self.kind in Kind._value2member_map_ else self.kind
        return f"<Frame {name} tag={self.tag} epoch={self.epoch} token={self.token} bufs={len(self.descs)}>"


def pack(
    kind: int,
    *,
    tag: int = 0,
    epoch: int = 0,
    token: int = 0,
    flags: int = 0,
    body: bytes | bytearray | memoryview = b"",
    descs: list[tuple[int, int, int]] | None = None,
) -> bytes:
    """Header, descriptors and body of a frame, as one bytes object.

    The inline buffer bytes (if any) are written after it by the caller.
    """
    descs = descs or []
    head = HEADER.pack(kind, flags, len(descs), tag, epoch, token, len(body))
    if not descs:
        return head + bytes(body)
    return b"".join([head, *(BUFDESC.pack(*desc) for desc in descs), bytes(body)])


# Allocates the memory an inline piece is received into: (frame, index) ->
# writable buffer of the descriptor's size. Index -1 is never asked (the body
# is always a bytes/bytearray).
Allocator = Callable[[Frame, int], Any]


class FrameReader:
    """Parses the byte stream of one socket into frames.

    Pieces already in the read buffer are cut from it; the rest of a piece is
    received directly into its final memory (see :meth:`want_direct`).
    """

    def __init__(self, allocate: Allocator) -> None:
        self._allocate = allocate
        self._buf = bytearray()
        self._frame: Frame | None = None
        self._pieces: list[tuple[int, int]] = []  # (index, size); index -1 = body
        self._piece = 0
        self._target: memoryview | None = None
        self._filled = 0

    def idle(self) -> bool:
        """True between frames: nothing of a next frame has been read."""
        return self._frame is None and not self._buf

    def want_direct(self) -> memoryview | None:
        """Where the next received bytes should go directly, if anywhere."""
        if self._target is not None and not self._buf:
            return self._target[self._filled :]
        return None

    def received_direct(self, count: int, deliver: Callable[[Frame], None]) -> None:
        """Notes ``count`` bytes received into :meth:`want_direct`'s view."""
        self._filled += count
        self._advance(deliver)

    def feed(self, data: bytes | memoryview, deliver: Callable[[Frame], None]) -> None:
        """Takes bytes read from the socket; calls ``deliver`` per complete frame.

        ``data`` is copied before any frame is delivered: it may be a view of a
        buffer the next read reuses (a ``deliver`` may itself read sockets).
        """
        self._buf += data
        self._advance(deliver)

    def _advance(self, deliver: Callable[[Frame], None]) -> None:
        buf = self._buf
        pos = 0
        while True:
            if self._frame is None:
                if len(buf) - pos < HEADER.size:
                    break
                kind, flags, nbufs, tag, epoch, token, body_len = HEADER.unpack_from(buf, pos)
                need = HEADER.size + nbufs * BUFDESC.size
                if len(buf) - pos < need:
                    break
                descs = [BUFDESC.unpack_from(buf, pos + HEADER.size + i * BUFDESC.size) for i in range(nbufs)]
                pos += need
                frame = Frame(kind, flags, tag, epoch, token, descs)
                pieces = [(-1, body_len)] if body_len else []
                pieces += [(i, size) for i, (mode, size, _) in enumerate(descs) if mode == MODE_INLINE and size]
                self._frame, self._pieces, self._piece = frame, pieces, 0
            frame = self._frame
            while self._piece < len(self._pieces):
                index, size = self._pieces[self._piece]
                if self._target is None:
                    available = len(buf) - pos
                    if index == -1 and available >= size:  # common case: a small body, all here
                        frame.body = bytes(buf[pos : pos + size])
                        pos += size
                        self._piece += 1
                        continue
                    memory = bytearray(size) if index == -1 else self._allocate(frame, index)
                    self._target = _codec.raw_bytes(memory)
                    self._filled = 0
                    if index == -1:
                        frame.body = memory
                    else:
                        frame.inline[index] = memory
                take = min(size - self._filled, len(buf) - pos)
                if take:
                    self._target[self._filled : self._filled + take] = buf[pos : pos + take]
                    self._filled += take
                    pos += take
                if self._filled < size:
                    break
                self._target.release()
                self._target = None
                self._piece += 1
            if self._piece < len(self._pieces):
                break
            self._frame = None
            deliver(frame)
        if pos:
            del buf[:pos]
