"""A joblib backend, ``"parallelizer"``: joblib and scikit-learn work on a parallelizer's processes.

Importing this module registers the backend::

    import joblib
    import parallelizer.joblib  # registers "parallelizer"

    with joblib.parallel_config(backend="parallelizer"):
        scores = cross_val_score(model, X, y, cv=5)     # scikit-learn, through joblib

The work goes to the processes of, in this order: the ``pool`` (an
executor or a client view) or ``parallelizer`` passed as a backend option
(``parallel_config(backend="parallelizer", pool=executor)``); the client
view, inside a ``ClientServerRunner`` client; else ``Parallelizer.lookup()``,
whose executor is started once and kept (serially, a thread of main; on
local processes, its workers; under ``mpiexec ... python -m parallelizer
--pool``, the other ranks). ``n_jobs`` counts the processes that run tasks
(``-1``: all of them, the default); results come in order, also as
``return_as="generator"`` or ``"generator_unordered"``; a task's exception
is raised as joblib raises it, with the remote traceback as its cause, and
joblib's abort cancels the batches not yet started.

Tasks run their own nested ``Parallel`` calls one after the other (no
processes within processes).
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
import uuid
from typing import Any

from joblib._parallel_backends import AutoBatchingMixin, FallbackToBackend, ParallelBackendBase, SequentialBackend
from joblib.parallel import register_parallel_backend

from ._core import checks
from .base import Parallelizer

__all__ = ["NAME", "ParallelizerBackend", "register"]

NAME = "parallelizer"

_lock = threading.Lock()
_executors: dict[int, Any] = {}  # id of a parallelizer -> the executor joblib started on it


def _shared_executor(par: Parallelizer) -> Any:
    """The executor joblib work on ``par`` goes to: one already running there, else one started and kept."""
    from .executor import live_executor

    with _lock:
        executor = live_executor(par)
        if executor is None:
            executor = _executors.get(id(par))
            if executor is None or executor._shut:
                executor = _executors[id(par)] = par.executor()
        return executor


class ParallelizerBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """joblib's ``ParallelBackendBase`` over a parallelizer's pool (see the module docstring).

    Args:
        pool: An executor or client view to run the tasks on.
        parallelizer: Anything ``Parallelizer.lookup`` takes, whose executor runs them.
        nesting_level: joblib's nesting level.
        inner_max_num_threads: Threads each task's BLAS/OpenMP libraries may use
            (default: the CPUs divided by ``n_jobs``, as joblib's own process
            backends do, so that processes do not oversubscribe the cores).
        **kwargs: joblib's other backend options.

    Example:
        >>> import joblib
        >>> import parallelizer.joblib
        >>> with joblib.parallel_config(backend="parallelizer", parallelizer="multiprocessing:3"):
        ...     joblib.Parallel()(joblib.delayed(pow)(2, n) for n in range(5))
        [1, 2, 4, 8, 16]
    """

    default_n_jobs = -1
    supports_retrieve_callback = True
    supports_return_generator = True
    supports_timeout = True
    supports_inner_max_num_threads = True
    uses_threads = False
    supports_sharedmem = False

    def __init__(
        self,
        pool: Any = None,
        parallelizer: Any = None,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **kwargs)
        self._inner_threads = inner_max_num_threads
        self._given_pool = pool
        self._given_parallelizer = parallelizer
        self._pool: Any = None
        self._limit = 1
        self._threads = 1
        self._init: tuple[str, Any, tuple[Any, ...]] | None = None  # (key, initializer, initargs)
        self._lock = threading.Lock()
        self._waiting: collections.deque[tuple[Any, concurrent.futures.Future[Any]]] = collections.deque()
        self._running: dict[Any, concurrent.futures.Future[Any]] = {}

    def _find_pool(self) -> Any:
        if self._given_pool is not None:
            return self._given_pool
        from .views import ClientView

        if self._given_parallelizer is None:
            active = Parallelizer.lookup()
            if isinstance(active, ClientView):
                return active
        par = Parallelizer.lookup(self._given_parallelizer)
        if par._spmd_here() and not par._pool_main:
            raise RuntimeError(
                "joblib work in SPMD code (every process running it) has no processes to go to: run the script "
                "with 'mpiexec -n N python -m parallelizer --pool script.py' (rank 0 runs it, the others compute), "
                "call it inside a ClientServerRunner client, or pass pool= (an executor or a client view)"
            )
        return _shared_executor(par)

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """How many processes run tasks: ``n_jobs`` (``-1``: all, ``-2``: all but one, ...), at most the pool's."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        pool = self._pool if self._pool is not None else self._find_pool()
        size = int(pool.size)
        if n_jobs is None:
            return size
        if n_jobs < 0:
            return max(1, size + 1 + n_jobs)
        return min(n_jobs, size)

    def configure(
        self,
        n_jobs: int = 1,
        parallel: Any = None,
        prefer: str | None = None,
        require: str | None = None,
        **kwargs: Any,
    ) -> int:
        """Picks the pool for this ``Parallel`` call; returns the effective ``n_jobs``."""
        self.parallel = parallel
        if (self.nesting_level or 0) > 0:  # inside a task: no processes within processes
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self._pool = self._find_pool()
        self._limit = self.effective_n_jobs(n_jobs)
        self._threads = self._inner_threads or max(1, (os.cpu_count() or 1) // self._limit)
        options = {**self.backend_kwargs, **kwargs}
        initializer = options.get("initializer")
        if initializer is not None:
            checks.check_callable(initializer, "initializer")
            self._init = (uuid.uuid4().hex, initializer, tuple(options.get("initargs") or ()))
        else:
            self._init = None
        return self._limit

    def submit(self, func: Any, callback: Any = None) -> Any:
        """Queues a batch of joblib calls as one task; ``callback(future)`` when it is done.

        At most ``n_jobs`` batches run at a time: the others wait here and
        start as running ones finish (joblib calls this from those
        completions too, so it never blocks).
        """
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if callback is not None:
            future.add_done_callback(callback)
        with self._lock:
            self._waiting.append((func, future))
        self._start_waiting()
        return future

    apply_async = submit  # the name joblib before 1.5 calls

    def _start_waiting(self) -> None:
        while True:
            with self._lock:
                if not self._waiting or len(self._running) >= self._limit:
                    return
                func, future = self._waiting.popleft()
                if not future.set_running_or_notify_cancel():
                    continue
                task = self._pool.submit(_Batch(func, self._init, self._threads))
                self._running[task] = future
            task.add_done_callback(self._finished)

    def _finished(self, task: Any) -> None:
        with self._lock:
            future = self._running.pop(task, None)
        if future is not None:
            if task.cancelled():
                future.set_exception(concurrent.futures.CancelledError())
            elif task.exception() is not None:
                future.set_exception(task.exception())
            else:
                future.set_result(task.result())
        self._start_waiting()

    def retrieve_result_callback(self, out: Any) -> Any:
        """The batch's results, or the exception its task raised."""
        return out.result()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Cancels the batches that have not started (the running ones finish, unseen)."""
        with self._lock:
            waiting, self._waiting = list(self._waiting), collections.deque()
            running = list(self._running)
        for _, future in waiting:
            future.cancel()
        for task in running:
            task.cancel()

    def terminate(self) -> None:
        """Forgets this call's pool (a shared executor stays up for the next call) and its batch timings."""
        self._pool = None
        self.reset_batch_stats()

    def get_nested_backend(self) -> tuple[Any, int | None]:
        """Nested ``Parallel`` calls inside a task run sequentially."""
        return SequentialBackend(nesting_level=(self.nesting_level or 0) + 1), None


_initialized: set[str] = set()  # on each process: the keys of the initializers it ran
_init_lock = threading.Lock()


class _Batch:
    """A joblib batch as it travels: unpickling it imports this module, so the name is known there too.

    (joblib code inside a task may name the ``"parallelizer"`` backend; it
    then runs its calls one after the other, see ``get_nested_backend``.)
    A ``Parallel`` call's ``initializer`` runs once on each process, before
    the first of that call's batches there.
    """

    __slots__ = ("calls", "init", "threads")

    def __init__(self, calls: Any, init: tuple[str, Any, tuple[Any, ...]] | None, threads: int) -> None:
        self.calls = calls
        self.init = init
        self.threads = threads

    def __call__(self) -> Any:
        if self.init is not None:
            key, initializer, initargs = self.init
            with _init_lock:
                if key not in _initialized:
                    initializer(*initargs)
                    _initialized.add(key)
        controller = _thread_controller()
        if controller is None:
            return self.calls()
        with controller.limit(limits=self.threads):  # BLAS/OpenMP: no more threads than the task's share of CPUs
            return self.calls()


_controller: list[Any] = []


def _thread_controller() -> Any:
    """Threadpoolctl's controller of this process's BLAS/OpenMP libraries (made once), or ``None``."""
    if not _controller:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller.append(None)
        else:
            _controller.append(ThreadpoolController())
    return _controller[0]


def register() -> None:
    """Registers the backend with joblib as ``"parallelizer"`` (importing this module does)."""
    register_parallel_backend(NAME, ParallelizerBackend)


register()
