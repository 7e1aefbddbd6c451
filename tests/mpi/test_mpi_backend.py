"""MPIParallelizer inside an MPI job: run with ``mpiexec -n N python -m pytest --with-mpi``.

Every rank runs every test; assertions hold on every rank.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from parallelizer import MPIParallelizer

pytestmark = pytest.mark.mpi

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


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_broadcast_scatter_gather_allgather(par, dtype):
    data = _sample(dtype, 3 * par.nprocs + 2).reshape(-1, 1)  # uneven split
    got = par.broadcast(data if par.on_main else None)
    assert got.dtype == data.dtype and got.shape == data.shape
    np.testing.assert_array_equal(got, data)
    block = par.scatter(data if par.on_main else None)
    np.testing.assert_array_equal(block, np.array_split(data, par.nprocs)[par.id])
    assert block.dtype == data.dtype
    gathered = par.gather(block)
    if par.on_main:
        assert gathered.dtype == data.dtype
        np.testing.assert_array_equal(gathered, data)
    else:
        assert gathered is None
    np.testing.assert_array_equal(par.allgather(block), data)


REDUCTION_CASES = [
    (dtype, op)
    for dtype in ["int32", "int64", "uint8", "float32", "float64", "complex128", "bool", "float16"]
    for op in ["sum", "prod", "min", "max"]
    if not (op in ("min", "max") and dtype == "complex128")  # complex numbers have no order
]


@pytest.mark.parametrize(("dtype", "op"), REDUCTION_CASES)
def test_array_reductions_every_dtype(par, dtype, op):
    mine = (np.arange(6) % 4 + par.id).astype(dtype)
    mine_of = [(np.arange(6) % 4 + rank).astype(dtype) for rank in range(par.nprocs)]
    ufunc = {"sum": np.add, "prod": np.multiply, "min": np.minimum, "max": np.maximum}[op]
    expected = mine_of[0]
    for other in mine_of[1:]:
        expected = ufunc(expected, other)
    everywhere = par.allreduce(mine, op=op)
    np.testing.assert_array_equal(everywhere, expected)
    assert everywhere.dtype == expected.dtype
    on_root = par.reduce(mine, op=op, root=par.nprocs - 1)
    if par.id == par.nprocs - 1:
        np.testing.assert_array_equal(on_root, expected)
    else:
        assert on_root is None


def test_non_contiguous_and_fortran_arrays(par):
    base = np.arange(60.0).reshape(6, 10)
    strided = base[:, ::2]  # not contiguous
    fortran = np.asfortranarray(base)
    for data in (strided, fortran):
        np.testing.assert_array_equal(par.broadcast(data if par.on_main else None), data)
        block = par.scatter(data if par.on_main else None)
        np.testing.assert_array_equal(block, np.array_split(data, par.nprocs)[par.id])
        np.testing.assert_array_equal(par.allgather(block), data)


def test_zero_length_and_zero_dim(par):
    empty = np.zeros((0, 3))
    np.testing.assert_array_equal(par.allgather(empty), np.zeros((0, 3)))
    assert par.allgather(np.array(par.id)) == list(range(par.nprocs))
    assert par.broadcast(np.array(5.0) if par.on_main else None) == 5.0


@dataclasses.dataclass
class Frame:
    positions: np.ndarray
    label: str


def test_objects_holding_arrays(par):
    big = np.arange(3_000_000, dtype=np.float64)  # 24 MB: out of band
    payload = {"a": big, "frames": [Frame(big[:10] + 1, "x")], "n": 3} if par.on_main else None
    got = par.broadcast(payload)
    np.testing.assert_array_equal(got["a"], big)
    assert got["frames"][0].label == "x" and got["n"] == 3
    if not par.on_main:
        got["a"][0] = -1  # writable, and the receiver's own copy
    gathered = par.gather({"rank": par.id, "data": np.full(200_000, par.id)})
    if par.on_main:
        assert [item["rank"] for item in gathered] == list(range(par.nprocs))
        assert all((item["data"] == rank).all() for rank, item in enumerate(gathered))
    dest, source = (par.id + 1) % par.nprocs, (par.id - 1) % par.nprocs
    if par.id % 2 == 0 or par.nprocs == 1:
        par.send({"x": big[:100_000] * par.id}, dest=dest)
        received = par.recv(source)
    else:
        received = par.recv(source)
        par.send({"x": big[:100_000] * par.id}, dest=dest)
    np.testing.assert_array_equal(received["x"], big[:100_000] * source)


def test_sub_communicators(par):
    from mpi4py import MPI

    color = par.id % 2
    sub_comm = MPI.COMM_WORLD.Split(color, key=par.id)
    try:
        sub = MPIParallelizer(comm=sub_comm)
        members = [rank for rank in range(par.nprocs) if rank % 2 == color]
        assert sub.nprocs == len(members) and sub.id == members.index(par.id)
        assert sub.allgather(par.id) == members
        assert sub.allreduce(1) == len(members)
        block = sub.scatter(np.arange(10) if sub.on_main else None)
        np.testing.assert_array_equal(sub.allgather(block), np.arange(10))
        result = sub.map(lambda x: x * x, list(range(7)) if sub.on_main else None, schedule="dynamic")
        if sub.on_main:
            assert result == [x * x for x in range(7)]
    finally:
        sub_comm.Free()


def test_parallelizer_travels_between_ranks(par):
    got = par.broadcast(par if par.on_main else None)
    assert got is par  # each rank gets its own view
    assert pickle.loads(pickle.dumps(par)) is par


def test_comm_must_be_an_intracommunicator(par):
    with pytest.raises(TypeError, match="comm"):
        MPIParallelizer(comm="world")


def test_messages_beyond_the_int_limit_take_the_chunked_paths(par, monkeypatch):
    # Pretend the library is MPI-3 with tiny C ints and tiny chunks: the
    # fallbacks for counts over INT_MAX run with small arrays.
    from parallelizer._mpi import collectives, messages

    monkeypatch.setattr(collectives, "NATIVE_LARGE_COUNTS", False)
    monkeypatch.setattr(collectives, "INT_MAX", 1000)
    monkeypatch.setattr(messages, "CHUNK", 4096)
    data = np.arange(40_000, dtype=np.float64).reshape(-1, 4)
    np.testing.assert_array_equal(par.broadcast(data if par.on_main else None), data)
    block = par.scatter(data if par.on_main else None)
    np.testing.assert_array_equal(block, np.array_split(data, par.nprocs)[par.id])
    gathered = par.gather(block)
    if par.on_main:
        np.testing.assert_array_equal(gathered, data)
    np.testing.assert_array_equal(par.allgather(block), data)
    text = "x" * 100_000  # a long pickle body: chunked too
    assert par.broadcast(text if par.on_main else None) == text


def test_dynamic_map_and_recv_any(par):
    result = par.map(lambda x: -x, list(range(50)) if par.on_main else None, schedule="dynamic", chunksize=3)
    if par.on_main:
        assert result == [-x for x in range(50)]
    vectorized = par.map(np.sqrt, np.arange(20.0) if par.on_main else None, vectorized=True, schedule="dynamic")
    if par.on_main:
        np.testing.assert_allclose(vectorized, np.sqrt(np.arange(20.0)))
