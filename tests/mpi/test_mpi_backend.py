"""What only the MPI backend has, inside an MPI job (``mpiexec -n N python -m pytest --with-mpi``).

Every rank runs every test; assertions hold on every rank. The behaviour
every backend shares (dtypes, layouts, ...) is in ``tests/contract``.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from parallelizer import MPIParallelizer

pytestmark = pytest.mark.mpi


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
    from parallelizer._mpi import messages, plans

    monkeypatch.setattr(plans, "NATIVE_LARGE_COUNTS", False)
    monkeypatch.setattr(plans, "INT_MAX", 1000)
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
