"""The multiprocessing collectives of a polling group: dissemination barrier, allreduce by exchange.

When every process has a CPU (main decides, and tells the workers), the
barrier is the dissemination barrier and an allreduce on two processes is an
exchange (see ``parallelizer._mp.collectives``). The contract suite runs them
on 2 processes here; these tests force them on 3 and 4 processes (patching
the CPU count main sees) and check what only they can get wrong.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from parallelizer import DeadlockError, MultiprocessingParallelizer, RemoteError, WorkerTerminatedError
from parallelizer._core import env
from parallelizer._core.limits import SPIN_WAIT

pytestmark = pytest.mark.timeout(120)

LATE = 0.1


def _polling(parallelizer):
    return parallelizer.gather(parallelizer._ep().polls)


def test_workers_take_mains_choice_so_every_process_picks_the_same_algorithms(monkeypatch):
    """Spawned workers count their own CPUs (2 here, fewer than 3 processes); main's choice wins."""
    monkeypatch.setattr(env, "usable_cpus", lambda: 4)
    with MultiprocessingParallelizer(nprocs=3, start_method="spawn") as par:
        assert par.run(_polling) == [True, True, True]
        assert par.run(lambda parallelizer: parallelizer.allreduce(parallelizer.id)) == 3


def _late_ones(parallelizer):
    """Every rank comes late in turn, then two at once; how long each process waited per barrier."""
    me, waited = parallelizer.id, []
    lates = [{rank} for rank in range(parallelizer.nprocs)] + [{1, parallelizer.nprocs - 1}]
    parallelizer.barrier()  # every process has started func (workers may start later than main)
    for late in lates:
        if me in late:
            time.sleep(LATE)
        start = time.perf_counter()
        parallelizer.barrier()
        waited.append(time.perf_counter() - start)
    return parallelizer.gather((waited, [sorted(late) for late in lates]))


@pytest.mark.parametrize("nprocs", [3, 4])
def test_the_dissemination_barrier_waits_for_every_late_process(monkeypatch, nprocs):
    monkeypatch.setattr(env, "usable_cpus", lambda: nprocs)
    with MultiprocessingParallelizer(nprocs=nprocs, start_method="fork") as par:
        assert par.run(_polling) == [True] * nprocs
        results = par.run(_late_ones)
    lates = results[0][1]
    for rank, (waited, _) in enumerate(results):
        for late, seconds in zip(lates, waited, strict=True):
            if rank not in late:
                assert seconds >= LATE / 2, f"rank {rank} left after {seconds:.3f} s while {late} came late"


def _many_barriers_between_collectives(parallelizer):
    """Barriers back to back and between other collectives: any mixed-up signal shows in the results."""
    problems = []
    for step in range(300):
        parallelizer.barrier()
        if step % 3 == 0:
            parallelizer.barrier()
        total = parallelizer.allreduce(step)
        if total != step * parallelizer.nprocs:
            problems.append((step, total))
    return parallelizer.gather(problems)


@pytest.mark.parametrize("nprocs", [2, 3, 4])
def test_barriers_back_to_back_stay_in_step(monkeypatch, nprocs):
    monkeypatch.setattr(env, "usable_cpus", lambda: nprocs)
    with MultiprocessingParallelizer(nprocs=nprocs, start_method="fork") as par:
        assert par.run(_many_barriers_between_collectives) == [[]] * nprocs


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
    out["after"] = parallelizer.allreduce(me, op="max")  # both still in step
    return parallelizer.gather(out)


def test_an_allreduce_on_two_polling_processes_gives_both_the_same_result(monkeypatch):
    monkeypatch.setattr(env, "usable_cpus", lambda: 2)
    with MultiprocessingParallelizer(nprocs=2, start_method="fork") as par:
        assert par.run(_polling) == [True, True]
        results = par.run(_exchanges)
    expected = {
        "sum": 3,
        "order": "ab",
        "array": (3.0, 3.0, (1 << 20,), False),
        "error": "TypeError: True",
        "after": 1,
    }
    assert results == [expected, expected]


CALLS = {
    "barrier": lambda parallelizer: parallelizer.barrier(),
    "allreduce": lambda parallelizer: parallelizer.allreduce(parallelizer.id),
}


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
        missing = rf"(DeadlockError: )?rank \d waits in {name}\(\) for rank\(s\) 1, which already returned from func"
        with pytest.raises((DeadlockError, RemoteError), match=missing):
            par.run(_rank_skips, name)
    with (
        MultiprocessingParallelizer(nprocs=nprocs, start_method="fork", timeout=0.5) as par,
        pytest.raises(TimeoutError, match=rf"waited more than 0.5 s in {name}\(\) for rank\(s\)"),
    ):
        par.run(_rank_sleeps, name)
    with (
        MultiprocessingParallelizer(nprocs=nprocs, start_method="fork") as par,
        pytest.raises(WorkerTerminatedError, match=f"rank {nprocs - 1}"),
    ):
        par.run(_rank_dies, name)
