"""Argument checks, with the standard library's wording and the argument's name.

``ValueError``/``TypeError`` name the argument that is wrong. Arguments only
root holds (the ``data`` of ``scatter`` and ``map``) can only be checked on
root: the verdict travels as a :class:`Refusal` in the collective's first
message, so every process raises the same error and the group stays in step.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from .. import semantics

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


def is_splittable(data: object) -> bool:
    """True for what ``scatter``/``map`` accept.

    That is a numpy array of one or more dimensions, or a sequence that is
    not text or bytes.
    """
    if semantics.is_ndarray(data):
        return bool(data.ndim >= 1)  # type: ignore[attr-defined]
    return isinstance(data, Sequence) and not isinstance(data, (str, bytes, bytearray, memoryview))


def check_root_data(data: object, name: str = "data") -> Refusal | None:
    """Root's check of the ``data`` of ``scatter`` or ``map``, as a :class:`Refusal` to send, or ``None``."""
    try:
        check_sequence(data, name)
    except TypeError as exc:
        return Refusal(exc)
    return None


def check_sequence(data: object, name: str = "data") -> None:
    """Raises ``TypeError`` naming ``name`` unless ``data`` can be split."""
    if not is_splittable(data):
        what = "a 0-d numpy array" if semantics.is_ndarray(data) else type(data).__name__
        raise TypeError(
            f"{name} must be a sequence (list, tuple, range or numpy array with at least one dimension), not {what}"
        )


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

    def raise_it(self) -> None:
        """Raises the error (a fresh copy on every process that received it)."""
        raise self.error


def _portable(error: Exception) -> Exception:
    """``error`` as it can travel: its own type when that is a builtin, else a ``TypeError``."""
    kind = type(error)
    if kind.__module__ == "builtins":
        return error
    return TypeError(f"{kind.__name__}: {error}")


def refused(obj: object) -> None:
    """Raises the refusal's error if ``obj`` is a :class:`Refusal` (what a collective received)."""
    if type(obj) is Refusal:
        obj.raise_it()
