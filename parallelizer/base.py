"""The abstract :class:`Parallelizer`: the contract every backend fulfils.

A backend provides only the transport (:class:`parallelizer._core.transport.Transport`:
``id``, ``nprocs``, and moving one object between two processes), and
optionally ``_start``/``_stop`` (lifecycle) and ``_run`` (how ``run``
executes ``func`` on every process).

Everything else is written once: here the public contract with its argument
checks; in the transport's base class the collectives as simple linear
algorithms (with the meaning taken from :mod:`parallelizer.semantics`), which
a backend with faster native collectives overrides; ``map`` in
:mod:`parallelizer._core.mapping`; debug-mode checks in
:mod:`parallelizer._core.mismatch`.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Callable
from typing import Any, TextIO

from . import registry, semantics
from ._core import context, env, mapping
from ._core.tags import Space
from ._core.transport import Transport

__all__ = ["Parallelizer"]

_WHERE = ("main", "workers", "all")


class Parallelizer(Transport, registry.Choosing):
    """A group of processes running the same code (SPMD); process 0 is main.

    Collectives (``broadcast``, ``scatter``, ``gather``, ``allgather``,
    ``reduce``, ``allreduce``, ``barrier``, ``map``) must be called by every
    process of the group in the same order.

    Example:
        >>> import numpy as np
        >>> from parallelizer import SerialNonParallelizer
        >>> def run_job(parallelizer=None):
        ...     data = np.arange(1000) if parallelizer.on_main else None
        ...     block = parallelizer.scatter(data)
        ...     return parallelizer.gather(len(block))
        >>> SerialNonParallelizer().run(run_job)
        [1000]
    """

    def __init__(self, *, debug: bool | None = None) -> None:
        super().__init__()
        self._nesting = 0
        self._debug = env.debug_enabled() if debug is None else semantics.check_bool(debug, "debug")

    # ------------------------------------------------------------------
    # identity

    @property
    @abc.abstractmethod
    def id(self) -> int:
        """This process's rank, ``0 .. nprocs - 1``.

        Example:
            >>> from parallelizer import MultiprocessingParallelizer
            >>> MultiprocessingParallelizer(nprocs=3).run(lambda parallelizer: parallelizer.gather(parallelizer.id))
            [0, 1, 2]
        """

    @property
    @abc.abstractmethod
    def nprocs(self) -> int:
        """The number of processes in the group.

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer().nprocs
            1
        """

    @property
    def on_main(self) -> bool:
        """True on the main process (rank 0).

        Example:
            >>> from parallelizer import MultiprocessingParallelizer
            >>> MultiprocessingParallelizer(nprocs=2).run(lambda parallelizer: parallelizer.gather(
            ...     parallelizer.on_main))
            [True, False]
        """
        return self.id == 0

    @property
    def debug(self) -> bool:
        """Whether collectives check that every process called the same one.

        Set with ``debug=True`` or ``PARALLELIZER_DEBUG=1``. Each collective
        then first exchanges a small signature (its number in the sequence of
        collectives, its name, its root) and raises
        :class:`~parallelizer.CollectiveMismatchError` on every process when
        they differ, instead of deadlocking or mixing up data.

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer(debug=True).debug
            True
        """
        return self._debug

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id}, nprocs={self.nprocs})"

    # ------------------------------------------------------------------
    # lifecycle

    @property
    def started(self) -> bool:
        """True between the outermost ``__enter__`` and its ``__exit__``.

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> par = SerialNonParallelizer()
            >>> with par:
            ...     par.started
            True
            >>> par.started
            False
        """
        return self._nesting > 0

    def __enter__(self) -> Parallelizer:
        if self._nesting == 0:
            self._start()
        self._nesting += 1
        context.push(self)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        context.pop(self)
        self._nesting -= 1
        if self._nesting == 0:
            self._stop(exc)

    def _start(self) -> None:
        """Starts what the backend needs (worker processes, ...)."""

    def _stop(self, exc: BaseException | None) -> None:
        """Stops and cleans up; ``exc`` is what the ``with`` block raised."""

    def run(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs ``func(*args, parallelizer=self, **kwargs)`` on every process.

        Starts and stops the group when not already inside ``with self:``.

        Args:
            func: Any callable; it receives this parallelizer as the keyword
                argument ``parallelizer``.
            *args: Positional arguments for ``func``.
            **kwargs: Keyword arguments for ``func``.

        Returns:
            The calling process's result (for multiprocessing: main's).

        Raises:
            TypeError: ``func`` is not callable, or ``kwargs`` already holds
                ``parallelizer``.
            RemoteError: ``func`` raised on another process.
            WorkerTerminatedError: Another process died.

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer().run(lambda x, parallelizer: x + parallelizer.nprocs, 41)
            42
        """
        semantics.check_callable(func, "func")
        if "parallelizer" in kwargs:
            raise TypeError("run() passes parallelizer= to func itself; remove it from the keyword arguments")
        with self:
            self._begin_run()
            return self._run(func, args, kwargs)

    def _run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Executes ``func`` on every process; by default, just here."""
        return func(*args, parallelizer=self, **kwargs)

    # ------------------------------------------------------------------
    # collectives: the public contract

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        """Returns root's ``obj`` on every process.

        Args:
            obj: The object to send (on root); ignored elsewhere.
            root: The rank whose object is broadcast.

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer().broadcast({"step": 1})
            {'step': 1}
        """
        root = semantics.check_rank(root, self.nprocs, "root")
        if self._debug:
            self._check_collective("broadcast", root)
        return self._bcast(obj, root)

    def scatter(self, data: Any, root: int = 0) -> Any:
        """Returns this process's block of root's sequence.

        Blocks are contiguous, in rank order, and their lengths differ by at
        most one with the longer ones first (``numpy.array_split``). A numpy
        array is split along axis 0 into arrays; other sequences into lists.
        The other processes receive copies; root's own block is a view of
        ``data`` (a copy if ``data`` is read-only).

        Args:
            data: On root, a list, tuple, range or numpy array; ignored elsewhere.
            root: The rank that holds ``data``.

        Raises:
            TypeError: On root, ``data`` is not a sequence.

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer().scatter(range(4))
            [0, 1, 2, 3]
        """
        root = semantics.check_rank(root, self.nprocs, "root")
        if self.id == root:
            semantics.check_sequence(data, "data")
        if self._debug:
            self._check_collective("scatter", root)
        if self.id != root:
            return self._scatter(None, None, root)
        return self._scatter(data, semantics.block_bounds(len(data), self.nprocs), root)

    def gather(self, obj: Any, root: int = 0) -> Any:
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
        root = semantics.check_rank(root, self.nprocs, "root")
        if self._debug:
            self._check_collective("gather", root)
        return self._gather(obj, root)

    def allgather(self, obj: Any) -> Any:
        """Returns on every process what :meth:`gather` gives root.

        Example:
            >>> from parallelizer import MultiprocessingParallelizer
            >>> MultiprocessingParallelizer(nprocs=2).run(lambda parallelizer: parallelizer.allgather(
            ...     10 * parallelizer.id))
            [0, 10]
        """
        if self._debug:
            self._check_collective("allgather", None)
        return self._allgather(obj)

    def reduce(self, obj: Any, op: str | Callable[[Any, Any], Any] = "sum", root: int = 0) -> Any:
        """Combines every process's ``obj`` on root.

        Args:
            obj: This process's value; numpy arrays are combined elementwise.
            op: ``"sum"``, ``"prod"``, ``"min"``, ``"max"``, or a callable
                ``f(a, b)``, assumed associative and applied in rank order.
            root: The rank that receives the result.

        Returns:
            The result on root, ``None`` elsewhere.

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer().reduce(5, op="max")
            5
        """
        func = semantics.resolve_op(op)
        root = semantics.check_rank(root, self.nprocs, "root")
        if self._debug:
            self._check_collective("reduce", root)
        return self._reduce(obj, op, func, root)

    def allreduce(self, obj: Any, op: str | Callable[[Any, Any], Any] = "sum") -> Any:
        """Like :meth:`reduce`, with the result on every process.

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
            self._check_collective("allreduce", None)
        return self._allreduce(obj, op, func)

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
        root, chunksize = semantics.check_map_arguments(
            func, root, self.nprocs, vectorized, schedule, chunksize, progress
        )
        if self.id == root:
            semantics.check_sequence(data, "data")
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
        dest = semantics.check_rank(dest, self.nprocs, "dest")
        tag = semantics.check_tag(tag)
        self._send(obj, dest, tag, Space.USER)

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
        source = semantics.check_rank(source, self.nprocs, "source")
        tag = semantics.check_tag(tag)
        return self._recv(source, tag, Space.USER)

    # ------------------------------------------------------------------
    # output

    def print(
        self, *args: Any, where: str = "main", sep: str = " ", end: str = "\n", file: TextIO | None = None
    ) -> None:
        """Prints from some processes of the group.

        Args:
            *args: Printed like the builtin ``print``.
            where: ``"main"``, ``"workers"`` or ``"all"``. Lines from workers
                are prefixed with ``[rank/nprocs]``.
            sep: Separator, as for ``print``.
            end: Line end, as for ``print``.
            file: Where to write; default ``sys.stdout``.

        Example:
            >>> from parallelizer import MultiprocessingParallelizer
            >>> def job(parallelizer):
            ...     parallelizer.print("starting")  # main only
            ...     parallelizer.barrier()
            ...     if parallelizer.id == 1:
            ...         parallelizer.print("ready", where="workers")
            >>> MultiprocessingParallelizer(nprocs=2).run(job)
            starting
            [1/2] ready
        """
        if where not in _WHERE:
            raise ValueError(f"where must be one of {_WHERE}, got {where!r}")
        if where != "all" and (where == "main") != self.on_main:
            return
        text = sep.join(str(arg) for arg in args)
        if not self.on_main:
            prefix = f"[{self.id}/{self.nprocs}] "
            text = "\n".join(prefix + line for line in text.split("\n"))
        self._emit(text + end, file)

    def _emit(self, text: str, file: TextIO | None) -> None:
        stream = sys.stdout if file is None else file
        stream.write(text)
        stream.flush()
