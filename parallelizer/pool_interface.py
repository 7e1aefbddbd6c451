"""What libraries expect of a pool object, on the client view and the executor.

Samplers, optimizers and pool-agnostic code ask a pool for a little more
than ``map``: its ``size`` (how many processes compute: dynesty's queue, a
batch size), ``close``/``join``/``terminate`` with the meaning
``multiprocessing.Pool`` gives them, and schwimmbad's ``is_master``/
``is_worker``/``wait``. :class:`PoolInterface` provides them over a
session; :class:`ServingPool` is what the other processes of an SPMD
program get from ``par.pool()``: ``wait()`` serves main's pool until it
closes (the schwimmbad idiom)::

    pool = Parallelizer.lookup().pool()
    if not pool.is_master():
        pool.wait()      # serve rank 0 until it closes the pool
        sys.exit(0)
    sampler = emcee.EnsembleSampler(nwalkers, ndim, log_prob, pool=pool)
"""

from __future__ import annotations

import concurrent.futures
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from . import semantics
from ._pool.session import Session
from ._pool.tasks import Task

__all__ = ["ClientPool", "PoolInterface", "ServingPool"]


class PoolInterface:
    """``size``, ``close``/``join``/``terminate`` and ``is_master``/``is_worker``/``wait`` of a pool."""

    _session: Session
    _pool_closed: bool = False
    _outstanding: weakref.WeakSet[Task]

    def _computing(self) -> int:
        """How many processes run this pool's work (subclasses say)."""
        raise NotImplementedError

    def _track(self, task: Task) -> Task:
        tracked: weakref.WeakSet[Task] | None = getattr(self, "_outstanding", None)
        if tracked is None:
            tracked = weakref.WeakSet()
            self._outstanding = tracked
        tracked.add(task)
        return task

    def _check_running(self) -> None:
        if self._pool_closed:
            raise ValueError("Pool not running: close() or terminate() was called")

    @property
    def size(self) -> int:
        """The number of processes that compute this pool's work.

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> ClientServerRunner(lambda parallelizer: parallelizer.size, parallelizer="multiprocessing:3").run()
            3
        """
        return self._computing()

    @property
    def rank(self) -> int:
        """0: the pool is used from main (schwimmbad's ``pool.rank``)."""
        return 0

    def is_master(self) -> bool:
        """True: this is the process that uses the pool (schwimmbad's name)."""
        return True

    def is_worker(self) -> bool:
        """False: this process uses the pool, it does not serve it."""
        return False

    def wait(self) -> None:
        """On the process that uses the pool there is nothing to serve: returns at once.

        (A client view's ``wait`` is its ``barrier``: every server gets there.)
        """
        return None

    def batched_map(self, worker: Callable[..., Any], tasks: Iterable[Any], *args: Any, **kwargs: Any) -> Any:
        """``map`` of ``worker`` over ``size`` batches of ``tasks``, as schwimmbad's ``batched_map``.

        Batch ``i`` is ``((start, stop), tasks[start:stop])``: contiguous, in
        order, lengths differing by at most one (longer first); there are
        fewer batches when there are fewer tasks. ``args`` and ``kwargs`` go
        to ``map`` (``callback=``, for instance).

        Example:
            >>> from parallelizer import SerialNonParallelizer
            >>> pool = SerialNonParallelizer().pool()
            >>> list(pool.batched_map(lambda batch: batch[0], range(5)))
            [(0, 5)]
            >>> pool.close()
        """
        items = list(tasks)
        if not items:
            raise ValueError("batched_map needs at least one task")
        bounds = semantics.block_bounds(len(items), min(self.size, len(items)))
        batches = [((start, stop), items[start:stop]) for start, stop in bounds]
        return self.map(worker, batches, *args, **kwargs)  # type: ignore[attr-defined]

    def close(self) -> None:
        """Takes no more work (as ``multiprocessing.Pool.close``); what was submitted still runs."""
        self._pool_closed = True

    def join(self) -> None:
        """Waits until all submitted work is done; ``close`` or ``terminate`` first.

        Raises:
            ValueError: The pool is still running.
        """
        if not self._pool_closed:
            raise ValueError("Pool is still running: call close() or terminate() before join()")
        concurrent.futures.wait(list(getattr(self, "_outstanding", ())))

    def terminate(self) -> None:
        """Takes no more work and cancels what has not started."""
        self._pool_closed = True
        for task in list(getattr(self, "_outstanding", ())):
            task.cancel()

    def __bool__(self) -> bool:
        return True  # pymor decides whether to parallelize with `if pool:`


class ServingPool:
    """What ``par.pool()`` gives the processes that serve rank 0's pool (SPMD under MPI).

    Args:
        serve: Serves main's pool session until main closes it.
    """

    def __init__(self, serve: Callable[[], Any], size: int, rank: int) -> None:
        self._serve = serve
        self._served = False
        self.size = size
        self.rank = rank

    def is_master(self) -> bool:
        """False: this process serves the pool of rank 0."""
        return False

    def is_worker(self) -> bool:
        """True: this process serves the pool of rank 0."""
        return True

    def wait(self) -> None:
        """Serves rank 0's pool until it closes it (once; later calls return at once)."""
        if not self._served:
            self._served = True
            self._serve()

    def close(self) -> None:
        """Nothing to close on a serving process."""

    def join(self) -> None:
        """Nothing to wait for on a serving process."""

    def terminate(self) -> None:
        """Nothing to stop on a serving process."""

    def map(self, func: Callable[..., Any], iterable: Any, callback: Callable[[Any], Any] | None = None) -> Any:
        """A serving process cannot map: it serves rank 0's maps.

        Raises:
            RuntimeError: Always; call ``wait()`` here (see the module docstring).
        """
        raise RuntimeError("this process serves rank 0's pool: call pool.wait() here, then exit (see is_master())")

    def __enter__(self) -> ServingPool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __bool__(self) -> bool:
        return True


class ClientPool(PoolInterface):
    """What ``par.pool()`` returns inside a ``ClientServerRunner`` client: a pool over the client's session.

    Each ``pool()`` call gives a new one, so closing one (as library code
    and schwimmbad's tests do when done) leaves the client's view and later
    pools working. The calls go to the view; anything else (``nprocs``,
    ``apply``, ``push``...) is the view's too.

    Args:
        view: The client's view.
    """

    _POOL_CALLS = frozenset({"map", "starmap", "imap", "imap_unordered", "map_async", "apply", "apply_only", "push",
                             "build", "pull"})  # fmt: skip

    def __init__(self, view: Any) -> None:
        self._view = view
        self._session = view._session

    def _computing(self) -> int:
        return int(self._view.size)

    def submit(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Task:
        """``submit`` on the client's session (see :meth:`parallelizer.pools.PoolCalls.submit`)."""
        self._check_running()
        return self._track(self._view.submit(func, *args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        attribute = getattr(self._view, name)
        if name in self._POOL_CALLS:
            self._check_running()
        return attribute

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ClientPool over {self._view!r}, size={self.size}>"
