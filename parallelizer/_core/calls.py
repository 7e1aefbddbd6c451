"""The public calls' two guards: one caller at a time, and how long a call may wait.

One parallelizer serves one caller at a time: a collective or ``send``/
``recv`` made while another thread of the same process is inside one on the
same parallelizer would interleave their messages and give wrong results, so
:func:`exclusive` refuses it with a ``RuntimeError`` (the same thread may
nest calls).

Liveness (``timeout=``, ``PARALLELIZER_TIMEOUT``): backends whose waits can
time out themselves (multiprocessing: every wait is a ``poll`` with a
deadline) raise ``TimeoutError``; a backend whose waits block inside a
library (MPI) gets a :class:`Watchdog`, a thread that acts when one call has
waited too long.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from ..errors import RemoteError
from . import remote

P = ParamSpec("P")
R = TypeVar("R")


class Watchdog:
    """Acts when one call has lasted longer than ``timeout`` seconds.

    Args:
        timeout: The longest a call may take.
        expire: Called (from the watchdog's thread) with the name of the call
            that took too long; it is expected to end the process.
    """

    def __init__(self, timeout: float, expire: Callable[[str], object]) -> None:
        self.timeout = timeout
        self._expire = expire
        self._lock = threading.Condition()
        self._call: tuple[int, str, float] | None = None  # (number, what, deadline)
        self._number = 0
        self._thread: threading.Thread | None = None

    def begin(self, what: str) -> None:
        """A call starts."""
        with self._lock:
            self._number += 1
            self._call = (self._number, what, time.monotonic() + self.timeout)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="parallelizer-watchdog", daemon=True)
                self._thread.start()
            self._lock.notify()

    def end(self) -> None:
        """The call returned (or raised)."""
        with self._lock:
            self._call = None

    def _watch(self) -> None:
        with self._lock:
            while True:
                call = self._call
                if call is None:
                    self._lock.wait()
                    continue
                number, what, deadline = call
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self._lock.wait(remaining)
                    continue
                if self._call is not None and self._call[0] == number:
                    break
        self._expire(what)


class Guarded(Protocol):
    """What :func:`exclusive` needs of the object whose methods it guards."""

    _caller_lock: threading.RLock
    _caller: str | None
    _watchdog: Watchdog | None


G = TypeVar("G", bound=Guarded)


class Checked(Guarded, Protocol):
    """What :func:`enter_plain` needs: :class:`Guarded`, and whether debug checks are on."""

    _debug: bool


def enter_plain(par: Checked, name: str) -> bool:
    """Takes the one-caller lock for an outermost call with no watchdog and no debug checks.

    The most frequent case, and the only one in which a backend may run a
    call's body itself, skipping the generic layers (:func:`exclusive`'s
    wrapper, the debug checks): a collective that costs a few microseconds
    pays for every Python frame. After ``True`` the caller must call
    :func:`leave_plain`; ``False`` (nothing taken) sends it to the general
    path, which nests, watches, checks, or refuses a second thread.

    Example:
        >>> from parallelizer import SerialNonParallelizer
        >>> par = SerialNonParallelizer()
        >>> if enter_plain(par, "barrier()"):
        ...     leave_plain(par)
        ...     print("plain")
        plain
    """
    if par._caller is None and par._watchdog is None and not par._debug and par._caller_lock.acquire(False):
        par._caller = name  # (never held by this thread with no caller: it is the outermost call)
        return True
    return False


def leave_plain(par: Guarded) -> None:
    """Ends a call :func:`enter_plain` let in."""
    par._caller = None
    par._caller_lock.release()


def exclusive(method: Callable[Concatenate[G, P], R]) -> Callable[Concatenate[G, P], R]:
    """Makes ``method`` refuse a second thread while another is inside a guarded call.

    Example:
        >>> import threading
        >>> from parallelizer import SerialNonParallelizer
        >>> par = SerialNonParallelizer()
        >>> def other_thread():
        ...     try:
        ...         par.barrier()
        ...     except RuntimeError as err:
        ...         print(str(err).split(":")[0])
        >>> def func(parallelizer):
        ...     thread = threading.Thread(target=other_thread)
        ...     thread.start(); thread.join()
        ...     return parallelizer.allreduce(1)
        >>> par.map(func, [par])  # the map's function runs inside the map call
        barrier() was called while another thread is inside map() on the same parallelizer
        [1]
    """
    name = f"{method.__name__}()"

    @functools.wraps(method)
    def guarded(self: G, /, *args: P.args, **kwargs: P.kwargs) -> R:
        lock = self._caller_lock  # reentrant: the thread inside a call may nest others
        if not lock.acquire(False):
            raise RuntimeError(
                f"{name} was called while another thread is inside {self._caller or 'a call'} on the same "
                "parallelizer: one caller at a time (give each thread its own group, or make the calls from "
                "one thread)"
            )
        if self._caller is not None:  # a call made inside another (map's func calling a collective)
            try:
                return method(self, *args, **kwargs)
            finally:
                lock.release()
        self._caller = name
        watchdog = self._watchdog
        try:
            if watchdog is not None:
                watchdog.begin(name)
            return method(self, *args, **kwargs)
        except RemoteError as exc:
            # the user's call, the error, the remote traceback: not the frames it crossed
            raise remote.surface(exc) from exc.__cause__
        finally:
            if watchdog is not None:
                watchdog.end()
            self._caller = None
            lock.release()

    return guarded
