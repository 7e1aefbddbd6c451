"""``SerialNonParallelizer``: the whole contract on one process.

Collectives act on the single process (``scatter`` returns the whole
sequence as one block, ``gather`` returns ``[obj]`` or the array). Messages
to oneself follow the one rule of :mod:`parallelizer._core.selfmail`: kept
as copies, and receiving one that was never sent raises ``DeadlockError``.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ._core.tags import Space
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

    # There is no other process: every message is a message to oneself.
    def _send_to(self, obj: Any, dest: int, tag: int, space: Space) -> NoReturn:
        raise AssertionError(f"a group of one has no rank {dest}")

    def _recv_from(self, source: int, tag: int, space: Space) -> NoReturn:
        raise AssertionError(f"a group of one has no rank {source}")

    def _recv_from_any(self, tag: int, space: Space, block: bool) -> NoReturn:
        raise AssertionError("a group of one has no other process")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self._debug,))


def _restore(debug: bool) -> SerialNonParallelizer:
    return SerialNonParallelizer(debug=debug)
