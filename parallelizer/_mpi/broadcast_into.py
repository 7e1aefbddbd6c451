"""``broadcast(out=)`` of a plain array under MPI: straight into every rank's ``out``.

The path for arrays the slots of :mod:`slots` cannot describe (structured
dtypes, 0-d arrays): the others are checked and received after one slot
exchange (:meth:`Collectives.bcast_into <parallelizer._mpi.collectives.Collectives.bcast_into>`).

A broadcast's receivers learn the array's dtype and shape only from root, so
they cannot check their ``out`` before a first message. Instead every rank
describes what it has in six integers and one ``Allreduce(MAX)`` combines
them:

====  ===========================================================
0     1 where something rules the direct path out: root's object is
      not a plain array, or an ``out`` is not a writable C-contiguous
      array (root checks its own ``out`` fully)
1, 2  a 62-bit fingerprint of dtype and shape, and its negation:
      all equal exactly when max(key) == -max(-key)
3, 4  the byte count, and its negation, likewise
5     1 where a receiver passed ``out=None`` (it would need the
      shape and dtype, which this path never sends)
====  ===========================================================

If every ``out`` matches root's array, one ``Bcast`` moves the data into
them: no header, no new array, no copy. Otherwise :func:`try_direct`
returns ``None`` having moved nothing, and the broadcast runs the usual way;
the generic rule of :mod:`parallelizer._core.outbuf` then raises with the
exact reason on every rank (or copies, where the result is fine but the
direct path did not apply).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .. import semantics
from .._core import codec, outbuf
from .messages import bcast_bytes, c_bytes, writable
from .runtime import load as _mpi

NEUTRAL = -(2**63)
"""What a rank with nothing to say contributes to a maximum."""

REFUSE, KEY, MINUS_KEY, NBYTES, MINUS_NBYTES, NEEDS_META = range(6)


def fingerprint(dtype: Any, shape: tuple[int, ...]) -> int:
    """A non-negative 62-bit number naming a dtype and shape, the same in every process.

    Example:
        >>> import numpy as np
        >>> fingerprint(np.dtype("<f8"), (3,)) == fingerprint(np.dtype("float64"), (3,))
        True
        >>> fingerprint(np.dtype("<f8"), (3,)) == fingerprint(np.dtype(">f8"), (3,))
        False
    """
    text = (dtype.str if dtype.fields is None else str(dtype.descr)) + repr(tuple(shape))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 2


def _describe(into: Any, dtype: Any, shape: tuple[int, ...], nbytes: int) -> None:
    key = fingerprint(dtype, shape)
    into[KEY], into[MINUS_KEY], into[NBYTES], into[MINUS_NBYTES] = key, -key, nbytes, -nbytes


def _fit_for_raw(out: Any) -> bool:
    return outbuf.unfit(out, out.shape, out.dtype) is None if codec.is_plain_array(out) else False


def try_direct(comm: Any, buffer: Any, obj: Any, root: int, out: Any) -> outbuf.Written | None:
    """Root's plain array received into every rank's ``out``, or ``None`` (nothing moved).

    Args:
        comm: The communicator.
        buffer: A reusable int64 numpy array of six elements.
        obj: Root's object (ignored elsewhere).
        root: The broadcasting rank.
        out: This rank's ``out`` (``None`` allowed on root).
    """
    import numpy

    MPI = _mpi()
    buffer[:] = NEUTRAL
    buffer[REFUSE] = buffer[NEEDS_META] = 0
    if comm.Get_rank() == root:
        if not codec.is_plain_array(obj) or obj.dtype.hasobject:
            buffer[REFUSE] = 1
        else:
            _describe(buffer, obj.dtype, obj.shape, obj.nbytes)
            if out is not None and outbuf.unfit(out, obj.shape, obj.dtype) is not None:
                buffer[REFUSE] = 1
    elif out is None:
        buffer[NEEDS_META] = 1
    elif not _fit_for_raw(out) or out.dtype.hasobject:
        buffer[REFUSE] = 1
    else:
        _describe(buffer, out.dtype, out.shape, out.nbytes)
    comm.Allreduce(MPI.IN_PLACE, [buffer, MPI.INT64_T], MPI.MAX)
    if (
        buffer[REFUSE]
        or buffer[NEEDS_META]
        or buffer[KEY] != -buffer[MINUS_KEY]
        or buffer[NBYTES] != -buffer[MINUS_NBYTES]
    ):
        return None
    if comm.Get_rank() != root:
        bcast_bytes(comm, codec.raw_bytes(out), root)
        return outbuf.Written(out)
    bcast_bytes(comm, writable(c_bytes(obj)), root)
    if out is None:
        return outbuf.Written(semantics.own(obj))
    numpy.copyto(out, obj, casting="no")
    return outbuf.Written(out)
