"""Received data messages waiting to be taken, matched by (source, kind, tag).

Every process moves through runs (*epochs*) in order, and within one
(source, kind, tag) queue the epochs never decrease, so a receive only ever
looks at the head of a queue and only takes it if it belongs to the current
run. ``arrival`` numbers order messages across sources (receive-from-any
takes the earliest).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable

from .channel import Incoming

Key = tuple[int, int, int]  # (source, kind, tag)


class Mailbox:
    """The queues of arrived messages of one process."""

    def __init__(self) -> None:
        self._queues: dict[Key, deque[Incoming]] = {}
        self._arrivals = itertools.count()

    def stamp(self) -> int:
        """The arrival number of the next message."""
        return next(self._arrivals)

    def put(self, inc: Incoming) -> None:
        """Queues an arrived message."""
        key = (inc.source, inc.frame.kind, inc.frame.tag)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append(inc)

    def head(self, key: Key, epoch: int) -> Incoming | None:
        """The oldest message under ``key`` if it belongs to run ``epoch``."""
        queue = self._queues.get(key)
        if not queue or queue[0].epoch != epoch:
            return None
        return queue[0]

    def holds(self, key: Key) -> bool:
        """True if any message (of any run) waits under ``key``."""
        return key in self._queues

    def earliest(self, keys: Iterable[Key], epoch: int) -> Key | None:
        """Of the ready messages of run ``epoch`` at the heads of ``keys``, the key of the first to arrive."""
        best: Key | None = None
        best_arrival = 0
        for key in keys:
            head = self.head(key, epoch)
            if head is not None and head.ready and (best is None or head.arrival < best_arrival):
                best, best_arrival = key, head.arrival
        return best

    def pop(self, key: Key) -> Incoming:
        """Takes the oldest message under ``key``."""
        queue = self._queues[key]
        inc = queue.popleft()
        if not queue:
            del self._queues[key]
        return inc

    def drop_before(self, epoch: int) -> list[Incoming]:
        """Forgets the messages of runs before ``epoch``; returns them (their senders may wait)."""
        dropped: list[Incoming] = []
        for key, queue in list(self._queues.items()):
            kept = deque(inc for inc in queue if inc.epoch >= epoch)
            dropped.extend(inc for inc in queue if inc.epoch < epoch)
            if kept:
                self._queues[key] = kept
            else:
                del self._queues[key]
        return dropped

    def clear(self) -> None:
        """Forgets everything."""
        self._queues.clear()
