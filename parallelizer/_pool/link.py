"""A session's messages over a group's transport, and how a waiting side sleeps.

Every session message travels in ``Space.COLL`` with ``CollTag.SESSION``.
Sending never waits for the receiver (``Transport._send_later``), so a side
that sends a large payload goes on receiving while the other side pulls it.

Waiting: a multiprocessing process sleeps in ``poll`` until a socket or the
:class:`Waker` stirs (no busy wait at all); under MPI no such call exists,
so a waiting side probes and sleeps a little longer each time, from
:data:`FIRST_PAUSE` up to :data:`LAST_PAUSE` (a second, idle core is left
alone, and an oversubscribed run is not starved).
"""

from __future__ import annotations

import contextlib
import os
import select
from typing import Any

from .._core.tags import CollTag, Space
from .._core.transport import Transport

FIRST_PAUSE = 2e-5
LAST_PAUSE = 1e-3
EXPECTING_PAUSE = 1e-4
"""The longest pause under MPI of a side that expects a reply soon (main, while a server runs
a batch of quick tasks: the server's report of its first half is main's cue to send the next)."""


class Waker:
    """A pipe another thread writes to, to wake a side that sleeps in :meth:`Link.idle`."""

    def __init__(self) -> None:
        self.read, self.write = os.pipe()
        os.set_blocking(self.read, False)
        os.set_blocking(self.write, False)
        self._armed = False

    def wake(self) -> None:
        """Makes the next (or current) :meth:`Link.idle` return."""
        if not self._armed:
            self._armed = True
            with contextlib.suppress(BlockingIOError):  # already full of wake-ups
                os.write(self.write, b"!")

    def drain(self) -> None:
        """Forgets the wake-ups so far (the caller then looks at what they were about).

        The pipe is emptied before the flag is cleared: the other order
        lets a wake-up written in between be swallowed while the flag stays
        set, and every later :meth:`wake` would then be skipped (a session
        that never hears it should end).
        """
        try:
            while os.read(self.read, 4096):
                pass
        except BlockingIOError:
            pass
        self._armed = False

    def close(self) -> None:
        """Closes the pipe."""
        for fd in (self.read, self.write):
            with contextlib.suppress(OSError):
                os.close(fd)


class Link:
    """One side's session messages: send without waiting, poll, and sleep until something may happen."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.sent = 0  # messages sent
        self._pause = FIRST_PAUSE

    def send(self, rank: int, message: Any) -> None:
        """Sends ``message`` to ``rank`` without waiting for it to be taken."""
        self.transport._send_later(message, rank, CollTag.SESSION, Space.COLL)
        self.sent += 1

    def poll(self) -> tuple[int, Any] | None:
        """The next message from any process, or ``None`` if none has arrived."""
        got = self.transport._recv_any(CollTag.SESSION, Space.COLL, block=False)
        if got is not None:
            self._pause = FIRST_PAUSE
        return got

    def idle(self, waker: Waker | None, longest: float | None = None, expecting: bool = False) -> None:
        """Sleeps until a message may have arrived, ``waker`` stirs, or ``longest`` seconds pass.

        ``expecting``: a reply is due soon; where arrivals cannot wake the
        sleeper (MPI), it pauses at most :data:`EXPECTING_PAUSE`.
        """
        transport = self.transport
        if transport._idle_wakes_on_messages:
            transport._idle(longest, waker.read if waker is not None else None)
        else:
            pause = self._pause if longest is None else min(self._pause, longest)
            if expecting:
                pause = min(pause, EXPECTING_PAUSE)
            transport._idle(pause, waker.read if waker is not None else None)
            self._pause = min(2 * self._pause, LAST_PAUSE)
        if waker is not None:
            waker.drain()

    def receive(self) -> tuple[int, Any]:
        """Waits for the next message from any process."""
        while True:
            got = self.poll()
            if got is not None:
                return got
            self.idle(None)


def wait_readable(fd: int | None, seconds: float | None) -> None:
    """Sleeps until ``fd`` is readable or ``seconds`` pass (what a transport without sockets waits on)."""
    if fd is None:
        if seconds is not None:
            select.select([], [], [], seconds)
        return
    select.select([fd], [], [], seconds)
