"""Argument checks, with the standard library's wording and the argument's name.

``ValueError``/``TypeError`` name the argument that is wrong. Arguments only
root holds (the ``data`` of ``scatter`` and ``map``) can only be checked on
root: the verdict travels as a :class:`Refusal` in the collective's first
message, so every process raises the same error and the group stays in step.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Set, Sized
from typing import Any, NoReturn

from .. import semantics
from ..errors import CombineError, SerializationError

MAX_TAG = 32767
"""Largest user tag; MPI guarantees at least this many."""

SCHEDULES = ("static", "dynamic")


def check_int(value: object, name: str) -> int:
    """Returns ``value`` as an int, or raises ``TypeError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return int(value)


def check_rank(value: object, nprocs: int, name: str) -> int:
    """Checks a rank argument (``root``, ``dest``, ``source``) against the group.

    Raises:
        TypeError: ``value`` is not an int.
        ValueError: ``value`` is not in ``range(nprocs)``.
    """
    if type(value) is int and 0 <= value < nprocs:  # the common case, fast
        return value
    rank = check_int(value, name)
    if not 0 <= rank < nprocs:
        raise ValueError(f"{name} must be in range(0, {nprocs}) for a group of {nprocs}, got {rank}")
    return rank


def check_tag(value: object) -> int:
    """Checks a message tag: an int from 0 to :data:`MAX_TAG`."""
    tag = check_int(value, "tag")
    if not 0 <= tag <= MAX_TAG:
        raise ValueError(f"tag must be in range(0, {MAX_TAG + 1}), got {tag}")
    return tag


def check_callable(value: object, name: str = "func") -> None:
    """Raises ``TypeError`` naming ``name`` unless ``value`` is callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, not {type(value).__name__}")


def check_bool(value: object, name: str) -> bool:
    """Raises ``TypeError`` naming ``name`` unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__}")
    return value


def check_schedule(value: object) -> str:
    """Checks ``schedule``: ``"static"`` or ``"dynamic"``."""
    if not isinstance(value, str):
        raise TypeError(f"schedule must be a str, not {type(value).__name__}")
    if value not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {value!r}")
    return value


def check_chunksize(value: object) -> int | None:
    """Checks ``chunksize``: ``None`` or a positive int."""
    if value is None:
        return None
    size = check_int(value, "chunksize")
    if size < 1:
        raise ValueError(f"chunksize must be at least 1, got {size}")
    return size


