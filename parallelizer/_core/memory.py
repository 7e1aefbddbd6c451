"""Warm memory for the large arrays a process receives.

Writing to freshly allocated memory costs a page fault and the kernel's
zero-filling per page: on the machines we measured, a fresh 256 MiB array
takes ~1.6x as long to fill as one whose pages are already mapped. Programs
that scatter and gather in a loop receive arrays of the same sizes again and
again, so the arrays the transport allocates for messages of ``POOL_MIN``
bytes and up come from a small pool of anonymous mappings: when the user drops such an
array, its mapping becomes free (nothing else references it) and the next
array of a similar size reuses its pages.

At most ``POOL_KEEP_CHUNKS`` free mappings and ``POOL_KEEP_BYTES`` of free memory
are kept (:mod:`.limits`); :func:`release` drops them all (when a group stops).
"""

from __future__ import annotations

import contextlib
import math
import mmap
import sys
import threading
from typing import Any, Literal

from .limits import POOL_KEEP_BYTES, POOL_KEEP_CHUNKS, POOL_MIN

_HUGE = 2 << 20  # huge-page size: larger chunks are rounded up to it

_lock = threading.Lock()
_chunks: list[mmap.mmap] = []


def _is_free(chunk: mmap.mmap) -> bool:
    """True when nothing but the pool holds ``chunk`` (called from a loop over a list)."""
    return sys.getrefcount(chunk) <= _FREE_REFS


def _calibrate() -> int:
    # The references of a chunk nobody else holds, seen exactly as _take and
    # _trim see it: the list, the loop variable, this argument, getrefcount's.
    probe = [mmap.mmap(-1, mmap.PAGESIZE)]
    for chunk in probe:
        return sys.getrefcount(chunk)
    raise AssertionError("unreachable")


_FREE_REFS = _calibrate() + 1  # + _is_free's own parameter


def _take(nbytes: int) -> mmap.mmap:
    with _lock:
        best = None
        for chunk in _chunks:
            if nbytes <= len(chunk) <= 2 * nbytes and _is_free(chunk) and (best is None or len(chunk) < len(best)):
                best = chunk
        if best is not None:
            return best
        _trim()
        align = _HUGE if nbytes >= _HUGE else mmap.PAGESIZE
        size = -(-nbytes // align) * align
        chunk = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            with contextlib.suppress(OSError):
                chunk.madvise(mmap.MADV_HUGEPAGE)
        _chunks.append(chunk)
        return chunk


def _trim() -> None:
    """Forgets free chunks beyond the limits, oldest first (caller holds the lock)."""
    free = [chunk for chunk in _chunks if _is_free(chunk)]
    total = sum(len(chunk) for chunk in free)
    while free and (len(free) > POOL_KEEP_CHUNKS - 1 or total > POOL_KEEP_BYTES):
        chunk = free.pop(0)
        total -= len(chunk)
        _chunks.remove(chunk)


def empty(shape: Any, dtype: Any, fortran: bool = False) -> Any:
    """Like ``numpy.empty``, with large arrays placed in warm memory."""
    import numpy

    if not isinstance(dtype, numpy.dtype):
        dtype = numpy.dtype(dtype)
    if type(shape) is not tuple:
        shape = tuple(shape)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    order: Literal["C", "F"] = "F" if fortran else "C"
    if nbytes < POOL_MIN:
        return numpy.empty(shape, dtype, order)
    flat = numpy.frombuffer(_take(nbytes), dtype=dtype, count=count)
    return flat.reshape(shape, order=order)


def release() -> None:
    """Drops every free chunk (their memory goes back to the system)."""
    with _lock:
        _chunks[:] = [chunk for chunk in _chunks if not _is_free(chunk)]


def pooled_bytes() -> tuple[int, int]:
    """``(bytes in use, bytes free)`` held by the pool."""
    with _lock:
        free = sum(len(chunk) for chunk in _chunks if _is_free(chunk))
        return sum(len(chunk) for chunk in _chunks) - free, free
