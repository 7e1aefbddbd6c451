"""What the collectives mean, written once for every backend.

Backends move bytes and arrays; this module decides everything else, so that
the serial, multiprocessing and MPI backends cannot disagree:

* how a sequence is split into per-process blocks (:func:`block_bounds`,
  :func:`take_block`: the split of ``numpy.array_split``);
* how gathered pieces are joined (:func:`concat_plan`, :func:`join_gathered`);
* how reductions combine (:func:`resolve_op`, :func:`fold`);
* how ``map`` results are joined (:func:`join_map_results`) and how dynamic
  schedules cut work into chunks (:func:`dynamic_chunks`);

numpy is never imported here: an object can only be a numpy array if numpy
is already loaded, so :func:`is_ndarray` looks it up in ``sys.modules``.
"""

from __future__ import annotations

import itertools
import math
import operator
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from .errors import CombineError

OPS = ("sum", "prod", "min", "max")


# --------------------------------------------------------------------------
# numpy, without importing it


def is_ndarray(obj: object) -> bool:
    """True if ``obj`` is a numpy array or an instance of a subclass (without importing numpy)."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


def is_exact_ndarray(obj: object) -> bool:
    """True if ``obj`` is a plain ``numpy.ndarray``, not a subclass.

    Only plain arrays take the fast paths that move raw memory; subclasses
    (masked arrays, ``numpy.matrix``, record arrays) travel as pickles, which
    keep their type and their extra state (a mask).
    """
    np = sys.modules.get("numpy")
    return np is not None and type(obj) is np.ndarray


def own(obj: Any) -> Any:
    """``obj`` as a process may return it as its own result: read-only arrays are copied.

    Arrays returned by the collectives are always writable (a root returns
    its own object otherwise, as the other processes get theirs).
    """
    if is_ndarray(obj) and not obj.flags.writeable:
        return obj.copy()
    return obj


def _np() -> Any:
    import numpy

    return numpy


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
    """The :class:`ArrayMeta` of a plain array with one or more dimensions, else ``None``.

    Arrays with one are concatenated by plan (:func:`concat_plan`); subclasses
    are joined by :func:`join_arrays`, anything else gathered into a list.
    """
    if is_exact_ndarray(obj) and obj.ndim >= 1:  # type: ignore[attr-defined]
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


def join_arrays(parts: Sequence[Any]) -> Any:
    """The concatenation of arrays along axis 0, or ``None`` when they do not concatenate.

    Arrays concatenate when all have one or more dimensions and the same
    trailing shape (and their dtypes promote). Subclasses keep their type:
    masked arrays keep their masks (``numpy.ma.concatenate``), and parts that
    share one array subclass give that subclass.

    Example:
        >>> import numpy as np
        >>> join_arrays([np.ma.masked_array([1, 2], mask=[0, 1]), np.ma.masked_array([3])])
        masked_array(data=[1, --, 3],
                     mask=[False,  True, False],
               fill_value=999999)
        >>> join_arrays([np.zeros((1, 2)), np.zeros((1, 3))]) is None
        True
    """
    if not parts or not all(is_ndarray(part) and part.ndim >= 1 for part in parts):
        return None
    plan = concat_plan([array_meta(part) for part in parts])
    if plan is not None:
        return concatenate(parts, plan)
    if any(part.shape[1:] != parts[0].shape[1:] for part in parts):
        return None
    np = _np()
    try:
        if any(isinstance(part, np.ma.MaskedArray) for part in parts):
            return np.ma.concatenate(parts)
        joined = np.concatenate(parts)
    except TypeError:  # dtypes that do not promote
        return None
    kinds = {type(part) for part in parts}
    if len(kinds) == 1 and type(joined) is not parts[0].__class__:
        joined = joined.view(parts[0].__class__)
    return joined


def join_gathered(parts: Sequence[Any]) -> Any:
    """What ``gather`` gives root.

    The concatenation of the parts when they are arrays that concatenate
    (:func:`join_arrays`), else the list of parts in rank order.
    """
    joined = join_arrays(parts)
    return list(parts) if joined is None else joined


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
    joined = join_arrays(per_block)
    if joined is not None:
        return joined
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


def fold(values: Sequence[Any], func: Callable[[Any, Any], Any], call: str = "reduce") -> Any:
    """Reduces ``values`` in order: ``func(func(v0, v1), v2)...``.

    A single numpy array is copied, so the result never aliases an input.
    A single value of a named operation is still checked, so that what
    fails on two processes fails on one too (:func:`check_operand`).

    Raises:
        CombineError: ``func`` cannot combine two of the values (a
            ``TypeError``); names ``call`` and the values' types.
    """
    if len(values) == 1:
        check_operand(values[0], func, call)
        return values[0].copy() if is_ndarray(values[0]) else values[0]
    result = values[0]
    for value in values[1:]:
        try:
            result = func(result, value)
        except Exception as exc:
            raise CombineError(_cannot_combine(call, func, result, value, exc)) from exc
    return result


def check_operand(value: Any, func: Callable[[Any, Any], Any], call: str) -> None:
    """Checks that a named operation can combine ``value`` with a value like it.

    A reduction over one process never calls ``func``; this applies it to
    ``value`` twice (for arrays, to an empty slice of it, which costs
    nothing), so ``reduce({}, op="sum")`` fails serially as it fails on two
    processes. Callable operations are the caller's: they are not called.

    Raises:
        TypeError: The operation cannot combine such values.
    """
    if func not in _OP_FUNCS.values():
        return
    probe = value[:0] if is_ndarray(value) and value.ndim >= 1 else value
    try:
        func(probe, probe)
    except Exception as exc:
        raise CombineError(_cannot_combine(call, func, value, value, exc)) from exc


def _cannot_combine(call: str, func: Callable[[Any, Any], Any], a: Any, b: Any, exc: Exception) -> str:
    names = {operation: name for name, operation in _OP_FUNCS.items()}
    op = repr(names[func]) if func in names else getattr(func, "__qualname__", repr(func))
    return f"{call}(op={op}) cannot combine {type(a).__name__} and {type(b).__name__}: {type(exc).__name__}: {exc}"


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
