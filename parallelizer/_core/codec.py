"""How objects become bytes and buffers for every transport.

A numpy array (of a dtype without Python objects) travels as a small header
(dtype, shape, order) plus its raw memory: the data is never pickled.
Anything else is pickled with protocol 5; buffers of at least
:data:`OUT_OF_BAND_MIN` bytes inside it (numpy arrays in dicts, lists,
dataclasses) are taken out of the stream, so transports move them with
their fastest method and receivers get them without an extra copy.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from .. import semantics
from . import memory, pickling
from .limits import OUT_OF_BAND_MIN

FLAG_ARRAY = 1
"""Set in ``Encoded.flags`` when the body is an array header and the one
buffer is the array's data."""


def raw_bytes(buffer: Any) -> memoryview:
    """A flat, unsigned-byte view of any contiguous buffer (C or Fortran order)."""
    try:
        return pickle.PickleBuffer(buffer).raw()
    except ValueError:
        # numpy cannot export some dtypes (datetime64, timedelta64) as
        # buffers: their bytes are the same seen as opaque items.
        if not semantics.is_ndarray(buffer):
            raise
        import numpy

        return pickle.PickleBuffer(buffer.view(numpy.dtype((numpy.void, buffer.dtype.itemsize)))).raw()


class Encoded:
    """An object as it is sent: flags, body, and out-of-band buffers."""

    __slots__ = ("body", "buffers", "flags")

    def __init__(self, flags: int, body: bytes, buffers: list[memoryview]) -> None:
        self.flags = flags
        self.body = body
        self.buffers = buffers


def is_plain_array(obj: Any) -> bool:
    """True for a numpy array that travels as header plus raw data.

    A plain ``numpy.ndarray`` (subclasses travel as pickles, which keep their
    type) of a dtype without Python objects.
    """
    return semantics.is_exact_ndarray(obj) and not obj.dtype.hasobject


def encode(obj: Any, what: str, *, by_value: bool = True) -> Encoded:
    """Serializes ``obj`` for sending.

    Args:
        obj: Anything picklable.
        what: What ``obj`` is, for error messages.
        by_value: Ship functions and classes of ``__main__`` by value
            (cloudpickle), for receivers that do not share our ``__main__``;
            otherwise plain pickle is tried first.

    Raises:
        SerializationError: ``obj`` cannot be pickled; names ``what``.
    """
    if is_plain_array(obj):
        if not (obj.flags.c_contiguous or obj.flags.f_contiguous):
            obj = obj.copy(order="C")
        fortran = bool(obj.flags.f_contiguous and not obj.flags.c_contiguous)
        body = pickle.dumps((_dtype_token(obj.dtype), obj.shape, fortran), pickle.HIGHEST_PROTOCOL)
        return Encoded(FLAG_ARRAY, body, [raw_bytes(obj)])
    body, buffers = pickling.dumps_out_of_band(obj, what, OUT_OF_BAND_MIN, by_value=by_value)
    return Encoded(0, body, buffers)


def _dtype_token(dtype: Any) -> Any:
    """A plain dtype as its string (``'<f8'``: pickles and parses many times faster), else the dtype.

    Example:
        >>> import numpy as np
        >>> _dtype_token(np.dtype(float)), _dtype_token(np.dtype([("x", "<f8")])) == np.dtype([("x", "<f8")])
        ('<f8', True)
    """
    if dtype.fields is None and dtype.subdtype is None and dtype.metadata is None and not dtype.hasobject:
        return dtype.str
    return dtype


def array_header(body: bytes | bytearray) -> tuple[Any, tuple[int, ...], bool]:
    """``(dtype, shape, fortran)`` from the body of an array message."""
    dtype, shape, fortran = pickle.loads(body)
    if isinstance(dtype, str):
        import numpy

        dtype = numpy.dtype(dtype)
    return dtype, tuple(shape), fortran


def allocate_array(body: bytes | bytearray) -> Any:
    """The array an array message's data is received into."""
    dtype, shape, fortran = array_header(body)
    return memory.empty(shape, dtype, fortran)


