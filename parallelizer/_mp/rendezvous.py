"""Large messages: the receiver copies them out of the sender's memory.

A data frame whose buffers are large announces them (size and address)
instead of carrying them. The receiver allocates the memory they go to and
*pulls* them with cross-memory attach (``cma.read``), then answers ``ACK``;
the sender keeps the buffers alive until every receiver has. Where the kernel
refuses (``EPERM``), the receiver answers ``NACK`` and the sender streams the
bytes in a ``BUFDATA`` frame instead, straight into the memory the receiver
chose; that pair of processes streams from then on.

``lazy`` frames (gather, allgather, ``out=``) are pulled only when the
consumer says where to: straight into the slices of the result, or into
``out``. They announce their large buffers also where nothing can be pulled
(streaming pairs, no cross-memory attach): the receiver then asks for the
stream at once, and the bytes still land where it chose.

Nothing here waits: the endpoint waits, and asks :meth:`Rendezvous.done`
and :attr:`Incoming.ready` whether the transfers it waits for are over.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from .._core import env
from .._core.codec import Encoded, raw_bytes
from .._core.limits import CMA_MIN, PULL_PIECE_MIN, PULL_PIECES_MAX
from . import cma, wire
from .channel import Channel, Incoming, address_of
from .loop import Loop
from .protocol import Protocol

Desc = tuple[int, int, int]  # (mode, size, address)


@dataclass
class Delivery:
    """What a sent frame still waits for at one receiver."""

    channel: Channel  # the socket it went into (a replaced process has a new one)
    end: int  # the stream offset at which the frame's bytes end
    ack_due: bool  # the receiver still has to pull (and ACK) the buffers


@dataclass
class PendingSend:
    """A sent frame, until every receiver has what it was sent."""

    token: int
    encoded: Encoded  # keeps the buffers alive while receivers pull
    descs: list[Desc]
    lazy: bool
    deliveries: dict[int, Delivery] = field(default_factory=dict)


class Rendezvous:
    """Pulling large buffers, and the streaming fallback, for one process.

    Args:
        pids: Every rank's process id (completed by main's SETUP).
        loop: The sockets, for ACK/NACK/BUFDATA frames.
        protocol: Told of dead peers and of senders that gave a message up.
        threads: The endpoint's threads, for a large pull read in pieces side
            by side (never called from one of those threads).
    """

    def __init__(
        self, pids: dict[int, int], loop: Loop, protocol: Protocol, threads: Callable[[], Executor] | None = None
    ) -> None:
        self.pids = pids
        self.loop = loop
        self.protocol = protocol
        self._threads = threads
        self._pieces = max(1, min(env.usable_cpus(), PULL_PIECES_MAX)) if threads is not None else 1
        self.sends: dict[int, PendingSend] = {}  # token -> a send some receiver still pulls
        self.awaiting: dict[tuple[int, int], Incoming] = {}  # (source, token) -> waits for BUFDATA
        self.cma_refused: set[int] = set()  # peers whose memory we may not read
        self.stream_to: set[int] = set()  # peers that cannot read ours

    # ------------------------------------------------------------------ sending

    @staticmethod
    def descriptors(encoded: Encoded, lazy: bool = False) -> list[Desc]:
        """How each buffer of ``encoded`` travels: announced (large) or inline.

        An announced buffer is pulled by the receiver, or streamed when it
        asks (``NACK``). A lazy message announces its large buffers even
        where nothing can be pulled, so that they stream straight into the
        memory the receiver chooses instead of arriving before it has.
        """
        pull = (lazy or cma.AVAILABLE) and any(buffer.nbytes >= CMA_MIN for buffer in encoded.buffers)
        return [
            (wire.MODE_CMA, buffer.nbytes, address_of(buffer))
            if pull and buffer.nbytes >= CMA_MIN
            else (wire.MODE_INLINE, buffer.nbytes, 0)
            for buffer in encoded.buffers
        ]

    def descriptors_for(self, dest: int, descs: list[Desc], lazy: bool = False) -> list[Desc]:
        """``descs`` as sent to ``dest``: all inline if ``dest`` cannot pull from us (lazy: still announced)."""
        if dest in self.stream_to and not lazy:
            return [(wire.MODE_INLINE, size, 0) for _, size, _ in descs]
        return descs

    def track(self, pending: PendingSend) -> None:
        """Keeps ``pending`` until its receivers have pulled (if any must)."""
        if any(delivery.ack_due for delivery in pending.deliveries.values()):
            self.sends[pending.token] = pending

    def forget(self, pending: PendingSend) -> None:
        """Stops tracking a completed send."""
        self.sends.pop(pending.token, None)

    def done(self, pending: PendingSend) -> bool:
        """True when every live receiver of ``pending`` has what it was sent."""
        return not self.undelivered(pending)

    def undelivered(self, pending: PendingSend) -> list[int]:
        """The live receivers of ``pending`` that do not have all of it yet."""
        return [
            dest
            for dest, delivery in pending.deliveries.items()
            if not delivery.channel.closed
            and dest not in self.protocol.dead
            and (delivery.ack_due or delivery.channel.sent < delivery.end)
        ]

    def on_ack(self, source: int, token: int) -> None:
        """``source`` pulled the buffers of our frame ``token``."""
        pending = self.sends.get(token)
        if pending is not None and source in pending.deliveries:
            pending.deliveries[source].ack_due = False

    def on_nack(self, source: int, token: int) -> None:
        """``source`` cannot pull from us: stream the buffers of frame ``token`` to it instead."""
        self.stream_to.add(source)
        pending = self.sends.get(token)
        if pending is None or source not in pending.deliveries:
            return
        descs = [(wire.MODE_INLINE, size if mode == wire.MODE_CMA else 0, 0) for mode, size, _ in pending.descs]
        pulled = [
            buffer
            for buffer, (mode, _, _) in zip(pending.encoded.buffers, pending.descs, strict=True)
            if mode == wire.MODE_CMA
        ]
        header = wire.pack(wire.Kind.BUFDATA, token=token, epoch=self.protocol.epoch, descs=descs)
        channel = pending.deliveries[source].channel
        end = self.loop.send(source, [header, *pulled])
        pending.deliveries[source] = Delivery(channel, end if end is not None else 0, False)

    # ------------------------------------------------------------------ receiving

    def start(self, inc: Incoming, allocate: Callable[[wire.Frame, int], Any]) -> None:
        """Pulls every announced buffer of an arrived message into fresh memory."""
        targets = [
            allocate(inc.frame, i) if mode == wire.MODE_CMA else None for i, (mode, _, _) in enumerate(inc.frame.descs)
        ]
        self._pull(inc, targets)

    def pull_into(self, incs: Sequence[Incoming], targets: Sequence[Any], threads: Executor | None) -> None:
        """Pulls lazy messages' single buffers into ``targets`` (one each), concurrently in ``threads``."""
        jobs = []
        for inc, target in zip(incs, targets, strict=True):
            mode, size, address = inc.frame.descs[0] if inc.frame.descs else (wire.MODE_INLINE, 0, 0)
            if mode == wire.MODE_INLINE:  # already here: copy it over
                if size:
                    raw_bytes(target)[:] = raw_bytes(inc.frame.inline[0])
                continue
            inc.frame.inline[0] = target
            if not self._may_pull(inc.source):
                self._stream_instead(inc, [target])
            else:
                jobs.append((inc, target, address, size))

        def read(job: tuple[Incoming, Any, int, int], alone: bool = False) -> OSError | None:
            inc, target, remote, size = job
            return self._try_read(inc.source, remote, address_of(target), size, alone)

        if threads is not None and len(jobs) > 1:  # side by side already: one thread each
            outcomes = list(threads.map(read, jobs))
        else:
            outcomes = [read(job, alone=True) for job in jobs]
        for job, error in zip(jobs, outcomes, strict=True):
            self._after_pull(job[0], [job[1]], error)

    def readable(self, inc: Incoming) -> bool:
        """Whether :meth:`read_piece` may read the single buffer of lazy message ``inc`` from its sender."""
        descs = inc.frame.descs
        return len(descs) == 1 and descs[0][0] == wire.MODE_CMA and not inc.ready and self._may_pull(inc.source)

    def read_piece(self, inc: Incoming, offset: int, target: Any) -> OSError | None:
        """Reads bytes ``[offset, offset + len(target))`` of ``inc``'s buffer into ``target``; the error, if any.

        For messages :meth:`readable` accepts; :meth:`pieces_read` ends the pull.
        """
        _, size, address = inc.frame.descs[0]
        nbytes = raw_bytes(target).nbytes
        if offset < 0 or offset + nbytes > size:
            raise ValueError(f"bytes {offset}..{offset + nbytes} are beyond the {size} announced")
        return self._try_read(inc.source, address + offset, address_of(target), nbytes)

    @staticmethod
    def refused(error: OSError | None) -> bool:
        """Whether a read failed because the kernel does not let this process read the sender's memory."""
        return error is not None and error.errno in cma.REFUSED

    def pieces_read(self, inc: Incoming, error: OSError | None) -> None:
        """Ends a pull made of :meth:`read_piece` calls: the sender may go on (``error``: why a read failed).

        Not for a refusal (:meth:`refused`): the caller pulls that buffer whole
        instead (:meth:`pull_into` then asks the sender to stream it).
        """
        assert not self.refused(error)
        self._after_pull(inc, [None], error)

    def on_bufdata(self, source: int, token: int) -> None:
        """The streamed buffers of ``source``'s frame ``token`` have arrived."""
        inc = self.awaiting.pop((source, token))
        inc.ready = inc.acked = True

    def streamed_target(self, source: int, token: int, index: int) -> Any:
        """Where buffer ``index`` of a BUFDATA frame goes: the memory chosen before the NACK."""
        inc = self.awaiting[(source, token)]
        assert inc.targets is not None
        return inc.targets[index]

    def release(self, inc: Incoming) -> None:
        """Frees the sender of a message that will never be taken."""
        if not inc.acked and (inc.source, inc.frame.token) not in self.awaiting:
            inc.acked = True
            self._control(inc.source, wire.Kind.ACK, inc)

    def _pull(self, inc: Incoming, targets: list[Any]) -> None:
        frame = inc.frame
        for index, target in enumerate(targets):
            if target is not None:
                frame.inline[index] = target
        if not self._may_pull(inc.source):
            self._stream_instead(inc, targets)
            return
        error = None
        for index, (mode, size, address) in enumerate(frame.descs):
            if mode == wire.MODE_CMA:
                error = self._try_read(inc.source, address, address_of(targets[index]), size, alone=True)
                if error is not None:
                    break
        self._after_pull(inc, targets, error)

    def _may_pull(self, source: int) -> bool:
        """Whether to read ``source``'s announced buffers ourselves (else ask it to stream them)."""
        return cma.AVAILABLE and source not in self.cma_refused

    def _try_read(self, source: int, remote: int, local: int, size: int, alone: bool = False) -> OSError | None:
        """Pulls ``size`` bytes; the error, if any. ``alone``: no other pull runs, so a large one goes in pieces."""
        pid = self.pids[source]
        pieces = min(self._pieces, size // PULL_PIECE_MIN) if alone else 1
        if pieces <= 1:
            return _read(pid, remote, local, size)
        assert self._threads is not None
        step = -(-size // pieces // 4096) * 4096  # whole pages
        rest = [
            self._threads().submit(_read, pid, remote + start, local + start, min(step, size - start))
            for start in range(step, size, step)
        ]
        errors = [_read(pid, remote, local, step)] + [future.result() for future in rest]
        return next((error for error in errors if error is not None), None)

    def _after_pull(self, inc: Incoming, targets: list[Any], error: OSError | None) -> None:
        if error is None:
            inc.ready = inc.acked = True
            self._control(inc.source, wire.Kind.ACK, inc)
        elif error.errno in cma.REFUSED:
            self.cma_refused.add(inc.source)
            self._stream_instead(inc, targets)
        elif error.errno == errno.ESRCH:
            self.protocol.dead_peer(inc.source)
        else:  # EFAULT: the sender gave the message up (its run was aborted)
            inc.acked = True
            self.protocol.sender_gave_up(inc.epoch)

    def _stream_instead(self, inc: Incoming, targets: list[Any]) -> None:
        """Asks the sender to stream the buffers we could not pull."""
        inc.targets = targets
        self.awaiting[(inc.source, inc.frame.token)] = inc
        self._control(inc.source, wire.Kind.NACK, inc)

    def _control(self, dest: int, kind: wire.Kind, inc: Incoming) -> None:
        self.loop.send(dest, [wire.pack(kind, token=inc.frame.token, epoch=inc.epoch)])


def _read(pid: int, remote: int, local: int, size: int) -> OSError | None:
    """One ``cma.read``; its error returned, not raised (reads may run in threads)."""
    try:
        cma.read(pid, remote, local, size)
    except OSError as exc:
        return exc
    return None
