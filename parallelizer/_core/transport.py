"""The transport every backend provides, and the collectives written once over it.

:class:`Transport` is the lower half of :class:`parallelizer.Parallelizer`,
the part the engine (``map``, debug-mode checks, client/server sessions)
calls. A backend implements:

* ``id`` and ``nprocs``;
* ``_send_to(obj, dest, tag, space)`` / ``_recv_from(source, tag, space)`` /
  ``_recv_from_any(tag, space, block)``: moving one object between two
  *different* processes in a message space (``Space.USER`` for
  ``send``/``recv``, ``Space.COLL`` for the collectives' own traffic, so the
  two never match each other).

Messages a process sends to itself never reach the backend: they follow the
one rule of :mod:`.selfmail`. The collective primitives (``_bcast``,
``_scatter``, ``_gather_list``, ``_gather``, ``_allgather``, ``_reduce``,
``_allreduce``, ``_barrier``) are simple linear algorithms here, with their
meaning taken from :mod:`parallelizer.semantics`; a backend with faster
native collectives overrides them.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from .. import semantics
from . import mismatch
from .selfmail import SelfMailbox
from .tags import CollTag, Space


class Transport(abc.ABC):
    """A process's view of its group: identity, messages, collective primitives."""

    def __init__(self) -> None:
        self._collective_count = 0  # debug mode numbers the collectives of a run
        self._selfmail: SelfMailbox | None = None

    @property
    @abc.abstractmethod
    def id(self) -> int:
        """This process's rank."""

    @property
    @abc.abstractmethod
    def nprocs(self) -> int:
        """The size of the group."""

    def _begin_run(self) -> None:
        """Resets what belongs to one run: debug mode's count, messages to oneself."""
        self._collective_count = 0
        if self._selfmail is not None:
            self._selfmail.clear()

    # ------------------------------------------------------------------
    # transport: what a backend implements

    @abc.abstractmethod
    def _send_to(self, obj: Any, dest: int, tag: int, space: Space) -> None:
        """Sends ``obj`` to another process; small messages must not wait for the receiver."""

    @abc.abstractmethod
    def _recv_from(self, source: int, tag: int, space: Space) -> Any:
        """Receives the next object another process ``source`` sent with ``tag`` in ``space``."""

    @abc.abstractmethod
    def _recv_from_any(self, tag: int, space: Space, block: bool) -> tuple[int, Any] | None:
        """Receives the next object any other process sent with ``tag`` in ``space``.

        Returns:
            ``(source, obj)``; ``None`` if ``block`` is False and nothing has arrived.
        """

    def _complete_sends(self) -> None:
        """Waits until every ``_send`` has left (for transports that send without waiting)."""

    # ------------------------------------------------------------------
    # messages, oneself included

    def _mailbox_to_self(self) -> SelfMailbox:
        if self._selfmail is None:
            self._selfmail = SelfMailbox(self.id)
        return self._selfmail

    def _send(self, obj: Any, dest: int, tag: int, space: Space) -> None:
        """Sends ``obj`` to ``dest``, which may be this process."""
        if dest == self.id:
            self._mailbox_to_self().put(obj, space, tag)
        else:
            self._send_to(obj, dest, tag, space)

    def _recv(self, source: int, tag: int, space: Space) -> Any:
        """Receives the next object ``source`` (this process too) sent with ``tag`` in ``space``.

        Raises:
            DeadlockError: ``source`` is this process and it sent nothing.
        """
        if source == self.id:
            what = f"recv(source={source}, tag={tag})" if space == Space.USER else "a collective"
            return self._mailbox_to_self().take(space, tag, what)
        return self._recv_from(source, tag, space)

    def _recv_any(self, tag: int, space: Space, block: bool = True) -> tuple[int, Any] | None:
        """Receives the next object any process sent with ``tag`` in ``space``.

        Raises:
            DeadlockError: ``block`` on a group of one with nothing sent.
        """
        selfmail = self._selfmail
        if selfmail is not None and selfmail.waiting(space, tag):
            return self.id, selfmail.take(space, tag, "a receive from any process")
        if self.nprocs == 1:
            if block:
                self._mailbox_to_self().take(space, tag, "a receive from any process")
            return None
        return self._recv_from_any(tag, space, block)

    # ------------------------------------------------------------------
    # collective primitives: linear algorithms over the transport

    def _others(self, root: int) -> range | list[int]:
        return [rank for rank in range(self.nprocs) if rank != root]

    def _bcast(self, obj: Any, root: int) -> Any:
        if self.id == root:
            for rank in self._others(root):
                self._send(obj, rank, CollTag.BCAST, Space.COLL)
            return obj
        return self._recv(root, CollTag.BCAST, Space.COLL)

    def _scatter(self, data: Any, bounds: list[tuple[int, int]] | None, root: int) -> Any:
        if self.id == root:
            assert bounds is not None
            for rank in self._others(root):
                self._send(semantics.take_block(data, *bounds[rank]), rank, CollTag.SCATTER, Space.COLL)
            return semantics.root_block(data, *bounds[root])
        return self._recv(root, CollTag.SCATTER, Space.COLL)

    def _gather_list(self, obj: Any, root: int) -> list[Any] | None:
        if self.id != root:
            self._send(obj, root, CollTag.GATHER, Space.COLL)
            return None
        return [obj if rank == root else self._recv(rank, CollTag.GATHER, Space.COLL) for rank in range(self.nprocs)]

    def _gather(self, obj: Any, root: int) -> Any:
        parts = self._gather_list(obj, root)
        return None if parts is None else semantics.join_gathered(parts)

    def _allgather(self, obj: Any) -> Any:
        return self._bcast(self._gather(obj, 0), 0)

    def _reduce(self, obj: Any, op: object, func: Callable[[Any, Any], Any], root: int) -> Any:
        parts = self._gather_list(obj, root)
        return None if parts is None else semantics.fold(parts, func)

    def _allreduce(self, obj: Any, op: object, func: Callable[[Any, Any], Any]) -> Any:
        return self._bcast(self._reduce(obj, op, func, 0), 0)

    def _barrier(self) -> None:
        self._gather_list(None, 0)
        self._bcast(None, 0)

    # ------------------------------------------------------------------
    # collective-mismatch detection (debug mode)

    def _check_collective(self, name: str, root: int | None) -> None:
        """Raises CollectiveMismatchError unless every process calls the same collective now."""
        self._collective_count += 1
        mine = (self._collective_count, name, root)
        mismatch.check(self._exchange_signatures(mine), mine)

    def _exchange_signatures(self, mine: mismatch.Signature) -> list[mismatch.Signature]:
        """Every process's signature, in rank order (rank 0 collects and sends the list back)."""
        if self.nprocs == 1:
            return [mine]
        if self.id != 0:
            self._send(mine, 0, CollTag.DEBUG, Space.COLL)
            signatures: list[mismatch.Signature] = self._recv(0, CollTag.DEBUG, Space.COLL)
            return signatures
        collected = [mine] + [self._recv(rank, CollTag.DEBUG, Space.COLL) for rank in range(1, self.nprocs)]
        for rank in range(1, self.nprocs):
            self._send(collected, rank, CollTag.DEBUG, Space.COLL)
        return collected