def _array_over(body: bytes | bytearray, buffer: Any) -> Any:
    """The array an array message describes, over the buffer its bytes arrived in (copied if read-only)."""
    import numpy

    dtype, shape, fortran = array_header(body)
    raw = numpy.frombuffer(buffer, dtype=numpy.uint8)
    if not raw.flags.writeable:
        raw = raw.copy()
    array = raw.view(dtype) if dtype.itemsize and raw.nbytes else numpy.empty(shape, dtype)
    return array.reshape(shape, order="F" if fortran else "C")


def allocate_bytes(nbytes: int) -> Any:
    """Writable memory for an out-of-band buffer (not zero-filled)."""
    return memory.empty((nbytes,), "uint8")


def copy_buffers(encoded: Encoded) -> list[Any]:
    """Copies of an encoded object's buffers, as a receiver would hold them.

    What a process keeps of a message it sends to itself: the array itself
    for an array message, else writable bytes, so the message no longer
    depends on the sender's memory.
    """
    if encoded.flags & FLAG_ARRAY:
        array = allocate_array(encoded.body)
        raw_bytes(array)[:] = encoded.buffers[0]
        return [array]
    copies = []
    for buffer in encoded.buffers:
        copy = allocate_bytes(buffer.nbytes)
        raw_bytes(copy)[:] = buffer
        copies.append(copy)
    return copies


def decode(flags: int, body: bytes | bytearray, buffers: list[Any], what: str, source: int | None = None) -> Any:
    """The object that was encoded, from its body and received buffers.

    Raises:
        SerializationError: It cannot be unpickled here (its ``rank`` is ``source``).
    """
    if flags & FLAG_ARRAY:
        return buffers[0] if buffers and buffers[0] is not None else allocate_array(body)
    return pickling.loads(body, what, buffers=buffers, source=source)


_NO_BUFFERS: Sequence[Any] = ()
"""The buffers of a sealed object that has none (shared: one object fewer per task)."""


class Sealed:
    """An object pickled on its own, inside a message that carries other things.

    A message that holds several sealed objects can always be unpickled:
    opening each sealed object is a separate step, so one that cannot be
    unpickled here fails alone (with its own error) while the message's
    other contents arrive. Its large buffers stay out of band, so sealing
    costs no extra copy.

    Example:
        >>> import pickle
        >>> sealed = pickle.loads(pickle.dumps(Sealed.of([1, 2], "a list"), 5))
        >>> sealed.open("the list")
        [1, 2]
    """

    __slots__ = ("body", "buffers", "flags")

    def __init__(self, flags: int, body: bytes | bytearray, buffers: Sequence[Any]) -> None:
        self.flags = flags
        self.body = body
        self.buffers = buffers

    @classmethod
    def of(cls, obj: Any, what: str, *, by_value: bool = True) -> Sealed:
        """Seals ``obj`` (``by_value``: see :func:`encode`).

        Raises:
            SerializationError: ``obj`` cannot be pickled; names ``what``.
        """
        encoded = encode(obj, what, by_value=by_value)
        return cls(encoded.flags, encoded.body, encoded.buffers or _NO_BUFFERS)

    @property
    def nbytes(self) -> int:
        """The size of what travels: the pickle and its buffers."""
        if not self.buffers:
            return len(self.body)
        return len(self.body) + sum(memoryview(buffer).nbytes for buffer in self.buffers)

    def open(self, what: str, source: int | None = None) -> Any:
        """The sealed object, unpickled here.

        Raises:
            SerializationError: It cannot be unpickled here (its ``rank`` is ``source``).
        """
        if self.flags & FLAG_ARRAY:  # the array's bytes arrived as a buffer of their own
            return _array_over(self.body, self.buffers[0])
        return decode(self.flags, self.body, list(self.buffers), what, source)

    def __reduce__(self) -> tuple[Any, ...]:
        if not self.buffers:
            return (Sealed, (self.flags, self.body, _NO_BUFFERS))
        return (Sealed, (self.flags, self.body, [pickle.PickleBuffer(buffer) for buffer in self.buffers]))
