"""Tasks: the one primitive every pool call is built on.

A :class:`Task` is what ``submit`` returns: a ``concurrent.futures.Future``
with the ``AsyncResult`` methods of ``multiprocessing.pool`` and
``metadata`` in the style of IPython parallel. A :class:`Record` is main's
bookkeeping of one task until its outcome arrives: the sealed call, where it
may run, and what to do with the outcome.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

from .._core.codec import Sealed

WAIT_STEP = 0.05
"""While main waits for a task, how often it wakes (to run work of its own or update a bar)."""


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
        local: Callable[[], Any],
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
