"""Serialization of everything that travels between processes.

Pickle protocol 5, through cloudpickle: lambdas, closures, and functions or
classes defined in ``__main__`` or a notebook cell go by value; everything
importable goes by reference, as with plain pickle. Large contiguous buffers
(numpy arrays, also inside dicts, lists and dataclasses) can be taken out of
the stream with ``buffer_callback`` and moved separately, without copies.

cloudpickle is imported on first use, not when parallelizer is imported.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from typing import Any

from .errors import SerializationError

PROTOCOL = 5

_dumps: Callable[..., bytes] | None = None


def _cloudpickle_dumps() -> Callable[..., bytes]:
    global _dumps
    if _dumps is None:
        import cloudpickle

        _dumps = cloudpickle.dumps
    return _dumps


def _describe(obj: object) -> str:
    text = repr(obj)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(obj).__name__} {text}"


def dumps(obj: Any, what: str, buffer_callback: Callable[[pickle.PickleBuffer], Any] | None = None) -> bytes:
    """Pickles ``obj`` with protocol 5.

    Args:
        obj: The object.
        what: What ``obj`` is, for the error message (``"the object sent to rank 2"``).
        buffer_callback: Receives large buffers to be moved out of band;
            ``None`` keeps everything in the stream.

    Raises:
        SerializationError: ``obj`` cannot be pickled; says what failed.
    """
    if type(obj) in _PLAIN:
        return pickle.dumps(obj, PROTOCOL)
    try:
        return _cloudpickle_dumps()(obj, protocol=PROTOCOL, buffer_callback=buffer_callback)
    except Exception as exc:
        raise SerializationError(f"cannot pickle {what} ({_describe(obj)}): {type(exc).__name__}: {exc}") from exc


def loads(data: bytes | bytearray | memoryview, what: str, buffers: Iterable[Any] | None = None) -> Any:
    """Unpickles ``data`` (with its out-of-band ``buffers``).

    Raises:
        SerializationError: The stream cannot be unpickled here (e.g. it
            names a module this process cannot import); says what failed.
    """
    try:
        return pickle.loads(data, buffers=buffers)
    except Exception as exc:
        raise SerializationError(f"cannot unpickle {what}: {type(exc).__name__}: {exc}") from exc


# Types whose pickles never need cloudpickle (and are the most frequent small
# messages): plain pickle is faster for them.
_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes})
