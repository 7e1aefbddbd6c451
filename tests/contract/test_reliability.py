"""Never hangs, never loses a result, always says what went wrong: on every backend.

Regression tests of issue 11 (reliability) that concern every backend:
receiving from oneself, one caller at a time, array subclasses and other
values that must travel intact, reductions that cannot combine their values,
and errors that must be reported whatever the exception does.
"""

from __future__ import annotations

import os
import pickle
import socket
import threading

import numpy as np
import pytest
from backends import spmd

from parallelizer import DeadlockError, RemoteError

# ---------------------------------------------------------------- messages to oneself


def _recv_from_self_body(parallelizer):
    me = parallelizer.id
    with pytest.raises(DeadlockError, match=rf"rank {me} waits in recv\(source={me}, tag=3\).*never sent"):
        parallelizer.recv(me, tag=3)
    data = [1, 2]
    parallelizer.send(data, dest=me, tag=3)
    data.append(3)  # what was sent is a copy
    array = np.arange(5.0)
    parallelizer.send(array, dest=me, tag=4)
    array[:] = -1
    got = parallelizer.recv(me, tag=3), parallelizer.recv(me, tag=4)
    return parallelizer.allgather(got[0] == [1, 2] and (got[1] == np.arange(5.0)).all())


def test_recv_from_oneself_with_nothing_sent_raises_deadlock_error(par):
    assert spmd(par, _recv_from_self_body) == [True] * par.nprocs


# ---------------------------------------------------------------- one caller at a time


def _make(parallelizer, call):
    """Calls ``call`` (the MPI backend has a shortcut for each of these outermost calls)."""
    return parallelizer.barrier() if call == "barrier" else getattr(parallelizer, call)(1)


def _second_thread_body(call, parallelizer):
    """A map whose function, on every process, calls a collective from another thread, then itself (nested)."""

    def in_another_thread(item):
        outcome = []

        def other():
            try:
                _make(parallelizer, call)
                outcome.append("ran")
            except RuntimeError as err:
                outcome.append(str(err))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(30)
        _make(parallelizer, call)  # the thread inside may nest it
        return outcome[0]

    refusals = parallelizer.map(in_another_thread, list(range(parallelizer.nprocs)) if parallelizer.on_main else None)
    parallelizer.barrier()  # the calling thread's collectives are unaffected
    total = parallelizer.allreduce(1)
    return refusals, total


@pytest.mark.parametrize("call", ["gather", "allgather", "reduce", "allreduce", "barrier"])
def test_second_thread_is_refused_while_one_is_inside_a_call(par, call):
    refusals, total = spmd(par, _second_thread_body, call)
    assert total == par.nprocs
    if par.on_main:
        assert len(refusals) == par.nprocs
        for text in refusals:
            assert text.startswith(f"{call}() was called while another thread is inside map()"), text


# ---------------------------------------------------------------- values travel intact


def _subclasses_body(parallelizer):
    masked = np.ma.masked_array(np.arange(8.0), mask=[0, 1, 0, 0, 1, 0, 0, 1])
    matrix = np.matrix([[1, 2], [3, 4]])
    records = np.rec.array([(1, 2.0), (3, 4.0), (5, 6.0)], dtype=[("x", "i4"), ("y", "f8")])
    on_main = parallelizer.on_main
    got = parallelizer.broadcast(masked if on_main else None)
    assert isinstance(got, np.ma.MaskedArray) and (got.mask == masked.mask).all()
    assert isinstance(parallelizer.broadcast(matrix if on_main else None), np.matrix)
    assert isinstance(parallelizer.broadcast(records if on_main else None), np.recarray)
    block = parallelizer.scatter(masked if on_main else None)
    expected = np.array_split(masked.mask, parallelizer.nprocs)[parallelizer.id]
    assert isinstance(block, np.ma.MaskedArray) and (block.mask == expected).all()
    gathered = parallelizer.gather(block)
    everywhere = parallelizer.allgather(block)
    assert isinstance(everywhere, np.ma.MaskedArray) and (everywhere.mask == masked.mask).all()
    record_block = parallelizer.scatter(records if on_main else None)
    assert isinstance(record_block, np.recarray)
    record_gather = parallelizer.allgather(record_block)
    assert isinstance(record_gather, np.recarray) and list(record_gather.x) == [1, 3, 5]
    mapped = parallelizer.map(lambda x: x is np.ma.masked, masked if on_main else None)
    doubled = parallelizer.map(lambda b: 2 * b, masked if on_main else None, vectorized=True)
    return gathered, mapped, doubled


@pytest.mark.filterwarnings("ignore:the matrix subclass")
def test_array_subclasses_keep_their_type_and_mask(par):
    gathered, mapped, doubled = spmd(par, _subclasses_body)
    if par.on_main:
        mask = [False, True, False, False, True, False, False, True]
        assert isinstance(gathered, np.ma.MaskedArray) and list(gathered.mask) == mask
        assert mapped == mask  # masked items stay masked on every process, as serially
        assert isinstance(doubled, np.ma.MaskedArray) and list(doubled.mask) == mask


