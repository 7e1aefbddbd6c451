"""What the collectives mean, written once for every backend.

Backends move bytes and arrays; this module decides everything else, so that
the serial, multiprocessing and MPI backends cannot disagree:

* how a sequence is split into per-process blocks (:func:`block_bounds`,
  :func:`take_block`: the split of ``numpy.array_split``);
* how gathered pieces are joined (:func:`concat_plan`, :func:`join_gathered`);
* how reductions combine (:func:`resolve_op`, :func:`fold`);
* how ``map`` results are joined (:func:`join_map_results`) and how dynamic
  schedules cut work into chunks (:func:`dynamic_chunks`);
* how arguments are checked (``check_*``), with messages naming the argument.

numpy is never imported here: an object can only be a numpy array if numpy
is already loaded, so :func:`is_ndarray` looks it up in ``sys.modules``.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
import operator
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

MAX_TAG = 32767
"""Largest user tag; MPI guarantees at least this many."""

OPS = ("sum", "prod", "min", "max")
SCHEDULES = ("static", "dynamic")


# --------------------------------------------------------------------------
# numpy, without importing it


def is_ndarray(obj: object) -> bool:
    """True if ``obj`` is a numpy array (without importing numpy)."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


def _np() -> Any:
    import numpy

    return numpy


# --------------------------------------------------------------------------
# argument checks


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
    if is_ndarray(data):
        return bool(data.ndim >= 1)  # type: ignore[attr-defined]
    return isinstance(data, Sequence) and not isinstance(data, (str, bytes, bytearray, memoryview))


def check_sequence(data: object, name: str = "data") -> None:
    """Raises ``TypeError`` naming ``name`` unless ``data`` can be split."""
    if not is_splittable(data):
        what = "a 0-d numpy array" if is_ndarray(data) else type(data).__name__
        raise TypeError(
            f"{name} must be a sequence (list, tuple, range or numpy array with at least one dimension), not {what}"
        )


# --------------------------------------------------------------------------
# splitting


