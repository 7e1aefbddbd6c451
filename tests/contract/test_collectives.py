"""The collectives, as ../shared/API.md states them, on every backend.

Each test runs an SPMD body with ``par.run``; assertions about a process's
own view are made inside the body (a failure there surfaces as RemoteError
on main, or aborts the MPI job), assertions about main's result after it.
"""

from __future__ import annotations

import collections
import time

import numpy as np
import pytest

# ---------------------------------------------------------------- broadcast


def _broadcast_body(root, parallelizer):
    obj = {"step": 3, "name": "woop", "values": [1, 2.5, None]} if parallelizer.id == root else None
    got = parallelizer.broadcast(obj, root=root)
    assert got == {"step": 3, "name": "woop", "values": [1, 2.5, None]}
    return got


@pytest.mark.parametrize("root_from_end", [False, True])
def test_broadcast_object_from_any_root(par, root_from_end):
    root = par.nprocs - 1 if root_from_end else 0
    result = par.run(_broadcast_body, root)
    assert result["step"] == 3


def _broadcast_array_body(dtype, parallelizer):
    source = (np.arange(24) % 5).astype(dtype).reshape(2, 3, 4)
    got = parallelizer.broadcast(source if parallelizer.on_main else None)
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.dtype(dtype) and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, source)
    assert got.flags.writeable
    if not parallelizer.on_main:
        got.flat[0] = got.flat[1]  # the receiver's own copy: main's is unchanged
    parallelizer.barrier()
    return parallelizer.gather(bool((got == source).all()))


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "int8", "uint16", "complex128", "bool"])
def test_broadcast_array_keeps_dtype_and_shape(par, dtype):
    unchanged = par.run(_broadcast_array_body, dtype)
    if par.on_main:
        assert unchanged == [True] + [False] * (par.nprocs - 1)


def _broadcast_dict_with_arrays_body(parallelizer):
    payload = {"a": np.ones((5, 2)), "b": [np.arange(3), "text"], "c": 7} if parallelizer.on_main else None
    got = parallelizer.broadcast(payload)
    np.testing.assert_array_equal(got["a"], np.ones((5, 2)))
    np.testing.assert_array_equal(got["b"][0], np.arange(3))
    assert got["b"][1] == "text" and got["c"] == 7
    got["a"][0, 0] = -parallelizer.id  # writable, own memory
    return True


def test_broadcast_object_holding_arrays(par):
    assert par.run(_broadcast_dict_with_arrays_body)


# ---------------------------------------------------------------- scatter


def _scatter_body(data, root, parallelizer):
    mine = parallelizer.scatter(data if parallelizer.id == root else None, root=root)
    expected = np.array_split(np.asarray(data), parallelizer.nprocs)[parallelizer.id]
    if isinstance(data, np.ndarray):
        assert isinstance(mine, np.ndarray)
        np.testing.assert_array_equal(mine, expected)
        assert mine.dtype == data.dtype
    else:
        assert isinstance(mine, list)
        assert mine == expected.tolist()
    return parallelizer.gather(len(mine), root=root)


@pytest.mark.parametrize(
    "data",
    [
        np.arange(1000),
        np.arange(10.0),
        np.arange(7),  # uneven for 2 and 3
        np.arange(2),  # fewer items than processes for 3
        np.arange(0),  # empty
        list(range(11)),
        tuple(range(5)),
        range(8),
        ["a", "b", "c", "d"],
        collections.deque(range(9)),  # a sequence that cannot be sliced: listed once on root
        collections.UserList(range(6)),
    ],
    ids=[
        "arange1000",
        "float10",
        "uneven7",
        "two",
        "empty",
        "list11",
        "tuple5",
        "range8",
        "strings",
        "deque",
        "userlist",
    ],
)
def test_scatter_splits_like_array_split(par, data):
    lengths = par.run(_scatter_body, data, 0)
    if par.on_main:
        assert lengths == [len(block) for block in np.array_split(np.asarray(data), par.nprocs)]


def test_scatter_from_last_rank(par):
    root = par.nprocs - 1
    lengths = par.run(_scatter_body, np.arange(10), root)
    if par.id == root:
        assert lengths == [len(block) for block in np.array_split(np.arange(10), par.nprocs)]
    else:
        assert lengths is None


def _scatter_2d_body(parallelizer):
    data = np.arange(30.0).reshape(10, 3) if parallelizer.on_main else None
    block = parallelizer.scatter(data)
    assert block.ndim == 2 and block.shape[1] == 3
    assert block.flags.writeable
    if parallelizer.on_main:  # root's block is a view of its own data: no copy
        assert np.shares_memory(block, data)
    block *= 2
    return parallelizer.gather(block)


def test_scatter_then_gather_is_identity_times_two(par):
    result = par.run(_scatter_2d_body)
    if par.on_main:
        np.testing.assert_array_equal(result, np.arange(30.0).reshape(10, 3) * 2)


