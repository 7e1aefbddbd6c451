"""Tasks: the one primitive every pool call is built on.

A :class:`Task` is what ``submit`` returns: a ``concurrent.futures.Future``
with the ``AsyncResult`` methods of ``multiprocessing.pool`` and
``metadata`` in the style of IPython parallel. A :class:`Record` is main's
bookkeeping of one task until its outcome arrives: the sealed call, where it
may run, and what to do with the outcome.
"""

from __future__ import annotations

import _thread
import collections
import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any

from .._core.codec import Sealed

LocalCall = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | Callable[[], Any]
"""How main runs a task itself: the call (no new objects per task), or a function of no arguments."""


def call_locally(local: LocalCall) -> Any:
    """Runs a :data:`LocalCall`."""
    if type(local) is tuple:
        func, args, kwargs = local
        return func(*args, **kwargs)
    return local()  # type: ignore[operator]


WAIT_STEP = 0.05
"""While main waits for a task, how often it wakes (to run work of its own or update a bar)."""


class _Condition(threading.Condition):
    """A ``threading.Condition`` over its own ``RLock``, without the five bound methods it stores.

    The standard one keeps the lock's ``acquire``, ``release`` and three
    more bound methods as attributes: seven objects the garbage collector
    tracks for each future, where this keeps two. With 10,000 tasks
    outstanding, collections took a fifth of main's time.
    """

    def __init__(self) -> None:
        self._lock = _thread.RLock()
        self._waiters: collections.deque[Any] = collections.deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def _release_save(self) -> Any:
        return self._lock._release_save()  # type: ignore[attr-defined]

    def _acquire_restore(self, state: Any) -> None:
        self._lock._acquire_restore(state)  # type: ignore[attr-defined]

    def _is_owned(self) -> bool:
        return self._lock._is_owned()  # type: ignore[attr-defined,no-any-return]


_FUTURE_STATE = {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"}
_LIGHT = set(vars(concurrent.futures.Future())) == _FUTURE_STATE and hasattr(_thread.RLock(), "_release_save")
"""Whether ``Future.__init__`` sets exactly the state :class:`Task` sets itself (true of CPython 3.8 to 3.13)."""


class Task(concurrent.futures.Future):  # type: ignore[type-arg]
    r"""The outcome of a submitted call: a ``concurrent.futures.Future`` and an ``AsyncResult``.

    ``concurrent.futures.wait``/``as_completed``, ``add_done_callback`` and
    ``cancel`` (while the task is still queued) work as for any future;
    ``get``/``wait``/``ready``/``successful`` as for
    ``multiprocessing.pool.AsyncResult``.

    Attributes:
        metadata: ``rank`` and ``host`` of the process that ran it;
            ``submitted``, ``started``, ``completed`` (UNIX times); ``stdout``
            and ``stderr``, what it printed.

    Example:
        >>> from parallelizer import ClientServerRunner
        >>> def client(parallelizer=None):
        ...     task = parallelizer.submit(print, "hello from a task")
        ...     task.get(timeout=60)
        ...     return task.successful(), task.metadata["stdout"]
        >>> ClientServerRunner(client, parallelizer="multiprocessing:2").run()
        hello from a task
        (True, 'hello from a task\\n')
    """

    def __init__(self) -> None:
        if _LIGHT:  # Future.__init__, with a lighter condition
            self._condition = _Condition()
            self._state = "PENDING"
            self._result = None
            self._exception = None
            self._waiters = []
            self._done_callbacks: list[Any] = []
        else:
            super().__init__()
        self.metadata: dict[str, Any] = {
            "rank": None,
            "host": None,
            "submitted": time.time(),
            "started": None,
            "completed": None,
            "stdout": "",
            "stderr": "",
        }

    def get(self, timeout: float | None = None) -> Any:
        """The result, as ``multiprocessing.pool.AsyncResult.get``: waits, and raises what the task raised.

        Raises:
            TimeoutError: Not done within ``timeout`` seconds.
        """
        return self.result(timeout)

    def wait(self, timeout: float | None = None) -> None:
        """Waits until the task is done or ``timeout`` seconds pass (never raises)."""
        concurrent.futures.wait([self], timeout)

    def ready(self) -> bool:
        """True when the task is done (finished, failed or cancelled)."""
        return self.done()

    def successful(self) -> bool:
        """True when the task returned without raising.

        Raises:
            ValueError: The task is not done yet.
        """
        if not self.done():
            raise ValueError(f"{self!r} is not ready")
        return not self.cancelled() and self.exception() is None


class Record:
    """Main's bookkeeping of one task: the sealed call, where it may run, its outcome's destination.

    Args:
        number: The task's number in its session.
        payload: ``(func, args, kwargs)``, sealed.
        local: Runs the call here, on main (the original objects, or the
            payload opened here when it names remote objects).
        pinned: The rank it must run on, or ``None`` (any serving process).
        task: The future its outcome goes to.
        job: The queue it waits in while unassigned (main may run a blocking
            call's tasks itself).
    """

    __slots__ = ("job", "local", "number", "payload", "pinned", "rank", "size", "task")

    def __init__(
        self,
        number: int,
        payload: Sealed,
        local: LocalCall,
        pinned: int | None,
        task: Task,
        job: object = None,
    ) -> None:
        self.number = number
        self.payload = payload
        self.local = local
        self.pinned = pinned
        self.task = task
        self.job = job
        self.rank: int | None = None  # where it runs
        self.size = 1  # items it covers (a map's chunk), for progress bars