def _memoryview_and_read_only_body(parallelizer):
    on_main = parallelizer.on_main
    writable = parallelizer.broadcast(memoryview(bytearray(b"abcd")) if on_main else None)
    read_only = parallelizer.broadcast(memoryview(b"wxyz") if on_main else None)
    frozen = np.arange(4.0)
    frozen.flags.writeable = False
    array = parallelizer.broadcast(frozen if on_main else None)
    return parallelizer.allgather(
        (type(writable).__name__, writable.readonly, bytes(writable), read_only.readonly, array.flags.writeable)
    )


def test_broadcast_gives_the_same_type_and_writability_everywhere(par):
    views = spmd(par, _memoryview_and_read_only_body)
    assert views == [("memoryview", False, b"abcd", True, True)] * par.nprocs


# ---------------------------------------------------------------- reductions that cannot combine


def _bad_reduction_body(call, into, parallelizer):
    values = {"dicts": {"a": parallelizer.id}, "nones": None}
    outcomes = []
    for kind, value in values.items():
        # out=: every process takes part in agreeing on it, also when root cannot combine the values
        out = {"out": np.zeros(1) if parallelizer.on_main else None} if into else {}
        try:
            if call == "reduce":
                parallelizer.reduce(value, **out)
            else:
                parallelizer.allreduce(value, **out)
            outcomes.append(f"{kind}: no error")
        except TypeError as err:
            outcomes.append(f"{kind}: {err}")
    parallelizer.barrier()
    return parallelizer.allgather(outcomes)


@pytest.mark.parametrize("into", [False, True], ids=["", "out"])
@pytest.mark.parametrize("call", ["reduce", "allreduce"])
def test_sum_of_values_that_do_not_add_fails_alike_on_every_backend(par, call, into):
    outcomes = spmd(par, _bad_reduction_body, call, into)
    for rank, (dicts, nones) in enumerate(outcomes):
        if call == "reduce" and rank != 0:
            assert dicts == "dicts: no error" and nones == "nones: no error"  # only root combines
            continue
        assert dicts.startswith(f"dicts: {call}(op='sum') cannot combine dict and dict: TypeError"), dicts
        assert nones.startswith(f"nones: {call}(op='sum') cannot combine NoneType and NoneType"), nones


# ---------------------------------------------------------------- errors that resist being reported


class UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("str() of this exception fails")


def _explode_on_main(message, main_pid):
    if os.getpid() == main_pid:
        raise KeyboardInterrupt("unpickling this exception interrupts main")
    return BombError(message, main_pid)


class BombError(Exception):
    """Unpickles anywhere but on main, where it raises KeyboardInterrupt."""

    def __reduce__(self):
        return (_explode_on_main, self.args)


def _raising_body(kind, main_pid, parallelizer):
    if parallelizer.id == parallelizer.nprocs - 1 and kind != "none":
        raise UnprintableError("x") if kind == "unprintable" else BombError("bomb", main_pid)
    return "survived"


@pytest.mark.parametrize("kind", ["unprintable", "unpickling raises KeyboardInterrupt on main"])
def test_exceptions_that_resist_reporting_still_become_remote_errors(par, kind):
    from parallelizer import MultiprocessingParallelizer

    if not isinstance(par, MultiprocessingParallelizer) or par.nprocs == 1:
        pytest.skip("only another local process reports to main (MPI aborts: tests/test_mpi_launch.py)")
    with pytest.raises(RemoteError) as info:
        par.run(_raising_body, "unprintable" if kind == "unprintable" else "bomb", os.getpid())
    err = info.value
    assert err.rank == par.nprocs - 1
    assert err.host == socket.gethostname()  # local processes: this host
    if kind == "unprintable":
        assert err.exc_type.endswith("UnprintableError")
        assert "str() raised RuntimeError" in err.message
    else:
        assert err.exc_type.endswith("BombError") and err.__cause__ is None
    assert par.run(_raising_body, "none", os.getpid()) == "survived"


def test_reporting_an_exception_never_fails():
    from parallelizer._core import remote

    report = remote.report(UnprintableError())
    assert report["message"] == "<UnprintableError(): str() raised RuntimeError>"
    assert "UnprintableError" in report["traceback"]
    bomb = remote.rebuild(1, remote.report(BombError("bomb", -1)))  # unpickles here: the cause arrives
    assert isinstance(bomb.__cause__, BombError)
    bomb = remote.rebuild(1, remote.report(BombError("bomb", os.getpid())))  # raises KeyboardInterrupt here
    assert isinstance(bomb, RemoteError) and bomb.__cause__ is None
    assert pickle.loads(pickle.dumps(bomb)).rank == 1
