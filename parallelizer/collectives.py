"""The collectives and point-to-point calls of the contract, with their argument checks.

:class:`Collectives` is the communicating half of
:class:`~parallelizer.Parallelizer`: each public call checks its arguments
(raising on every process when only root can tell, see
:mod:`parallelizer._core.checks`), checks in debug mode that every process
makes the same call, refuses a second thread (:func:`~parallelizer._core.calls.exclusive`),
and hands over to the collective primitives of the transport
(:class:`~parallelizer._core.transport.Transport`), which backends override
with faster native versions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from . import semantics
from ._core import checks, mapping, outbuf
from ._core.calls import Watchdog, exclusive
from ._core.tags import Space
from ._core.transport import Transport
from .errors import CombineError, SerializationError

__all__ = ["Collectives"]


def _named(call: str, out: Any) -> str:
    """The collective's name in debug signatures: with ``out=`` it is another call."""
    return call if out is outbuf.NOT_GIVEN else f"{call}(out=)"


class Collectives(Transport):
    """The communicating calls of :class:`~parallelizer.Parallelizer`.

    ``broadcast``, ``scatter``, ``gather``, ``allgather``, ``reduce``,
    ``allreduce``, ``barrier``/``wait``, ``map``, ``send`` and ``recv``.

    ``broadcast``, ``scatter``, ``gather``, ``allgather``, ``reduce`` and
    ``allreduce`` take ``out=``: a process whose result is an array writes it
    into ``out`` (a C-contiguous, writable array of the result's shape and
    dtype) and returns ``out``; where the result is ``None`` it is ignored.
    Pass the keyword on every process or on none (``None`` where there is
    no array). An ``out`` that cannot take its result raises ``ValueError``
    naming ``out`` on every process, and nothing is written
    (:mod:`parallelizer._core.outbuf`).

    Example:
        >>> import numpy as np
        >>> from parallelizer import SerialNonParallelizer
        >>> total = np.empty(3)
        >>> SerialNonParallelizer().allreduce(np.arange(3.0), out=total) is total
        True
    """

    # set by Parallelizer.__init__
    _debug: bool
    _caller_lock: Any
    _caller: str | None
    _watchdog: Watchdog | None

    # ------------------------------------------------------------------
    # collectives: the public contract

    @exclusive
    def broadcast(self, obj: Any, root: int = 0, *, out: Any = outbuf.NOT_GIVEN) -> Any:
        """Returns root's ``obj`` on every process.

        Args:
            obj: The object to send (on root); ignored elsewhere.
            root: The rank whose object is broadcast.
            out: An array to receive an array result into (see the class docstring).

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer().broadcast({"step": 1})
            {'step': 1}
        """
        root = self._root(root)
        if self._debug:
            self._check_collective(_named("broadcast", out), root)
        if out is outbuf.NOT_GIVEN:
            return self._broadcast(obj, root)
        try:
            return self._receive_into(out, self._receiving("broadcast", self._bcast_into, obj, root, out), "broadcast")
        except SerializationError as exc:
            self._refuse_unpicklable(exc, root)
            raise

    def _broadcast(self, obj: Any, root: int) -> Any:
        """``broadcast`` without ``out``, once the call is checked."""
        try:
            got = self._bcast(obj, root)
        except SerializationError as exc:
            self._refuse_unpicklable(exc, root)
            raise
        if got is obj:
            return semantics.own(got)  # root gets obj itself back (own: a writable array)
        if type(got) is checks.Refusal:
            got.raise_it()
        return got

    @exclusive
    def scatter(self, data: Any, root: int = 0, *, out: Any = outbuf.NOT_GIVEN) -> Any:
        """Returns this process's block of root's sequence.

        Blocks are contiguous, in rank order, and their lengths differ by at
        most one with the longer ones first (``numpy.array_split``). A numpy
        array is split along axis 0 into arrays; other sequences into lists.
        The other processes receive copies; root's own block is a view of
        ``data`` (a copy if ``data`` is read-only).

        Args:
            data: On root, a list, tuple, range or numpy array, or another
                ordered sized iterable (a ``deque``: listed first); ignored elsewhere.
            root: The rank that holds ``data``.
            out: An array to receive this process's block into (see the class docstring).

        Raises:
            TypeError: Root's ``data`` cannot be split: text, a set or a
                mapping, a generator (raised on every process, so catching
                it leaves the group in step).

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer().scatter(range(4))
            [0, 1, 2, 3]
        """
        root = self._root(root)
        data, refusal = checks.check_root_data(data, "data") if self.id == root else (data, None)
        if self._debug:
            self._check_collective(_named("scatter", out), root)
        into = out is not outbuf.NOT_GIVEN
        if self.id != root:
            block = (
                self._receiving("scatter", self._scatter_into, None, None, root, out)
                if into
                else self._scatter(None, None, root)
            )
            checks.refused(block)
        elif refusal is not None:  # every process raises it, not root alone
            if self._together():  # the same call as the others make
                self._scatter_into(refusal, None, root, out) if into else self._scatter(refusal, None, root)
            refusal.raise_it()
        else:
            bounds = semantics.block_bounds(len(data), self.nprocs)
            block = self._scatter_into(data, bounds, root, out) if into else self._scatter(data, bounds, root)
        return block if out is outbuf.NOT_GIVEN else self._receive_into(out, block, "scatter")

    @exclusive
    def gather(self, obj: Any, root: int = 0, *, out: Any = outbuf.NOT_GIVEN) -> Any:
        """Collects every process's ``obj`` on root.

        Returns:
            On root: the concatenation along axis 0 when every process passed
            a numpy array of at least one dimension with the same trailing
            shape, else the list of objects in rank order. Elsewhere ``None``.

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer().gather(7)
            [7]
        """
        root = self._root(root)
        if self._debug:
            self._check_collective(_named("gather", out), root)
        if out is outbuf.NOT_GIVEN:
            return self._gather(obj, root)
        return self._receive_into(out, self._receiving("gather", self._gather_into, obj, root, out), "gather")

    @exclusive
    def allgather(self, obj: Any, *, out: Any = outbuf.NOT_GIVEN) -> Any:
        """Returns on every process what :meth:`gather` gives root.

        As on gather's root, a process's own part is its own ``obj`` where the
        result is a list (arrays that concatenate are copied into the result).

        Example:
            >>> from parallelizer import MultiprocessingParallelizer
            >>> MultiprocessingParallelizer(nprocs=2).run(lambda parallelizer: parallelizer.allgather(
            ...     10 * parallelizer.id))
            [0, 10]
        """
        if self._debug:
            self._check_collective(_named("allgather", out), None)
        if out is outbuf.NOT_GIVEN:
            return self._allgather(obj)
        return self._receive_into(out, self._receiving("allgather", self._allgather_into, obj, out), "allgather")

    @exclusive
    def reduce(
        self, obj: Any, op: str | Callable[[Any, Any], Any] = "sum", root: int = 0, *, out: Any = outbuf.NOT_GIVEN
    ) -> Any:
        """Combines every process's ``obj`` on root.

        Args:
            obj: This process's value; numpy arrays are combined elementwise.
            op: ``"sum"``, ``"prod"``, ``"min"``, ``"max"``, or a callable
                ``f(a, b)``, assumed associative and applied in rank order.
            root: The rank that receives the result.
            out: On root, an array to receive an array result into (see the class docstring).

        Returns:
            The result on root, ``None`` elsewhere.

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer().reduce(5, op="max")
            5
        """
        func = semantics.resolve_op(op)
        root = self._root(root)
        if self._debug:
            self._check_collective(_named("reduce", out), root)
        if out is outbuf.NOT_GIVEN:
            return self._reduce(obj, op, func, root)
        return self._receive_into(out, self._receiving("reduce", self._reduce_into, obj, op, func, root, out), "reduce")

    @exclusive
    def allreduce(self, obj: Any, op: str | Callable[[Any, Any], Any] = "sum", *, out: Any = outbuf.NOT_GIVEN) -> Any:
        """Like :meth:`reduce`, with the result on every process.

        Every process may apply ``op`` itself, to the same values in the same
        order (MPI does, and so do two local processes that each have a
        CPU), so a callable ``op`` must give the same result for the same
        values wherever it runs.

        Example:
            >>> from parallelizer import MultiprocessingParallelizer
            >>> def job(parallelizer):
            ...     total = parallelizer.allreduce(parallelizer.id + 1)  # 1 + 2 + 3 everywhere
            ...     return parallelizer.gather(total)
            >>> MultiprocessingParallelizer(nprocs=3).run(job)
            [6, 6, 6]
        """
        func = semantics.resolve_op(op)
        if self._debug:
            self._check_collective(_named("allreduce", out), None)
        if out is outbuf.NOT_GIVEN:
            return self._allreduce(obj, op, func)
        return self._receive_into(
            out, self._receiving("allreduce", self._allreduce_into, obj, op, func, out), "allreduce"
        )

    def _root(self, root: object) -> int:
        """``root`` checked against the group; root 0, the default, is always a rank (no property, no call)."""
        if type(root) is int and root == 0:
            return 0
        return checks.check_rank(root, self.nprocs, "root")

    # Receiving into out=: a backend that can receive straight into ``out`` overrides
    # these and returns outbuf.Written; by default the result arrives as usual and
    # _receive_into checks every process's out, then copies.

    def _bcast_into(self, obj: Any, root: int, out: Any) -> Any:
        return self._bcast(obj, root)

    def _scatter_into(self, data: Any, bounds: list[tuple[int, int]] | None, root: int, out: Any) -> Any:
        return self._scatter(data, bounds, root)

    def _gather_into(self, obj: Any, root: int, out: Any) -> Any:
        return self._gather(obj, root)

    def _allgather_into(self, obj: Any, out: Any) -> Any:
        return self._allgather(obj)

    def _reduce_into(self, obj: Any, op: object, func: Callable[[Any, Any], Any], root: int, out: Any) -> Any:
        return self._reduce(obj, op, func, root)

    def _allreduce_into(self, obj: Any, op: object, func: Callable[[Any, Any], Any], out: Any) -> Any:
        return self._allreduce(obj, op, func)

    def _receiving(self, call: str, receive: Callable[..., Any], *args: Any) -> Any:
        """``receive(*args)``, a backend's half of an ``out=`` call.

        An error this process alone met before ``out`` was agreed on (values
        ``reduce``'s root cannot combine, a part it cannot unpickle) is raised
        once it has joined the agreement the others wait in, as without
        ``out=``: only it raises, and the group stays in step.
        """
        try:
            return receive(*args)
        except (CombineError, SerializationError) as exc:
            if isinstance(exc, SerializationError) and exc.rank is None:  # its own object: nothing was sent
                raise
            if self._together():
                with contextlib.suppress(ValueError):  # its own error is the one to raise
                    outbuf.check_all(self._allgather(None), call)
            raise

    def _receive_into(self, out: Any, result: Any, call: str) -> Any:
        """``result`` written into ``out`` once every process knows every ``out`` can take its result."""
        checks.refused(result)  # (root's error, sent in place of the result)
        if isinstance(result, outbuf.Written):  # the backend has checked and received into out
            return result.value
        mine = outbuf.problem(out, result)
        outbuf.check_all(self._allgather(mine) if self._together() else [mine], call)
        return outbuf.write(out, result)

    @exclusive
    def barrier(self) -> None:
        """Returns when every process of the group has called it.

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer().barrier()
        """
        if self._debug:
            self._check_collective("barrier", None)
        self._barrier()

    def wait(self) -> None:
        """Alias of :meth:`barrier`.

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer().wait()
        """
        self.barrier()

    @exclusive
    def map(
        self,
        func: Callable[[Any], Any],
        data: Any,
        root: int = 0,
        *,
        vectorized: bool = False,
        schedule: str = "static",
        chunksize: int | None = None,
        progress: bool = False,
    ) -> Any:
        """Applies ``func`` over root's ``data`` using every process.

        Args:
            func: Called on each item, or with ``vectorized=True`` once on each
                non-empty block (or chunk).
            data: On root, a sequence; ignored elsewhere.
            root: The rank that holds ``data`` and receives the results.
            vectorized: Call ``func`` on whole blocks instead of items.
            schedule: ``"static"`` (one block per process) or ``"dynamic"``
                (chunks handed out on demand, for uneven task times).
            chunksize: Items per chunk for ``"dynamic"``; default: guided
                (chunks shrink as the work runs out).
            progress: Show a progress bar on root (needs ``tqdm``).

        Returns:
            On root, the results in input order: a list for item-wise maps;
            for vectorized maps the per-block results joined (arrays
            concatenated, lists and tuples concatenated into one list, else a
            list of the per-block results). ``None`` elsewhere.

        Example:
            >>> import numpy as np
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer().map(lambda b: 1 + b, np.arange(10), vectorized=True)
            array([ 1,  2,  3,  4,  5,  6,  7,  8,  9, 10])
        """
        root, chunksize = checks.check_map_arguments(func, root, self.nprocs, vectorized, schedule, chunksize, progress)
        if self._debug:
            self._check_collective(f"map(schedule={schedule!r})", root)
        return mapping.run_map(self, func, data, root, vectorized, schedule, chunksize, progress)

    def serve(self) -> None:
        """Serves a ``ClientServerRunner`` client (only on its servers).

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer().serve()
            Traceback (most recent call last):
            ...
            RuntimeError: serve() is only available on the servers of a ClientServerRunner
        """
        raise RuntimeError("serve() is only available on the servers of a ClientServerRunner")

    # ------------------------------------------------------------------
    # point to point

    @exclusive
    def send(self, obj: Any, dest: int, tag: int = 0) -> None:
        """Sends ``obj`` to process ``dest``.

        Messages between a pair with the same tag arrive in the order sent.
        A small message returns at once; a large one may wait for the
        receiver, as in MPI's standard mode.

        Args:
            obj: Any picklable object.
            dest: The receiving rank.
            tag: An int from 0 to 32767.

        Example:
            >>> from parallelizer import MultiprocessingParallelizer
            >>> def job(parallelizer):
            ...     if parallelizer.id == 1:
            ...         parallelizer.send({"energy": -1.5}, dest=0, tag=7)
            ...     elif parallelizer.on_main:
            ...         return parallelizer.recv(source=1, tag=7)
            >>> MultiprocessingParallelizer(nprocs=2).run(job)
            {'energy': -1.5}
        """
        dest = checks.check_rank(dest, self.nprocs, "dest")
        tag = checks.check_tag(tag)
        self._send(obj, dest, tag, Space.USER)

    @exclusive
    def recv(self, source: int, tag: int = 0) -> Any:
        """Receives the next object ``source`` sent to this process with ``tag``.

        Example:
            >>> from parallelizer import MultiprocessingParallelizer
            >>> def ring(parallelizer):
            ...     right = (parallelizer.id + 1) % parallelizer.nprocs
            ...     left = (parallelizer.id - 1) % parallelizer.nprocs
            ...     parallelizer.send(f"hello from {parallelizer.id}", dest=right)
            ...     return parallelizer.gather(parallelizer.recv(source=left))
            >>> MultiprocessingParallelizer(nprocs=3).run(ring)
            ['hello from 2', 'hello from 0', 'hello from 1']
        """
        source = checks.check_rank(source, self.nprocs, "source")
        tag = checks.check_tag(tag)
        return self._recv(source, tag, Space.USER)