def _scatter_read_only_body(parallelizer):
    data = None
    if parallelizer.on_main:
        data = np.arange(12.0)
        data.flags.writeable = False
    block = parallelizer.scatter(data)
    assert block.flags.writeable  # every block is writable, even from read-only data
    block[:] = -1
    return parallelizer.gather(block)


def test_scatter_of_read_only_data_gives_writable_blocks(par):
    result = par.run(_scatter_read_only_body)
    if par.on_main:
        np.testing.assert_array_equal(result, -np.ones(12))


# ---------------------------------------------------------------- gather


def _gather_body(kind, root, parallelizer):
    rank = parallelizer.id
    if kind == "int":
        obj = rank * 10
    elif kind == "array":
        obj = np.full((rank + 1, 2), rank, dtype=np.int32)
    elif kind == "ragged_trailing":
        obj = np.zeros((2, rank + 1))
    elif kind == "mixed":
        obj = np.arange(2) if rank % 2 == 0 else [rank]
    elif kind == "zero_d":
        obj = np.array(rank)
    elif kind == "promote":
        obj = np.arange(2, dtype=np.int64) if rank == 0 else np.arange(2, dtype=np.float32) + 0.5
    else:
        raise AssertionError(kind)
    return parallelizer.gather(obj, root=root)


def test_gather_objects_gives_list_in_rank_order(par):
    result = par.run(_gather_body, "int", 0)
    if par.on_main:
        assert result == [10 * rank for rank in range(par.nprocs)]


def test_gather_arrays_concatenates(par):
    result = par.run(_gather_body, "array", 0)
    if par.on_main:
        expected = np.concatenate([np.full((r + 1, 2), r, dtype=np.int32) for r in range(par.nprocs)])
        assert isinstance(result, np.ndarray) and result.dtype == np.int32
        np.testing.assert_array_equal(result, expected)
        assert result.flags.writeable


def test_gather_arrays_with_different_trailing_shapes_gives_list(par):
    result = par.run(_gather_body, "ragged_trailing", 0)
    if par.on_main:
        if par.nprocs == 1:
            assert isinstance(result, np.ndarray) and result.shape == (2, 1)
        else:
            assert isinstance(result, list)
            assert [part.shape for part in result] == [(2, r + 1) for r in range(par.nprocs)]


def test_gather_arrays_and_lists_gives_list(par):
    result = par.run(_gather_body, "mixed", 0)
    if par.on_main:
        if par.nprocs == 1:
            np.testing.assert_array_equal(result, np.arange(2))
        else:
            assert isinstance(result, list)
            assert result[1] == [1]
            np.testing.assert_array_equal(result[0], np.arange(2))


def test_gather_zero_dimensional_arrays_gives_list(par):
    result = par.run(_gather_body, "zero_d", 0)
    if par.on_main:
        assert isinstance(result, list) and [int(x) for x in result] == list(range(par.nprocs))


def test_gather_promotes_dtypes_like_concatenate(par):
    result = par.run(_gather_body, "promote", 0)
    if par.on_main:
        parts = [np.arange(2, dtype=np.int64)] + [np.arange(2, dtype=np.float32) + 0.5] * (par.nprocs - 1)
        expected = np.concatenate(parts)
        assert result.dtype == expected.dtype
        np.testing.assert_array_equal(result, expected)


def test_gather_to_last_rank(par):
    root = par.nprocs - 1
    result = par.run(_gather_body, "int", root)
    if par.id == root:
        assert result == [10 * rank for rank in range(par.nprocs)]
    else:
        assert result is None


def _gather_large_body(parallelizer):
    n = 3_000_000  # 24 MB in all: the out-of-band path of every backend
    data = np.arange(n, dtype=np.float64) if parallelizer.on_main else None
    block = parallelizer.scatter(data)
    block += 1
    out = parallelizer.gather(block)
    if parallelizer.on_main:
        np.testing.assert_array_equal(out, np.arange(n, dtype=np.float64) + 1)
    return True


def test_scatter_gather_large_array(par):
    assert par.run(_gather_large_body)


# ---------------------------------------------------------------- allgather


def _allgather_body(parallelizer):
    as_list = parallelizer.allgather(parallelizer.id)
    assert as_list == list(range(parallelizer.nprocs))
    as_array = parallelizer.allgather(np.full(2, parallelizer.id))
    np.testing.assert_array_equal(as_array, np.repeat(np.arange(parallelizer.nprocs), 2))
    as_array[0] = 99  # each process's own
    return parallelizer.gather(int(as_array[1]))


def test_allgather_gives_everyone_the_gather(par):
    result = par.run(_allgather_body)
    if par.on_main:
        assert result == [0] * par.nprocs


# ---------------------------------------------------------------- reduce


def _reduce_body(op, root, parallelizer):
    rank = parallelizer.id
    scalar = parallelizer.reduce(rank + 1, op=op, root=root)
    array = parallelizer.reduce(np.array([rank + 1, 10 - rank]), op=op, root=root)
    both = parallelizer.allreduce(rank + 1, op=op)
    if rank != root:
        assert scalar is None and array is None
    return scalar, array, both


