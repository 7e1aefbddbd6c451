"""The poll loop of one process: a socket to every peer and, on main, the workers' sentinels.

All I/O happens in the calling thread while it waits: :meth:`Loop.pump`
blocks in ``poll`` until a socket is readable (or writable, when bytes are
queued for it) or a sentinel fires, reads every complete frame and hands it
to ``on_frame``; a socket closed by its peer goes to ``on_eof``, an exited
worker process to ``on_exit``. Nothing here busy-waits, and nothing here knows
what a frame means.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Callable

from .._core.limits import READS_PER_PUMP, SOCKET_READ
from . import wire
from .channel import Channel

_IN = select.POLLIN | select.POLLPRI
_OUT = select.POLLOUT
_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


class Loop:
    """The sockets of one process, and the one ``poll`` that watches them all.

    Args:
        sockets: One connected socket per peer rank.
        allocator: Memory for a peer's incoming buffers: ``allocator(rank)``.
        on_frame: Called with ``(rank, frame)`` for every complete frame.
        on_eof: Called with the rank whose socket closed.
        on_exit: Called with the rank whose process sentinel fired.
    """

    def __init__(
        self,
        sockets: dict[int, socket.socket],
        allocator: Callable[[int], wire.Allocator],
        on_frame: Callable[[int, wire.Frame], None],
        on_eof: Callable[[int], None],
        on_exit: Callable[[int], None],
    ) -> None:
        self._poller = select.poll()
        # every small read lands here first: a fresh bytes object per recv of SOCKET_READ
        # bytes costs an mmap and munmap each time (16 us against 3 us, measured)
        self._scratch = memoryview(bytearray(SOCKET_READ))
        self._on_frame = on_frame
        self._on_eof = on_eof
        self._on_exit = on_exit
        self.channels: dict[int, Channel] = {}
        self._by_fd: dict[int, Channel] = {}
        self._sentinels: dict[int, int] = {}  # fd -> rank
        self._watched: set[int] = set()  # other fds that end a wait (wakers)
        for peer, sock in sockets.items():
            channel = Channel(peer, sock, wire.FrameReader(allocator(peer)))
            self.channels[peer] = channel
            self._by_fd[channel.fd] = channel
            self._set_mask(channel, _IN)

    def attach(self, rank: int, sock: socket.socket, allocator: wire.Allocator) -> None:
        """Connects ``rank`` anew (a replacement for a process whose socket closed)."""
        old = self.channels.get(rank)
        if old is not None and not old.closed:
            self._closed(old)
        channel = Channel(rank, sock, wire.FrameReader(allocator))
        self.channels[rank] = channel
        self._by_fd[channel.fd] = channel
        self._set_mask(channel, _IN)

    def add_sentinel(self, fd: int, rank: int) -> None:
        """Watches ``fd``, readable once process ``rank`` has exited."""
        self._sentinels[fd] = rank
        self._poller.register(fd, _IN)

    def drop_sentinel(self, fd: int) -> None:
        """Stops watching a sentinel (before its fd is closed)."""
        if self._sentinels.pop(fd, None) is not None:
            self._unregister(fd)

    def watch(self, fd: int) -> None:
        """Also wakes up when ``fd`` is readable (a waker's pipe; its owner drains it)."""
        if fd not in self._watched:
            self._watched.add(fd)
            self._poller.register(fd, _IN)

    def unwatch(self, fd: int) -> None:
        """Stops watching ``fd``."""
        if fd in self._watched:
            self._watched.discard(fd)
            self._unregister(fd)

    def is_open(self, rank: int) -> bool:
        """True while the socket to ``rank`` is connected."""
        channel = self.channels.get(rank)
        return channel is not None and not channel.closed

    def send(self, rank: int, parts: list[object]) -> int | None:
        """Queues a frame's parts for ``rank`` and writes what the socket takes now.

        Returns:
            The stream offset at which the frame ends (compare with
            :meth:`sent`), or ``None`` when the socket is closed.
        """
        channel = self.channels.get(rank)
        if channel is None or channel.closed:
            return None
        if len(parts) == 1 and not channel.outq and type(parts[0]) is bytes:  # one frame, nothing before it
            try:
                return channel.write(parts[0])
            except OSError:
                self._closed(channel)
                return channel.queued
        end = channel.enqueue(parts)
        self._flush(channel)
        return end

    def sent(self, rank: int) -> int:
        """Bytes written to ``rank``'s socket so far."""
        return self.channels[rank].sent

    def watching(self) -> bool:
        """True while any socket or sentinel is left to watch."""
        return bool(self._by_fd or self._sentinels)

    def pump(self, block: bool, timeout_ms: int | None = None) -> None:
        """Waits (if ``block``) until something happens, and handles all that has.

        Args:
            block: Wait for an event; otherwise only handle what is there.
            timeout_ms: The longest wait; ``None``: until an event.
        """
        for channel in self.channels.values():
            if not channel.closed:
                self._set_mask(channel, _IN | (_OUT if channel.outq else 0))
        self._handle(self._poller.poll(timeout_ms if block else 0))

    def _handle(self, polled: list[tuple[int, int]]) -> None:
        """Handles what ``poll`` reported: frames read, queued bytes written, exits noticed."""
        for fd, events in polled:
            ready = self._by_fd.get(fd)
            if ready is None:
                if fd in self._watched:
                    continue  # a waker: the wait is over, its owner drains it
                rank = self._sentinels.pop(fd, None)
                if rank is not None:
                    self._unregister(fd)
                    self._on_exit(rank)
                continue
            if events & (_IN | _GONE):
                self._read(ready)
            if events & _OUT and not ready.closed:
                self._flush(ready)
                if not ready.outq and not ready.closed:
                    self._set_mask(ready, _IN)  # all written: poll need not report it writable again

    def take_small(self, rank: int, kind: int, tag: int, epoch: int) -> bytes | None:
        """The body of one small frame from ``rank``, straight from its socket, when that is all that came.

        A fast path for a process waiting for one collective's message: when
        ``poll`` reports ``rank``'s socket alone, with no frame half-read, and
        what it holds begins with one whole frame of ``kind``, ``tag`` and
        ``epoch`` with no buffers and no flags, its body comes back; the bytes
        after it (frames sent later) go to the frame reader, as :meth:`pump`
        would handle them. Anything else is handled as :meth:`pump` handles
        it, and ``None`` comes back (also when nothing has come yet).
        """
        channel = self.channels.get(rank)
        if channel is None or channel.closed or channel.outq or not channel.reader.idle():
            self.pump(block=False)
            return None
        polled = self._poller.poll(0)
        if not polled:
            return None
        if len(polled) != 1 or polled[0][0] != channel.fd or polled[0][1] & ~_IN:
            self._handle(polled)
            return None
        try:
            count = channel.sock.recv_into(self._scratch)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            count = 0
        if not count:
            self._closed(channel)
            return None
        view = self._scratch[:count]
        body: bytes | None = None
        if count >= wire.HEADER.size:
            got_kind, flags, nbufs, got_tag, got_epoch, _, body_len = wire.HEADER.unpack_from(view, 0)
            end = wire.HEADER.size + body_len
            if count >= end and got_kind == kind and got_tag == tag and got_epoch == epoch and not flags and not nbufs:
                body = bytes(view[wire.HEADER.size : end])
                if count == end:
                    return body
                view = view[end:]  # frames sent after it: handled as _read would, after it
        channel.reader.feed(view, lambda frame: self._on_frame(rank, frame))  # as _read would
        return body

    def close(self) -> None:
        """Closes every socket and stops watching the sentinels."""
        for channel in self.channels.values():
            if not channel.closed:
                self._unregister(channel.fd)
                channel.close()
        self._by_fd.clear()
        for fd in [*self._sentinels, *self._watched]:
            self._unregister(fd)
        self._sentinels.clear()
        self._watched.clear()

    def _read(self, channel: Channel) -> None:
        reader = channel.reader

        def deliver(frame: wire.Frame) -> None:
            self._on_frame(channel.rank, frame)

        scratch = self._scratch
        for _ in range(READS_PER_PUMP):
            try:
                direct = reader.want_direct()
                drained = False
                if direct is not None:
                    count = channel.sock.recv_into(direct)
                    if count:
                        reader.received_direct(count, deliver)
                else:
                    count = channel.sock.recv_into(scratch)
                    if count:
                        reader.feed(scratch[:count], deliver)
                        drained = count < SOCKET_READ
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                count = 0
            if not count:
                self._closed(channel)
                return
            if drained:  # a short read of small frames: poll says when more comes (no failing recv)
                return

    def _flush(self, channel: Channel) -> None:
        try:
            channel.flush()
        except OSError:
            self._closed(channel)

    def _closed(self, channel: Channel) -> None:
        if channel.closed:
            return
        self._unregister(channel.fd)
        self._by_fd.pop(channel.fd, None)
        channel.close()
        self._on_eof(channel.rank)

    def _set_mask(self, channel: Channel, mask: int) -> None:
        if channel.mask != mask:
            if channel.mask:
                self._poller.modify(channel.fd, mask)
            else:
                self._poller.register(channel.fd, mask)
            channel.mask = mask

    def _unregister(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._poller.unregister(fd)
