"""The multiprocessing collectives of a polling group: dissemination barrier, allgather and allreduce by exchange.

When every process has a CPU (main decides, and tells the workers), the
barrier is the dissemination barrier, an allgather sends every part to every
process, and an allreduce on two processes is an exchange (see
``parallelizer._mp.collectives``). The contract suite runs them
on 2 processes here; these tests force them on 3 and 4 processes (patching
the CPU count main sees) and check what only they can get wrong.
"""

from __future__ import annotations

import os
import re
import threading
import time
import warnings
from typing import Any

import numpy as np
import pytest
from backends import _transport_patched

from parallelizer import DeadlockError, MultiprocessingParallelizer, RemoteError, WorkerTerminatedError
from parallelizer._core import env
from parallelizer._core.limits import SPIN_WAIT

pytestmark = pytest.mark.timeout(120)

LATE = 0.1


def _polling(parallelizer):
    return parallelizer.gather(parallelizer._ep().polls)


def _choice_and_a_barrier(parallelizer):
    parallelizer.barrier()  # different algorithms on different processes would hang here
    return parallelizer.gather((parallelizer._ep().polls, parallelizer.allgather(parallelizer.id)))


@pytest.mark.parametrize(
    ("main_cpus", "nprocs", "polls"),
    [(64, 3, True), (1, 2, False)],
    ids=["main polls, workers would not (fewer than 3 CPUs)", "main does not, workers would (2 CPUs or more)"],
)
def test_workers_take_mains_choice_so_every_process_picks_the_same_algorithms(monkeypatch, main_cpus, nprocs, polls):
    """Spawned workers count their own CPUs; main's choice wins. (One of the two cases differs on any machine.)"""
    monkeypatch.setattr(env, "usable_cpus", lambda: main_cpus)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one CPU for two processes: the oversubscription warning
        par = MultiprocessingParallelizer(nprocs=nprocs, start_method="spawn", timeout=30)
    with par:
        assert par.run(_choice_and_a_barrier) == [(polls, list(range(nprocs)))] * nprocs


def _late_ones(parallelizer):
    """Every rank comes late in turn, then two at once; when (wall clock) each process entered and left."""
    me, times = parallelizer.id, []
    lates = [{rank} for rank in range(parallelizer.nprocs)] + [{1, parallelizer.nprocs - 1}]
    parallelizer.barrier()  # every process has started func (workers may start later than main)
    for late in lates:
        if me in late:
            time.sleep(LATE)
        entered = time.time()
        parallelizer.barrier()
        times.append((entered, time.time()))
    return parallelizer.gather(times)


@pytest.mark.parametrize("nprocs", [3, 4])
def test_the_dissemination_barrier_waits_for_every_late_process(monkeypatch, nprocs):
    """No process leaves a barrier before the last one entered it (a causal check, on one host's clock)."""
    monkeypatch.setattr(env, "usable_cpus", lambda: nprocs)
    with MultiprocessingParallelizer(nprocs=nprocs, start_method="fork") as par:
        assert par.run(_polling) == [True] * nprocs
        times = par.run(_late_ones)
    for step in range(len(times[0])):
        last = max(times[rank][step][0] for rank in range(nprocs))
        for rank in range(nprocs):
            assert times[rank][step][1] >= last, f"barrier {step}: rank {rank} left before the last one came"


_shared: dict[str, object] = {}
"""The array the forked processes share (made before the group starts; it does not pickle)."""


def _barriers_checked_in_shared_memory(parallelizer):
    """Each process marks barrier k entered, then checks that every other one has too once it leaves."""
    entered: Any = _shared["entered"]
    me, n, problems = parallelizer.id, parallelizer.nprocs, []
    for k in range(1, 301):
        entered[me] = k
        parallelizer.barrier()
        if min(entered[:n]) < k:
            problems.append((k, list(entered[:n])))
        if k % 50 == 0:  # between other collectives too
            total = parallelizer.allreduce(k)
            if total != k * n:
                problems.append((k, total))
    return parallelizer.gather(problems[:3])


