"""MultiprocessingParallelizer when things go wrong: every failure is reported
on main, names its rank, releases the other processes, and leaves the
parallelizer usable; nothing hangs (every test runs under pytest-timeout)."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

import numpy as np
import pytest
from processes import alive

from parallelizer import (
    MultiprocessingParallelizer,
    RemoteError,
    RemoteSerializationError,
    SerializationError,
    WorkerTerminatedError,
)


@pytest.fixture(scope="module")
def par3():
    with MultiprocessingParallelizer(nprocs=3) as par:
        yield par


def _healthy(parallelizer):
    return parallelizer.allgather(parallelizer.id)


def assert_usable(par):
    assert par.run(_healthy) == list(range(par.nprocs))


# ------------------------------------------------------------------ a worker raises


def _raise_at(rank, when, parallelizer):
    def maybe_raise(step):
        if parallelizer.id == rank and when == step:
            raise ValueError(f"boom on {rank} at {step}")

    maybe_raise("before")
    parallelizer.broadcast("x" if parallelizer.on_main else None)
    maybe_raise("between")
    parallelizer.gather(parallelizer.id)
    parallelizer.map(lambda x: maybe_raise("in") or x, list(range(10)) if parallelizer.on_main else None)
    maybe_raise("after")
    return "done"


@pytest.mark.parametrize("when", ["before", "between", "in", "after"])
@pytest.mark.parametrize("rank", [1, 2])
def test_worker_exception_becomes_remote_error(par3, rank, when):
    with pytest.raises(RemoteError) as info:
        par3.run(_raise_at, rank, when)
    err = info.value
    assert err.rank == rank
    assert err.exc_type == "ValueError"
    assert f"boom on {rank} at {when}" in str(err)
    assert "Remote traceback (rank" in str(err) and "maybe_raise" in err.remote_traceback
    assert isinstance(err.__cause__, ValueError)
    assert_usable(par3)


def _wait_forever_on_one_raise_on_two(parallelizer):
    if parallelizer.id == 1:
        parallelizer.recv(0, tag=9)  # never sent: released by the abort
    elif parallelizer.id == 2:
        raise KeyError("from two")
    else:
        return parallelizer.recv(1, tag=9)  # main waits on rank 1, not on rank 2


def test_main_watches_every_worker_while_it_waits(par3):
    with pytest.raises(RemoteError) as info:
        par3.run(_wait_forever_on_one_raise_on_two)
    assert info.value.rank == 2 and info.value.exc_type == "KeyError"
    assert_usable(par3)


def _worker_raises_system_exit(parallelizer):
    if parallelizer.id == 1:
        raise SystemExit(4)
    parallelizer.barrier()


def test_worker_system_exit_is_reported_not_fatal(par3):
    with pytest.raises(RemoteError) as info:
        par3.run(_worker_raises_system_exit)
    assert info.value.rank == 1 and info.value.exc_type == "SystemExit"
    assert_usable(par3)


# ------------------------------------------------------------------ a worker dies


def _die(rank, how, parallelizer):
    if parallelizer.id == rank:
        if how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif how == "segfault":
            ctypes.string_at(0)
        elif how == "exit":
            os._exit(3)
    parallelizer.barrier()


@pytest.mark.parametrize(
    ("how", "expected"),
    [("sigkill", "signal SIGKILL"), ("segfault", "signal SIGSEGV"), ("exit", "exit code 3")],
)
def test_dead_worker_becomes_worker_terminated_error(par3, how, expected):
    with pytest.raises(WorkerTerminatedError) as info:
        par3.run(_die, 2, how)
    err = info.value
    assert err.rank == 2
    assert expected in str(err)
    if how != "exit":
        assert err.signal == expected.split()[-1]
    else:
        assert err.exitcode == 3
    assert_usable(par3)  # the group was replaced


def _die_while_main_waits_on_another(parallelizer):
    if parallelizer.id == 1:
        parallelizer.recv(0, tag=5)
    elif parallelizer.id == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    else:
        parallelizer.recv(1, tag=5)


def test_death_noticed_while_main_waits_on_another_worker(par3):
    with pytest.raises(WorkerTerminatedError) as info:
        par3.run(_die_while_main_waits_on_another)
    assert info.value.rank == 2
    assert_usable(par3)


def _die_while_sending_large(parallelizer):
    if parallelizer.id == 1:
        big = np.ones(20_000_000)  # 160 MB announced to main, then the sender dies
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGKILL)).start()
        parallelizer.send(big, dest=0)
        parallelizer.recv(0)  # never sent
    elif parallelizer.id == 2:
        parallelizer.recv(0, tag=7)  # never sent: released by the abort
    else:
        time.sleep(0.2)  # busy while the large message is announced
        parallelizer.recv(1, tag=1)  # never sent: only the death ends this wait


def test_death_while_sending_a_large_array(par3):
    with pytest.raises(WorkerTerminatedError) as info:
        par3.run(_die_while_sending_large)
    assert info.value.rank == 1
    assert_usable(par3)


# ------------------------------------------------------------------ main raises


def _main_raises_while_workers_wait(parallelizer):
    if parallelizer.on_main:
        raise RuntimeError("main gives up")
    parallelizer.broadcast(None)  # released by the abort


def test_main_exception_releases_workers(par3):
    with pytest.raises(RuntimeError, match="main gives up"):
        par3.run(_main_raises_while_workers_wait)
    assert_usable(par3)


def _pids(parallelizer):
    return parallelizer.gather(os.getpid())


def test_main_exception_outside_with_stops_the_workers():
    par = MultiprocessingParallelizer(nprocs=3)
    pids = par.run(_pids)
    with pytest.raises(RuntimeError, match="main gives up"):
        par.run(_main_raises_while_workers_wait)
    assert not par.started
    for pid in pids[1:]:
        assert not alive(pid), f"worker {pid} outlived run()"


# ------------------------------------------------------------------ what cannot be pickled


def test_unpicklable_func_fails_before_anything_is_sent(par3):
    lock = threading.Lock()
    with pytest.raises(SerializationError, match="func and its arguments of run"):
        par3.run(lambda parallelizer: lock)
    assert_usable(par3)


def _broadcast_lock(parallelizer):
    return parallelizer.broadcast(threading.Lock() if parallelizer.on_main else None)


def test_unpicklable_broadcast_names_what_failed(par3):
    with pytest.raises(SerializationError, match="the object broadcast from rank 0") as info:
        par3.run(_broadcast_lock)
    assert "lock" in str(info.value)
    assert_usable(par3)


def _send_lock(parallelizer):
    if parallelizer.id == 2:
        parallelizer.send(threading.Lock(), dest=0)
    elif parallelizer.on_main:
        return parallelizer.recv(source=2)


def test_unpicklable_object_on_a_worker(par3):
    with pytest.raises(TypeError) as info:  # a SerializationError is a TypeError, also from a worker
        par3.run(_send_lock)
    assert type(info.value) is RemoteSerializationError and isinstance(info.value, RemoteError)
    assert info.value.rank == 2 and info.value.exc_type == "parallelizer.errors.SerializationError"
    assert isinstance(info.value.__cause__, SerializationError)
    assert "the object sent to rank 0" in str(info.value)
    assert_usable(par3)


def _gather_lock(parallelizer):
    return parallelizer.gather(threading.Lock() if parallelizer.id == 2 else 1)


def test_unpicklable_part_of_a_worker_is_raised_on_main_too(par3):
    """The worker sends a refusal in its part's place: main, which receives it, raises the same error.

    (Or, when the worker's report of its own uncaught error comes first, that
    report: a ``RemoteSerializationError``. Both are ``TypeError``.)
    """
    with pytest.raises(TypeError, match="rank 2: cannot pickle the object gathered") as info:
        par3.run(_gather_lock)
    assert isinstance(info.value, (SerializationError, RemoteSerializationError)), type(info.value)
    assert info.value.rank == 2 and "lock" in str(info.value)
    assert_usable(par3)


def _generic_scatter_with_a_lock_for_rank_2(parallelizer):
    """The transport's generic (linear) scatter, which no built-in backend uses with other processes."""
    from parallelizer import semantics
    from parallelizer._core import checks
    from parallelizer._core.transport import Transport

    data = [[0], [1], [threading.Lock()]]
    bounds = semantics.block_bounds(3, 3) if parallelizer.on_main else None
    try:
        block = Transport._scatter(parallelizer, data if parallelizer.on_main else None, bounds, 0)
        checks.refused(block)
        outcome = block
    except SerializationError as exc:
        outcome = (exc.rank, str(exc).split(" (")[0])
    return parallelizer.gather((outcome, parallelizer.allgather(parallelizer.id)))


