"""Every kind of numpy array through every collective, on every backend.

The dtype sweep (datetimes, strings, records, long doubles ...), reductions
of every numeric dtype, non-contiguous and Fortran-ordered arrays, empty and
zero-dimensional arrays, and objects that hold large arrays.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from backends import spmd

DTYPES = [
    "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64", "longdouble", "complex64", "complex128",
    "bool", "datetime64[s]", "timedelta64[ms]", "U3", "S4", [("x", "i4"), ("y", "f8")],
]  # fmt: skip


def _sample(dtype, n):
    dtype = np.dtype(dtype)
    if dtype.names:
        out = np.zeros(n, dtype=dtype)
        out["x"] = np.arange(n)
        out["y"] = np.arange(n) / 2
        return out
    if dtype.kind in "US":
        return np.array([str(i % 1000) for i in range(n)]).astype(dtype)
    if dtype.kind == "b":
        return np.arange(n) % 3 == 0
    if dtype.kind in "mM":
        return np.arange(n).astype(dtype)
    return (np.arange(n) % 100).astype(dtype)


def _every_collective_body(dtype, rows, parallelizer):
    data = _sample(dtype, rows * parallelizer.nprocs + 2).reshape(-1, 1)  # uneven split
    got = parallelizer.broadcast(data if parallelizer.on_main else None)
    assert got.dtype == data.dtype and got.shape == data.shape
    np.testing.assert_array_equal(got, data)
    block = parallelizer.scatter(data if parallelizer.on_main else None)
    np.testing.assert_array_equal(block, np.array_split(data, parallelizer.nprocs)[parallelizer.id])
    assert block.dtype == data.dtype
    gathered = parallelizer.gather(block)
    if parallelizer.on_main:
        assert gathered.dtype == data.dtype
        np.testing.assert_array_equal(gathered, data)
    else:
        assert gathered is None
    everywhere = parallelizer.allgather(block)
    assert everywhere.dtype == data.dtype
    np.testing.assert_array_equal(everywhere, data)
    return True


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_broadcast_scatter_gather_allgather(par, dtype):
    assert par.run(_every_collective_body, dtype, 3)


@pytest.mark.parametrize("dtype", ["datetime64[s]", "U3", [("x", "i4"), ("y", "f8")], "longdouble"], ids=str)
def test_every_dtype_large_enough_to_take_the_bulk_paths(par, dtype):
    # over a MiB per block: pulled from the sender's memory or streamed, never pickled
    assert par.run(_every_collective_body, dtype, 100_000)


REDUCTION_CASES = [
    (dtype, op)
    for dtype in ["int32", "int64", "uint8", "float32", "float64", "complex128", "bool", "float16"]
    for op in ["sum", "prod", "min", "max"]
    if not (op in ("min", "max") and dtype == "complex128")  # complex numbers have no order
]


def _reduction_body(dtype, op, parallelizer):
    mine = (np.arange(6) % 4 + parallelizer.id).astype(dtype)
    mine_of = [(np.arange(6) % 4 + rank).astype(dtype) for rank in range(parallelizer.nprocs)]
    ufunc = {"sum": np.add, "prod": np.multiply, "min": np.minimum, "max": np.maximum}[op]
    expected = mine_of[0]
    for other in mine_of[1:]:
        expected = ufunc(expected, other)
    everywhere = parallelizer.allreduce(mine, op=op)
    np.testing.assert_array_equal(everywhere, expected)
    assert everywhere.dtype == expected.dtype
    last = parallelizer.nprocs - 1
    on_root = parallelizer.reduce(mine, op=op, root=last)
    if parallelizer.id == last:
        np.testing.assert_array_equal(on_root, expected)
        assert on_root.dtype == expected.dtype
    else:
        assert on_root is None
    return True


@pytest.mark.parametrize(("dtype", "op"), REDUCTION_CASES)
def test_array_reductions_every_dtype(par, dtype, op):
    assert par.run(_reduction_body, dtype, op)


def _layouts_body(parallelizer):
    base = np.arange(60.0).reshape(6, 10)
    big = np.arange(400_000.0).reshape(4000, 100)  # 3 MB: the bulk paths
    for data in (base[:, ::2], np.asfortranarray(base), big[:, ::3], np.asfortranarray(big)):
        got = parallelizer.broadcast(data if parallelizer.on_main else None)
        np.testing.assert_array_equal(got, data)
        block = parallelizer.scatter(data if parallelizer.on_main else None)
        np.testing.assert_array_equal(block, np.array_split(data, parallelizer.nprocs)[parallelizer.id])
        assert block.flags.writeable
        np.testing.assert_array_equal(parallelizer.allgather(block), data)
        gathered = parallelizer.gather(np.asfortranarray(block))
        if parallelizer.on_main:
            np.testing.assert_array_equal(gathered, data)
    return True


def test_non_contiguous_and_fortran_arrays(par):
    assert par.run(_layouts_body)


def _empty_body(parallelizer):
    np.testing.assert_array_equal(parallelizer.allgather(np.zeros((0, 3))), np.zeros((0, 3)))
    assert parallelizer.allgather(np.array(parallelizer.id)) == list(range(parallelizer.nprocs))
    assert parallelizer.broadcast(np.array(5.0) if parallelizer.on_main else None) == 5.0
    block = parallelizer.scatter(np.zeros((0, 2)) if parallelizer.on_main else None)
    assert block.shape == (0, 2)
    return True


def test_zero_length_and_zero_dim(par):
    assert par.run(_empty_body)


@dataclasses.dataclass
class Frame:
    positions: np.ndarray
    label: str


def _objects_body(parallelizer):
    big = np.arange(3_000_000, dtype=np.float64)  # 24 MB: out of band
    payload = {"a": big, "frames": [Frame(big[:10] + 1, "x")], "n": 3} if parallelizer.on_main else None
    got = parallelizer.broadcast(payload)
    np.testing.assert_array_equal(got["a"], big)
    assert got["frames"][0].label == "x" and got["n"] == 3
    if not parallelizer.on_main:
        got["a"][0] = -1  # writable, and the receiver's own copy
    gathered = parallelizer.gather({"rank": parallelizer.id, "data": np.full(200_000, parallelizer.id)})
    if parallelizer.on_main:
        assert [item["rank"] for item in gathered] == list(range(parallelizer.nprocs))
        assert all((item["data"] == rank).all() for rank, item in enumerate(gathered))
    nprocs, rank = parallelizer.nprocs, parallelizer.id
    dest, source = (rank + 1) % nprocs, (rank - 1) % nprocs
    if rank % 2 == 0 or nprocs == 1:
        parallelizer.send({"x": big[:100_000] * rank}, dest=dest)
        received = parallelizer.recv(source)
    else:
        received = parallelizer.recv(source)
        parallelizer.send({"x": big[:100_000] * rank}, dest=dest)
    np.testing.assert_array_equal(received["x"], big[:100_000] * source)
    return True


def test_objects_holding_arrays(par):
    assert par.run(_objects_body)


def _strided_body(parallelizer):
    """Large non-contiguous parts (sent as C-order copies), gathered again and again: every value intact."""
    me, checks = parallelizer.id, []
    for call in range(3):
        base = np.arange(3 * 160_003, dtype=np.float64).reshape(160_003, 3) * (me + 1) + call
        mine = base[:, 1]  # a strided column, 1.3 MB
        want = [np.arange(160_003) * 3.0 * (rank + 1) + (1 + rank) + call for rank in range(parallelizer.nprocs)]
        gathered = parallelizer.allgather(mine)
        checks.append(np.array_equal(gathered, np.concatenate(want)))
        root = parallelizer.gather(mine)
        checks.append(np.array_equal(root, np.concatenate(want)) if parallelizer.on_main else root is None)
    return parallelizer.allgather(checks)


def test_large_strided_parts_arrive_intact(par):
    got = spmd(par, _strided_body)
    if par.on_main:
        assert got == [[True] * 6] * par.nprocs