@pytest.mark.parametrize("nprocs", [2, 3, 4, 5, 6])
def test_no_process_leaves_a_dissemination_barrier_before_all_have_entered_it(monkeypatch, nprocs):
    """300 barriers; the processes share an array (forked), where each marks which barrier it entered."""
    import multiprocessing

    monkeypatch.setattr(env, "usable_cpus", lambda: nprocs)
    monkeypatch.setitem(_shared, "entered", multiprocessing.get_context("fork").Array("q", 8, lock=False))
    with MultiprocessingParallelizer(nprocs=nprocs, start_method="fork") as par:
        assert par.run(_polling) == [True] * nprocs
        assert par.run(_barriers_checked_in_shared_memory) == [[]] * nprocs


def _exchanges(parallelizer):
    """Allreduce of numbers, strings in rank order, big arrays, and values that cannot be combined."""
    me = parallelizer.id
    out = {"sum": parallelizer.allreduce(me + 1), "order": parallelizer.allreduce("ab"[me], op=lambda a, b: a + b)}
    mine = np.full(1 << 20, me + 1.0)  # 8 MiB: pulled from the other's memory, not inline
    total = parallelizer.allreduce(mine)
    out["array"] = (float(total[0]), float(total[-1]), total.shape, np.shares_memory(total, mine))
    try:
        parallelizer.allreduce(1 if me == 0 else "x")
    except TypeError as exc:
        out["error"] = f"TypeError: {'allreduce' in str(exc)}"
    long = parallelizer.allreduce(list(range(me, 300_000, 2)), op=lambda a, b: a + b)  # a pickle of ~1 MB each
    out["long"] = (len(long), long[:2], long[150_000:150_002])
    out["after"] = parallelizer.allreduce(me, op="max")  # both still in step
    return parallelizer.gather(out)


@pytest.mark.parametrize("transport", [None, "stream", "nack"])
def test_an_allreduce_on_two_polling_processes_gives_both_the_same_result(monkeypatch, transport):
    """Also with buffers streamed through the sockets (``stream``), or after each pull is refused (``nack``)."""
    monkeypatch.setattr(env, "usable_cpus", lambda: 2)
    with _transport_patched(transport), MultiprocessingParallelizer(nprocs=2, start_method="fork") as par:
        assert par.run(_polling) == [True, True]
        results = par.run(_exchanges)
    expected = {
        "sum": 3,
        "order": "ab",
        "array": (3.0, 3.0, (1 << 20,), False),
        "error": "TypeError: True",
        "long": (300_000, [0, 2], [1, 3]),
        "after": 1,
    }
    assert results == [expected, expected]


CALLS = {
    "barrier": lambda parallelizer: parallelizer.barrier(),
    "allreduce": lambda parallelizer: parallelizer.allreduce(parallelizer.id),
    "allgather": lambda parallelizer: parallelizer.allgather(parallelizer.id),
    # lazy sends: each process also waits for the others to pull its array
    "allgather arrays": lambda parallelizer: parallelizer.allgather(np.full(1 << 20, float(parallelizer.id))),
}


def _allgathers(parallelizer):
    """Numbers, arrays of several sizes and dtypes, lists, dicts; each rank checks what it got."""
    me, n, problems = parallelizer.id, parallelizer.nprocs, []
    for step in range(20):
        got = parallelizer.allgather(me * step)
        if got != [rank * step for rank in range(n)]:
            problems.append(("numbers", step, got))
        mine = np.arange(me + step % 3, dtype=np.float32 if me % 2 else np.float64) + me
        got = parallelizer.allgather(mine)
        expected = np.concatenate([np.arange(r + step % 3) + r for r in range(n)])
        if got.dtype != np.float64 or not np.array_equal(got, expected):
            problems.append(("arrays", step, got))
        got = parallelizer.allgather({"rank": me, "items": list(range(me))})
        if got != [{"rank": r, "items": list(range(r))} for r in range(n)]:
            problems.append(("dicts", step, got))
        parallelizer.barrier()
    big = parallelizer.allgather(np.full(1 << 20, float(me)))  # 8 MiB each: pulled, not inline
    if big.shape != (n << 20,) or [float(big[r << 20]) for r in range(n)] != [float(r) for r in range(n)]:
        problems.append(("big", big.shape))
    return parallelizer.gather(problems)


