"""What the MPI collectives derive from the exchanged slots, computed once per description.

A :class:`~parallelizer._mpi.slots.Round` (or root's broadcast slot) that
comes back unchanged brings these along: the byte counts and displacements
of ``Scatterv``/``Gatherv``/``Allgatherv``, the MPI op and datatype of a
native reduction, and whether the ``out`` arrays described fit. Everything
here is a pure function of the descriptions, so keeping it is right as long
as the descriptions are the same.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import semantics
from .runtime import load as _mpi
from .slots import ARRAY, ASK, Round, Slot

INT_MAX = 2**31 - 1

NATIVE_LARGE_COUNTS = True
"""Whether the MPI library takes counts over ``INT_MAX`` (MPI-4); set at start-up."""

NAMED_OPS = {"sum": "SUM", "prod": "PROD", "min": "MIN", "max": "MAX"}


def counts_fit(*numbers: list[int]) -> bool:
    """Whether counts and displacements fit the C ints of the ``v`` collectives."""
    return NATIVE_LARGE_COUNTS or all(n <= INT_MAX for values in numbers for n in values)


def rows(trailing: tuple[int, ...]) -> int:
    """The elements in one row: the product of an array's trailing extents."""
    count = 1
    for extent in trailing:
        count *= extent
    return count


def block_bytes(bounds: list[tuple[int, int]], dtype: Any, trailing: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """The byte counts and displacements of a scattered array's row blocks ``bounds``."""
    row = dtype.itemsize * rows(trailing)
    return [(stop - start) * row for start, stop in bounds], [start * row for start, _ in bounds]


def same_dtype_plan(found: list[Slot]) -> semantics.ConcatPlan | None:
    """The concat plan when every rank sent an array of the result's dtype."""
    if not all(slot.kind == ARRAY for slot in found):
        return None
    plan = semantics.concat_plan([slot.value for slot in found])
    if plan is None or any(slot.value.dtype != plan.dtype for slot in found):
        return None
    return plan


def native_op(op: str, found: list[Slot]) -> tuple[Any, Any] | None:
    """The MPI op and datatype for a named reduction of equal numeric arrays, else ``None``."""
    if op not in NAMED_OPS or not all(slot.kind == ARRAY for slot in found):
        return None
    first = found[0].value
    if any(slot.value != first for slot in found):
        return None
    kinds = "iuf" if op in ("min", "max") else "iufc"
    if first.dtype.kind not in kinds or not first.dtype.isnative or not _has_mpi_type(first.dtype):
        return None
    MPI = _mpi()
    return getattr(MPI, NAMED_OPS[op]), MPI.Datatype.fromcode(first.dtype.char)  # predefined: ops are defined on it


def _has_mpi_type(dtype: Any) -> bool:
    try:
        _mpi().Datatype.fromcode(dtype.char)
    except (KeyError, ValueError):
        return False
    return True


class ScatterPlan:
    """How root's array, as its slot describes it, splits into byte counts (kept while the slot stays)."""

    __slots__ = ("bounds", "counts", "displs", "fits", "head")

    def __init__(self, head: Slot, size: int) -> None:
        meta = head.value
        self.head = head
        self.bounds = semantics.block_bounds(meta.shape[0], size)
        self.counts, self.displs = block_bytes(self.bounds, meta.dtype, meta.shape[1:])
        self.fits = counts_fit(self.counts, self.displs)


class ConcatLayout(NamedTuple):
    """Gathered arrays concatenated by ``Gatherv``/``Allgatherv``: the result and the byte layout."""

    result: semantics.ArrayMeta
    counts: list[int]
    displs: list[int]
    fits: bool


def concat_layout(found: Round) -> ConcatLayout | None:
    """The layout when every rank sent an array of the result's dtype (kept with ``found``)."""
    if "concat" in found.memo:
        layout: ConcatLayout | None = found.memo["concat"]
        return layout
    plan = same_dtype_plan(found.slots)
    layout = None
    if plan is not None:
        row = plan.dtype.itemsize * rows(plan.shape[1:])
        counts = [slot.value.shape[0] * row for slot in found.slots]
        displs = [offset * row for offset in plan.offsets]
        layout = ConcatLayout(semantics.ArrayMeta(plan.dtype, plan.shape), counts, displs, counts_fit(counts, displs))
    found.memo["concat"] = layout
    return layout


def out_fits(out: Any, want: semantics.ArrayMeta | None) -> bool:
    """Whether a slot's ``out`` takes the result ``want`` (``None``: ignored); :data:`ASK` is not known."""
    if want is None or out is None:
        return True
    if out is ASK:
        return False
    return bool(out.shape == want.shape and out.dtype == want.dtype)
