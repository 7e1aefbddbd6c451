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
from collections.abc import Callable, Iterable
from typing import Any

from .. import semantics
from ..errors import SerializationError
from . import checks, mismatch
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

    _idle_wakes_on_messages = True
    """Whether :meth:`_idle` returns as soon as a message arrives (else callers probe with pauses)."""

    def _send_later(self, obj: Any, dest: int, tag: int, space: Space) -> None:
        """Sends ``obj`` without waiting for ``dest`` to take it (``_complete_sends`` waits)."""
        self._send(obj, dest, tag, space)

    def _idle(self, seconds: float | None, fd: int | None) -> None:
        """Sleeps until a message may have arrived, ``fd`` is readable, or ``seconds`` pass.

        It may return early; callers look for what they wait for and call it again.
        """
        import select

        select.select([] if fd is None else [fd], [], [], seconds if seconds is not None else (None if fd else 0))

    def _check_threads(self) -> None:
        """Raises ``RuntimeError`` if a thread other than the caller may not use this transport."""

    def _replace(self, rank: int, entry: Callable[..., Any]) -> bool:
        """Starts a new process as dead ``rank``, to run ``entry`` in the current run; False if it cannot."""
        return False

    def _excuse(self, rank: int) -> None:
        """Process ``rank`` died during a session that goes on without it: stop raising for it."""

    def _connected(self) -> bool:
        """True where collectives can run now (not on main outside ``run``, on some backends)."""
        return True

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
        """This process's block; on root ``bounds`` is ``None`` when ``data`` is a :class:`Refusal`.

        A block root cannot pickle goes as a refusal (:func:`refused_part`);
        root raises it once every block has gone.
        """
        if self.id == root:
            refusal = bounds is None
            unpicklable: checks.Refusal | None = None
            for rank in self._others(root):
                block = data if refusal else semantics.take_block(data, *bounds[rank])  # type: ignore[index]
                try:
                    self._send(block, rank, CollTag.SCATTER, Space.COLL)
                except SerializationError as exc:
                    unpicklable = unpicklable or refused_part(exc, root)
                    self._send(unpicklable, rank, CollTag.SCATTER, Space.COLL)
            checks.refused(unpicklable)
            return data if refusal else semantics.root_block(data, *bounds[root])  # type: ignore[index]
        return self._recv(root, CollTag.SCATTER, Space.COLL)

    def _gather_list(self, obj: Any, root: int) -> list[Any] | None:
        if self.id != root:
            try:
                self._send(obj, root, CollTag.GATHER, Space.COLL)
            except SerializationError as exc:  # a refusal goes in its place
                refusal = refused_part(exc, self.id)
                self._send(refusal, root, CollTag.GATHER, Space.COLL)
                refusal.raise_it()
            return None
        return receive_all(
            range(self.nprocs), lambda rank: obj if rank == root else self._recv(rank, CollTag.GATHER, Space.COLL)
        )

    def _gather(self, obj: Any, root: int) -> Any:
        parts = self._gather_list(obj, root)
        return None if parts is None else semantics.join_gathered(parts)

    def _allgather(self, obj: Any) -> Any:
        return self._bcast_outcome(self._on_0(lambda: self._gather(obj, 0)))

    def _reduce(self, obj: Any, op: object, func: Callable[[Any, Any], Any], root: int) -> Any:
        parts = self._gather_list(obj, root)
        return None if parts is None else semantics.fold(parts, func, "reduce")

    def _allreduce(self, obj: Any, op: object, func: Callable[[Any, Any], Any]) -> Any:
        return self._bcast_outcome(self._reduced_on_0(obj, func))

    def _reduced_on_0(self, obj: Any, func: Callable[[Any, Any], Any]) -> Any:
        """``allreduce``'s result on rank 0 (or its refusal, see :meth:`_on_0`); ``None`` elsewhere."""
        return self._on_0(lambda: self._gather_list(obj, 0), lambda parts: semantics.fold(parts, func, "allreduce"))

    def _on_0(self, gather: Callable[[], Any], compute: Callable[[Any], Any] | None = None) -> Any:
        """``compute(gather())`` on rank 0; ``gather()`` alone elsewhere (it sends), which gives ``None``.

        A ``TypeError`` or ``ValueError`` only rank 0 meets (a part it cannot
        unpickle, values it cannot combine, a part another process could not
        pickle) comes back as a :class:`~parallelizer.checks.Refusal` for
        every process to raise, so the others never wait for a result that
        will not come. Elsewhere, a part this process could not pickle comes
        back as the refusal it sent instead, for it to raise once it has
        rank 0's outcome.
        """
        if self.id != 0:
            try:
                gather()
            except SerializationError as exc:  # its part went as a refusal (refused_part): kept for later
                return checks.Refusal(exc)
            return None
        try:
            gathered = gather()
            return gathered if compute is None else compute(gathered)
        except (TypeError, ValueError) as exc:
            return checks.Refusal(exc)

    def _bcast_outcome(self, outcome: Any) -> Any:
        """Rank 0's ``outcome`` (:meth:`_on_0`) on every process; a refusal is raised everywhere.

        So is an outcome rank 0 cannot pickle (say, what a callable ``op``
        returned). A process whose own part went as a refusal (its outcome)
        raises its own error once it has rank 0's.
        """
        try:
            got = self._bcast(outcome, 0)
        except SerializationError as exc:
            self._refuse_unpicklable(exc, 0)
            raise
        checks.refused(outcome)
        checks.refused(got)
        return got

    def _refuse_unpicklable(self, error: SerializationError, root: int) -> None:
        """Root could not pickle its object, so it sent nothing: the others get the error in its place.

        Every process then raises it, as for a bad argument, instead of
        waiting for a message that will not come.
        """
        if error.rank is None and self.id == root and self._together():  # (rank None: its own object)
            self._bcast(checks.Refusal(error), root)

    def _together(self) -> bool:
        """Whether there are other processes to agree with now."""
        return self.nprocs > 1 and self._connected()

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