@pytest.mark.parametrize(("nprocs", "transport"), [(2, None), (3, None), (4, None), (2, "nack"), (3, "stream")])
def test_an_allgather_of_a_polling_group_gives_every_process_every_part_in_rank_order(monkeypatch, nprocs, transport):
    monkeypatch.setattr(env, "usable_cpus", lambda: nprocs)
    with _transport_patched(transport), MultiprocessingParallelizer(nprocs=nprocs, start_method="fork") as par:
        assert par.run(_polling) == [True] * nprocs
        assert par.run(_allgathers) == [[]] * nprocs


def _unpicklable_on(rank):
    """Pickles anywhere; unpickling it raises everywhere (it is made on ``rank`` only)."""
    return _Unpicklable() if rank else 1


class _Unpicklable:
    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise RuntimeError("this part cannot be unpickled")


def _allgather_one_unpicklable(parallelizer):
    from parallelizer import SerializationError

    try:
        parallelizer.allgather(_unpicklable_on(parallelizer.id == 0))  # the first part others receive
    except SerializationError as exc:
        outcome = f"SerializationError from rank {exc.rank}" if hasattr(exc, "rank") else "SerializationError"
    else:
        outcome = "no error"
    seen = parallelizer.allgather((outcome, parallelizer.allreduce(1)))  # all still in step...
    return parallelizer.gather(seen)  # ...and every process sees the same


@pytest.mark.parametrize("nprocs", [2, 3])
def test_a_part_that_cannot_be_unpickled_is_reported_by_every_receiver_and_all_stay_in_step(monkeypatch, nprocs):
    monkeypatch.setattr(env, "usable_cpus", lambda: nprocs)
    with MultiprocessingParallelizer(nprocs=nprocs, start_method="fork") as par:
        views = par.run(_allgather_one_unpicklable)
    assert views == [views[0]] * nprocs
    results = views[0]
    assert results[0][0] == "no error"  # its own part is not unpickled
    assert [outcome for outcome, _ in results[1:]] == ["SerializationError from rank 0"] * (nprocs - 1)
    assert [total for _, total in results] == [nprocs] * nprocs


def _allgather_a_part_that_cannot_be_pickled(into, parallelizer):
    """Rank 1's part is a lock; the others' are 8 MiB arrays, sent lazily: every one must still be pulled."""
    from parallelizer import SerializationError

    me, n = parallelizer.id, parallelizer.nprocs
    out = np.zeros(n << 20)
    kwargs = {"out": out} if into else {}
    outcomes = []
    for _ in range(2):  # twice: nothing of the first is left over
        try:
            parallelizer.allgather(threading.Lock() if me == 1 else np.full(1 << 20, float(me)), **kwargs)
            outcomes.append("no error")
        except SerializationError as exc:
            outcomes.append((exc.rank, str(exc).startswith("rank 1: cannot pickle the object allgathered (lock")))
    outcomes.append(not out.any())  # nothing written
    got = parallelizer.allgather(np.full(1 << 20, float(me)), **kwargs)
    outcomes.append([float(got[rank << 20]) for rank in range(n)])
    return parallelizer.gather(outcomes)


@pytest.mark.parametrize("into", [False, True], ids=["", "out"])
@pytest.mark.parametrize("nprocs", [3, 4])
def test_a_part_its_process_cannot_pickle_fails_every_allgather_of_a_polling_group(monkeypatch, nprocs, into):
    """The exchange on 3 and 4 processes (the contract suite's mp3 polls only on machines with 3 CPUs or more)."""
    monkeypatch.setattr(env, "usable_cpus", lambda: nprocs)
    with MultiprocessingParallelizer(nprocs=nprocs, start_method="fork") as par:
        assert par.run(_polling) == [True] * nprocs
        got = par.run(_allgather_a_part_that_cannot_be_pickled, into)
    assert got == [[(1, True), (1, True), True, [float(rank) for rank in range(nprocs)]]] * nprocs


