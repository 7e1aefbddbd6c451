"""Bad arguments raise TypeError/ValueError naming the argument, before
anything is sent, on every backend (called on main outside run, or on every
rank under MPI)."""

from __future__ import annotations

import numpy as np
import pytest
from backends import spmd

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


BAD_DATA = {
    "dict": lambda: {"a": 1},
    "int": lambda: 5,
    "None": lambda: None,
    "str": lambda: "text",
    "bytes": lambda: b"bytes",
    "numpy scalar": lambda: np.float64(3.0),
    "0-d array": lambda: np.array(3),
    "generator": lambda: (x for x in [1]),
    "set": lambda: {1, 2},
}


def _bad_data_body(call, kind, parallelizer):
    """Root passes bad data; every process must raise, and the group stay in step."""
    mine = BAD_DATA[kind]() if parallelizer.on_main else None
    calls = {
        "scatter": lambda: parallelizer.scatter(mine),
        "map": lambda: parallelizer.map(abs, mine),
        "dynamic map": lambda: parallelizer.map(abs, mine, schedule="dynamic"),
    }
    with pytest.raises(TypeError, match="data must be a sequence"):
        calls[call]()
    return parallelizer.allgather(parallelizer.id)  # the next collective works


@pytest.mark.parametrize("call", ["scatter", "map", "dynamic map"])
@pytest.mark.parametrize("kind", BAD_DATA)
def test_bad_data_on_root_raises_on_every_process(par, call, kind):
    assert spmd(par, _bad_data_body, call, kind) == list(range(par.nprocs))


def _unlistable_body(call, parallelizer):
    """Root's data has a length but cannot be iterated: its error is raised on every process."""
    mine = Unlistable() if parallelizer.on_main else None
    calls = {
        "scatter": lambda: parallelizer.scatter(mine),
        "map": lambda: parallelizer.map(abs, mine),
        "dynamic map": lambda: parallelizer.map(abs, mine, schedule="dynamic"),
    }
    with pytest.raises(ValueError, match="cannot iterate"):
        calls[call]()
    return parallelizer.allgather(parallelizer.id)


class Unlistable:
    def __len__(self):
        return 3

    def __iter__(self):
        raise ValueError("cannot iterate")


@pytest.mark.parametrize("call", ["scatter", "map", "dynamic map"])
def test_data_that_fails_to_list_raises_on_every_process(par, call):
    assert spmd(par, _unlistable_body, call) == list(range(par.nprocs))


def test_bad_data_messages_say_what_to_pass(par):
    if not par.on_main:
        pytest.skip("checked on main (the message is the same on every process)")
    from parallelizer import MPIParallelizer

    if isinstance(par, MPIParallelizer):
        pytest.skip("under MPI every rank calls the collective: see test_bad_data_on_root_raises_on_every_process")
    expected = {
        "set": "not set: it has no order to split; pass sorted(data) or list(data)",
        "dict": "not dict: say what to split; pass list(data.items()), list(data) or list(data.values())",
        "generator": "not generator: it has no length; pass list(data)",
        "0-d array": "not a 0-d numpy array",
    }
    for kind, tail in expected.items():
        with pytest.raises(TypeError) as info:
            par.scatter(BAD_DATA[kind]())
        assert str(info.value).startswith("data must be a sequence (list, tuple, range, numpy array")
        assert str(info.value).endswith(tail)


def _progress_without_tqdm_body(parallelizer):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError("No module named 'tqdm'")
        return real_import(name, *args, **kwargs)

    builtins.__import__ = no_tqdm  # only main shows a bar, so only main would fail
    try:
        with pytest.raises(ImportError, match="tqdm"):
            parallelizer.map(abs, [1, 2, 3] if parallelizer.on_main else None, progress=True)
    finally:
        builtins.__import__ = real_import
    return parallelizer.allgather(parallelizer.id)


def test_missing_progress_bar_raises_on_every_process(par):
    assert spmd(par, _progress_without_tqdm_body) == list(range(par.nprocs))


@pytest.mark.parametrize("kind", ["dict", "int", "generator"])
def test_bad_data_outside_run_names_data(par, kind):
    if not par.on_main:
        pytest.skip("under MPI every rank calls the collective: see test_bad_data_on_root_raises_on_every_process")
    from parallelizer import MPIParallelizer

    if isinstance(par, MPIParallelizer):
        pytest.skip("under MPI there is no outside of run: see test_bad_data_on_root_raises_on_every_process")
    with pytest.raises(TypeError, match="data"):
        par.scatter(BAD_DATA[kind]())
    with pytest.raises(TypeError, match="data"):
        par.map(abs, BAD_DATA[kind]())


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
