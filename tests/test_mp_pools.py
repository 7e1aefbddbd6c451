"""Pools on the multiprocessing backend when a serving process dies.

The tasks it held fail with WorkerTerminatedError, the others go on, and a
replacement process (initialized like the others) takes its place, so later
calls, ``apply`` included, use the whole group again. Under MPI a dead rank
ends the job instead (tests/test_mpi_launch.py covers aborts).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from parallelizer import ClientServerRunner, MultiprocessingParallelizer, WorkerTerminatedError

INITIALIZED: list[str] = []


def _initialize(tag):
    INITIALIZED.append(tag)


def _initialized():
    return list(INITIALIZED)


def _kill_rank_while_it_holds_tasks(pool, victim):
    pids = pool.apply(os.getpid)
    held = [pool.apply_only(victim, os.getpid)]
    slow = [pool.submit(time.sleep, 0.3) for _ in range(6)]
    time.sleep(0.1)  # every server holds a slow task now
    os.kill(pids[victim], signal.SIGKILL)
    outcomes = []
    for task in slow:
        try:
            task.result(timeout=60)
            outcomes.append("done")
        except WorkerTerminatedError as err:
            outcomes.append(f"rank {err.rank} died")
    return pids, held, outcomes, pool.apply(os.getpid)


def _client(parallelizer=None):
    return _kill_rank_while_it_holds_tasks(parallelizer, 2)


def test_a_server_killed_while_holding_tasks_is_replaced():
    with MultiprocessingParallelizer(nprocs=3) as par:
        pids, held, outcomes, after = ClientServerRunner(_client, parallelizer=par).run()
        assert held == [pids[2]]
        assert "rank 2 died" in outcomes and "done" in outcomes  # its tasks failed, the others finished
        assert len(after) == 3 and after[:2] == pids[:2] and after[2] != pids[2]  # a new rank 2
        assert par.run(lambda parallelizer: parallelizer.allgather(parallelizer.id)) == [0, 1, 2]


def test_an_executor_initializes_the_replacement():
    par = MultiprocessingParallelizer(nprocs=3)
    with par.executor(initializer=_initialize, initargs=("ready",)) as executor:
        before = executor.apply(_initialized)
        pids, _, outcomes, after = _kill_rank_while_it_holds_tasks(executor, 1)
        assert "rank 1 died" in outcomes
        assert executor.apply(_initialized)[1:] == [["ready"], ["ready"]]  # the new rank 1 too
    assert before == [[], ["ready"], ["ready"]]  # main runs no executor tasks here: not initialized
    assert after[1] != pids[1]


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_task_that_kills_its_process_fails_alone():
    def client(parallelizer=None):
        doomed = parallelizer.submit(_die)
        with pytest.raises(WorkerTerminatedError, match="signal SIGKILL"):
            doomed.result(timeout=60)
        return parallelizer.map(abs, range(-4, 4), schedule="static")

    assert ClientServerRunner(client, parallelizer="multiprocessing:2").run() == [4, 3, 2, 1, 0, 1, 2, 3]


def test_a_wake_up_during_drain_is_never_lost(monkeypatch):
    """Regression: drain() cleared its flag before emptying the pipe, so a wake-up written in
    between was swallowed with the flag left set, every later wake() was skipped, and a session
    waiting to hear "the client is done" slept forever (a hang of about one session in fifty)."""
    import os
    import select

    from parallelizer._pool import link

    waker = link.Waker()
    try:
        waker.wake()
        real_read = os.read
        calls = []

        def read_with_a_wake_in_between(fd, size):
            if not calls:
                calls.append(fd)
                waker.wake()  # another thread wakes the side while it drains
            return real_read(fd, size)

        monkeypatch.setattr(link.os, "read", read_with_a_wake_in_between)
        waker.drain()
        monkeypatch.setattr(link.os, "read", real_read)
        waker.wake()  # must make the next idle return
        readable, _, _ = select.select([waker.read], [], [], 0.5)
        assert readable == [waker.read]
    finally:
        waker.close()


def _looked_up_rank():
    from parallelizer import Parallelizer

    return Parallelizer.lookup().id


def test_an_executor_made_from_main_code_leaves_lookup_alone():
    """Regression: the executor's background thread ran its group inside ``with par:``, and
    ``Parallelizer.lookup(None)`` on main started returning that busy group."""
    from parallelizer import MultiprocessingParallelizer, Parallelizer

    before = Parallelizer.lookup()
    with MultiprocessingParallelizer(nprocs=2).executor() as executor:
        assert Parallelizer.lookup() is before
        assert executor.submit(_looked_up_rank).result(timeout=60) == 1  # the server sees its own
    assert Parallelizer.lookup() is before


@pytest.mark.timeout(60)
def test_shutdown_in_a_done_callback_does_not_wait_for_itself():
    executor = MultiprocessingParallelizer(nprocs=2).executor()
    called = []

    def shut(task):
        executor.shutdown(wait=True)  # runs in the session's thread: it cannot wait for that thread
        called.append(task.result())

    executor.submit(pow, 2, 10).add_done_callback(shut)
    deadline = time.monotonic() + 30
    while not called and time.monotonic() < deadline:
        time.sleep(0.05)
    assert called == [1024]
    executor.shutdown(wait=True)  # the group's session ended: this returns
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(pow, 2, 3)