def check_timeout(value: object, name: str = "timeout") -> float:
    """Checks a time limit: a positive number of seconds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if not seconds > 0:
        raise ValueError(f"{name} must be greater than 0 seconds, got {value!r}")
    return seconds


def check_nprocs(value: object) -> int:
    """Checks a process count: a positive int."""
    count = check_int(value, "nprocs")
    if count < 1:
        raise ValueError(f"nprocs must be greater than 0, got {count}")
    return count


def check_map_arguments(
    func: object, root: object, nprocs: int, vectorized: object, schedule: object, chunksize: object, progress: object
) -> tuple[int, int | None]:
    """Checks the arguments of ``map``.

    Returns:
        ``(root, chunksize)`` as ints (``chunksize`` may be ``None``).

    Raises:
        TypeError, ValueError: An argument is wrong; the message names it.
    """
    check_callable(func, "func")
    rank = check_rank(root, nprocs, "root")
    check_bool(vectorized, "vectorized")
    check_schedule(schedule)
    size = check_chunksize(chunksize)
    check_bool(progress, "progress")
    return rank, size


_TEXT = (str, bytes, bytearray, memoryview)


def is_splittable(data: object) -> bool:
    """True for what ``scatter``/``map`` split as it is, by slicing.

    That is a numpy array of one or more dimensions, a list, a tuple or a
    range. Other ordered sized iterables (a ``deque``, a ``UserList``, dict
    values) are accepted too, listed once by :func:`as_splittable`.
    """
    if semantics.is_ndarray(data):
        return bool(data.ndim >= 1)  # type: ignore[attr-defined]
    return isinstance(data, (list, tuple, range))


def as_splittable(data: object, name: str = "data") -> Any:
    """``data`` as ``scatter``, ``map`` and ``push(scatter=True)`` split it.

    Lists, tuples, ranges and numpy arrays (at least one dimension) come back
    as they are; any other ordered sized iterable (a ``collections.deque``, a
    ``UserList``, a custom ``Sequence`` that cannot be sliced, ``dict.values()``)
    is listed once, here, so that every way of splitting sees a list.

    Raises:
        TypeError: ``data`` is text or bytes, a 0-d array, unordered (a set
            or a mapping) or has no length (a generator); the message names
            ``name`` and says what to pass instead.

    Example:
        >>> from collections import deque
        >>> as_splittable(deque([1, 2, 3]))
        [1, 2, 3]
        >>> as_splittable(x for x in "ab")
        Traceback (most recent call last):
        ...
        TypeError: data must be a sequence (...), not generator: it has no length; pass list(data)
    """
    if is_splittable(data):
        return data
    unordered = isinstance(data, (Set, Mapping))
    refused = unordered or isinstance(data, _TEXT) or semantics.is_ndarray(data)  # a 0-d array
    if isinstance(data, Sized) and isinstance(data, Iterable) and not refused:
        return list(data)
    what, problem = type(data).__name__, ""
    if semantics.is_ndarray(data):
        what = "a 0-d numpy array"
    elif isinstance(data, Mapping):
        problem = f": say what to split; pass list({name}.items()), list({name}) or list({name}.values())"
    elif unordered:
        problem = f": it has no order to split; pass sorted({name}) or list({name})"
    elif isinstance(data, Iterable) and not isinstance(data, Sized):
        problem = f": it has no length; pass list({name})"
    raise TypeError(
        f"{name} must be a sequence (list, tuple, range, numpy array with at least one dimension, "
        f"or another ordered sized iterable such as a deque), not {what}{problem}"
    )


def check_root_data(data: object, name: str = "data") -> tuple[Any, Refusal | None]:
    """Root's check of the ``data`` of ``scatter`` or ``map``.

    Returns:
        ``(data as it is split, None)`` (see :func:`as_splittable`), or
        ``(data, refusal)``: the :class:`Refusal` to send to the others.
    """
    try:
        return as_splittable(data, name), None
    except Exception as exc:  # also a failing __iter__ of the user's object: every process raises it
        return data, Refusal(exc)


class Refusal:
    """An error that one process found and every process of a collective must raise.

    Root alone can check its ``data`` (``scatter``, ``map``) and see that a
    reduction cannot combine the values; it sends a ``Refusal`` where the
    others expect the collective's first message, so every process raises
    the same exception and the group stays in step.

    Example:
        >>> refusal = Refusal(TypeError("data must be a sequence"))
        >>> refusal.raise_it()
        Traceback (most recent call last):
        ...
        TypeError: data must be a sequence
    """

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        return (Refusal, (_portable(self.error),))

    def raise_it(self) -> NoReturn:
        """Raises the error (a fresh copy on every process that received it), as it travels: the same everywhere."""
        portable = _portable(self.error)
        if portable is self.error:
            raise portable
        raise portable from self.error


def _portable(error: Exception) -> Exception:
    """``error`` as it can travel: its own type when that is a builtin, else a ``TypeError``.

    Our own errors that a refusal carries (:class:`~parallelizer.CombineError`,
    :class:`~parallelizer.SerializationError`) travel as they are.
    """
    kind = type(error)
    if kind.__module__ == "builtins" or kind in (CombineError, SerializationError):
        return error
    return TypeError(f"{kind.__name__}: {error}")


def refused(obj: object) -> None:
    """Raises the refusal's error if ``obj`` is a :class:`Refusal` (what a collective received)."""
    if type(obj) is Refusal:
        obj.raise_it()
