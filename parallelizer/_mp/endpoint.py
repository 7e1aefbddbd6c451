"""The message engine of one process of a multiprocessing group.

Every pair of processes shares a socketpair; main is rank 0::

        main (rank 0)                             worker (rank r)
    +-------------------+   frames (small data,  +-------------------+
    | Endpoint          |<---- control, pickles)->| Endpoint          |
    |  loop (sockets)   |                         |  loop (sockets)   |
    |  mailbox          |<--- large buffers: the --|  mailbox          |
    +-------------------+  receiver copies them   +-------------------+
                           out of the sender's memory (CMA), then ACKs

An endpoint is four parts, each in its own module: the :class:`Loop` (poll,
socket I/O), the :class:`Mailbox` (arrived messages, matched by source, kind
and tag), the :class:`Rendezvous` (large buffers pulled or streamed) and the
:class:`Protocol` of its side (runs, errors, aborts, deaths).

To debug a hang, read :meth:`Endpoint.wait`: every blocking call of every
process ends up there. It loops ``check`` (can what we wait for still come?
raises if not) and ``pump`` (poll *all* sockets, handle whatever arrives from
anyone), so a process notices a failure anywhere while it waits, and never
busy-waits for long: ``poll`` blocks until something happens. (A wait for a
collective's message first polls without sleeping for ``SPIN_WAIT``, 0.1 ms,
when every process of the group has a CPU of its own: a sleeping process
wakes up slowly. A small message that arrives meanwhile is read straight
from its socket, see :meth:`Endpoint.recv`; anything else arriving then is
handled as ``pump`` handles it.)

Small objects (no out-of-band buffers) are one frame each way: sending one
is over once the socket has taken it (:meth:`Endpoint.send_all`).
"""

from __future__ import annotations

import itertools
import math
import socket
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._core import env
from .._core.codec import Encoded, allocate_array, allocate_bytes, decode, encode
from .._core.limits import SPIN_WAIT
from . import wire
from .channel import Incoming
from .loop import Loop
from .mailbox import Mailbox
from .protocol import Protocol
from .rendezvous import Delivery, PendingSend, Rendezvous

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

#: Extra seconds a worker whose wait is on main alone gives main before its own
#: timeout is raised. Main may itself be waiting in the same call for the rank that
#: is really stuck, and started that wait a little later (after this worker's
#: message reached it): main's report names that rank, this worker's would name main.
MAIN_REPORTS_FIRST = 1.0


