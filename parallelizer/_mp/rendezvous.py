"""Large messages: the receiver copies them out of the sender's memory.

A data frame whose buffers are large announces them (size and address)
instead of carrying them. The receiver allocates the memory they go to and
*pulls* them with cross-memory attach (``cma.read``), then answers ``ACK``;
the sender keeps the buffers alive until every receiver has. Where the kernel
refuses (``EPERM``), the receiver answers ``NACK`` and the sender streams the
bytes in a ``BUFDATA`` frame, straight into the memory the receiver chose;
that pair of processes streams from then on.

``lazy`` frames (gather) are pulled only when the consumer says where to:
straight into the slices of the result.

:class:`Rendezvous` is the part of :class:`~parallelizer._mp.endpoint.Endpoint`
that does this; the endpoint supplies the sockets, the waiting and the control
frames.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Collection
from typing import Any

from .._codec import Encoded, raw_bytes
from . import cma, wire
from .channel import Channel, Incoming, address_of


class PendingSend:
    """A sent frame whose sender still waits.

    It waits for its bytes to leave, and for each receiver to ACK the buffers
    it pulls.
    """

    __slots__ = ("descs", "encoded", "lazy", "token", "waiting")

    def __init__(self, token: int, encoded: Encoded, descs: list[tuple[int, int, int]], lazy: bool) -> None:
        self.token = token
        self.encoded = encoded  # keeps the buffers alive while receivers pull
        self.descs = descs
        self.lazy = lazy
        self.waiting: dict[int, list[int]] = {}  # dest -> [stream end offset, ack still due]


class Rendezvous:
    """Pulling large buffers, and the streaming fallback (a base of Endpoint)."""

    # State and operations the endpoint provides (see Endpoint).
    rank: int
    epoch: int
    is_main: bool
    abort_epoch: int
    pids: dict[int, int]
    channels: dict[int, Channel]
    dead: dict[int, int | None]
    cma_refused: set[int]  # peers whose memory we may not read
    stream_to: set[int]  # peers that cannot read ours
    _sends: dict[int, PendingSend]
    _awaiting: dict[tuple[int, int], Incoming]  # (source, token) -> waits for BUFDATA

    def control(
        self, dest: int, kind: int, *, tag: int = 0, epoch: int | None = None, token: int = 0, body: bytes = b""
    ) -> None:
        """Sends a control frame (Endpoint.control)."""
        raise NotImplementedError

    def _wait(self, ready: Callable[[], bool], waiting_on: Collection[int] | None, what: str) -> None:
        """Pumps until ``ready()`` (Endpoint._wait)."""
        raise NotImplementedError

    def _flush(self, channel: Channel) -> None:
        """Writes queued bytes (Endpoint._flush)."""
        raise NotImplementedError

    def _allocator(self, source: int) -> wire.Allocator:
        """Memory for received buffers (Endpoint._allocator)."""
        raise NotImplementedError

    def _dead_peer(self, rank: int) -> None:
        """Notes a dead peer (Endpoint._dead_peer)."""
        raise NotImplementedError

    def pull_into(self, incs: list[Incoming], targets: list[Any], *, threads: Any = None) -> None:
        """Pulls lazy messages' single buffers into ``targets`` (one each).

        With an executor in ``threads`` the copies run concurrently.
        """
        jobs = []
        for inc, target in zip(incs, targets, strict=True):
            mode, size, address = inc.frame.descs[0] if inc.frame.descs else (wire.MODE_INLINE, 0, 0)
            if mode == wire.MODE_INLINE:  # already here: copy it over
                if size:
                    raw_bytes(target)[:] = raw_bytes(inc.frame.inline[0])
                continue
            inc.frame.inline[0] = target
            if inc.source in self.cma_refused:
                self._stream_instead(inc, [target])
            else:
                jobs.append((inc, target, address, size))

        def read(job: tuple[Incoming, Any, int, int]) -> OSError | None:
            inc, target, remote, size = job
            return self._try_read(inc.source, remote, address_of(target), size)

        if threads is not None and len(jobs) > 1:
            outcomes = list(threads.map(read, jobs))
        else:
            outcomes = [read(job) for job in jobs]
        for job, error in zip(jobs, outcomes, strict=True):
            self._after_pull(job[0], [job[1]], error)
        self._wait(lambda: all(inc.ready for inc in incs), [inc.source for inc in incs], "gather")

    def complete(self, inc: Incoming) -> None:
        """Pulls all buffers of a lazy message into fresh memory."""
        if not inc.ready and inc.targets is None:
            allocate = self._allocator(inc.source)
            descs = inc.frame.descs
            self._pull(
                inc, [allocate(inc.frame, i) if mode == wire.MODE_CMA else None for i, (mode, _, _) in enumerate(descs)]
            )
        self._wait(lambda: inc.ready, (inc.source,), "gather")

    def _send_done(self, pending: PendingSend) -> bool:
        for dest, (end, ack) in pending.waiting.items():
            channel = self.channels[dest]
            if channel.closed or dest in self.dead:
                continue
            if ack or channel.sent < end:
                return False
        return True

    def _pull(self, inc: Incoming, targets: list[Any]) -> None:
        """Copies a message's CMA buffers out of the sender into ``targets``."""
        frame = inc.frame
        for index, target in enumerate(targets):
            if target is not None:
                frame.inline[index] = target
        if inc.source in self.cma_refused:
            self._stream_instead(inc, targets)
            return
        error = None
        for index, (mode, size, address) in enumerate(frame.descs):
            if mode == wire.MODE_CMA:
                error = self._try_read(inc.source, address, address_of(targets[index]), size)
                if error is not None:
                    break
        self._after_pull(inc, targets, error)

    def _try_read(self, source: int, remote: int, local: int, size: int) -> OSError | None:
        try:
            cma.read(self.pids[source], remote, local, size)
        except OSError as exc:
            return exc
        return None

    def _after_pull(self, inc: Incoming, targets: list[Any], error: OSError | None) -> None:
        if error is None:
            inc.ready = inc.acked = True
            self.control(inc.source, wire.ACK, token=inc.frame.token, epoch=inc.epoch)
        elif error.errno in cma.REFUSED:
            self.cma_refused.add(inc.source)
            self._stream_instead(inc, targets)
        elif error.errno == errno.ESRCH:
            self._dead_peer(inc.source)
        else:  # EFAULT: the sender gave the message up (its run was aborted)
            inc.acked = True
            if inc.epoch == self.epoch and not self.is_main:
                self.abort_epoch = max(self.abort_epoch, inc.epoch)

    def _stream_instead(self, inc: Incoming, targets: list[Any]) -> None:
        """Asks the sender to stream the buffers we could not pull."""
        inc.targets = targets
        self._awaiting[(inc.source, inc.frame.token)] = inc
        self.control(inc.source, wire.NACK, token=inc.frame.token, epoch=inc.epoch)

    def _on_nack(self, source: int, token: int) -> None:
        """A receiver cannot pull from us: stream the buffers to it instead."""
        self.stream_to.add(source)
        pending = self._sends.get(token)
        if pending is None or source not in pending.waiting:
            return
        descs = [(wire.MODE_INLINE, size if mode == wire.MODE_CMA else 0, 0) for mode, size, _ in pending.descs]
        pulled = [
            buffer
            for buffer, (mode, _, _) in zip(pending.encoded.buffers, pending.descs, strict=True)
            if mode == wire.MODE_CMA
        ]
        channel = self.channels[source]
        end = channel.enqueue([wire.pack(wire.BUFDATA, token=token, epoch=self.epoch, descs=descs), *pulled])
        pending.waiting[source] = [end, 0]
        self._flush(channel)

    def _release(self, inc: Incoming) -> None:
        """Frees the sender of a message that will never be taken."""
        if not inc.acked and (inc.source, inc.frame.token) not in self._awaiting:
            inc.acked = True
            self.control(inc.source, wire.ACK, token=inc.frame.token, epoch=inc.epoch)
