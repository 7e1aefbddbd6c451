"""``SerialNonParallelizer``: the whole contract on one process.

Collectives act on the single process (``scatter`` returns the whole
sequence as one block, ``gather`` returns ``[obj]`` or the array). Messages
sent to oneself are kept in a mailbox; receiving one that was never sent
raises instead of blocking forever.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from . import _pickling
from ._tags import Space
from .base import Parallelizer

__all__ = ["SerialNonParallelizer"]


class SerialNonParallelizer(Parallelizer):
    """Runs everything in the calling process: ``id == 0``, ``nprocs == 1``.

    The fallback of ``Parallelizer.lookup(None)``, so code written for a
    parallelizer runs unchanged in a notebook.

    Example:
        >>> import numpy as np
        >>> par = SerialNonParallelizer()
        >>> par.scatter(np.arange(3))
        array([0, 1, 2])
        >>> par.run(lambda parallelizer: parallelizer.gather(parallelizer.id))
        [0]
    """

    def __init__(self, *, debug: bool | None = None) -> None:
        super().__init__(debug=debug)
        self._mailbox: dict[tuple[int, Space], deque[bytes]] = {}

    @property
    def id(self) -> int:
        """Always 0.

        Example:
            >>> SerialNonParallelizer().id
            0
        """
        return 0

    @property
    def nprocs(self) -> int:
        """Always 1.

        Example:
            >>> SerialNonParallelizer().nprocs
            1
        """
        return 1

    def _send(self, obj: Any, dest: int, tag: int, space: Space) -> None:
        # A copy, as another process would receive: later changes to obj do
        # not reach the receiver.
        payload = _pickling.dumps(obj, f"the object sent to rank {dest}")
        self._mailbox.setdefault((tag, space), deque()).append(payload)

    def _recv(self, source: int, tag: int, space: Space) -> Any:
        queue = self._mailbox.get((tag, space))
        if not queue:
            raise RuntimeError(
                f"recv(source={source}, tag={tag}) would wait forever: "
                "no message with that tag was sent on this single-process group"
            )
        return _pickling.loads(queue.popleft(), f"the message from rank {source}")

    def _recv_any(self, tag: int, space: Space, block: bool = True) -> tuple[int, Any] | None:
        if not block and not self._mailbox.get((tag, space)):
            return None
        return 0, self._recv(0, tag, space)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self._debug,))


def _restore(debug: bool) -> SerialNonParallelizer:
    return SerialNonParallelizer(debug=debug)