@pytest.mark.parametrize("op", ["sum", "prod", "min", "max"])
def test_reduce_named_ops(par, op):
    scalar, array, both = par.run(_reduce_body, op, 0)
    values = list(range(1, par.nprocs + 1))
    expect = {"sum": sum, "prod": np.prod, "min": min, "max": max}[op]
    if par.on_main:
        assert scalar == expect(values)
        columns = np.array([[r + 1, 10 - r] for r in range(par.nprocs)])
        ufunc = {"sum": np.sum, "prod": np.prod, "min": np.min, "max": np.max}[op]
        np.testing.assert_array_equal(array, ufunc(columns, axis=0))
    assert both == expect(values)


def _ordered_reduce_body(parallelizer):
    # string concatenation is associative but not commutative
    letter = "abcdefgh"[parallelizer.id]
    return parallelizer.reduce(letter, op=lambda a, b: a + b), parallelizer.allreduce(letter, op=lambda a, b: a + b)


def test_reduce_callable_applied_in_rank_order(par):
    on_root, everywhere = par.run(_ordered_reduce_body)
    expected = "abcdefgh"[: par.nprocs]
    if par.on_main:
        assert on_root == expected
    assert everywhere == expected


def _reduce_to_last_body(parallelizer):
    return parallelizer.reduce(parallelizer.id, root=parallelizer.nprocs - 1)


def test_reduce_to_last_rank(par):
    result = par.run(_reduce_to_last_body)
    if par.id == par.nprocs - 1:
        assert result == sum(range(par.nprocs))
    else:
        assert result is None


def _reduce_array_owned_body(parallelizer):
    mine = np.ones(3)
    total = parallelizer.allreduce(mine)
    total[:] = -1  # must not alias this process's input
    assert (mine == 1).all()
    return True


def test_allreduce_result_never_aliases_input(par):
    assert par.run(_reduce_array_owned_body)


# ---------------------------------------------------------------- barrier


def _barrier_body(parallelizer):
    assert parallelizer.barrier() is None
    assert parallelizer.wait() is None
    return parallelizer.allgather("after")


def test_barrier_and_wait(par):
    assert par.run(_barrier_body) == ["after"] * par.nprocs


LATE = 0.1
"""Seconds one process sleeps before a barrier the others are already in."""


def _barriers_with_one_late_process(parallelizer):
    """Each rank in turn comes late; when (wall clock) every process entered and left each barrier."""
    times = []
    parallelizer.barrier()  # every process has started func (workers may start later than main)
    for late in range(parallelizer.nprocs):
        if parallelizer.id == late:
            time.sleep(LATE)
        entered = time.time()
        parallelizer.barrier()
        times.append((entered, time.time()))
    return parallelizer.allgather(times)


def test_no_process_leaves_a_barrier_before_the_last_one_has_come(par):
    """Whichever rank comes last, no process leaves before it entered (one clock: the processes share a host).

    A causal check: a process held up by the scheduler only leaves later.
    """
    times = par.run(_barriers_with_one_late_process)
    for late in range(par.nprocs):
        came = times[late][late][0]
        for rank in range(par.nprocs):
            left = times[rank][late][1]
            assert left >= came, f"rank {rank} left barrier {late} {came - left:.4f} s before rank {late} came to it"


# ---------------------------------------------------------------- mixed sequences


def _many_collectives_body(parallelizer):
    total = 0
    for step in range(20):
        value = parallelizer.broadcast(step if parallelizer.on_main else None)
        block = parallelizer.scatter(list(range(step)) if parallelizer.on_main else None)
        total += parallelizer.allreduce(sum(block)) + value
    return total


def test_many_collectives_in_a_row(par):
    expected = sum(sum(range(step)) + step for step in range(20))
    assert par.run(_many_collectives_body) == expected


# ---------------------------------------------------------------- random round trips (same seeds on every rank)

_DTYPES = [np.int8, np.int32, np.float32, np.float64, np.complex64, np.bool_, np.dtype("U2"), np.dtype("M8[s]")]


def _random_array(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(0, 6, size=rng.integers(1, 4)))
    return (rng.integers(0, 50, size=shape) % 2 if seed % 5 == 0 else rng.integers(0, 50, size=shape)).astype(
        _DTYPES[seed % len(_DTYPES)]
    )


def _random_roundtrip_body(seed, parallelizer):
    data = _random_array(seed) if parallelizer.on_main else None
    block = parallelizer.scatter(data)
    return parallelizer.gather(block), parallelizer.allgather(block)


@pytest.mark.parametrize("seed", range(24))
def test_random_arrays_scatter_gather_identity(par, seed):
    gathered, everywhere = par.run(_random_roundtrip_body, seed)
    expected = _random_array(seed)
    for result in ([gathered] if par.on_main else []) + [everywhere]:
        assert result.dtype == expected.dtype and result.shape == expected.shape
        np.testing.assert_array_equal(result, expected)
