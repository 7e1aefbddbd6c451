"""Serialization of everything that travels between processes.

Pickle protocol 5, through cloudpickle: lambdas, closures, and functions or
classes defined in ``__main__`` or a notebook cell go by value; everything
importable goes by reference, as with plain pickle. Plain pickle is tried
first, with a guard that refuses (rather than pickles by reference) anything
cloudpickle would ship by value; it is three times faster for the typical
task, a function of some module and a few arguments. Large contiguous buffers
(numpy arrays, also inside dicts, lists and dataclasses) can be taken out of
the stream with ``buffer_callback`` and moved separately, without copies.

Code that travels by value keeps its file name (cloudpickle would call it
``<dynamic-code>``), so a remote traceback says ``File "job.py", line 6, in
job`` and shows the line: the receiver reads it from the file, or, for code
with no file on disk (a notebook cell, ``python -c``), from the lines the
sender had in :mod:`linecache`, which travel with the code.

cloudpickle is imported on first use, not when parallelizer is imported.
"""

from __future__ import annotations

import io
import linecache
import os
import pickle
import sys
import threading
import types
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from ..errors import SerializationError

PROTOCOL = 5


class PassThrough(Exception):
    """Raised on purpose while an object is pickled; reaches the caller unchanged.

    A subclass (say, a handle that may not travel) raises it from its
    ``__reduce__``; :func:`dumps_out_of_band` re-raises it instead of
    wrapping it in a :class:`SerializationError`.
    """


_dumps: Callable[..., bytes] | None = None


def _cloudpickle_dumps() -> Callable[..., bytes]:
    global _dumps
    if _dumps is None:
        import copyreg
        import io

        import cloudpickle

        class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
            # A plain dict: the C pickler looks a dict up directly, where
            # cloudpickle's ChainMap costs a Python call per pickled object
            # (a third of main's time in a scikit-learn grid search).
            dispatch_table: ClassVar[dict[Any, Any]] = {}

        seen = [-1]  # the size of copyreg's table when the dict was made

        def dumps(obj: Any, protocol: int, buffer_callback: Callable[..., Any] | None = None) -> bytes:
            if len(copyreg.dispatch_table) != seen[0]:  # a library registered a reducer since
                seen[0] = len(copyreg.dispatch_table)
                table = {**cloudpickle.Pickler.dispatch_table, memoryview: _reduce_memoryview}
                if types.CodeType in table:
                    table[types.CodeType] = _code_reducer(table[types.CodeType])
                Pickler.dispatch_table = table
            with io.BytesIO() as file:
                Pickler(file, protocol=protocol, buffer_callback=buffer_callback).dump(obj)
                return file.getvalue()

        _dumps = dumps
    return _dumps


def _reduce_memoryview(view: memoryview) -> tuple[Any, ...]:
    """Pickles a memoryview as a memoryview of the receiver's own copy (read-only stays read-only)."""
    data = pickle.PickleBuffer(view) if view.contiguous else view.tobytes()
    return (_rebuild_memoryview, (data, view.readonly, view.format, view.shape))


def _rebuild_memoryview(data: Any, readonly: bool, format: str, shape: tuple[int, ...]) -> memoryview:
    raw = memoryview(data).cast("B")
    copy = memoryview(bytes(raw) if readonly else bytearray(raw))
    return copy.cast(format, shape) if format != "B" or len(shape) != 1 else copy  # type: ignore[call-overload]


_DYNAMIC = "<dynamic-code>"  # the file name cloudpickle gives code it ships by value
_on_disk: dict[str, bool] = {}  # file name -> whether it is a file here (asked once)


def _code_reducer(reduce_code: Callable[[types.CodeType], Any]) -> Callable[[types.CodeType], Any]:
    """Wraps cloudpickle's reducer of code objects so that the code keeps its file name (and lines)."""

    def reduce(code: types.CodeType) -> Any:
        rebuild, args = reduce_code(code)
        args = tuple(code.co_filename if isinstance(arg, str) and arg == _DYNAMIC else arg for arg in args)
        lines = _lines_without_file(code)
        if lines is None:
            return rebuild, args
        return _rebuild_code, (rebuild, args, code.co_filename, lines)

    return reduce


