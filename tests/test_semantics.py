"""The semantics layer: splitting, joining, reducing, chunking, checks."""

from __future__ import annotations

import collections
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parallelizer import semantics
from parallelizer._core import checks


@given(st.integers(0, 500), st.integers(1, 40))
def test_block_bounds_match_array_split(length, nprocs):
    bounds = semantics.block_bounds(length, nprocs)
    expected = np.array_split(np.arange(length), nprocs)
    assert [stop - start for start, stop in bounds] == [len(block) for block in expected]
    assert bounds[0][0] == 0 and bounds[-1][1] == length
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))


@given(st.lists(st.integers(), max_size=60), st.integers(1, 9))
def test_split_then_join_is_identity_for_lists(items, nprocs):
    blocks = semantics.split(items, nprocs)
    assert all(isinstance(block, list) for block in blocks)
    assert semantics.join_map_results(blocks, vectorized=False) == items


@given(st.integers(0, 50), st.integers(1, 7), st.sampled_from(["int32", "float64", "complex64"]))
def test_split_then_gather_join_is_identity_for_arrays(length, nprocs, dtype):
    data = np.arange(length * 2, dtype=dtype).reshape(length, 2)
    joined = semantics.join_gathered(semantics.split(data, nprocs))
    assert joined.dtype == data.dtype
    np.testing.assert_array_equal(joined, data)


def test_blocks_are_views_of_root_data_unless_read_only():
    data = np.arange(10)
    assert np.shares_memory(semantics.take_block(data, 2, 5), data)
    assert np.shares_memory(semantics.root_block(data, 2, 5), data)
    data.flags.writeable = False
    copied = semantics.root_block(data, 2, 5)
    assert copied.flags.writeable and not np.shares_memory(copied, data)
    assert semantics.take_block(range(10), 2, 5) == [2, 3, 4]
    assert semantics.take_block((1, 2, 3), 0, 2) == [1, 2]


def test_concat_plan_decisions():
    meta = semantics.array_meta
    assert semantics.concat_plan([meta(np.zeros((2, 3))), meta(np.zeros((0, 3)))]).shape == (2, 3)
    assert semantics.concat_plan([meta(np.zeros((2, 3))), meta(np.zeros((2, 4)))]) is None
    assert semantics.concat_plan([meta(np.zeros(2)), None]) is None
    assert semantics.concat_plan([meta(np.array(1.0))]) is None  # 0-d: not concatenated
    assert semantics.concat_plan([]) is None
    plan = semantics.concat_plan([meta(np.zeros(2, np.int8)), meta(np.zeros(3, np.float32))])
    assert plan.dtype == np.float32 and plan.offsets == (0, 2) and plan.shape == (5,)
    # dtypes numpy cannot promote: a list, not an error
    structured = np.zeros(2, dtype=[("a", "i4")])
    assert semantics.concat_plan([meta(structured), meta(np.zeros(2))]) is None


def test_join_map_results():
    join = semantics.join_map_results
    assert join([[1, 2], [], [3]], vectorized=False) == [1, 2, 3]
    np.testing.assert_array_equal(join([np.arange(2), np.arange(2, 5)], vectorized=True), np.arange(5))
    assert join([[1], (2, 3)], vectorized=True) == [1, 2, 3]
    assert join([6, 15], vectorized=True) == [6, 15]
    assert join([], vectorized=True) == []


def test_resolve_op_and_fold():
    assert semantics.fold([1, 2, 3], semantics.resolve_op("sum")) == 6
    assert semantics.fold([2, 3, 4], semantics.resolve_op("prod")) == 24
    assert semantics.fold([3, 1, 2], semantics.resolve_op("min")) == 1
    assert semantics.fold([3, 1, 2], semantics.resolve_op("max")) == 3
    np.testing.assert_array_equal(
        semantics.fold([np.array([1, 5]), np.array([4, 2])], semantics.resolve_op("max")), [4, 5]
    )
    assert semantics.fold(["a", "b", "c"], lambda a, b: a + b) == "abc"
    single = np.arange(3)
    assert not np.shares_memory(semantics.fold([single], semantics.resolve_op("sum")), single)
    with pytest.raises(ValueError, match="op"):
        semantics.resolve_op("mean")
    with pytest.raises(TypeError, match="op"):
        semantics.resolve_op(3)


@given(st.integers(0, 3000), st.integers(1, 16), st.one_of(st.none(), st.integers(1, 50)))
def test_dynamic_chunks_cover_the_range_in_order(length, nprocs, chunksize):
    chunks = list(semantics.dynamic_chunks(length, nprocs, chunksize))
    assert [i for start, stop in chunks for i in range(start, stop)] == list(range(length))
    assert all(stop > start for start, stop in chunks)
    if chunksize is not None:
        assert all(stop - start <= chunksize for start, stop in chunks)
    else:  # guided: non-increasing sizes
        sizes = [stop - start for start, stop in chunks]
        assert sizes == sorted(sizes, reverse=True)


def test_checks_name_the_argument():
    with pytest.raises(ValueError, match=r"root must be in range\(0, 2\)"):
        checks.check_rank(2, 2, "root")
    with pytest.raises(TypeError, match="dest must be an int, not bool"):
        checks.check_rank(True, 2, "dest")
    with pytest.raises(ValueError, match="nprocs must be greater than 0"):
        checks.check_nprocs(0)
    with pytest.raises(TypeError, match="data must be a sequence"):
        checks.as_splittable({1, 2})
    assert checks.as_splittable(collections.deque([1, 2])) == [1, 2]
    assert checks.is_splittable(np.zeros((0, 3)))
    assert not checks.is_splittable(np.zeros(()))
    assert checks.check_rank(np.int64(1), 2, "root") == 1


def test_warm_pool_reuses_memory_its_arrays_no_longer_use():
    from parallelizer._core import memory as _memory

    first = _memory.empty((1 << 20,), "float64")  # 8 MiB: from the pool
    address = first.ctypes.data
    in_use, _ = _memory.pooled_bytes()
    assert in_use >= first.nbytes
    view = first[10:]
    del first
    again = _memory.empty((1 << 20,), "float64")
    second = again.ctypes.data
    assert second != address  # a view still holds the first chunk
    del view, again
    reused = _memory.empty((1 << 20,), "float64")
    assert reused.ctypes.data in (address, second)  # warm memory, not a new mapping
    small = _memory.empty((10,), "float64")  # below POOL_MIN: plain numpy memory
    assert small.base is None
    _memory.release()