def test_the_generic_scatter_refuses_the_block_root_cannot_pickle(par3):
    """Root sends a refusal in that block's place, the others their blocks; root and that rank raise."""
    assert par3.run(_generic_scatter_with_a_lock_for_rank_2) == [
        ((0, "rank 0: cannot pickle the object sent to rank 2"), [0, 1, 2]),
        ([[1]], [0, 1, 2]),
        ((0, "rank 0: cannot pickle the object sent to rank 2"), [0, 1, 2]),
    ]
    assert_usable(par3)


def test_other_remote_errors_are_not_type_errors(par3):
    def body(parallelizer):
        if parallelizer.id == 1:
            raise ValueError("not a serialization problem")
        return parallelizer.gather(0)

    with pytest.raises(RemoteError) as info:
        par3.run(body)
    assert type(info.value) is RemoteError and not isinstance(info.value, TypeError)


def test_unpicklable_map_result(par3):
    def body(parallelizer):
        data = list(range(6)) if parallelizer.on_main else None
        return parallelizer.map(lambda x: threading.Lock() if x == 5 else x, data)

    # its block's results: main raises the refusal, or the worker's report if that comes first
    with pytest.raises(TypeError, match="rank 2: cannot pickle") as info:
        par3.run(body)
    assert isinstance(info.value, (SerializationError, RemoteSerializationError)), type(info.value)
    assert_usable(par3)


