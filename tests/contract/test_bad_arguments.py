"""Bad arguments raise TypeError/ValueError naming the argument, before
anything is sent, on every backend (called on main outside run, or on every
rank under MPI)."""

from __future__ import annotations

import numpy as np
import pytest

BAD_RANKS = [(-1, ValueError), (99, ValueError), (1.5, TypeError), ("0", TypeError), (True, TypeError)]


@pytest.mark.parametrize(("root", "error"), BAD_RANKS)
def test_bad_root(par, root, error):
    for call in (
        lambda: par.broadcast(1, root=root),
        lambda: par.scatter([1, 2], root=root),
        lambda: par.gather(1, root=root),
        lambda: par.reduce(1, root=root),
        lambda: par.map(abs, [1], root=root),
    ):
        with pytest.raises(error, match="root"):
            call()


@pytest.mark.parametrize(("rank", "error"), BAD_RANKS)
def test_bad_dest_and_source(par, rank, error):
    with pytest.raises(error, match="dest"):
        par.send("x", dest=rank)
    with pytest.raises(error, match="source"):
        par.recv(source=rank)


@pytest.mark.parametrize(("tag", "error"), [(-1, ValueError), (32768, ValueError), (2.0, TypeError), (None, TypeError)])
def test_bad_tag(par, tag, error):
    with pytest.raises(error, match="tag"):
        par.send("x", dest=0, tag=tag)
    with pytest.raises(error, match="tag"):
        par.recv(source=0, tag=tag)


@pytest.mark.parametrize(("op", "error"), [("avg", ValueError), ("SUM", ValueError), (5, TypeError), (None, TypeError)])
def test_bad_op(par, op, error):
    with pytest.raises(error, match="op"):
        par.reduce(1, op=op)
    with pytest.raises(error, match="op"):
        par.allreduce(1, op=op)


@pytest.mark.parametrize("data", [{"a": 1}, 5, None, "text", b"bytes", np.float64(3.0), np.array(3), (x for x in [1])])
def test_scatter_and_map_need_a_sequence_on_root(par, data):
    if not par.on_main:
        return  # only root checks its data; the others never see it
    with pytest.raises(TypeError, match="data"):
        par.scatter(data)
    with pytest.raises(TypeError, match="data"):
        par.map(abs, data)


def test_bad_map_arguments(par):
    with pytest.raises(TypeError, match="func"):
        par.map("abs", [1])
    with pytest.raises(ValueError, match="schedule"):
        par.map(abs, [1], schedule="guided")
    with pytest.raises(TypeError, match="schedule"):
        par.map(abs, [1], schedule=None)
    with pytest.raises(ValueError, match="chunksize"):
        par.map(abs, [1], chunksize=0)
    with pytest.raises(TypeError, match="chunksize"):
        par.map(abs, [1], chunksize=2.5)
    with pytest.raises(TypeError, match="vectorized"):
        par.map(abs, [1], vectorized="yes")
    with pytest.raises(TypeError, match="progress"):
        par.map(abs, [1], progress=1)


def test_bad_print_where(par):
    with pytest.raises(ValueError, match="where"):
        par.print("x", where="nowhere")
