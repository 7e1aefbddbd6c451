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
import threading
from collections.abc import Callable
from typing import Any, TextIO

from . import registry
from ._core import calls, checks, context, env, remote
from .collectives import Collectives
from .errors import RemoteError

__all__ = ["Parallelizer"]

_WHERE = ("main", "workers", "all")


class Parallelizer(Collectives, registry.Choosing):
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

    def __init__(self, *, debug: bool | None = None, timeout: float | None = None) -> None:
        super().__init__()
        self._nesting = 0
        self._debug = env.debug_enabled() if debug is None else checks.check_bool(debug, "debug")
        self._timeout = env.timeout() if timeout is None else checks.check_timeout(timeout)
        self._caller_lock = threading.RLock()  # one caller at a time (calls.exclusive)
        self._caller: str | None = None  # the call inside which the holder of _caller_lock is
        self._watchdog: calls.Watchdog | None = None  # backends whose waits cannot time out themselves
        self._pool_main = False  # rank 0 of ``python -m parallelizer --pool``: the others serve its executors
        self._run_threads: set[int] = set()  # the threads of this process inside run()

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

    @property
    def timeout(self) -> float | None:
        """The longest a process waits in one call, in seconds (``None``: no limit).

        Set with ``timeout=`` or ``PARALLELIZER_TIMEOUT``. A process that
        waits longer in one call (for a process that is stopped, stuck, or
        simply slower than that) raises ``TimeoutError`` naming the call and
        the ranks it waits for; under MPI the job aborts with that message.

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> SerialNonParallelizer(timeout=30).timeout
            30.0
        """
        return self._timeout

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
        checks.check_callable(func, "func")
        if "parallelizer" in kwargs:
            raise TypeError("run() passes parallelizer= to func itself; remove it from the keyword arguments")
        me = threading.get_ident()
        if self._run_threads - {me}:
            raise RuntimeError(
                "this group is already running in another thread of this process (an executor or pool made "
                "from main's code keeps it running until shut down): shut that down first, or use it"
            )
        with self:
            self._begin_run()
            self._run_threads.add(me)
            try:
                return self._run(func, args, kwargs)
            except RemoteError as exc:
                # the user's call, the error, the remote traceback: not the frames it crossed
                raise remote.surface(exc) from exc.__cause__
            finally:
                self._run_threads.discard(me)

    def _spmd_here(self) -> bool:
        """Whether the calling thread runs SPMD code: every process of the group runs it too.

        True under MPI and on workers; on main of a backend with a life of
        its own outside ``run`` (multiprocessing), only inside ``run``.
        """
        return self.nprocs > 1 and self._connected()

    def _run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Executes ``func`` on every process; by default, just here."""
        return func(*args, parallelizer=self, **kwargs)

    # ------------------------------------------------------------------
    # pools

    def executor(
        self,
        max_workers: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> Any:
        """A ``concurrent.futures.Executor`` over this group's processes (see :mod:`parallelizer.executor`).

        Args:
            max_workers: At most this many processes run tasks at once
                (default: every process that serves).
            initializer: Runs ``initializer(*initargs)`` once on every process
                that runs tasks, before its first task.
            initargs: Its arguments.

        Returns:
            The executor on main. In SPMD code the other processes serve
            inside this call until main shuts the executor down, then get a
            falsy placeholder whose ``with`` gives ``None``: write
            ``with par.executor() as executor: if executor is not None: ...``.

        Example:
            >>> from parallelizer import MultiprocessingParallelizer
            >>> with MultiprocessingParallelizer(nprocs=2).executor() as executor:
            ...     executor.submit(divmod, 7, 2).result()
            (3, 1)
        """
        start = registry.resolve("parallelizer.executor:start")
        return start(self, max_workers, initializer, initargs)

    def pool(self, max_workers: int | None = None) -> Any:
        """A pool object for libraries that take one (``pool=`` of emcee, dynesty, zeus, schwimmbad code).

        On main, this group's executor (``map``, ``starmap``, ``size``,
        ``close``/``join``/``terminate``, ``is_master``); inside a
        ``ClientServerRunner`` client, the client's view. In SPMD code the
        other processes get a pool whose ``wait()`` serves main's until main
        closes it (schwimmbad's idiom); with ``python -m parallelizer --pool``
        only rank 0 runs the script and no idiom is needed.

        Example:
            >>> from parallelizer import MultiprocessingParallelizer
            >>> pool = MultiprocessingParallelizer(nprocs=2).pool()
            >>> pool.is_master(), pool.size, list(pool.map(abs, [-1, -2]))
            (True, 1, [1, 2])
            >>> pool.close(); pool.join()
        """
        start = registry.resolve("parallelizer.executor:start_pool")
        return start(self, max_workers)

    # ------------------------------------------------------------------
    # output

    def print(
        self, *args: Any, where: str = "main", sep: str = " ", end: str = "\n", file: TextIO | None = None
    ) -> None:
        """Prints from some processes of the group.

        Every process runs the call, so its arguments are evaluated on every
        process, also on those that print nothing: ``par.print(f"max {A.max()}")``
        fails on the workers when ``A`` is ``None`` there. Pass a function of
        no arguments instead, ``par.print(lambda: f"max {A.max()}")``: only the
        printing processes call it, and print what it returns.

        Args:
            *args: Printed like the builtin ``print``; or a single callable
                (not a class) that takes no arguments, called only on the
                processes that print.
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

            Text that only main can compute:

            >>> def summary(parallelizer):
            ...     data = list(range(10)) if parallelizer.on_main else None
            ...     parallelizer.print(lambda: f"max {max(data)}")  # the workers never call it
            >>> MultiprocessingParallelizer(nprocs=2).run(summary)
            max 9
        """
        if where not in _WHERE:
            raise ValueError(f"where must be one of {_WHERE}, got {where!r}")
        if where != "all" and (where == "main") != self.on_main:
            return
        if len(args) == 1 and callable(args[0]) and not isinstance(args[0], type):
            args = (args[0](),)
        text = sep.join(str(arg) for arg in args)
        if not self.on_main:
            prefix = f"[{self.id}/{self.nprocs}] "
            text = "\n".join(prefix + line for line in text.split("\n"))
        self._emit(text + end, file)

    def _emit(self, text: str, file: TextIO | None) -> None:
        stream = sys.stdout if file is None else file
        stream.write(text)
        stream.flush()
