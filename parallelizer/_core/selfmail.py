"""Messages a process sends to itself: the one rule every backend follows.

A message to oneself is copied when it is sent (later changes to the object
do not reach the receiver, as with any other process) and kept until it is
received, in order per tag. Receiving one that was never sent can never
complete, so it raises :class:`~parallelizer.DeadlockError` at once instead
of waiting forever.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ..errors import DeadlockError
from . import codec


class SelfMailbox:
    """The messages one process has sent to itself and not yet received.

    Example:
        >>> from parallelizer._core.tags import Space
        >>> box = SelfMailbox(rank=0)
        >>> data = [1, 2]
        >>> box.put(data, Space.USER, 7)
        >>> data.append(3)  # the message is a copy
        >>> box.take(Space.USER, 7, "recv(source=0, tag=7)")
        [1, 2]
        >>> box.take(Space.USER, 7, "recv(source=0, tag=7)")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        parallelizer.errors.DeadlockError: rank 0 waits in recv(source=0, tag=7) for a message from itself that was...
    """

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self._queues: dict[tuple[int, int], deque[tuple[int, bytes | bytearray, list[Any]]]] = {}

    def put(self, obj: Any, space: int, tag: int) -> None:
        """Keeps a copy of ``obj`` for a later :meth:`take` with the same space and tag.

        Raises:
            SerializationError: ``obj`` cannot be pickled.
        """
        encoded = codec.encode(obj, f"the object sent to rank {self.rank}", by_value=False)
        self._queues.setdefault((space, tag), deque()).append(
            (encoded.flags, encoded.body, codec.copy_buffers(encoded))
        )

    def waiting(self, space: int, tag: int) -> bool:
        """True if a message with this space and tag waits to be taken."""
        return bool(self._queues.get((space, tag)))

    def take(self, space: int, tag: int, what: str) -> Any:
        """The oldest message with this space and tag.

        Raises:
            DeadlockError: None was sent; ``what`` names the waiting call.
        """
        queue = self._queues.get((space, tag))
        if not queue:
            raise DeadlockError(f"rank {self.rank} waits in {what} for a message from itself that was never sent")
        flags, body, buffers = queue.popleft()
        return codec.decode(flags, body, buffers, f"the message rank {self.rank} sent itself")

    def clear(self) -> None:
        """Drops every waiting message (a new run starts clean)."""
        self._queues.clear()
