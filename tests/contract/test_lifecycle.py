"""Identity, run, with-blocks, lookup inside run, pickling parallelizers."""

from __future__ import annotations

import pickle

import pytest

from parallelizer import Parallelizer


def _identity_body(parallelizer):
    assert 0 <= parallelizer.id < parallelizer.nprocs
    assert parallelizer.on_main == (parallelizer.id == 0)
    return parallelizer.gather((parallelizer.id, parallelizer.nprocs, parallelizer.on_main))


def test_identity(par):
    result = par.run(_identity_body)
    if par.on_main:
        assert result == [(rank, par.nprocs, rank == 0) for rank in range(par.nprocs)]


def _lookup_body(parallelizer):
    found = Parallelizer.lookup(None)
    assert found is parallelizer
    assert Parallelizer.lookup(parallelizer) is parallelizer
    return parallelizer.allgather(found.id)


def test_lookup_none_inside_run_finds_the_running_parallelizer(par):
    assert par.run(_lookup_body) == list(range(par.nprocs))


def test_lookup_none_inside_with_block(par):
    with par:
        assert Parallelizer.lookup(None) is par
        with par:  # re-entering counts
            assert Parallelizer.lookup(None) is par
        assert Parallelizer.lookup(None) is par


def _args_body(a, b, *, scale=1, parallelizer):
    return (a + b) * scale + parallelizer.id


def test_run_passes_arguments_and_returns_callers_result(par):
    assert par.run(_args_body, 1, 2, scale=10) == 30 + par.id


def test_run_many_times(par):
    results = [par.run(_args_body, i, 0) for i in range(5)]
    assert results == [i + par.id for i in range(5)]


class _Holder:
    """An object holding the parallelizer, whose bound method is run."""

    def __init__(self, parallelizer, factor):
        self.par = parallelizer
        self.factor = factor

    def work(self, parallelizer=None):
        assert self.par.id == parallelizer.id and self.par.nprocs == parallelizer.nprocs
        return parallelizer.allreduce(self.factor)

    def go(self):
        return self.par.run(self.work)


def test_bound_method_of_object_holding_the_parallelizer(par):
    assert _Holder(par, 3).go() == 3 * par.nprocs


def test_lambda_and_closure(par):
    offset = 5
    assert par.run(lambda parallelizer: parallelizer.allreduce(offset)) == 5 * par.nprocs


def _broadcast_parallelizer_body(parallelizer):
    got = parallelizer.broadcast(parallelizer if parallelizer.on_main else None)
    # on each process the broadcast parallelizer stands for that process's view
    assert got.id == parallelizer.id and got.nprocs == parallelizer.nprocs
    return True


def test_parallelizer_can_be_broadcast(par):
    assert par.run(_broadcast_parallelizer_body)


def test_parallelizer_pickles_in_process(par):
    clone = pickle.loads(pickle.dumps(par))
    assert type(clone) is type(par)
    assert clone.id == par.id and clone.nprocs == par.nprocs


def test_run_checks_its_arguments(par):
    with pytest.raises(TypeError, match="func"):
        par.run(42)
    with pytest.raises(TypeError, match="parallelizer"):
        par.run(_args_body, 1, 2, parallelizer=par)


def _print_body(parallelizer):
    parallelizer.print("from main", where="main")
    parallelizer.print("from all", where="all")
    parallelizer.print("from workers", where="workers")
    parallelizer.barrier()
    return True


def _lazy_print_body(parallelizer):
    values = [3, 1, 4] if parallelizer.on_main else None
    calls = []

    def counted(text):
        calls.append(text)
        return text

    parallelizer.print(lambda: f"max {max(values)}")  # max(None) would raise on a worker
    parallelizer.print(lambda: counted(f"worker {parallelizer.id}"), where="workers")
    parallelizer.print(lambda: counted("everyone"), where="all")
    parallelizer.print(int, where="main")  # a class is printed, not called
    parallelizer.barrier()
    return parallelizer.gather(calls)


def test_print_calls_a_function_only_where_it_prints(par, capfd):
    from parallelizer import MPIParallelizer

    calls = par.run(_lazy_print_body)
    lines = capfd.readouterr().out.splitlines()
    n = par.nprocs
    if par.on_main:
        assert calls == [["everyone"]] + [[f"worker {rank}", "everyone"] for rank in range(1, n)]
    if isinstance(par, MPIParallelizer) and not par.on_main:
        assert lines == [f"[{par.id}/{n}] worker {par.id}", f"[{par.id}/{n}] everyone"]
    else:
        assert lines[:3] == ["max 4", "everyone", "<class 'int'>"]
        workers = [f"[{rank}/{n}] {text}" for rank in range(1, n) for text in (f"worker {rank}", "everyone")]
        assert sorted(lines[3:]) == ([] if isinstance(par, MPIParallelizer) else sorted(workers))


def test_print(par, capfd):
    from parallelizer import MPIParallelizer

    assert par.run(_print_body)
    lines = capfd.readouterr().out.splitlines()
    n = par.nprocs
    mine = ["from main", "from all"] if par.on_main else [f"[{par.id}/{n}] from all", f"[{par.id}/{n}] from workers"]
    if isinstance(par, MPIParallelizer):  # every rank writes its own lines to its own stdout
        assert lines == mine
    else:  # workers' lines are printed by main, in the order they arrive
        workers = [f"[{rank}/{n}] from {where}" for rank in range(1, n) for where in ("all", "workers")]
        assert lines[:2] == mine and sorted(lines[2:]) == sorted(workers)
