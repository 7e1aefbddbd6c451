"""The pool calls of a client/server session, on every backend (API.md, "Pools").

Each test runs a client with ``ClientServerRunner``; under MPI every rank
runs it and only main gets the client's result.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import os
import threading
import time

import numpy as np
import pytest

from parallelizer import ClientServerRunner, RemoteError
from parallelizer.pools import RemoteObject, Task


def _run(par, client, *args):
    result = ClientServerRunner(client, parallelizer=par).run(*args)
    if not par.on_main:
        assert result is None
    return result


def _rank():
    from parallelizer import Parallelizer

    return Parallelizer.lookup(None).id


# ---------------------------------------------------------------- apply, apply_only


def _apply_client(parallelizer=None):
    ranks = parallelizer.apply(_rank)
    last = parallelizer.nprocs - 1
    only = parallelizer.apply_only(last, _rank)
    with_args = parallelizer.apply(lambda a, b=0: a + b, 1, b=2)
    return ranks, only, with_args


def test_apply_runs_once_on_every_process(par):
    result = _run(par, _apply_client)
    if par.on_main:
        assert result == (list(range(par.nprocs)), par.nprocs - 1, [3] * par.nprocs)


def _apply_only_checks_client(parallelizer=None):
    with pytest.raises(ValueError, match="rank"):
        parallelizer.apply_only(parallelizer.nprocs, _rank)
    with pytest.raises(TypeError, match="func"):
        parallelizer.apply(3)
    return True


def test_apply_checks_its_arguments(par):
    assert _run(par, _apply_only_checks_client) in (True, None)


# ---------------------------------------------------------------- remote objects


def _state_client(parallelizer=None):
    counter = parallelizer.push({"calls": 0})

    def count(state, x):
        state["calls"] += 1  # each process changes its own copy
        return x

    total = sum(parallelizer.map(functools.partial(count, counter), range(20), schedule="dynamic"))
    copies = parallelizer.pull(counter)
    built = parallelizer.build(lambda rank: {"rank": rank}, 7)
    seen = parallelizer.apply(lambda b: (b["rank"], _rank()), built)
    return total, copies, seen


def test_remote_objects_are_each_process_own_copy_changed_in_place(par):
    result = _run(par, _state_client)
    if par.on_main:
        total, copies, seen = result
        assert total == sum(range(20))
        assert len(copies) == par.nprocs and sum(copy["calls"] for copy in copies) == 20
        assert seen == [(7, rank) for rank in range(par.nprocs)]


def _scatter_client(parallelizer=None):
    data = np.arange(30.0)
    blocks = parallelizer.push(data, scatter=True)
    data[:] = -1  # the copies are independent of the caller's object
    sizes = parallelizer.apply(len, blocks)
    parallelizer.apply(lambda block: block.__imul__(2), blocks)  # in place, everywhere
    doubled = parallelizer.pull(blocks)
    listed = parallelizer.pull(parallelizer.push([1, 2, 3, 4, 5], scatter=True))
    from_deque = parallelizer.pull(parallelizer.push(collections.deque([1, 2, 3, 4, 5]), scatter=True))
    assert from_deque == listed
    return sizes, doubled, listed


def test_push_with_scatter_splits_and_pull_joins(par):
    result = _run(par, _scatter_client)
    if par.on_main:
        sizes, doubled, listed = result
        assert sizes == [len(block) for block in np.array_split(np.arange(30), par.nprocs)]
        np.testing.assert_array_equal(doubled, 2 * np.arange(30.0))
        assert listed == [block.tolist() for block in np.array_split([1, 2, 3, 4, 5], par.nprocs)]  # as gather joins


def _no_resend_client(parallelizer=None):
    session = parallelizer._session
    big = np.ones(4_000_000)  # 32 MB
    handle = parallelizer.push(big, scatter=True)
    pushed = session.bytes_sent
    for _ in range(50):
        parallelizer.apply(lambda block: float(block.sum()), handle)
    return pushed, session.bytes_sent - pushed


def test_pushed_array_is_not_sent_again_by_applies(par):
    result = _run(par, _no_resend_client)
    if par.on_main:
        pushed, per_50_applies = result
        if par.nprocs > 1:
            assert pushed >= 32_000_000 * (par.nprocs - 1) / par.nprocs * 0.99
        assert per_50_applies < 50 * 2_000 * par.nprocs  # only the small calls travel


def _dedup_client(parallelizer=None):
    text = "a string cannot change"
    frozen = np.arange(10)
    frozen.flags.writeable = False
    first = parallelizer.push(text)
    sent = parallelizer._session.bytes_sent
    again = parallelizer.push(text)
    nothing_sent = parallelizer._session.bytes_sent == sent
    same_array = parallelizer.push(frozen) is parallelizer.push(frozen)
    mutable = [1, 2]
    different = parallelizer.push(mutable) is not parallelizer.push(mutable)
    return first is again, nothing_sent, same_array, different


def test_pushing_the_same_frozen_object_again_sends_nothing(par):
    result = _run(par, _dedup_client)
    if par.on_main:
        assert result == (True, True, True, True)


def _removal_client(parallelizer=None):
    handle = parallelizer.push([1, 2, 3])
    with parallelizer.push({"a": 1}) as scoped:
        inside = parallelizer.apply(len, scoped)
    handle.remove()
    handle.remove()  # again: nothing happens
    errors = []
    for call in (lambda: parallelizer.apply(len, handle), lambda: parallelizer.apply(len, scoped)):
        try:
            call()
        except ValueError as err:
            errors.append(str(err))
    try:
        import pickle

        pickle.dumps(parallelizer.push(1.5))
    except ValueError as err:
        errors.append(str(err))
    return inside, errors, repr(handle)


def test_removed_handles_and_handles_outside_calls_raise_value_error(par):
    result = _run(par, _removal_client)
    if par.on_main:
        inside, errors, shown = result
        assert inside == [1] * par.nprocs
        assert errors[0] == "remote object #1 was removed" and "was removed" in errors[1]
        assert "only be passed to the calls of its session" in errors[2]
        assert shown == "<RemoteObject #1 removed>"


_KEPT: dict[str, RemoteObject] = {}


def _first_session(parallelizer=None):
    _KEPT["handle"] = parallelizer.push([1])
    return True


def _second_session(parallelizer=None):
    try:
        parallelizer.apply(len, _KEPT["handle"])
    except ValueError as err:
        return str(err), _KEPT["handle"].removed
    return "no error", False


def test_handles_from_another_session_raise_value_error(par):
    _run(par, _first_session)
    result = _run(par, _second_session)
    if par.on_main:
        message, removed = result
        assert removed  # freed at the end of its session
        assert "was removed" in message or "another session" in message


# ---------------------------------------------------------------- submit and tasks


def _slow(seconds, value):
    time.sleep(seconds)
    return value


def _tasks_client(parallelizer=None):
    # A server imports this module (and with it pytest and numpy) when it first unpickles _slow:
    # 0.3 s on an idle machine, over a second on a busy one, which made a 0.01 s task outlast the
    # 0.5 s one below. Every process imports it here, before anything is timed.
    parallelizer.apply(_slow, 0, None)
    task = parallelizer.submit(print, "output of a task")
    task.result(timeout=60)
    assert isinstance(task, Task) and isinstance(task, concurrent.futures.Future)
    metadata = dict(task.metadata)
    assert task.ready() and task.successful() and task.get() is None
    slow = parallelizer.submit(_slow, 0.5, "late")
    timeouts = []
    for wait in (slow.result, slow.get):
        try:
            wait(timeout=0.01)
        except TimeoutError:
            timeouts.append(True)
    with pytest.raises(ValueError, match="not ready"):
        slow.successful()
    slow.wait()
    tasks = [parallelizer.submit(_slow, 0.5, "slow")] + [parallelizer.submit(_slow, 0.01, i) for i in range(8)]
    finished = [task.result() for task in concurrent.futures.as_completed(tasks, timeout=60)]
    called = threading.Event()
    tasks[0].add_done_callback(lambda _: called.set())
    return metadata, timeouts, slow.get(), finished, called.is_set(), len(parallelizer._ranks)


def test_submit_gives_futures_with_async_result_methods_and_metadata(par):
    result = _run(par, _tasks_client)
    if par.on_main:
        metadata, timeouts, late, finished, called, servers = result
        assert metadata["stdout"] == "output of a task\n" and metadata["stderr"] == ""
        assert metadata["rank"] == (1 if par.nprocs > 1 else 0) and metadata["host"]
        assert metadata["submitted"] <= metadata["started"] <= metadata["completed"]
        assert timeouts == [True, True] and late == "late" and called
        assert sorted(finished, key=str) == sorted(["slow", *range(8)], key=str)
        # as_completed yields in the order tasks finish: with two servers the slow task, submitted
        # first, finishes last; with one process running tasks, they run in the order submitted
        assert finished.index("slow") == (8 if servers >= 2 else 0)


def _cancel_client(parallelizer=None):
    blockers = [parallelizer.submit(_slow, 0.3, None) for _ in range(max(1, len(parallelizer._ranks)) * 3)]
    queued = [parallelizer.submit(_slow, 0, i) for i in range(200)]
    cancelled = [task.cancel() for task in reversed(queued)]
    concurrent.futures.wait(blockers + queued)
    return sum(cancelled), sum(task.cancelled() for task in queued), [t.result() for t in queued if not t.cancelled()]


def test_cancel_works_while_a_task_is_queued(par):
    result = _run(par, _cancel_client)
    if par.on_main:
        cancelled, really, ran = result
        assert cancelled > 100 and really == cancelled
        assert ran == sorted(ran)


# ---------------------------------------------------------------- maps


def _maps_client(parallelizer=None):
    data = list(range(23))
    return (
        parallelizer.map_async(abs, range(-5, 5)).get(timeout=60),
        parallelizer.map_async(lambda b: b * 2, np.arange(6), vectorized=True).get(timeout=60),
        parallelizer.starmap(pow, [(2, 3), (3, 2), (4, 0)]),
        list(parallelizer.imap(lambda x: x * x, data, chunksize=4)),
        sorted(parallelizer.imap_unordered(lambda x: x * x, iter(data))),
        parallelizer.map(lambda x: -x, (x for x in range(7))),
    )


def test_map_async_starmap_imap(par):
    result = _run(par, _maps_client)
    if par.on_main:
        mapped, vectorized, starred, ordered, unordered, from_generator = result
        assert mapped == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
        np.testing.assert_array_equal(vectorized, np.arange(6) * 2)
        assert starred == [8, 9, 1]
        assert ordered == unordered == [x * x for x in range(23)]
        assert from_generator == [0, -1, -2, -3, -4, -5, -6]


# ---------------------------------------------------------------- failures never break a session


class Unpicklable(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def _explode_if(pid):
    if os.getpid() == pid:
        raise RuntimeError("this result cannot be unpickled here")
    return Poisoned(pid)


class Poisoned:
    """Pickles anywhere; unpickles anywhere but in process ``pid``."""

    def __init__(self, pid):
        self.pid = pid

    def __reduce__(self):
        return (_explode_if, (self.pid,))


def _fail_in(kind, main_pid, x):
    if kind == "raise":
        raise KeyError(f"item {x}")
    if kind == "unpicklable exception":
        raise Unpicklable(f"item {x}")
    if kind == "unpicklable result":
        return threading.Lock()
    return Poisoned(main_pid)  # fails to unpickle on main


def _failures_client(kind, main_pid, parallelizer=None):
    outcomes = []
    fail = functools.partial(_fail_in, kind, main_pid)
    for call in (  # calls whose items servers surely run: a static map gives each a block
        lambda: parallelizer.map(fail, range(4), schedule="static"),
        lambda: parallelizer.apply(fail, 0),
        lambda: parallelizer.submit(fail, 0).result(timeout=60),
        lambda: parallelizer.map_async(fail, range(3)).get(timeout=60),
    ):
        try:
            call()
            outcomes.append("no error")
        except RemoteError as err:
            outcomes.append(("RemoteError", err.exc_type, isinstance(err, TypeError)))
        except Exception as err:  # a submitted task raises its own exception type, the RemoteError as cause
            assert isinstance(err.__cause__, RemoteError), repr(err)
            outcomes.append((type(err).__name__, err.__cause__.exc_type, isinstance(err, TypeError)))
    outcomes.append(parallelizer.map(abs, range(-3, 3)))  # the session is in step: the next call works
    outcomes.append(parallelizer.apply(_rank))
    return outcomes


@pytest.mark.parametrize(
    ("kind", "remote_type"),
    [
        ("raise", "KeyError"),
        ("unpicklable exception", "Unpicklable"),
        ("unpicklable result", "SerializationError"),
        ("result that cannot be unpickled on main", "SerializationError"),
    ],
)
def test_every_kind_of_failure_is_reported_and_the_session_goes_on(par, kind, remote_type):
    if kind in ("unpicklable result", "result that cannot be unpickled on main") and par.nprocs == 1:
        pytest.skip("on a group of one, main runs every task itself: no result is pickled")
    result = _run(par, _failures_client, kind, os.getpid())  # the client runs on main, with main's pid
    if par.on_main:
        *failures, mapped, ranks = result
        assert mapped == [3, 2, 1, 0, 1, 2] and ranks == list(range(par.nprocs))
        for outcome in failures:
            assert outcome != "no error", failures
            assert outcome[1].endswith(remote_type), failures
            # a SerializationError is a TypeError, also when it reaches main as a RemoteError
            assert outcome[2] == (remote_type == "SerializationError"), failures


def _failing_item_client(parallelizer=None):
    try:
        parallelizer.map(lambda x: 1 // (x - 13), range(20))
    except RemoteError as err:
        return str(err)
    return "no error"


def test_a_failing_map_item_is_named(par):
    result = _run(par, _failing_item_client)
    if par.on_main:
        assert "ZeroDivisionError" in result and "map item 13: 13" in result, result


def _failing_pool_items_client(parallelizer=None):
    pool, found = parallelizer.pool(), []
    for call in (
        lambda: pool.starmap(divmod, [(x, x - 13) for x in range(20)]),
        lambda: pool.map(lambda x: 1 // int(x - 5), np.arange(9)),
    ):
        try:
            call()
            found.append("no error")
        except RemoteError as err:
            found.append(str(err))
    return found


def test_a_failing_starmap_or_array_item_is_named(par):
    result = _run(par, _failing_pool_items_client)
    if par.on_main:
        starred, array = result
        assert "ZeroDivisionError" in starred and "map item 13: (13, 0)" in starred, starred
        assert "ZeroDivisionError" in array and "map item 5: np.int64(5)" in array, array


# ---------------------------------------------------------------- the client never travels


def _client_holding_a_lock(lock, parallelizer=None):
    with lock:
        return parallelizer.map(abs, [-1, -2])


def test_the_client_and_its_arguments_are_never_pickled(par):
    assert _run(par, _client_holding_a_lock, threading.Lock()) in ([1, 2], None)


# ---------------------------------------------------------------- tasks go on while the client computes


def _busy_client(parallelizer=None):
    tasks = [parallelizer.submit(_slow, 0.05, i) for i in range(6)]
    began = time.time()
    while time.time() - began < 1.5:  # main computes, never calling into the pool
        sum(range(1000))
    computed_until = time.time()
    last = max(task.metadata["completed"] or 0 for task in tasks)
    return [task.result(timeout=60) for task in tasks], last, computed_until


def test_tasks_run_while_the_client_computes(par):
    result = _run(par, _busy_client)
    if par.on_main:
        values, last_completed, computed_until = result
        assert values == list(range(6))
        assert last_completed < computed_until  # all done before main looked at them again


# ---------------------------------------------------------------- no quick task waits behind a slow one


def _head_of_line_client(parallelizer=None):
    for task in [parallelizer.submit(abs, -i) for i in range(300)]:  # the session learns its tasks are quick
        task.result(timeout=60)
    slow = parallelizer.submit(_slow, 3.0, "slow")
    quick = [parallelizer.submit(abs, -i) for i in range(60)]
    values = [task.result(timeout=60) for task in quick]
    still_running = not slow.done()  # no quick task was queued behind the slow one on its server
    return values, still_running, slow.result(timeout=60)


def test_quick_tasks_are_not_queued_behind_a_slow_one(par):
    if par.nprocs < 3:
        pytest.skip("needs two servers: with one, every task waits for the server that runs the slow one")
    result = _run(par, _head_of_line_client)
    if par.on_main:
        values, still_running, slow = result
        assert values == list(range(60)) and slow == "slow"
        assert still_running, "a quick task finished only after the slow task: it was queued behind it"
