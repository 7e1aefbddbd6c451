"""``out=`` on ``reduce``/``allreduce`` where the values, their dtypes or one process make it unusual.

The same results as without ``out=``, the same errors on the same
processes, and the group in step after each (a collective that matches).
"""

from __future__ import annotations

import numpy as np
import pytest
from backends import spmd

SENTINEL = -7.0


def _in_step(parallelizer):
    return parallelizer.allgather(("next", parallelizer.id)) == [("next", rank) for rank in range(parallelizer.nprocs)]


def _own_part_is_out_body(parallelizer):
    """``reduce(a, root=r, out=a)`` for every root: root's own part is read before out is written."""
    n, checks = parallelizer.nprocs, []
    for root in range(n):
        for op, want in (("sum", n * (n + 1) / 2), ("max", n), ("min", 1.0)):
            mine = np.full((300, 8), parallelizer.id + 1.0)
            got = parallelizer.reduce(mine, op=op, root=root, out=mine if parallelizer.id == root else None)
            checks.append(got is mine and bool((mine == want).all()) if parallelizer.id == root else got is None)
    return parallelizer.allgather(checks)


def test_reduce_into_the_roots_own_part_gives_the_same_values(par):
    got = spmd(par, _own_part_is_out_body)
    if par.on_main:
        for rank, checks in enumerate(got):
            assert all(checks), f"rank {rank}: {checks}"


def _dtype_body(parallelizer):
    """Results whose dtype is not the inputs': strings grow, a swapped byte order comes back native."""
    words = np.array(["ab", "cd"])  # <U2 + <U2 is <U4
    checks = [parallelizer.allreduce(words, out=np.empty(2, "<U" + str(2 * parallelizer.nprocs))).dtype.itemsize]
    if parallelizer.nprocs > 1:  # (one process: the result is its own <U2 array)
        try:
            parallelizer.allreduce(words, out=np.empty(2, "<U2"))
            checks.append("no error")
        except ValueError as err:
            checks.append("dtype" in str(err))
    else:
        checks.append(True)
    swapped = np.arange(3.0).astype(">f8")
    want = parallelizer.allreduce(swapped)  # native byte order from two processes on (one keeps its own)
    out = np.full(3, SENTINEL, dtype=want.dtype)
    checks.append(parallelizer.allreduce(swapped, out=out) is out and np.array_equal(out, want))
    out = np.full(3, SENTINEL, dtype=want.dtype)
    got = parallelizer.reduce(swapped, out=out if parallelizer.on_main else None)
    checks.append(got is out and np.array_equal(out, want) if parallelizer.on_main else got is None)
    return parallelizer.allgather(checks)


def test_reductions_into_out_take_the_dtype_the_result_has(par):
    got = spmd(par, _dtype_body)
    if par.on_main:
        width = 4 * 2 * par.nprocs  # bytes of one <U(2n) item
        assert got == [[width, True, True, True]] * par.nprocs


@pytest.mark.parametrize("layout", ["out=None on rank 0", "Fortran order on the last rank", "out everywhere"])
@pytest.mark.parametrize("call", ["reduce", "allreduce"])
def test_values_that_cannot_be_combined_with_out_fail_as_without_it(par, call, layout):
    got = spmd(par, _cannot_combine_body, call, layout)
    if par.on_main:
        for rank, (raised, untouched, in_step) in enumerate(got):
            if call == "reduce" and rank != 0:
                assert raised is None  # only root combines
            else:
                assert raised is not None and raised.startswith(f"{call}(op='sum') cannot combine"), raised
            assert untouched and in_step, f"rank {rank}"


def _cannot_combine_body(call, layout, parallelizer):
    last = parallelizer.id == parallelizer.nprocs - 1
    days = np.array(np.arange(6).reshape(2, 3), dtype="datetime64[D]")  # datetimes do not add
    if layout.startswith("Fortran") and last:
        days = np.asfortranarray(days)
    out = np.full((2, 3), np.datetime64("2000-01-01"), dtype="datetime64[D]")
    given = None if layout.startswith("out=None") and parallelizer.id == 0 else out
    raised = None
    try:
        if call == "reduce":
            parallelizer.reduce(days, out=given)
        else:
            parallelizer.allreduce(days, out=given)
    except TypeError as err:
        raised = str(err)
    untouched = bool((out == np.datetime64("2000-01-01")).all())
    return parallelizer.allgather((raised, untouched, _in_step(parallelizer)))


def _rebuild():
    raise RuntimeError("this object cannot be rebuilt here")


class Unloadable:
    """Pickles, but unpickling it fails: what a receiver meets with a class it cannot import."""

    def __reduce__(self):
        return (_rebuild, ())


def _unpicklable_part_body(call, parallelizer):
    root = parallelizer.on_main
    raised = None
    try:
        if call == "reduce":
            parallelizer.reduce(
                np.zeros(2) if root else Unloadable(), op=lambda a, b: a, out=np.zeros(2) if root else None
            )
        else:
            parallelizer.gather(np.zeros(2) if root else Unloadable(), out=np.zeros(2) if root else None)
    except TypeError as err:  # SerializationError
        raised = type(err).__name__
    return parallelizer.allgather((raised, _in_step(parallelizer)))


@pytest.mark.parametrize("call", ["reduce", "gather"])
def test_a_part_root_cannot_unpickle_fails_on_root_and_leaves_the_group_in_step(par, call):
    if par.nprocs == 1:
        pytest.skip("one process receives no other process's part")
    got = spmd(par, _unpicklable_part_body, call)
    if par.on_main:
        assert got == [("SerializationError", True)] + [(None, True)] * (par.nprocs - 1)


def _unpicklable_in_all_body(call, into, parallelizer):
    last = parallelizer.id == parallelizer.nprocs - 1
    mine = Unloadable() if last and parallelizer.nprocs > 1 else np.zeros(2)
    out = {"out": np.zeros(2)} if into else {}
    try:
        if call == "allgather":
            parallelizer.allgather(mine, **out)
        else:
            parallelizer.allreduce(mine, op=lambda a, b: a, **out)
        outcome = "returned"
    except (TypeError, ValueError):  # SerializationError or its refusal; with out=, a list result (ValueError)
        outcome = "raised"
    return parallelizer.allgather((outcome, _in_step(parallelizer)))


@pytest.mark.parametrize("into", [False, True], ids=["", "out"])
@pytest.mark.parametrize("call", ["allgather", "allreduce"])
def test_a_part_that_cannot_be_unpickled_leaves_no_process_waiting(par, call, into):
    """Whoever meets it raises (some processes may return); none waits for a message that will not come."""
    got = spmd(par, _unpicklable_in_all_body, call, into)
    if par.on_main:
        assert all(in_step for _, in_step in got), got
        assert par.nprocs == 1 or any(outcome == "raised" for outcome, _ in got), got
