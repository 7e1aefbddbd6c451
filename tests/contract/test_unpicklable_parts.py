"""A part of a collective that its own process cannot pickle (a lock held by one rank).

``gather``, ``allgather``, ``reduce`` and ``allreduce`` of a lock on one
rank, ``scatter`` of a sequence whose block for one rank holds a lock: the
process that cannot pickle what it must send sends a refusal in its place,
does the rest of its share, and raises ``SerializationError`` naming its
rank; every process that would have received the part raises it too, once
it has taken every message of the call. So catching the error leaves the
group in step: the next collectives give the right results. Before, the
process raised alone and the others waited for a part that never came.

Processes that neither send nor receive the part (``gather`` and ``reduce``
off root) may return normally. A group of one sends nothing: whether its
call pickles the part is the backend's choice, but it must not hang either.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from backends import spmd

from parallelizer import SerializationError

pytestmark = pytest.mark.timeout(60)  # the bug these tests guard against is a hang

CALLS = ("gather", "allgather", "reduce", "allreduce", "scatter")


def _pair(a, b):
    """A reduction that keeps every value: a part that cannot be pickled stays in the result."""
    return (a, b)


def _call(parallelizer, call, part, data, root, **kwargs):
    if call == "gather":
        return parallelizer.gather(part, root=root, **kwargs)
    if call == "allgather":
        return parallelizer.allgather(part, **kwargs)
    if call == "reduce":
        return parallelizer.reduce(part, op=_pair, root=root, **kwargs)
    if call == "allreduce":
        return parallelizer.allreduce(part, op=_pair, **kwargs)
    return parallelizer.scatter(data, root=root, **kwargs)


def _roles(case, nprocs):
    """``(root, bad)``: the root, and the rank whose part (for scatter: whose block) cannot be pickled."""
    last = nprocs - 1
    return (0, last) if case == "root0" else (last, 0)


def _attempt(parallelizer, call, root, bad, into):
    """The call with a lock as ``bad``'s part: what happened here, and whether out was left alone."""
    me, nprocs = parallelizer.id, parallelizer.nprocs
    part = threading.Lock() if me == bad else np.full(2, float(me))
    data = [threading.Lock() if rank == bad else np.full(2, float(rank)) for rank in range(nprocs)]
    out = np.zeros(2 * nprocs if call in ("gather", "allgather") else 2)
    kwargs = {"out": out} if into else {}
    try:
        got = _call(parallelizer, call, part, data if me == root else None, root, **kwargs)
        outcome = ("returned", None if got is None else type(got).__name__)
    except SerializationError as err:
        outcome = ("SerializationError", str(err))
    except ValueError as err:  # out= in a group of one: the lock itself is the result, which out cannot take
        outcome = ("ValueError", str(err))
    return outcome, not out.any()


def _in_step(parallelizer):
    return parallelizer.allgather(("next", parallelizer.id)) == [("next", rank) for rank in range(parallelizer.nprocs)]


def _right_results(parallelizer, call, root, into):
    """The same call with parts that can be pickled: whether this process's result is right."""
    me, nprocs = parallelizer.id, parallelizer.nprocs
    part = np.full(2, float(me))
    everything = np.repeat(np.arange(float(nprocs)), 2)
    total = np.full(2, float(sum(range(nprocs))))
    kwargs = {}
    if into:
        kwargs["out"] = np.zeros(2 * nprocs if call in ("gather", "allgather") else 2)
    if call == "gather":
        got = parallelizer.gather(part, root=root, **kwargs)
        want = everything if me == root else None
    elif call == "allgather":
        got, want = parallelizer.allgather(part, **kwargs), everything
    elif call == "reduce":
        got = parallelizer.reduce(part, root=root, **kwargs)
        want = total if me == root else None
    elif call == "allreduce":
        got, want = parallelizer.allreduce(part, **kwargs), total
    else:
        data = everything if me == root else None
        got, want = parallelizer.scatter(data, root=root, **kwargs), part
    if want is None:
        return got is None
    return isinstance(got, np.ndarray) and got.tolist() == want.tolist() and (not into or got is kwargs["out"])


def _body(call, case, into, parallelizer):
    root, bad = _roles(case, parallelizer.nprocs)
    outcomes = []
    for _ in range(2):  # twice: nothing of the first call is left over for the second
        outcomes.append(_attempt(parallelizer, call, root, bad, into))
        outcomes.append(_in_step(parallelizer))
    outcomes.append(_right_results(parallelizer, call, root, into))
    outcomes.append(_in_step(parallelizer))
    return parallelizer.allgather(outcomes)


def _must_raise(call, root, bad, rank):
    """Whether ``rank`` must raise: it cannot pickle what it must send, or would receive it.

    (``scatter``: root pickles every block before it sends any, so it refuses them all.)
    """
    return call in ("allgather", "allreduce", "scatter") or rank in (root, bad)


@pytest.mark.parametrize("into", [False, True], ids=["", "out"])
@pytest.mark.parametrize("case", ["root0", "rootlast"])
@pytest.mark.parametrize("call", CALLS)
def test_a_part_its_process_cannot_pickle_leaves_no_process_waiting(par, call, case, into):
    got = spmd(par, _body, call, case, into)  # (under MPI every rank checks the same list)
    nprocs = par.nprocs
    root, bad = _roles(case, nprocs)
    culprit = root if call == "scatter" else bad  # the process that cannot pickle what it must send
    assert len(got) == nprocs
    for rank, outcomes in enumerate(got):
        (first, untouched_1), step_1, (second, untouched_2), step_2, right, step_3 = outcomes
        assert [step_1, step_2, right, step_3] == [True] * 4, (rank, outcomes)  # in step, then right results
        assert untouched_1 and untouched_2, (rank, outcomes)  # out is never written when the call fails
        assert first[0] == second[0], (rank, outcomes)  # the same both times
        if nprocs == 1:  # nothing travels: the part may come back, or be pickled anyway and refused
            allowed = {"returned", "SerializationError"} | ({"ValueError"} if into else set())
            assert first[0] in allowed, outcomes
        elif first[0] == "returned":  # a process that neither sends nor receives the part
            assert not _must_raise(call, root, bad, rank) and first[1] is None, (rank, outcomes)
        else:
            assert first[0] == "SerializationError", (rank, outcomes)
            assert f"rank {culprit}" in first[1] and "lock" in first[1], (rank, first[1])
