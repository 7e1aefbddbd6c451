"""What a root cannot pickle: an object it broadcasts, a result it computed for all.

``broadcast`` of a lock, or ``allreduce`` whose callable ``op`` returns one
where rank 0 computes the result for every process: root finds out before
anything is sent, and every process raises the same ``SerializationError``
(a ``TypeError``), as for a bad argument, so catching it leaves the group in
step. Before, root raised alone and the others waited for a message that
never came.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from backends import spmd


class Unprintable:
    """Cannot be pickled (it holds a lock), and its repr fails too."""

    def __init__(self):
        self.lock = threading.Lock()

    def __repr__(self):
        raise AttributeError("no repr here")


def _in_step(parallelizer):
    return parallelizer.allgather(("next", parallelizer.id)) == [("next", rank) for rank in range(parallelizer.nprocs)]


def _broadcast_body(root_is_last, into, kind, parallelizer):
    root = parallelizer.nprocs - 1 if root_is_last else 0
    kwargs = {"out": np.zeros(2)} if into else {}
    outcomes = []
    for _ in range(2):  # twice: nothing of the first is left over for the second
        try:
            obj = (threading.Lock() if kind == "lock" else Unprintable()) if parallelizer.id == root else None
            parallelizer.broadcast(obj, root=root, **kwargs)
            outcomes.append("returned")
        except TypeError as err:
            outcomes.append(f"{type(err).__name__}: {'cannot pickle' in str(err)}")
        outcomes.append(_in_step(parallelizer))
    value = parallelizer.broadcast(np.arange(2.0) if parallelizer.id == root else None, root=root, **kwargs)
    outcomes.append(value.tolist())
    return parallelizer.allgather(outcomes)


@pytest.mark.parametrize("kind", ["lock", "unprintable"])
@pytest.mark.parametrize("into", [False, True], ids=["", "out"])
@pytest.mark.parametrize("root_is_last", [False, True], ids=["root0", "rootlast"])
def test_an_object_root_cannot_pickle_fails_on_every_process(par, root_is_last, into, kind):
    if par.nprocs == 1:
        pytest.skip("a group of one sends nothing: whether its broadcast pickles is the backend's choice")
    got = spmd(par, _broadcast_body, root_is_last, into, kind)
    if par.on_main:
        want = ["SerializationError: True", True] * 2 + [[0.0, 1.0]]
        assert got == [want] * par.nprocs


def _unpicklable_result_body(into, parallelizer):
    """``allreduce`` whose callable ``op`` returns what cannot be pickled (a lock)."""
    kwargs = {"out": np.zeros(2)} if into else {}
    outcomes = []
    for _ in range(2):
        try:
            part = [parallelizer.id] * 100  # too large to travel inside MPI's description exchange
            got = parallelizer.allreduce(part, op=lambda a, b: threading.Lock(), **kwargs)
            outcomes.append(type(got).__name__)
        except (TypeError, ValueError) as err:  # SerializationError; with out=, a lock is not an array
            outcomes.append(type(err).__name__)
        outcomes.append(_in_step(parallelizer))
    return parallelizer.allgather(outcomes)


@pytest.mark.parametrize("into", [False, True], ids=["", "out"])
def test_a_result_rank_0_cannot_pickle_leaves_no_process_waiting(par, into):
    """Where rank 0 computes the result for all, all raise; where each computes its own, none sends it."""
    if par.nprocs == 1:
        pytest.skip("a group of one combines nothing: op is never called")
    got = spmd(par, _unpicklable_result_body, into)
    if par.on_main:
        assert len({tuple(outcomes) for outcomes in got}) == 1, got  # every process alike
        outcome = got[0][0]
        allowed = ("SerializationError", "ValueError") if into else ("SerializationError", "lock")
        assert outcome in allowed and got[0] == [outcome, True] * 2, got