def _lines_without_file(code: types.CodeType) -> dict[int, str] | None:
    """The source lines of ``code`` (number -> text) when its file is not on disk but in :mod:`linecache`.

    Only the lines ``code`` spans travel (a notebook cell's function, not the
    whole cell history).
    """
    name = code.co_filename
    on_disk = _on_disk.get(name)
    if on_disk is None:
        on_disk = _on_disk[name] = os.path.isfile(name)
    if on_disk or name not in linecache.cache:
        return None
    numbers = [line for _, _, line in code.co_lines() if line is not None]
    if not numbers:
        return None
    text = linecache.getlines(name)  # also a lazy entry's lines
    first, last = min(code.co_firstlineno, *numbers), max(numbers)
    return {number: text[number - 1] for number in range(first, min(last, len(text)) + 1)}


def _rebuild_code(
    rebuild: Callable[..., types.CodeType], args: tuple[Any, ...], name: str, lines: dict[int, str]
) -> Any:
    """Builds a code object on the receiver and lets :mod:`linecache` show its lines."""
    code = rebuild(*args)
    entry = linecache.cache.get(name)
    known: list[str] = []
    if entry is not None and len(entry) == 4:
        if entry[1] is not None:  # a file read here: it knows its lines
            return code
        known = list(entry[2])
    known.extend([""] * (max(lines) - len(known)))
    for number, text in lines.items():
        known[number - 1] = text
    linecache.cache[name] = (sum(map(len, known)), None, known, name)
    return code


def _describe(obj: object) -> str:
    try:
        text = repr(obj)
    except Exception as exc:  # the error being reported matters more than this one
        text = f"(whose repr raised {type(exc).__name__})"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(obj).__name__} {text}"


class _NeedsValue(Exception):
    """Raised by :class:`_ByReference`: something in the object must go by value."""


class _ByReference(pickle.Pickler):
    """Plain pickle, refusing what cloudpickle would ship by value instead of pickling it by reference.

    That is every function and class of ``__main__`` (or of no module),
    lambdas and local functions and classes; plain pickle would name them by
    reference, which a process with another ``__main__`` cannot resolve.
    (An object of such a class is refused too: pickling it pickles its class.)
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (types.FunctionType, type)):
            module = getattr(obj, "__module__", None)
            if module is None or module == "__main__" or "<" in getattr(obj, "__qualname__", "<"):
                raise _NeedsValue
        return NotImplemented


class _Reused(threading.local):
    """This thread's :class:`_ByReference` and its file, kept between calls (one object fewer to make each time)."""

    def __init__(self) -> None:
        self.file = io.BytesIO()
        self.pickler = _ByReference(self.file, PROTOCOL, buffer_callback=self._take)
        self.callback: Callable[..., Any] | None = None
        self.busy = False

    def _take(self, buffer: pickle.PickleBuffer) -> bool:
        return True if self.callback is None else bool(self.callback(buffer))


_reused = _Reused()


def _guarded_dumps(obj: Any, buffer_callback: Callable[..., Any] | None) -> bytes:
    """Pickles ``obj`` with plain pickle, or raises :class:`_NeedsValue` (or another error)."""
    cloudpickle = sys.modules.get("cloudpickle")
    if cloudpickle is not None and cloudpickle.list_registry_pickle_by_value():
        raise _NeedsValue  # modules registered to go by value: cloudpickle knows which
    state = _reused
    if state.busy:  # pickling inside pickling (an object's __reduce__ seals another)
        file = io.BytesIO()
        _ByReference(file, PROTOCOL, buffer_callback=buffer_callback).dump(obj)
        return file.getvalue()
    state.busy = True
    file = state.file
    try:
        state.callback = buffer_callback
        state.pickler.dump(obj)
        return file.getvalue()
    finally:
        state.callback = None
        state.pickler.clear_memo()
        file.seek(0)
        file.truncate()
        state.busy = False