def receive_all(ranks: Iterable[int], receive: Callable[[int], Any]) -> list[Any]:
    """``receive(rank)`` for every rank, even after one fails to unpickle; then raises.

    A message that cannot be unpickled has still been taken, so going on
    with the others (and only then raising the first such error) leaves
    every process in step. So has a part that came as a refusal
    (:func:`refused_part`): its error is raised the same way.

    Raises:
        SerializationError: The first message that could not be unpickled,
            or the first part its process could not pickle, in rank order.
    """
    values: list[Any] = []
    error: Exception | None = None
    for rank in ranks:
        try:
            value = receive(rank)
        except SerializationError as exc:
            error = error or exc
            value = None
        else:
            if type(value) is checks.Refusal:  # (also this process's own part, when it was refused)
                error = error or value.error
        values.append(value)
    if error is not None:
        raise error
    return values


def refused_part(error: SerializationError, rank: int) -> checks.Refusal:
    """What ``rank`` sends in place of the part of a collective it could not pickle (``error``).

    A process that cannot pickle what it must send (its own part; root's
    block of ``scatter``) sends this refusal instead, does the rest of its
    share, then raises its error; every process that receives the refusal
    raises it too, once it has taken the call's other messages
    (:func:`receive_all`). The error names ``rank``, in its message and as
    its ``rank`` (not ``None``: something was sent).

    Example:
        >>> refusal = refused_part(SerializationError("cannot pickle the object gathered (lock ...)"), 2)
        >>> refusal.raise_it()
        Traceback (most recent call last):
        ...
        parallelizer.errors.SerializationError: rank 2: cannot pickle the object gathered (lock ...)
    """
    named = SerializationError(f"rank {rank}: {error}", rank)
    named.__cause__ = error
    return checks.Refusal(named)


def refused_parts(parts: Iterable[Any]) -> None:
    """Raises the error of the first of ``parts`` (in rank order) that came as a refusal (:func:`refused_part`)."""
    for part in parts:
        checks.refused(part)
