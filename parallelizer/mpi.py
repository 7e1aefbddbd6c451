"""``MPIParallelizer``: the contract across the ranks of an MPI communicator.

Launched with ``mpiexec -n N python script.py`` (or ``python -m parallelizer
-n N script.py``), every rank runs the script; ``run(func)`` calls ``func`` on
each. numpy arrays travel through mpi4py's buffer methods, other objects as
pickles with their arrays out of band (:mod:`parallelizer._mpi`).

An exception escaping ``func`` on any rank aborts the whole job (the rank's
traceback on stderr, ``MPI_Abort``): the other ranks would otherwise wait in
their next collective forever.

mpi4py is imported when an ``MPIParallelizer`` is constructed, not before.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any

from . import semantics
from ._core import calls, mismatch
from ._core.outbuf import NOT_GIVEN
from ._core.tags import Space
from ._mpi import abort, finish, messages, runtime
from ._mpi import collectives as _collectives
from ._mpi import plans as _plans
from .base import Parallelizer

__all__ = ["MPIParallelizer"]

_counter = itertools.count()
# Every MPIParallelizer of this process by construction number: construction
# is collective, so the n-th one is the same group on every rank, and a
# pickled one comes back as the receiving rank's own.
_instances: weakref.WeakValueDictionary[int, MPIParallelizer] = weakref.WeakValueDictionary()


def _restore(token: int) -> MPIParallelizer:
    par = _instances.get(token)
    if par is None:
        raise RuntimeError("a pickled MPIParallelizer can only be unpickled on the ranks of its communicator")
    return par


class MPIParallelizer(Parallelizer):
    """Runs SPMD code on the ranks of an MPI intracommunicator.

    Constructing it is collective over ``comm``: every rank of ``comm``
    constructs it, in the same order.

    Args:
        comm: An mpi4py intracommunicator; default ``MPI.COMM_WORLD``. A
            sub-communicator gives ``id`` and ``nprocs`` relative to it.
        debug: Check that every rank calls the same collectives (see
            :attr:`Parallelizer.debug`); default: ``PARALLELIZER_DEBUG``.
            Must be the same on every rank.

    Raises:
        ImportError: mpi4py is not installed (says how to install it).
        TypeError: ``comm`` is not an intracommunicator.
        LaunchMismatchError: An ``mpiexec`` of another MPI library started this
            process (found before MPI is initialized), or the launcher started
            several ranks but MPI sees one.

    Example:
        Run with ``mpiexec -n 4 python script.py``::

            par = MPIParallelizer()
            total = par.run(lambda parallelizer: parallelizer.allreduce(parallelizer.id))
            # 6 on every rank
    """

    def __init__(self, comm: Any = None, *, debug: bool | None = None, timeout: float | None = None) -> None:
        super().__init__(debug=debug, timeout=timeout)
        self._MPI = MPI = runtime.load()
        base = MPI.COMM_WORLD if comm is None else comm
        if not isinstance(base, MPI.Intracomm) or base == MPI.COMM_NULL:
            raise TypeError(
                f"comm must be an mpi4py intracommunicator (e.g. MPI.COMM_WORLD), not {type(comm).__name__}"
            )
        runtime.check_launch(MPI.COMM_WORLD.Get_size())
        _plans.NATIVE_LARGE_COUNTS = MPI.Get_version() >= (4, 0)
        self._base = base
        self._comm = base.Dup()  # collectives and their own messages
        self._user = base.Dup()  # send/recv: never matches the collectives' traffic
        # debug mode: signature exchanges and finished notices (so waits on a returned rank raise)
        self._notices = finish.FinishNotices(base.Dup()) if self._debug else None
        self._rank = self._comm.Get_rank()
        self._size = self._comm.Get_size()
        if self._timeout is not None:
            self._watchdog = calls.Watchdog(self._timeout, self._timed_out)
        self._coll = _collectives.Collectives(self._comm)
        self._inflight: list[tuple[list[Any], Any]] = []  # non-blocking sends and what they keep alive
        self._waiting_for: list[int] | None = None  # for the timeout's message
        self._token = next(_counter)
        _instances[self._token] = self

    @property
    def id(self) -> int:
        """This process's rank in ``comm``.

        Example:
            Under ``mpiexec -n 4 python script.py``::

                MPIParallelizer().id  # 0, 1, 2 or 3
        """
        return int(self._rank)

    @property
    def nprocs(self) -> int:
        """The size of ``comm``.

        Example:
            Under ``mpiexec -n 4 python script.py``::

                MPIParallelizer().nprocs  # 4 on every rank
        """
        return int(self._size)

    @property
    def comm(self) -> Any:
        """The communicator this parallelizer was built on.

        Example:
            Ranks split into two halves, each with its own parallelizer::

                from mpi4py import MPI
                world = MPI.COMM_WORLD
                half = MPIParallelizer(world.Split(color=world.rank % 2))
                half.comm.Get_size()  # half of the ranks
        """
        return self._base

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self._token,))

    # ------------------------------------------------------------------ run

    def _run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        notices = self._notices
        if notices is not None:
            notices.begin_run()
        try:
            result = func(*args, parallelizer=self, **kwargs)
        except BaseException as exc:
            abort.abort(exc, _world_rank())
        if notices is not None:
            notices.end_run()
        return result

    def _timed_out(self, what: str) -> None:
        """The watchdog's verdict: this rank waited too long in one call; the job ends."""
        waited = self._waiting_for or [rank for rank in range(self._size) if rank != self._rank]
        error = TimeoutError(
            f"rank {self._rank} waited more than {self._timeout:g} s in {what} for rank(s) "
            f"{', '.join(map(str, waited))} (the timeout= of the parallelizer, or PARALLELIZER_TIMEOUT)"
        )
        abort.abort(error, _world_rank())

    # ------------------------------------------------------------------ transport

    def _comm_for(self, space: Space) -> Any:
        return self._user if space == Space.USER else self._comm

    def _send_to(self, obj: Any, dest: int, tag: int, space: Space) -> None:
        what = f"the object sent to rank {dest}"
        if space == Space.USER:  # standard mode, as the contract says: large sends may wait
            messages.send_obj(self._user, obj, dest, tag, what)
            return
        # The collectives' own messages never wait for their receiver: two
        # ranks each sending a large message to the other (a dynamic map's
        # next task and last result) would otherwise block each other forever.
        Request = self._MPI.Request
        self._inflight = [entry for entry in self._inflight if not Request.Testall(entry[0])]
        self._inflight.append(messages.isend_obj(self._comm, obj, dest, tag, what))

    def _check_threads(self) -> None:
        MPI = self._MPI
        provided = MPI.Query_thread()
        if provided < MPI.THREAD_SERIALIZED:
            names = {MPI.THREAD_SINGLE: "MPI_THREAD_SINGLE", MPI.THREAD_FUNNELED: "MPI_THREAD_FUNNELED"}
            raise RuntimeError(
                "a client/server session or executor runs its MPI calls in a thread of its own, which needs "
                f"MPI_THREAD_SERIALIZED or more; this MPI library was initialized with {names.get(provided, provided)} "
                "(unset MPI4PY_RC_THREAD_LEVEL, or use an MPI library built with thread support)"
            )

    _idle_wakes_on_messages = False  # MPI has no call that waits for a message or a file descriptor

    def _send_later(self, obj: Any, dest: int, tag: int, space: Space) -> None:
        if dest == self._rank or space == Space.USER:
            self._send(obj, dest, tag, space)
        else:  # the collectives' own sends never wait already
            self._send_to(obj, dest, tag, space)

    def _complete_sends(self) -> None:
        if self._inflight:
            for requests, _ in self._inflight:
                self._MPI.Request.Waitall(requests)
            self._inflight.clear()

    def _recv_from(self, source: int, tag: int, space: Space) -> Any:
        what = f"recv(source={source}, tag={tag})" if space == Space.USER else (self._caller or "a collective")
        self._waiting_for = [source]
        try:
            if self._notices is None:
                return messages.recv_obj(self._comm_for(space), source, tag, what)[1]
            message, status = self._notices.probe(self._comm_for(space), source, tag, what)
            return messages.recv_probed(self._comm_for(space), message, status, tag, what)[1]
        finally:
            self._waiting_for = None

    def _recv_from_any(self, tag: int, space: Space, block: bool) -> tuple[int, Any] | None:
        comm = self._comm_for(space)
        what = self._caller or "map"
        if not block:
            return messages.try_recv_obj(comm, self._MPI.ANY_SOURCE, tag, what)
        if self._notices is None:
            return messages.recv_obj(comm, self._MPI.ANY_SOURCE, tag, what)
        message, status = self._notices.probe(comm, self._MPI.ANY_SOURCE, tag, what)
        return messages.recv_probed(comm, message, status, tag, what)

    # ------------------------------------------------------------------ collectives

    def _bcast(self, obj: Any, root: int) -> Any:
        return self._coll.broadcaster.bcast(obj, root)

    def _scatter(self, data: Any, bounds: list[tuple[int, int]] | None, root: int) -> Any:
        return self._coll.scatter(data, bounds, root)

    def _gather_list(self, obj: Any, root: int) -> list[Any] | None:
        return self._coll.gather_list(obj, root)

    def _gather(self, obj: Any, root: int) -> Any:
        return self._coll.gather_plain(obj, root)

    def _allgather(self, obj: Any) -> Any:
        return self._coll.allgather(obj)

    def _reduce(self, obj: Any, op: object, func: Callable[[Any, Any], Any], root: int) -> Any:
        return self._coll.reduce(obj, op, func, root)

    def _allreduce(self, obj: Any, op: object, func: Callable[[Any, Any], Any]) -> Any:
        return self._coll.reduce(obj, op, func, None)

    def _bcast_into(self, obj: Any, root: int, out: Any) -> Any:
        return self._coll.bcast_into(obj, root, out)

    def _scatter_into(self, data: Any, bounds: list[tuple[int, int]] | None, root: int, out: Any) -> Any:
        return self._coll.scatter(data, bounds, root, out)

    def _gather_into(self, obj: Any, root: int, out: Any) -> Any:
        return self._coll.gather(obj, root, out)

    def _allgather_into(self, obj: Any, out: Any) -> Any:
        return self._coll.allgather(obj, out)

    def _reduce_into(self, obj: Any, op: object, func: Callable[[Any, Any], Any], root: int, out: Any) -> Any:
        return self._coll.reduce(obj, op, func, root, out)

    def _allreduce_into(self, obj: Any, op: object, func: Callable[[Any, Any], Any], out: Any) -> Any:
        return self._coll.reduce(obj, op, func, None, out)

    def barrier(self) -> None:
        """Returns when every rank of ``comm`` has called it (``MPI_Barrier``).

        An outermost call (:func:`parallelizer._core.calls.enter_plain`)
        costs little more than ``comm.Barrier()``; anything else takes the
        general path.

        Example:
            Under ``mpiexec -n 2 python script.py``::

                par = MPIParallelizer()
                par.barrier()  # both ranks have arrived
        """
        # calls.enter_plain and leave_plain, inlined: their two calls cost ~35 ns of a 2.2 us barrier
        lock = self._caller_lock
        if self._caller is None and self._watchdog is None and not self._debug and lock.acquire(False):
            self._caller = "barrier()"
            try:
                self._comm.Barrier()
            finally:
                self._caller = None
                lock.release()
            return
        super().barrier()  # nested, watched, checked, or another thread inside a call (which raises)

    # An outermost call without out= (calls.enter_plain) goes straight to the collective: small
    # objects cost a few microseconds, of which the generic layers would take a tenth.

    def broadcast(self, obj: Any, root: int = 0, *, out: Any = NOT_GIVEN) -> Any:
        """:meth:`Parallelizer.broadcast` (see there); an outermost call without ``out`` goes straight to MPI.

        Example:
            Under ``mpiexec -n 2 python script.py``::

                par = MPIParallelizer()
                par.broadcast({"step": 1} if par.on_main else None)  # {'step': 1} on both
        """
        if out is NOT_GIVEN and type(root) is int and 0 <= root < self._size and calls.enter_plain(self, "broadcast()"):
            try:
                return self._broadcast(obj, root)
            finally:
                calls.leave_plain(self)
        return super().broadcast(obj, root, out=out)

    def gather(self, obj: Any, root: int = 0, *, out: Any = NOT_GIVEN) -> Any:
        """:meth:`Parallelizer.gather` (see there); an outermost call without ``out`` goes straight to MPI.

        Example:
            Under ``mpiexec -n 2 python script.py``::

                par = MPIParallelizer()
                par.gather(par.id)  # [0, 1] on rank 0, None on rank 1
        """
        if out is NOT_GIVEN and type(root) is int and 0 <= root < self._size and calls.enter_plain(self, "gather()"):
            try:
                return self._coll.gather_plain(obj, root)
            finally:
                calls.leave_plain(self)
        return super().gather(obj, root, out=out)

    def allgather(self, obj: Any, *, out: Any = NOT_GIVEN) -> Any:
        """:meth:`Parallelizer.allgather` (see there); an outermost call without ``out`` goes straight to MPI.

        Example:
            Under ``mpiexec -n 2 python script.py``::

                par = MPIParallelizer()
                par.allgather(par.id)  # [0, 1] on both
        """
        if out is NOT_GIVEN and calls.enter_plain(self, "allgather()"):
            try:
                return self._coll.allgather(obj)
            finally:
                calls.leave_plain(self)
        return super().allgather(obj, out=out)

    def reduce(
        self, obj: Any, op: str | Callable[[Any, Any], Any] = "sum", root: int = 0, *, out: Any = NOT_GIVEN
    ) -> Any:
        """:meth:`Parallelizer.reduce` (see there); an outermost call without ``out`` goes straight to MPI.

        Example:
            Under ``mpiexec -n 2 python script.py``::

                par = MPIParallelizer()
                par.reduce(par.id + 1)  # 3 on rank 0, None on rank 1
        """
        if out is NOT_GIVEN and type(root) is int and 0 <= root < self._size and calls.enter_plain(self, "reduce()"):
            try:
                return self._coll.reduce(obj, op, semantics.resolve_op(op), root)
            finally:
                calls.leave_plain(self)
        return super().reduce(obj, op, root, out=out)

    def allreduce(self, obj: Any, op: str | Callable[[Any, Any], Any] = "sum", *, out: Any = NOT_GIVEN) -> Any:
        """:meth:`Parallelizer.allreduce` (see there); an outermost call without ``out`` goes straight to MPI.

        Example:
            Under ``mpiexec -n 2 python script.py``::

                par = MPIParallelizer()
                par.allreduce(par.id + 1, op="max")  # 2 on both
        """
        if out is NOT_GIVEN and calls.enter_plain(self, "allreduce()"):
            try:
                return self._coll.reduce(obj, op, semantics.resolve_op(op), None)
            finally:
                calls.leave_plain(self)
        return super().allreduce(obj, op, out=out)

    def _barrier(self) -> None:
        self._comm.Barrier()

    def _exchange_signatures(self, mine: mismatch.Signature) -> list[mismatch.Signature]:
        if self._notices is None:  # debug switched on after construction: no communicator of its own
            return super()._exchange_signatures(mine)
        absent = (mine[0], "nothing (it had returned from func)", None)
        return self._notices.exchange(mine, absent)


def _world_rank() -> int | None:
    """This process's rank in ``MPI.COMM_WORLD`` (``None`` without MPI)."""
    if not runtime.initialized():
        return None
    return int(runtime.load().COMM_WORLD.Get_rank())