def dumps(obj: Any, what: str) -> bytes:
    """Pickles ``obj`` (protocol 5, cloudpickle), everything in the stream.

    Raises:
        SerializationError: ``obj`` cannot be pickled; says what failed.
    """
    return dumps_out_of_band(obj, what, None)[0]


def dumps_out_of_band(
    obj: Any, what: str, min_size: int | None, *, by_value: bool = True
) -> tuple[bytes, list[memoryview]]:
    """Pickles ``obj`` with protocol 5, taking large buffers out of the stream.

    Args:
        obj: The object.
        what: What ``obj`` is, for the error message (``"the object sent to rank 2"``).
        min_size: Contiguous buffers of at least this many bytes (numpy
            arrays inside ``obj``) are returned separately; ``None`` keeps
            everything in the stream.
        by_value: Ship functions and classes of ``__main__`` by value, for
            processes that do not share our ``__main__`` (cloudpickle, unless
            the object has none: then plain pickle, which is faster).
            Otherwise plain pickle is tried first and cloudpickle only for
            what it cannot pickle (lambdas, closures).

    Returns:
        The pickle stream and the buffers taken out of it, in order.

    Raises:
        SerializationError: ``obj`` cannot be pickled; says what failed.
    """
    if type(obj) in _PLAIN:
        return pickle.dumps(obj, PROTOCOL), []
    buffers: list[memoryview] = []
    try:
        if by_value:
            return _guarded_dumps(obj, collector(buffers, min_size)), buffers
        return pickle.dumps(obj, PROTOCOL, buffer_callback=collector(buffers, min_size)), buffers
    except PassThrough:
        raise
    except Exception:  # _NeedsValue, or what plain pickle cannot do (cloudpickle may)
        pass
    buffers = []
    try:
        body = _cloudpickle_dumps()(obj, protocol=PROTOCOL, buffer_callback=collector(buffers, min_size))
    except PassThrough:
        raise
    except Exception as exc:
        raise SerializationError(f"cannot pickle {what} ({_describe(obj)}): {type(exc).__name__}: {exc}") from exc
    return body, buffers


def collector(buffers: list[memoryview], min_size: int | None) -> Callable[[pickle.PickleBuffer], bool] | None:
    """The ``buffer_callback`` that moves buffers of ``min_size`` bytes or more out of band.

    Args:
        buffers: Where the buffers taken out of the stream are appended, in order.
        min_size: The smallest buffer taken out; ``None``: none (no callback).

    Example:
        >>> import pickle
        >>> taken = []
        >>> body = pickle.dumps(pickle.PickleBuffer(bytearray(100)), 5, buffer_callback=collector(taken, 64))
        >>> [buffer.nbytes for buffer in taken]
        [100]
    """
    if min_size is None:
        return None

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: keep it in the stream
            return True
        if raw.nbytes < min_size:
            return True
        buffers.append(raw)
        return False

    return out_of_band


def loads(
    data: bytes | bytearray | memoryview, what: str, buffers: Iterable[Any] | None = None, source: int | None = None
) -> Any:
    """Unpickles ``data`` (with its out-of-band ``buffers``).

    Args:
        data: The pickle stream.
        what: What it is, for the error message.
        buffers: Its out-of-band buffers.
        source: The rank that sent it, if it came from another process.

    Raises:
        SerializationError: The stream cannot be unpickled here (e.g. it
            names a module this process cannot import); says what failed,
            and its ``rank`` is ``source``.
    """
    try:
        return pickle.loads(data, buffers=buffers)
    except Exception as exc:
        raise SerializationError(f"cannot unpickle {what}: {type(exc).__name__}: {exc}", source) from exc


# Types whose pickles never need cloudpickle (and are the most frequent small
# messages): plain pickle is faster for them.
_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes})
