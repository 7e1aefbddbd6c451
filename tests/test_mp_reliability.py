"""Issue 11's multiprocessing cases: a child forked from main, and stuck workers.

A library's helper process forked from main must leave main's workers alone
(exiting normally or unwinding through ``run``); a stopped or stuck worker
raises ``TimeoutError`` (with ``timeout=`` or ``PARALLELIZER_TIMEOUT``) that
names the call and the rank, and the next run works again.
"""

from __future__ import annotations

import atexit
import os
import signal
import time

import pytest

from parallelizer import MultiprocessingParallelizer


def _healthy(parallelizer):
    return parallelizer.allgather(parallelizer.id)


# ---------------------------------------------------------------- forked children


def _fork_then(how, parallelizer):
    total = parallelizer.allreduce(1)
    if parallelizer.on_main:
        pid = os.fork()
        if pid == 0:  # the child: a library's helper that ends its own way
            if how == "exit":
                _exit_normally()
            raise RuntimeError("the helper fails and unwinds through run()")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    return total + parallelizer.allreduce(1)


def _exit_normally():
    """What a normal exit does: the exit handlers (inherited from main), then the end."""
    atexit._run_exitfuncs()
    os._exit(0)


@pytest.mark.parametrize("how", ["exit", "unwind"])
@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_a_child_forked_from_main_leaves_the_workers_alone(how, start_method):
    main = os.getpid()
    with MultiprocessingParallelizer(nprocs=3, start_method=start_method) as par:
        for _ in range(2):
            try:
                assert par.run(_fork_then, how) == 6
            except BaseException:
                if os.getpid() != main:  # the child, unwound through run(): ends like any program
                    _exit_normally()
                raise
            assert par.run(_healthy) == [0, 1, 2]  # the group was not stopped by the child


def test_a_forked_child_cannot_run_on_main_workers():
    with MultiprocessingParallelizer(nprocs=2) as par:
        par.run(_healthy)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                par.run(_healthy)
                message = b"ran"
            except RuntimeError as err:
                message = str(err).encode()
            os.write(write, message)
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        answer = os.read(read, 1000).decode()
        os.close(read)
        assert "cannot run on them" in answer, answer
        assert par.run(_healthy) == [0, 1]


# ---------------------------------------------------------------- stuck workers


def _stop_one(rank, parallelizer):
    if parallelizer.id == rank:
        os.kill(os.getpid(), signal.SIGSTOP)  # stopped: alive, but never answers
    return parallelizer.allreduce(1)


@pytest.mark.parametrize("rank", [1, 2])
def test_a_stopped_worker_raises_timeout_error_naming_call_and_rank(rank):
    # a fresh group's start-up counts too: on a loaded machine (make test runs 4 tests at a time) it took over 3 s
    with MultiprocessingParallelizer(nprocs=3, timeout=6.0) as par:
        assert par.run(_healthy) == [0, 1, 2]
        started = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            par.run(_stop_one, rank)
        assert time.monotonic() - started < 20
        text = str(info.value)
        assert "waited more than 6 s in" in text and f"rank(s) {rank}" in text, text
        assert "allreduce()" in text or "the end of run" in text, text
        assert par.run(_healthy) == [0, 1, 2]  # a fresh group replaced the stuck one


def _stop_one_main_late(parallelizer):
    if parallelizer.id == 1:
        os.kill(os.getpid(), signal.SIGSTOP)
    if parallelizer.id == 0:
        time.sleep(0.5)  # rank 2 waits on main from before main waits on rank 1
    return parallelizer.allreduce(1)


def test_main_names_the_stuck_rank_though_another_waited_on_main_first():
    with MultiprocessingParallelizer(nprocs=3, timeout=6.0) as par:  # a fresh group's start-up counts too
        assert par.run(_healthy) == [0, 1, 2]
        with pytest.raises(TimeoutError) as info:  # main's own, not rank 2's RemoteError naming rank 0
            par.run(_stop_one_main_late)
        assert "rank 0 waited more than 6 s in" in str(info.value) and "rank(s) 1 " in str(info.value)
        assert par.run(_healthy) == [0, 1, 2]


def _slow_worker(parallelizer):
    if parallelizer.id == 1:
        time.sleep(3)
    parallelizer.barrier()


def test_timeout_from_the_environment(monkeypatch):
    monkeypatch.setenv("PARALLELIZER_TIMEOUT", "0.5")
    par = MultiprocessingParallelizer(nprocs=2)
    assert par.timeout == 0.5
    with pytest.raises(TimeoutError, match=r"rank 0 waited more than 0.5 s in barrier\(\) for rank\(s\) 1"):
        par.run(_slow_worker)
    monkeypatch.setenv("PARALLELIZER_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="PARALLELIZER_TIMEOUT"):
        MultiprocessingParallelizer(nprocs=2)


def test_timeout_argument_is_checked():
    with pytest.raises(ValueError, match="timeout"):
        MultiprocessingParallelizer(nprocs=2, timeout=0)
    with pytest.raises(TypeError, match="timeout"):
        MultiprocessingParallelizer(nprocs=2, timeout="10")


def test_no_timeout_by_default(monkeypatch):
    monkeypatch.delenv("PARALLELIZER_TIMEOUT", raising=False)
    assert MultiprocessingParallelizer(nprocs=2).timeout is None