class Endpoint:
    """Sockets, mailbox, rendezvous and protocol state of one process of the group.

    Args:
        rank: This process's rank.
        nprocs: The size of the group.
        sockets: One connected socket per other rank.
        pids: The process id of every rank (for pulling their memory).
        protocol: The group protocol of this side (main's or a worker's).
    """

    def __init__(
        self, rank: int, nprocs: int, sockets: dict[int, socket.socket], pids: dict[int, int], protocol: Protocol
    ) -> None:
        self.rank = rank
        self.nprocs = nprocs
        self.pids = pids
        self.protocol = protocol
        self.mail = Mailbox()
        self.loop = Loop(sockets, self._allocator, self._on_frame, protocol.on_eof, protocol.dead_peer)
        self.rendezvous = Rendezvous(pids, self.loop, protocol, self.threads)
        self._tokens = itertools.count(1)
        self._threads: ThreadPoolExecutor | None = None
        self.timeout: float | None = None  # the longest one wait may take (seconds)
        self.polls = False
        self.spin = 0.0  # how long a wait for a collective's message polls before it sleeps
        self.set_polls(nprocs <= env.usable_cpus())

    def set_polls(self, polls: bool) -> None:
        """Sets :attr:`polls`: every process of the group has a CPU of its own.

        Then waits poll for :attr:`spin` seconds before they sleep, and the
        collectives that gain from it use algorithms where every process
        sends at once (see :mod:`parallelizer._mp.collectives`). Main decides
        at start and sends its choice to the workers: the algorithms must be
        the same on every process.
        """
        self.polls = polls
        self.spin = SPIN_WAIT if polls else 0.0

    @property
    def epoch(self) -> int:
        """The current run."""
        return self.protocol.epoch

    def begin_epoch(self, epoch: int) -> None:
        """Starts run ``epoch``: messages of earlier runs are dropped (their senders released)."""
        self.protocol.begin(epoch)
        for inc in self.mail.drop_before(epoch):
            self.rendezvous.release(inc)

    def rejoin(self, rank: int, sock: socket.socket, pid: int) -> None:
        """A new process takes the place of dead ``rank``: its socket, its pid, a clean slate."""
        self.loop.attach(rank, sock, self._allocator(rank))
        self.pids[rank] = pid
        self.protocol.dead.pop(rank, None)
        self.protocol.finished.pop(rank, None)
        self.rendezvous.cma_refused.discard(rank)
        self.rendezvous.stream_to.discard(rank)

    def threads(self) -> ThreadPoolExecutor:
        """A few threads for copies that may run side by side (they release the GIL)."""
        if self._threads is None:
            from concurrent.futures import ThreadPoolExecutor  # in the few processes that copy side by side

            self._threads = ThreadPoolExecutor(max_workers=max(2, min(self.nprocs, env.usable_cpus())))
        return self._threads

    def close(self) -> None:
        """Closes every socket and forgets pending state."""
        self.loop.close()
        self.rendezvous.sends.clear()
        self.mail.clear()
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None

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
        """Sends ``obj`` to every (other) rank in ``dests`` without waiting.

        Args:
            obj: The object (ignored when ``encoded`` is given).
            dests: Receiving ranks, never this process's own.
            kind: ``Kind.USER``, ``Kind.COLL``, ``Kind.RUN`` or ``Kind.SETUP``.
            tag: The frame's tag.
            what: Describes ``obj`` for serialization errors.
            lazy: Receivers pull the buffers only when the consumer asks
                (:meth:`pull_into`), not as soon as the frame arrives.
            encoded: ``obj`` already encoded (sent to several ranks).

        Returns:
            What :meth:`wait_sent` waits for.
        """
        encoded = encoded or encode(obj, what)
        descs = self.rendezvous.descriptors(encoded, lazy)
        pending = PendingSend(next(self._tokens), encoded, descs, lazy)
        flags = encoded.flags | (wire.FLAG_LAZY if lazy else 0)
        for dest in dests:
            sent_descs = self.rendezvous.descriptors_for(dest, descs, lazy)
            header = wire.pack(
                kind, tag=tag, epoch=self.epoch, token=pending.token, flags=flags, body=encoded.body, descs=sent_descs
            )
            inline = [buf for buf, desc in zip(encoded.buffers, sent_descs, strict=True) if desc[0] == wire.MODE_INLINE]
            channel = self.loop.channels.get(dest)
            end = self.loop.send(dest, [header, *inline])
            if end is None or channel is None:
                self.protocol.dead_peer(dest)
                continue
            pending.deliveries[dest] = Delivery(channel, end, any(desc[0] == wire.MODE_CMA for desc in sent_descs))
        self.rendezvous.track(pending)
        return pending

    def wait_sent(self, *pendings: PendingSend) -> None:
        """Waits until every receiver of ``pendings`` has what it was sent."""
        for pending in pendings:
            # Eager receivers pull even when idle, so only a lazy message can
            # wait for a receiver that will never take it.
            waiting_on = set(pending.deliveries) if pending.lazy else None
            self.wait(
                lambda p=pending: self.rendezvous.done(p),  # type: ignore[misc]
                waiting_on,
                "send",
                lambda p=pending: self.rendezvous.undelivered(p),  # type: ignore[misc]
            )
            self.rendezvous.forget(pending)

    def send(self, obj: Any, dest: int, kind: int, tag: int, what: str) -> None:
        """Sends ``obj`` to ``dest`` and waits until it has left (see :meth:`send_all`)."""
        self.send_all(obj, (dest,), kind, tag, what)

    def send_all(
        self, obj: Any, dests: Collection[int], kind: int, tag: int, what: str, *, lazy: bool = False, wait: bool = True
    ) -> PendingSend | None:
        """Sends ``obj`` to every (other) rank in ``dests`` and waits until it has left (see :meth:`post`).

        An object without out-of-band buffers is one frame: once a socket has
        taken all of it, that send is over, with no pending-send bookkeeping
        (``lazy`` only matters for buffers).

        Returns:
            With ``wait=False``, what :meth:`wait_sent` must still wait for
            (``None``: nothing); the caller waits for it later.
        """
        encoded = encode(obj, what)
        if encoded.buffers:
            posted = self.post(obj, dests, kind, tag, what, lazy=lazy, encoded=encoded)
            if not wait:
                return posted
            self.wait_sent(posted)
            return None
        token = next(self._tokens)
        frame = wire.pack(kind, tag=tag, epoch=self.epoch, token=token, flags=encoded.flags, body=encoded.body)
        pending: PendingSend | None = None
        for dest in dests:
            channel = self.loop.channels.get(dest)
            end = self.loop.send(dest, [frame])
            if end is None or channel is None:
                self.protocol.dead_peer(dest)  # as post: the waits that follow report it
            elif channel.sent < end:  # the socket is full: the rest leaves while we wait, as post's do
                pending = pending or PendingSend(token, encoded, [], lazy)  # lazy: waits name the receivers
                pending.deliveries[dest] = Delivery(channel, end, False)
        if pending is not None and wait:
            self.wait_sent(pending)
            return None
        return pending

    def control(self, dest: int, kind: wire.Kind, *, epoch: int | None = None, body: bytes = b"") -> None:
        """Sends a control frame; never waits (a closed socket is ignored)."""
        self.loop.send(dest, [wire.pack(kind, epoch=self.epoch if epoch is None else epoch, body=body)])

    # ------------------------------------------------------------------ receiving

    def receive(self, source: int, kind: int, tag: int, what: str, *, lazy: bool = False) -> Incoming:
        """Waits for the next message from ``source`` with ``kind`` and ``tag``.

        With ``lazy``, a message whose buffers are still in the sender's memory
        is returned as it is; the caller pulls them with :meth:`pull_into`.

        A collective's small message (one frame, no buffers) that arrives
        while this process polls for it (:attr:`spin`) is read straight from
        the socket (:meth:`Loop.take_small`), with no mailbox or wait loop.
        """
        body, spin = self._take_small(source, kind, tag)
        if body is not None:
            frame = wire.Frame(kind, 0, tag, self.epoch, 0, [])
            frame.body = body
            return Incoming(source, frame, self.mail.stamp())
        return self._wait_for(source, kind, tag, what, lazy, spin=spin)

    def recv(
        self, source: int, kind: int, tag: int, what: str, *, lazy: bool = False, late: Collection[int] | None = None
    ) -> Any:
        """Waits for the next object from ``source`` with ``kind`` and ``tag``.

        With ``lazy``, the message may have been sent lazily: its buffers are
        pulled into fresh memory here. ``late`` names the ranks a timeout
        reports (default: ``source``), for a message ``source`` sends only
        once it has heard from others.
        """
        body, spin = self._take_small(source, kind, tag)
        if body is not None:
            return decode(0, body, [], f"the message from rank {source} ({what})", source)
        inc = self._wait_for(source, kind, tag, what, lazy, late, spin=spin)
        if lazy:
            self.complete(inc, what)
        return inc.value(f"the message from rank {source} ({what})")

    def _take_small(self, source: int, kind: int, tag: int) -> tuple[bytes | None, float]:
        """A collective's small message read straight from the socket, polling up to :attr:`spin` seconds.

        Returns:
            Its body (``None`` if another kind of frame, or nothing, came
            meanwhile, or polling is off), and how long the wait that follows
            polls first: :attr:`spin` when a message with this key was
            already queued (its buffers may still be arriving), else 0.
        """
        if kind != wire.Kind.COLL or not self.spin:
            return None, 0.0
        key = (source, kind, tag)
        if self.mail.holds(key):
            return None, self.spin
        until = time.perf_counter() + self.spin
        take, epoch = self.loop.take_small, self.epoch
        while True:
            body = take(source, kind, tag, epoch)
            if body is not None or self.mail.holds(key) or time.perf_counter() >= until:
                return body, 0.0

    def _wait_for(
        self,
        source: int,
        kind: int,
        tag: int,
        what: str,
        lazy: bool = False,
        late: Collection[int] | None = None,
        *,
        spin: float = 0.0,
    ) -> Incoming:
        """The next message with this key, through the mailbox (waits as :meth:`wait` does)."""
        key = (source, kind, tag)

        def arrived() -> bool:
            head = self.mail.head(key, self.epoch)
            if head is None:
                return False
            return head.ready or (lazy and head.targets is None and bool(head.frame.flags & wire.FLAG_LAZY))

        self.wait(arrived, (source,), what, None if late is None else (lambda: late), spin=spin)
        return self.mail.pop(key)

    def recv_any(self, kind: int, tag: int, what: str, block: bool = True) -> tuple[int, Any] | None:
        """The earliest arrived object with ``kind`` and ``tag`` from any other rank."""
        others = [rank for rank in range(self.nprocs) if rank != self.rank]
        keys = [(source, kind, tag) for source in others]
        if block:
            self.wait(lambda: self.mail.earliest(keys, self.epoch) is not None, others, what)
        else:
            self.loop.pump(block=False)
            self.protocol.check(None, what)
        key = self.mail.earliest(keys, self.epoch)
        if key is None:
            return None
        inc = self.mail.pop(key)
        return inc.source, inc.value(f"the message from rank {inc.source} ({what})")

    def pull_into(
        self, incs: Sequence[Incoming], targets: Sequence[Any], *, threads: Any = None, what: str = "gather"
    ) -> None:
        """Pulls lazy messages' single buffers into ``targets`` (one each) and waits for them (``what``: the call)."""
        self.rendezvous.pull_into(incs, targets, threads)
        self.wait(lambda: all(inc.ready for inc in incs), [inc.source for inc in incs], what)

    def complete(self, inc: Incoming, what: str = "gather") -> None:
        """Pulls all buffers of a lazy message into fresh memory and waits for them (``what``: the call)."""
        if not inc.ready and inc.targets is None:
            self.rendezvous.start(inc, self._allocator(inc.source))
        self.wait(lambda: inc.ready, (inc.source,), what)

    # ------------------------------------------------------------------ waiting

    def wait(
        self,
        ready: Callable[[], bool],
        waiting_on: Collection[int] | None,
        what: str,
        who: Callable[[], Collection[int]] | None = None,
        *,
        spin: float = 0.0,
    ) -> None:
        """Handles whatever arrives until ``ready()``; raises when it can never be.

        Args:
            ready: What ends the wait.
            waiting_on: The ranks whose messages it waits for (``None``: no
                one in particular), for deadlock detection.
            what: The waiting call, for error messages.
            who: The ranks still waited for, for the timeout's message
                (default: ``waiting_on``, else every other rank).
            spin: Seconds to poll without sleeping first (a reply that comes
                quickly then finds this process awake).

        Raises:
            TimeoutError: It waited longer than :attr:`timeout`.
        """
        if ready():
            return
        if spin:
            until = time.perf_counter() + spin
            pump = self.loop.pump
            while True:
                pump(block=False)
                if ready():
                    return
                if time.perf_counter() >= until:
                    break
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        extended = self.rank == 0
        while not ready():
            self.protocol.check(waiting_on, what)
            if deadline is None:
                self.loop.pump(block=True)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                ranks = who() if who is not None else waiting_on
                if not extended and set(ranks or range(self.nprocs)) - {self.rank} == {0}:
                    extended = True
                    deadline += MAIN_REPORTS_FIRST
                    continue
                raise self._timed_out(what, ranks)
            self.loop.pump(block=True, timeout_ms=max(1, math.ceil(remaining * 1000)))

    def _timed_out(self, what: str, ranks: Collection[int] | None) -> TimeoutError:
        if not ranks:
            ranks = [rank for rank in range(self.nprocs) if rank != self.rank]
        names = ", ".join(str(rank) for rank in sorted(ranks))
        return TimeoutError(
            f"rank {self.rank} waited more than {self.timeout:g} s in {what} for rank(s) {names} "
            "(the timeout= of the parallelizer, or PARALLELIZER_TIMEOUT)"
        )

    def poll(self) -> None:
        """Handles whatever has arrived, without waiting."""
        self.loop.pump(block=False)

    # ------------------------------------------------------------------ frames

    def _allocator(self, source: int) -> wire.Allocator:
        def allocate(frame: wire.Frame, index: int) -> Any:
            if frame.kind == wire.Kind.BUFDATA:
                return self.rendezvous.streamed_target(source, frame.token, index)
            if frame.flags & wire.FLAG_ARRAY:
                return allocate_array(frame.body)
            return allocate_bytes(frame.descs[index][1])

        return allocate

    def _on_frame(self, source: int, frame: wire.Frame) -> None:
        kind = frame.kind
        if kind in wire.DATA_KINDS:
            self._on_data(source, frame)
        elif kind == wire.Kind.ACK:
            self.rendezvous.on_ack(source, frame.token)
        elif kind == wire.Kind.NACK:
            self.rendezvous.on_nack(source, frame.token)
        elif kind == wire.Kind.BUFDATA:
            self.rendezvous.on_bufdata(source, frame.token)
        else:
            self.protocol.on_control(source, frame)

    def _on_data(self, source: int, frame: wire.Frame) -> None:
        inc = Incoming(source, frame, self.mail.stamp())
        command = frame.kind in wire.COMMAND_KINDS
        if frame.epoch < self.epoch and not command:
            self.rendezvous.release(inc)  # a message of an earlier run: nobody will take it
            return
        if not inc.ready and not frame.flags & wire.FLAG_LAZY:
            self.rendezvous.start(inc, self._allocator(source))
        if frame.kind == wire.Kind.SETUP:
            # Frames that follow may have to be pulled from any process at once.
            setup = inc.value("the set-up sent by main")
            self.pids.update(setup["pids"])
        if command:
            self.protocol.on_command(inc)
        else:
            self.mail.put(inc)