def _rank_skips(name, parallelizer=None):
    if parallelizer.id == 1:
        return None
    return CALLS[name](parallelizer)


def _rank_dies(name, parallelizer=None):
    if parallelizer.id == parallelizer.nprocs - 1:
        os._exit(9)
    return CALLS[name](parallelizer)


def _rank_sleeps(name, parallelizer=None):
    if parallelizer.id == 1:
        time.sleep(3)
    return CALLS[name](parallelizer)


@pytest.mark.parametrize("nprocs", [2, 3])
@pytest.mark.parametrize("name", list(CALLS))
def test_a_polling_group_reports_a_missing_a_dead_and_a_late_process(monkeypatch, nprocs, name):
    monkeypatch.setattr(env, "usable_cpus", lambda: nprocs)
    with MultiprocessingParallelizer(nprocs=nprocs, start_method="fork", timeout=0.5) as par:
        assert par.run(lambda parallelizer: parallelizer.gather(parallelizer._ep().spin)) == [SPIN_WAIT] * nprocs
        # whoever waits for rank 1 says so: main itself, or a worker (RemoteError on main)
        call = name.split()[0]
        missing = rf"(DeadlockError: )?rank \d waits in {call}\(\) for rank\(s\) 1, which already returned from func"
        with pytest.raises((DeadlockError, RemoteError), match=missing):
            par.run(_rank_skips, name)
    # A worker may time out (or see the death) first: main then raises its report as a RemoteError.
    with (
        MultiprocessingParallelizer(nprocs=nprocs, start_method="fork", timeout=0.5) as par,
        pytest.raises((TimeoutError, RemoteError)) as info,
    ):
        par.run(_rank_sleeps, name)
    found = re.search(rf"waited more than 0.5 s in {call}\(\) for rank\(s\) ([\d, ]+)", str(info.value))
    assert found is not None and 1 in [int(rank) for rank in found.group(1).split(", ")], str(info.value)
    with (
        MultiprocessingParallelizer(nprocs=nprocs, start_method="fork") as par,
        pytest.raises((WorkerTerminatedError, RemoteError), match=f"rank {nprocs - 1}"),
    ):
        par.run(_rank_dies, name)


def _op_fails_on_rank_one(parallelizer):
    me = parallelizer.id

    def picky(a, b):
        if me == 1:
            raise ValueError("rank 1 refuses")
        return a + b

    try:
        outcome = parallelizer.allreduce(me + 1, op=picky)
    except TypeError as exc:
        outcome = "refused" if "rank 1 refuses" in str(exc.__cause__) else repr(exc)
    return parallelizer.gather((outcome, parallelizer.allreduce(1)))


def test_an_op_that_fails_on_one_process_only_fails_there_and_leaves_both_in_step(monkeypatch):
    """Each process folds itself (documented: an op must behave alike everywhere); nobody waits for the other."""
    monkeypatch.setattr(env, "usable_cpus", lambda: 2)
    with MultiprocessingParallelizer(nprocs=2, start_method="fork") as par:
        assert par.run(_op_fails_on_rank_one) == [(3, 2), ("refused", 2)]


def _rank_one_late(parallelizer):
    if parallelizer.id == 1:
        time.sleep(3)
    parallelizer.barrier()


def test_a_timeout_in_a_dissemination_barrier_names_the_late_rank_among_those_it_waits_for(monkeypatch):
    """Rank 0 of 4 waits for rank 2's signal, which waits for rank 1: it names both, not rank 2 alone."""
    monkeypatch.setattr(env, "usable_cpus", lambda: 4)
    with (
        MultiprocessingParallelizer(nprocs=4, start_method="fork", timeout=0.5) as par,
        pytest.raises((TimeoutError, RemoteError)) as info,
    ):
        par.run(_rank_one_late)
    found = re.search(r"waited more than 0.5 s in barrier\(\) for rank\(s\) ([\d, ]+)", str(info.value))
    assert found is not None, str(info.value)
    assert 1 in [int(rank) for rank in found.group(1).split(", ")], str(info.value)
