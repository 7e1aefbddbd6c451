"""The message engine of one process of a multiprocessing group.

Every pair of processes shares a socketpair; main is rank 0::

        main (rank 0)                             worker (rank r)
    +-------------------+   frames (small data,  +-------------------+
    | Endpoint          |<---- control, pickles)->| Endpoint          |
    |  channels[r]      |                         |  channels[0]      |
    |  mailboxes        |<--- large buffers: the --|  mailboxes        |
    +-------------------+  receiver copies them   +-------------------+
                           out of the sender's memory (CMA), then ACKs

All work happens in the calling thread. Whenever a process waits (for a
message, an ACK, or room in a socket) it polls *all* its sockets and, on
main, the worker processes' sentinels, so it reads whatever arrives from
anyone, pulls announced buffers at once, and notices a failure anywhere (an
ERROR frame, a dead process, an ABORT) while it waits. Nothing busy-waits:
``poll`` blocks until something happens.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import socket
import sys
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import Any

from .. import _pickling, _remote
from .._codec import Encoded, allocate_array, allocate_bytes, encode
from ..errors import DeadlockError, RemoteError, WorkerTerminatedError
from . import cma, wire
from .channel import CMA_MIN, Channel, Incoming, address_of, local_copy
from .rendezvous import PendingSend, Rendezvous

EXIT_ORPHANED = 70
"""Exit status of a worker whose main process went away."""

_IN = select.POLLIN | select.POLLPRI
_OUT = select.POLLOUT
_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL
_READS_PER_PUMP = 64


class RunAborted(BaseException):
    """Unwinds a worker's ``func`` when main gives up the run (internal).

    A BaseException, so ``except Exception`` in user code does not stop it.
    """


class Endpoint(Rendezvous):
    """Sockets, mailboxes and rendezvous state of one process of the group.

    Args:
        rank: This process's rank.
        nprocs: The size of the group.
        sockets: One connected socket per other rank.
        pids: The process id of every rank (for pulling their memory).
    """

    def __init__(self, rank: int, nprocs: int, sockets: dict[int, socket.socket], pids: dict[int, int]) -> None:
        self.rank = rank
        self.nprocs = nprocs
        self.is_main = rank == 0
        self.pids = pids
        self.epoch = 0
        self.channels: dict[int, Channel] = {}
        self._by_fd: dict[int, Channel] = {}
        self._sentinels: dict[int, int] = {}  # fd -> rank (main: worker process sentinels)
        self._poller = select.poll()
        for peer, sock in sockets.items():
            channel = Channel(peer, sock, wire.FrameReader(self._allocator(peer)))
            self.channels[peer] = channel
            self._by_fd[channel.fd] = channel
            self._set_mask(channel, _IN)
        self._mail: dict[tuple[int, int, int], deque[Incoming]] = {}
        self._arrivals = itertools.count()
        self._tokens = itertools.count(1)
        self._sends: dict[int, PendingSend] = {}
        self._awaiting: dict[tuple[int, int], Incoming] = {}  # (source, token) -> waits for BUFDATA
        self.cma_refused: set[int] = set()  # peers whose memory we may not read
        self.stream_to: set[int] = set()  # peers that cannot read ours
        self.finished: dict[int, int] = {}  # rank -> last epoch it returned from func
        self.dead: dict[int, int | None] = {}  # rank -> exit status (None: not known yet)
        self.errors: list[tuple[int, Any]] = []  # main: (rank, error frame body) of this epoch
        self.abort_epoch = -1  # worker: main gave up this epoch
        self.commands: deque[Incoming | wire.Frame] = deque()  # worker: RUN / STOP from main
        self.exit_status: Callable[[int], int | None] = lambda rank: None
        self.on_print: Callable[[str], None] = _print_to_stdout

    # ------------------------------------------------------------------ set-up

    def add_sentinel(self, fd: int, rank: int) -> None:
        """Watches ``fd`` (readable when process ``rank`` has exited)."""
        self._sentinels[fd] = rank
        self._poller.register(fd, _IN)

    def close(self) -> None:
        """Closes every socket and forgets pending state."""
        for channel in self.channels.values():
            if not channel.closed:
                self._unregister(channel.fd)
                channel.close()
        for fd in list(self._sentinels):
            self._unregister(fd)
        self._sentinels.clear()
        self._sends.clear()
        self._mail.clear()

    def begin_epoch(self, epoch: int) -> None:
        """Starts run ``epoch``: messages of earlier runs are dropped.

        Within one (source, kind, tag) queue epochs never decrease (every
        process moves through runs in order), so a receive only ever looks
        at the head of a queue, and only takes it if it is of this run.
        """
        self.epoch = epoch
        self.errors.clear()
        for key, queue in list(self._mail.items()):
            kept = deque(inc for inc in queue if inc.epoch >= epoch)
            for inc in queue:
                if inc.epoch < epoch:
                    self._release(inc)
            if kept:
                self._mail[key] = kept
            else:
                del self._mail[key]

    # ------------------------------------------------------------------ sending

    def post(
        self,
        obj: Any,
        dests: Iterable[int],
        kind: int,
        tag: int,
        what: str,
        *,
        lazy: bool = False,
        encoded: Encoded | None = None,
    ) -> PendingSend:
        """Sends ``obj`` to every rank in ``dests`` without waiting.

        Args:
            obj: The object (ignored when ``encoded`` is given).
            dests: Receiving ranks (this process's own rank is allowed).
            kind: ``wire.USER``, ``wire.COLL`` or ``wire.RUN``.
            tag: The frame's tag.
            what: Describes ``obj`` for serialization errors.
            lazy: Receivers pull the buffers only when the consumer asks
                (``pull_into``), not as soon as the frame arrives.
            encoded: ``obj`` already encoded (sent to several ranks).

        Returns:
            What :meth:`wait_sent` waits for.
        """
        encoded = encoded or encode(obj, what)
        token = next(self._tokens)
        pull = cma.AVAILABLE and any(buffer.nbytes >= CMA_MIN for buffer in encoded.buffers)
        cma_descs = [
            (wire.MODE_CMA, buffer.nbytes, address_of(buffer))
            if pull and buffer.nbytes >= CMA_MIN
            else (wire.MODE_INLINE, buffer.nbytes, 0)
            for buffer in encoded.buffers
        ]
        pending = PendingSend(token, encoded, cma_descs, lazy)
        flags = encoded.flags | (wire.FLAG_LAZY if lazy else 0)
        for dest in dests:
            if dest == self.rank:
                self._deliver(local_copy(self.rank, kind, tag, self.epoch, encoded, next(self._arrivals)))
                continue
            channel = self.channels[dest]
            if channel.closed:
                self._dead_peer(dest)
                continue
            streamed = dest in self.stream_to
            descs = [(wire.MODE_INLINE, n, 0) for _, n, _ in cma_descs] if streamed else cma_descs
            header = wire.pack(
                kind, tag=tag, epoch=self.epoch, token=token, flags=flags, body=encoded.body, descs=descs
            )
            inline = [buf for buf, desc in zip(encoded.buffers, descs, strict=True) if desc[0] == wire.MODE_INLINE]
            end = channel.enqueue([header, *inline])
            needs_ack = any(desc[0] == wire.MODE_CMA for desc in descs)
            pending.waiting[dest] = [end, int(needs_ack)]
            self._flush(channel)
        if any(ack for _, ack in pending.waiting.values()):
            self._sends[token] = pending
        return pending

    def wait_sent(self, *pendings: PendingSend) -> None:
        """Waits until every receiver of ``pendings`` has what it was sent."""
        for pending in pendings:
            # Eager receivers pull even when idle, so only a lazy message can
            # wait for a receiver that will never take it.
            waiting_on = set(pending.waiting) if pending.lazy else None
            self._wait(lambda p=pending: self._send_done(p), waiting_on, "send")  # type: ignore[misc]
            self._sends.pop(pending.token, None)

    def send(self, obj: Any, dest: int, kind: int, tag: int, what: str) -> None:
        """Sends ``obj`` to ``dest`` and waits until it has left (see :meth:`post`)."""
        self.wait_sent(self.post(obj, (dest,), kind, tag, what))

    def control(
        self, dest: int, kind: int, *, tag: int = 0, epoch: int | None = None, token: int = 0, body: bytes = b""
    ) -> None:
        """Sends a control frame; never waits (a dead peer is ignored)."""
        channel = self.channels.get(dest)
        if channel is None or channel.closed:
            return
        epoch = self.epoch if epoch is None else epoch
        channel.enqueue([wire.pack(kind, tag=tag, epoch=epoch, token=token, body=body)])
        self._flush(channel)

    # ------------------------------------------------------------------ receiving

    def receive(self, source: int, kind: int, tag: int, what: str, *, lazy: bool = False) -> Incoming:
        """Waits for the next message from ``source`` with ``kind`` and ``tag``.

        With ``lazy``, a message whose buffers are still in the sender's memory
        is returned as it is; the caller pulls them with :meth:`pull_into`.
        """
        key = (source, kind, tag)

        def arrived() -> bool:
            queue = self._mail.get(key)
            if not queue:
                return False
            head = queue[0]
            if head.epoch != self.epoch:  # already the next run's: not for this one
                return False
            return head.ready or (lazy and head.targets is None and bool(head.frame.flags & wire.FLAG_LAZY))

        self._wait(arrived, (source,), what)
        return self._pop(key)

    def recv(self, source: int, kind: int, tag: int, what: str) -> Any:
        """Waits for the next object from ``source`` with ``kind`` and ``tag``."""
        return self.receive(source, kind, tag, what).value(f"the message from rank {source} ({what})")

    def recv_any(self, kind: int, tag: int, what: str, block: bool = True) -> tuple[int, Any] | None:
        """The earliest arrived object with ``kind`` and ``tag`` from any rank."""
        keys = [(source, kind, tag) for source in range(self.nprocs)]

        def first() -> tuple[int, int, int] | None:
            best = None
            for key in keys:
                queue = self._mail.get(key)
                if not queue or not queue[0].ready or queue[0].epoch != self.epoch:
                    continue
                if best is None or queue[0].arrival < self._mail[best][0].arrival:
                    best = key
            return best

        if not block:
            self._pump(block=False)
            key = first()
            if key is None:
                self._check(None, what)
                return None
        else:
            others = [rank for rank in range(self.nprocs) if rank != self.rank]
            self._wait(lambda: first() is not None, others, what)
            key = first()
        assert key is not None
        inc = self._pop(key)
        return inc.source, inc.value(f"the message from rank {inc.source} ({what})")

    # ------------------------------------------------------------------ group protocol

    def next_command(self) -> Incoming | wire.Frame:
        """Worker: waits for main's next RUN or STOP."""
        # Idle: nothing to raise (aborts and deaths concern runs); main's EOF exits.
        while not (self.commands and _command_ready(self.commands[0])):
            self._pump(block=True)
        return self.commands.popleft()

    def finish_epoch(self) -> None:
        """Tells every other process that this one returned from ``func``."""
        for rank in self.channels:
            self.control(rank, wire.FINISHED)

    def wait_finished(self, ranks: Collection[int]) -> None:
        """Main: waits until ``ranks`` have all returned from ``func``."""
        self._wait(lambda: all(self.finished.get(rank) == self.epoch for rank in ranks), None, "the end of run")

    def poll(self) -> None:
        """Handles whatever has arrived, without waiting."""
        self._pump(block=False)

    def wait_exit(self, alive: Callable[[], bool]) -> None:
        """Keeps reading (prints, EOFs) until ``alive()`` is False."""
        while alive() and (self._by_fd or self._sentinels):
            self._pump(block=True, timeout_ms=50)

    # ------------------------------------------------------------------ waiting

    def _wait(self, ready: Callable[[], bool], waiting_on: Collection[int] | None, what: str) -> None:
        while not ready():
            self._check(waiting_on, what)
            self._pump(block=True)

    def _check(self, waiting_on: Collection[int] | None, what: str) -> None:
        """Raises what ends a wait: an error elsewhere, a death, an abort, a deadlock."""
        if self.is_main:
            if self.errors:
                raise remote_error(*self.errors[0])
            for rank in self.dead:
                raise WorkerTerminatedError(rank, self._exit_status(rank), f"while main waited in {what}")
        else:
            if self.abort_epoch == self.epoch:
                raise RunAborted
            if waiting_on is not None and any(rank in self.dead for rank in waiting_on):
                raise RunAborted
        if waiting_on and all(self.finished.get(rank) == self.epoch for rank in waiting_on):
            ranks = ", ".join(str(rank) for rank in sorted(waiting_on))
            raise DeadlockError(
                f"rank {self.rank} waits in {what} for rank(s) {ranks}, which already returned from func "
                "without sending what it waits for (do all processes call the same collectives in the same order?)"
            )

    def _exit_status(self, rank: int) -> int | None:
        status = self.dead.get(rank)
        if status is None:
            status = self.dead[rank] = self.exit_status(rank)
        return status

    def _pump(self, block: bool, timeout_ms: int | None = None) -> None:
        """Waits for something to happen on any socket or sentinel, and handles it."""
        for channel in self.channels.values():
            if not channel.closed:
                self._set_mask(channel, _IN | (_OUT if channel.outq else 0))
        timeout = timeout_ms if block else 0
        for fd, events in self._poller.poll(timeout):
            ready = self._by_fd.get(fd)
            if ready is None:
                rank = self._sentinels.get(fd)
                if rank is not None:
                    self._unregister(fd)
                    del self._sentinels[fd]
                    self._dead_peer(rank)
                continue
            if events & (_IN | _GONE):
                self._read(ready)
            if events & _OUT and not ready.closed:
                self._flush(ready)

    def _read(self, channel: Channel) -> None:
        reader = channel.reader

        def deliver(frame: wire.Frame) -> None:
            self._on_frame(channel.rank, frame)

        for _ in range(_READS_PER_PUMP):
            try:
                direct = reader.want_direct()
                if direct is not None:
                    count = channel.sock.recv_into(direct)
                    if count:
                        reader.received_direct(count, deliver)
                else:
                    data = channel.sock.recv(reader.chunk_size())
                    count = len(data)
                    if count:
                        reader.feed(data, deliver)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                count = 0
            if not count:
                self._on_eof(channel)
                return

    def _flush(self, channel: Channel) -> None:
        try:
            channel.flush()
        except OSError:
            self._on_eof(channel)

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

    def _on_eof(self, channel: Channel) -> None:
        if channel.closed:
            return
        self._unregister(channel.fd)
        del self._by_fd[channel.fd]
        channel.close()
        if channel.rank == 0 and not self.is_main:
            # main is gone (or closed us after STOP): nothing left to do
            stopping = any(isinstance(command, wire.Frame) for command in self.commands)
            exit_now(0 if stopping else EXIT_ORPHANED)
        self._dead_peer(channel.rank)

    def _dead_peer(self, rank: int) -> None:
        self.dead.setdefault(rank, None)

    # ------------------------------------------------------------------ frames

    def _allocator(self, source: int) -> wire.Allocator:
        def allocate(frame: wire.Frame, index: int) -> Any:
            if frame.kind == wire.BUFDATA:
                inc = self._awaiting[(source, frame.token)]
                assert inc.targets is not None
                return inc.targets[index]
            if frame.flags & wire.FLAG_ARRAY:
                return allocate_array(frame.body)
            return allocate_bytes(frame.descs[index][1])

        return allocate

    def _on_frame(self, source: int, frame: wire.Frame) -> None:
        kind = frame.kind
        if kind in (wire.USER, wire.COLL, wire.RUN, wire.SETUP):
            self._on_data(source, frame)
        elif kind == wire.ACK:
            pending = self._sends.get(frame.token)
            if pending is not None and source in pending.waiting:
                pending.waiting[source][1] = 0
        elif kind == wire.NACK:
            self._on_nack(source, frame.token)
        elif kind == wire.BUFDATA:
            inc = self._awaiting.pop((source, frame.token))
            inc.ready = inc.acked = True
        elif kind == wire.FINISHED:
            self.finished[source] = frame.epoch
        elif kind == wire.ERROR:
            if frame.epoch == self.epoch:
                self.errors.append((source, frame.body))
        elif kind == wire.ABORT:
            self.abort_epoch = max(self.abort_epoch, frame.epoch)
        elif kind == wire.STOP:
            self.commands.append(frame)
        elif kind == wire.PRINT:
            self.on_print(bytes(frame.body).decode("utf-8", "replace"))
        else:
            raise RuntimeError(f"rank {self.rank} received an unknown frame {frame!r} from rank {source}")

    def _on_data(self, source: int, frame: wire.Frame) -> None:
        inc = Incoming(source, frame, next(self._arrivals))
        command = frame.kind in (wire.RUN, wire.SETUP)
        if frame.epoch < self.epoch and not command:
            self._release(inc)  # a message of an earlier run: nobody will take it
            return
        if not inc.ready and not frame.flags & wire.FLAG_LAZY:
            targets = [
                self._allocator(source)(frame, i) if mode == wire.MODE_CMA else None
                for i, (mode, _, _) in enumerate(frame.descs)
            ]
            self._pull(inc, targets)
        if frame.kind == wire.SETUP:
            # Frames that follow may have to be pulled from any process at once.
            setup = inc.value("the set-up sent by main")
            self.pids.update(setup["pids"])
        if command:
            self.commands.append(inc)
        else:
            self._deliver(inc)

    def _deliver(self, inc: Incoming) -> None:
        key = (inc.source, inc.frame.kind, inc.frame.tag)
        queue = self._mail.get(key)
        if queue is None:
            queue = self._mail[key] = deque()
        queue.append(inc)

    def _pop(self, key: tuple[int, int, int]) -> Incoming:
        queue = self._mail[key]
        inc = queue.popleft()
        if not queue:
            del self._mail[key]
        return inc


def exit_now(status: int) -> None:
    """Ends this worker process at once, after flushing its output."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def _command_ready(command: Incoming | wire.Frame) -> bool:
    return not isinstance(command, Incoming) or command.ready


def _print_to_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def remote_error(rank: int, body: Any) -> RemoteError:
    """Rebuilds the RemoteError a worker reported (the original as ``__cause__``)."""
    return _remote.rebuild(rank, _pickling.loads(body, f"the error report of rank {rank}"))