def block_bounds(length: int, nprocs: int) -> list[tuple[int, int]]:
    """The ``[start, stop)`` of each process's block of a sequence.

    Blocks are contiguous and in rank order; their lengths differ by at most
    one, the longer ones first, as ``numpy.array_split`` does.

    Example:
        >>> block_bounds(10, 3)
        [(0, 4), (4, 7), (7, 10)]
        >>> block_bounds(2, 3)
        [(0, 1), (1, 2), (2, 2)]
    """
    base, extra = divmod(length, nprocs)
    bounds = []
    start = 0
    for rank in range(nprocs):
        stop = start + base + (1 if rank < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def take_block(data: Any, start: int, stop: int) -> Any:
    """The block ``[start, stop)`` of ``data`` as it is sent to its process.

    A numpy array gives a view along axis 0 (the transport copies it); any
    other sequence gives a list.
    """
    if is_ndarray(data):
        return data[start:stop]
    block = data[start:stop]
    return block if type(block) is list else list(block)


def root_block(data: Any, start: int, stop: int) -> Any:
    """Root's own block of its data, as ``scatter`` returns it on root.

    A view of ``data`` (root's own memory, so no copy is needed), or a copy
    when ``data`` is read-only, since every block is writable.
    """
    block = take_block(data, start, stop)
    if is_ndarray(block) and not block.flags.writeable:
        return block.copy()
    return block


def split(data: Any, nprocs: int) -> list[Any]:
    """Every process's block of ``data`` (views for numpy arrays)."""
    return [take_block(data, start, stop) for start, stop in block_bounds(len(data), nprocs)]


# --------------------------------------------------------------------------
# joining


class ArrayMeta(NamedTuple):
    """What a receiver needs to know of an array before its data arrives."""

    dtype: Any
    shape: tuple[int, ...]


class ConcatPlan(NamedTuple):
    """How gathered arrays are concatenated.

    The result's dtype and shape, and where each part starts along axis 0.
    """

    dtype: Any
    shape: tuple[int, ...]
    offsets: tuple[int, ...]


def array_meta(obj: object) -> ArrayMeta | None:
    """The :class:`ArrayMeta` of an array with one or more dimensions, else ``None``.

    Objects without one are gathered into a list, never concatenated.
    """
    if is_ndarray(obj) and obj.ndim >= 1:  # type: ignore[attr-defined]
        return ArrayMeta(obj.dtype, tuple(obj.shape))  # type: ignore[attr-defined]
    return None


def concat_plan(metas: Sequence[ArrayMeta | None]) -> ConcatPlan | None:
    """Decides whether gathered parts are concatenated, and into what.

    Parts are concatenated along axis 0 when every one is a numpy array of at
    least one dimension and all share the trailing shape; the dtype promotes
    as ``numpy.concatenate`` does. Otherwise (or when the dtypes cannot be
    promoted) the parts are returned as a list, and this returns ``None``.
    """
    if not metas or any(meta is None for meta in metas):
        return None
    known = [meta for meta in metas if meta is not None]
    trailing = known[0].shape[1:]
    if any(meta.shape[1:] != trailing for meta in known):
        return None
    np = _np()
    try:
        dtype = np.result_type(*[meta.dtype for meta in known])
    except TypeError:  # numpy's DTypePromotionError is a TypeError
        return None
    offsets = []
    total = 0
    for meta in known:
        offsets.append(total)
        total += meta.shape[0]
    return ConcatPlan(dtype, (total, *trailing), tuple(offsets))


def concatenate(parts: Sequence[Any], plan: ConcatPlan) -> Any:
    """Concatenates arrays along axis 0 as ``plan`` says, into a new array."""
    out = _np().empty(plan.shape, dtype=plan.dtype)
    for part, offset in zip(parts, plan.offsets, strict=True):
        out[offset : offset + len(part)] = part
    return out


def join_gathered(parts: Sequence[Any]) -> Any:
    """What ``gather`` gives root.

    The concatenation of the parts when :func:`concat_plan` allows it, else
    the list of parts in rank order.
    """
    plan = concat_plan([array_meta(part) for part in parts])
    return list(parts) if plan is None else concatenate(parts, plan)


def join_map_results(per_block: Sequence[Any], vectorized: bool) -> Any:
    """Joins the results of ``map`` over consecutive blocks, in input order.

    Args:
        per_block: For item-wise maps, one list of results per block; for
            vectorized maps, the value ``func`` returned for each block.
        vectorized: Whether ``func`` was called on whole blocks.

    Returns:
        Item-wise: one list. Vectorized: numpy arrays concatenated; lists and
        tuples concatenated into one list; anything else, the list of
        per-block results.
    """
    if not vectorized:
        return list(itertools.chain.from_iterable(per_block))
    plan = concat_plan([array_meta(part) for part in per_block])
    if plan is not None:
        return concatenate(per_block, plan)
    if all(isinstance(part, (list, tuple)) for part in per_block):
        return list(itertools.chain.from_iterable(per_block))
    return list(per_block)


# --------------------------------------------------------------------------
# reductions


def _minimum(a: Any, b: Any) -> Any:
    if is_ndarray(a) or is_ndarray(b):
        return _np().minimum(a, b)
    return b if b < a else a


def _maximum(a: Any, b: Any) -> Any:
    if is_ndarray(a) or is_ndarray(b):
        return _np().maximum(a, b)
    return b if b > a else a


_OP_FUNCS: dict[str, Callable[[Any, Any], Any]] = {
    "sum": operator.add,
    "prod": operator.mul,
    "min": _minimum,
    "max": _maximum,
}


def resolve_op(op: object) -> Callable[[Any, Any], Any]:
    """The two-argument function a reduction applies.

    Args:
        op: ``"sum"``, ``"prod"``, ``"min"``, ``"max"``, or a callable
            ``f(a, b)`` (assumed associative; applied in rank order).

    Raises:
        ValueError: ``op`` is a string that names no operation.
        TypeError: ``op`` is neither a string nor callable.
    """
    if isinstance(op, str):
        try:
            return _OP_FUNCS[op]
        except KeyError:
            raise ValueError(f"op must be one of {OPS} or a callable, got {op!r}") from None
    if callable(op):
        return op
    raise TypeError(f"op must be one of {OPS} or a callable, not {type(op).__name__}")


def fold(values: Sequence[Any], func: Callable[[Any, Any], Any]) -> Any:
    """Reduces ``values`` in order: ``func(func(v0, v1), v2)...``.

    A single numpy array is copied, so the result never aliases an input.
    """
    if len(values) == 1 and is_ndarray(values[0]):
        return values[0].copy()
    return functools.reduce(func, values)


# --------------------------------------------------------------------------
# dynamic schedules


def dynamic_chunks(length: int, nprocs: int, chunksize: int | None) -> Iterator[tuple[int, int]]:
    """Cuts ``range(length)`` into the chunks a dynamic ``map`` hands out.

    With ``chunksize`` the chunks have that size (the last may be shorter).
    Without it the schedule is *guided*: each chunk is the remaining work
    divided by ``2 * nprocs``, so early chunks are large (little messaging)
    and late ones small (processes finish together).

    Example:
        >>> list(dynamic_chunks(10, 2, 4))
        [(0, 4), (4, 8), (8, 10)]
        >>> [stop - start for start, stop in dynamic_chunks(20, 2, None)]
        [5, 4, 3, 2, 2, 1, 1, 1, 1]
    """
    start = 0
    while start < length:
        remaining = length - start
        size = chunksize if chunksize is not None else math.ceil(remaining / (2 * nprocs))
        stop = min(length, start + size)
        yield start, stop
        start = stop