# ------------------------------------------------------------------ mismatched code


def _extra_broadcast_on_worker(parallelizer):
    if not parallelizer.on_main:
        parallelizer.broadcast(None)  # main never broadcasts


def test_collective_main_never_calls_is_a_deadlock_error_not_a_hang(par3):
    with pytest.raises(RemoteError) as info:
        par3.run(_extra_broadcast_on_worker)
    assert info.value.exc_type.endswith("DeadlockError")
    assert "already returned from func" in str(info.value)
    assert_usable(par3)


def _gather_main_only(parallelizer):
    if parallelizer.on_main:
        return parallelizer.gather(1)
    return None


def test_main_waits_for_workers_that_returned(par3):
    from parallelizer import DeadlockError

    with pytest.raises(DeadlockError, match="rank 0 waits in gather"):
        par3.run(_gather_main_only)
    assert_usable(par3)


def test_collectives_outside_run_say_so():
    par = MultiprocessingParallelizer(nprocs=2)
    with par, pytest.raises(RuntimeError, match="inside run"):
        par.broadcast(1)


def test_nested_run_is_refused(par3):
    def body(parallelizer):
        if parallelizer.on_main:
            parallelizer.run(_healthy)

    with pytest.raises(RuntimeError, match="inside run"):
        par3.run(body)
    assert_usable(par3)


# ------------------------------------------------------------------ client/server


def _die_in_task(x):
    from parallelizer import Parallelizer

    if not Parallelizer.lookup(None).on_main:  # a static map gives every server a block
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def _client_of_dying_server(parallelizer=None):
    return parallelizer.map(_die_in_task, range(8), schedule="static")


def test_server_dying_in_a_task_is_worker_terminated(par3):
    from parallelizer import ClientServerRunner

    with pytest.raises(WorkerTerminatedError) as info:
        ClientServerRunner(_client_of_dying_server, parallelizer=par3).run()
    assert info.value.rank in (1, 2) and info.value.signal == "SIGKILL"
    assert_usable(par3)
    runner = ClientServerRunner(lambda parallelizer: parallelizer.map(abs, range(-3, 3)), parallelizer=par3)
    assert runner.run() == [3, 2, 1, 0, 1, 2]


def test_worker_killed_while_idle(par3):
    pids = par3.run(_pids)
    os.kill(pids[2], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pids[2]) and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(WorkerTerminatedError, match="worker rank 2 terminated with signal SIGKILL") as info:
        par3.run(_healthy)
    assert "idle" in str(info.value)
    assert_usable(par3)
