"""Objects every process of a session keeps: the stores, and the handles that name them.

``push`` and ``build`` give a :class:`RemoteObject`; each process keeps its
own copy in its :class:`Store` (one per session and process). A handle
pickles as ``(session, number)`` and unpickles, on whichever process runs
the call, as *that process's* copy: so a handle anywhere in a call's
arguments (nested in containers, in a closure, in a ``functools.partial``)
becomes the local object, which a function may change in place.

Handles only pickle while their session seals a call (:func:`seal`):
using a removed handle, one from another session, or pickling one by hand
raises ``ValueError``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .._core.codec import Sealed
from .._core.pickling import PassThrough

_lock = threading.Lock()
_stores: dict[str, Store] = {}  # session -> this process's store
_sealing = threading.local()  # .session: the session sealing a call in this thread; .used: handles seen


class Store:
    """This process's copies of a session's objects, by handle number."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.objects: dict[int, Any] = {}

    def __enter__(self) -> Store:
        with _lock:
            _stores[self.session] = self
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _stores.pop(self.session, None)
        self.objects.clear()

    def get(self, handle: int) -> Any:
        """The object kept as ``handle``.

        Raises:
            ValueError: Nothing is kept as ``handle`` (removed, or never pushed here).
        """
        try:
            return self.objects[handle]
        except KeyError:
            raise ValueError(f"remote object #{handle} is not held by this process (removed?)") from None


class HandleError(PassThrough, ValueError):
    """A handle that cannot travel: removed, of another session, or outside any call."""


def _resolve(session: str, handle: int) -> Any:
    """What a handle unpickles as: this process's copy."""
    with _lock:
        store = _stores.get(session)
    if store is None:
        raise ValueError(f"remote object #{handle} belongs to a session that is not running here")
    return store.get(handle)


def seal(session: str, obj: Any, what: str) -> tuple[Sealed, bool]:
    """Seals ``obj``, letting the handles of ``session`` pickle; also says whether any did.

    Raises:
        SerializationError: ``obj`` cannot be pickled; names ``what``.
        HandleError: It holds a handle that cannot travel.
    """
    used: list[int] = []
    previous = getattr(_sealing, "state", None)
    _sealing.state = (session, used)
    try:
        return Sealed.of(obj, what), bool(used)
    finally:
        _sealing.state = previous


class RemoteObject:
    """A handle to an object that every process of a session keeps.

    Made by ``push`` and ``build``; pass it in the arguments of ``apply``,
    ``apply_only``, ``submit`` or ``map`` (anywhere: nested, in a closure) and
    each process finds its own copy there. ``remove()`` frees every copy;
    ``with view.push(obj) as handle:`` removes it on leaving the block.

    Example:
        >>> from parallelizer import ClientServerRunner
        >>> def client(parallelizer=None):
        ...     with parallelizer.push({"calls": 0}) as state:
        ...         def count(state, x):
        ...             state["calls"] += 1  # each process changes its own copy
        ...             return x * x
        ...         squares = parallelizer.map(lambda x: count(state, x), range(6))
        ...         return squares, sum(copy["calls"] for copy in parallelizer.pull(state))
        >>> ClientServerRunner(client, parallelizer="multiprocessing:2").run()
        ([0, 1, 4, 9, 16, 25], 6)
    """

    __slots__ = ("__weakref__", "_on_remove", "_removed", "handle", "scatter", "session")

    def __init__(self, session: str, handle: int, scatter: bool, on_remove: Callable[[RemoteObject], None]) -> None:
        self.session = session
        self.handle = handle
        self.scatter = scatter
        self._removed = False
        self._on_remove = on_remove

    @property
    def removed(self) -> bool:
        """True once :meth:`remove` was called or the session ended."""
        return self._removed

    def remove(self) -> None:
        """Frees every process's copy (again: nothing happens).

        Example:
            >>> from parallelizer import ClientServerRunner
            >>> def client(parallelizer=None):
            ...     handle = parallelizer.push([1, 2, 3])
            ...     handle.remove()
            ...     try:
            ...         parallelizer.apply(len, handle)
            ...     except ValueError as err:
            ...         return str(err)
            >>> ClientServerRunner(client, parallelizer="serial").run()
            'remote object #1 was removed'
        """
        if not self._removed:
            self._removed = True
            self._on_remove(self)

    def _end(self) -> None:
        """The session ended: the handle is dead (nothing to free)."""
        self._removed = True

    def __enter__(self) -> RemoteObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = " removed" if self._removed else ""
        return f"<RemoteObject #{self.handle}{' scattered' if self.scatter else ''}{state}>"

    def __reduce__(self) -> tuple[Any, ...]:
        state = getattr(_sealing, "state", None)
        if self._removed:
            raise HandleError(f"remote object #{self.handle} was removed")
        if state is None:
            raise HandleError(
                f"remote object #{self.handle} can only be passed to the calls of its session "
                "(apply, apply_only, submit, map, ...), not pickled by hand"
            )
        session, used = state
        if session != self.session:
            raise HandleError(f"remote object #{self.handle} belongs to another session")
        used.append(self.handle)
        return (_resolve, (self.session, self.handle))
