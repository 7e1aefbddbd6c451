"""map on every backend: item-wise and vectorized, static and dynamic."""

from __future__ import annotations

import collections
import reprlib
import time

import numpy as np
import pytest

from parallelizer import RemoteError

SCHEDULES = ["static", "dynamic"]


def _square(x):
    return x * x


def _map_body(data, schedule, vectorized, chunksize, parallelizer, func=_square):
    result = parallelizer.map(
        func,
        data if parallelizer.on_main else None,
        vectorized=vectorized,
        schedule=schedule,
        chunksize=chunksize,
    )
    if not parallelizer.on_main:
        assert result is None
    return result


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("size", [0, 1, 2, 5, 101])
def test_itemwise_map_in_input_order(par, schedule, size):
    result = par.run(_map_body, list(range(size)), schedule, False, None)
    if par.on_main:
        assert result == [x * x for x in range(size)]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("vectorized", [False, True])
def test_map_over_a_deque(par, schedule, vectorized):
    # a deque is a Sequence that cannot be sliced: root lists it once
    func = (lambda block: [x * x for x in block]) if vectorized else _square
    result = par.run(_map_body, collections.deque(range(7)), schedule, vectorized, None, func=func)
    if par.on_main:
        assert result == [x * x for x in range(7)]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_vectorized_map_concatenates_arrays(par, schedule):
    # the seed example: map(lambda b: 1 + b, np.arange(10), vectorized=True)
    result = par.run(_map_body, np.arange(10), schedule, True, None, func=lambda block: 1 + block)
    if par.on_main:
        assert isinstance(result, np.ndarray)
        np.testing.assert_array_equal(result, np.arange(1, 11))


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_vectorized_map_concatenates_lists(par, schedule):
    result = par.run(_map_body, list("abcdefg"), schedule, True, 2, func=lambda block: [c.upper() for c in block])
    if par.on_main:
        assert result == list("ABCDEFG")


def test_vectorized_map_other_results_one_per_block(par):
    result = par.run(_map_body, list(range(10)), "static", True, None, func=sum)
    if par.on_main:
        blocks = [b for b in np.array_split(np.arange(10), par.nprocs) if len(b)]
        assert result == [int(b.sum()) for b in blocks]


def test_vectorized_map_skips_empty_blocks(par):
    # fewer items than processes: func never sees an empty block
    def func(block):
        assert len(block) > 0
        return [max(block)]

    result = par.run(_map_body, [5, 7], "static", True, None, func=func)
    if par.on_main:
        assert result == ([7] if par.nprocs == 1 else [5, 7])


def test_map_of_2d_array_rows(par):
    data = np.arange(20.0).reshape(10, 2)
    result = par.run(_map_body, data, "static", False, None, func=lambda row: float(row.sum()))
    if par.on_main:
        assert result == [float(row.sum()) for row in data]


@pytest.mark.parametrize("chunksize", [None, 1, 3, 1000])
def test_dynamic_map_chunksizes(par, chunksize):
    result = par.run(_map_body, list(range(37)), "dynamic", False, chunksize)
    if par.on_main:
        assert result == [x * x for x in range(37)]


def _uneven(x):
    if x % 7 == 0:
        time.sleep(0.01)
    return -x


def test_dynamic_map_with_uneven_tasks(par):
    result = par.run(_map_body, list(range(60)), "dynamic", False, None, func=_uneven)
    if par.on_main:
        assert result == [-x for x in range(60)]


def _root_map_body(parallelizer):
    root = parallelizer.nprocs - 1
    data = list(range(9)) if parallelizer.id == root else None
    static = parallelizer.map(_square, data, root=root)
    dynamic = parallelizer.map(_square, data, root=root, schedule="dynamic")
    return static, dynamic


def test_map_with_another_root(par):
    static, dynamic = par.run(_root_map_body)
    if par.id == par.nprocs - 1:
        assert static == dynamic == [x * x for x in range(9)]
    else:
        assert static is None and dynamic is None


def test_map_with_closure(par):
    offset = 100
    result = par.run(_map_body, list(range(6)), "static", False, None, func=lambda x: x + offset)
    if par.on_main:
        assert result == [x + offset for x in range(6)]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_map_with_progress_bar(par, schedule, capsys):
    result = par.run(_progress_body, schedule)
    if par.on_main:
        assert result == [x + 1 for x in range(30)]
        assert "30/30" in capsys.readouterr().err


def _progress_body(schedule, parallelizer):
    data = list(range(30)) if parallelizer.on_main else None
    return parallelizer.map(lambda x: x + 1, data, schedule=schedule, progress=True)


def _large_chunks_body(parallelizer):
    # early guided chunks are tens of thousands of items: messages far over
    # any eager limit, both ways at once (a deadlock under MPI's rendezvous)
    data = list(range(-60_000, 60_000)) if parallelizer.on_main else None
    return parallelizer.map(abs, data, schedule="dynamic")


def test_dynamic_map_with_large_chunks(par):
    result = par.run(_large_chunks_body)
    if par.on_main:
        assert result == [abs(x) for x in range(-60_000, 60_000)]


BAD = "bad" + "x" * 100  # shown truncated


def _refuse_bad(item):
    if item == BAD:
        raise ValueError("a bad item")
    return item


def _failing_map_body(index, schedule, parallelizer):
    data = ["ok"] * 11
    data[index] = BAD
    return parallelizer.map(_refuse_bad, data if parallelizer.on_main else None, schedule=schedule)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("index", [0, 10])  # in main's block / in the last rank's block
def test_a_failing_item_is_named_by_its_index_and_value(par, schedule, index):
    from parallelizer import MPIParallelizer

    if isinstance(par, MPIParallelizer):
        pytest.skip("under MPI a failing rank aborts the job, printing its traceback and this note")
    with pytest.raises((ValueError, RemoteError)) as info:
        par.run(_failing_map_body, index, schedule)
    err = info.value
    note = f"(in map item {index}: {reprlib.repr(BAD)})"
    assert len(note) < 60  # a short repr
    if isinstance(err, RemoteError):
        assert err.exc_type == "ValueError" and str(err).endswith(f"ValueError: a bad item\n{note}")
        assert err.__cause__.__notes__ == [note]
    else:
        assert err.__notes__ == [note]
    if schedule == "static":  # who runs which item is fixed
        assert isinstance(err, RemoteError) == (index == 10 and par.nprocs > 1)
    assert par.run(_map_body, [1, 2], schedule, False, None) == [1, 4]  # still usable
