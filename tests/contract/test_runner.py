"""ClientServerRunner on every backend: main runs the client, the others serve."""

from __future__ import annotations

import functools
import os
import sys
import threading
import time

import numpy as np
import pytest

from parallelizer import ClientServerRunner, Parallelizer, RemoteError

STATE: dict[str, object] = {}  # per process: what a custom server set up


def _square(x):
    return x * x


def _scaled(x):
    return STATE["scale"] * x


def _run(par, client, *args, server=None, **kwargs):
    result = ClientServerRunner(client, server=server, parallelizer=par).run(*args, **kwargs)
    if not par.on_main:
        assert result is None
    return result


def _maps_client(n, parallelizer=None):
    assert isinstance(parallelizer, Parallelizer) and parallelizer.on_main
    assert Parallelizer.lookup(None) is parallelizer
    return (
        parallelizer.map(_square, range(n)),
        parallelizer.map(_square, list(range(n)), schedule="dynamic"),
        parallelizer.map(_square, np.arange(n), schedule="dynamic", chunksize=3),
        parallelizer.map(lambda block: block + 1, np.arange(n), vectorized=True),
        list(parallelizer.map(_square, (x for x in range(5)))),  # any iterable, like builtin map
    )


def test_map_through_the_runner(par):
    result = _run(par, _maps_client, 23)
    if par.on_main:
        static, dynamic, chunked, vectorized, from_generator = result
        assert static == dynamic == [x * x for x in range(23)]
        assert chunked == [x * x for x in range(23)]
        np.testing.assert_array_equal(vectorized, np.arange(1, 24))
        assert from_generator == [0, 1, 4, 9, 16]


def _repeated_client(parallelizer=None):
    return [sum(parallelizer.map(_square, range(k))) for k in range(15)]


def test_many_maps_in_one_client(par):
    result = _run(par, _repeated_client)
    if par.on_main:
        assert result == [sum(x * x for x in range(k)) for k in range(15)]


def _collectives_client(parallelizer=None):
    value = parallelizer.broadcast({"x": 1})
    block = parallelizer.scatter(np.arange(10))
    parallelizer.barrier()
    return value, block, parallelizer.gather(np.arange(3)), parallelizer.reduce(5, op="max"), parallelizer.allgather(7)


def test_client_collectives_with_default_servers(par):
    result = _run(par, _collectives_client)
    if par.on_main:
        value, block, gathered, reduced, allgathered = result
        assert value == {"x": 1}
        np.testing.assert_array_equal(block, np.array_split(np.arange(10), par.nprocs)[0])
        np.testing.assert_array_equal(gathered, np.arange(3))  # main's object alone
        assert reduced == 5 and allgathered == [7]


def _setup_server(parallelizer=None):
    assert Parallelizer.lookup(None) is parallelizer and not parallelizer.on_main
    STATE["scale"] = parallelizer.broadcast(None)  # the client's set-up
    STATE["block"] = parallelizer.scatter(None)
    parallelizer.serve()


def _setup_client(parallelizer=None):
    STATE["scale"] = 10
    parallelizer.broadcast(10)
    mine = parallelizer.scatter(list(range(parallelizer.nprocs * 2)))
    return parallelizer.map(_scaled, range(12), schedule="dynamic"), mine


def test_custom_server_sets_up_then_serves(par):
    result = _run(par, _setup_client, server=_setup_server)
    if par.on_main:
        mapped, mine = result
        assert mapped == [10 * x for x in range(12)]
        assert mine == [0, 1]


def _short_server(parallelizer=None):
    STATE["scale"] = parallelizer.broadcast(None)  # returns without serve(): the default loop takes over


def test_server_that_returns_early_is_served_by_the_default_loop(par):
    # the server takes the broadcast and returns: the default loop serves the scatter and the map
    result = _run(par, _setup_client, server=_short_server)
    if par.on_main:
        assert result == ([10 * x for x in range(12)], [0, 1])


def _failing_tasks_client(parallelizer=None):
    outcomes = []
    for schedule in ("static", "dynamic"):
        try:
            parallelizer.map(lambda x: 1 // (x - 7), range(20), schedule=schedule)
        except RemoteError as err:
            named = str(err).endswith("ZeroDivisionError: integer division or modulo by zero\n(in map item 7: 7)")
            named = named and bool(err.host) and f"rank {err.rank} on {err.host} raised ZeroDivisionError" in str(err)
            outcomes.append((err.exc_type, isinstance(err.__cause__, ZeroDivisionError), err.rank >= 0, named))
    outcomes.append(parallelizer.map(_square, range(6)))  # the servers kept serving
    return outcomes


def test_task_errors_reach_the_client_and_servers_keep_serving(par):
    result = _run(par, _failing_tasks_client)
    if par.on_main:
        assert result == [("ZeroDivisionError", True, True, True)] * 2 + [[0, 1, 4, 9, 16, 25]]


def _raising_client(parallelizer=None):
    parallelizer.map(_square, range(4))
    raise KeyError("client gives up")


def test_client_exception_is_raised_and_servers_stop(par):
    if par.on_main:
        with pytest.raises(KeyError, match="client gives up"):
            ClientServerRunner(_raising_client, parallelizer=par).run()
    else:
        assert ClientServerRunner(_raising_client, parallelizer=par).run() is None
    result = _run(par, _maps_client, 3)  # still usable
    if par.on_main:
        assert result[0] == [0, 1, 4]
    else:
        assert result is None


def _broken_server(parallelizer=None):
    raise OSError("server set-up failed")


def _patient_client(parallelizer=None):
    failed, results = [], []
    while len(results) < 2:  # each failed server is reported once, at some call
        try:
            results.append(parallelizer.map(_square, range(4)))  # served by the default loop anyway
        except RemoteError as err:
            assert err.exc_type == "OSError" and "server set-up failed" in str(err)
            failed.append(err.rank)
    return results, failed


def _failed_ranks(error):
    """The ranks a RemoteError from run() names: its own and those in its notes."""
    notes = getattr(error, "__notes__", [])
    return [error.rank] + [int(note.split()[2]) for note in notes if note.startswith("server rank")]


def _run_collecting(par, client, server):
    """Runs; returns the client's result and the ranks run() itself reported."""
    try:
        return _run(par, client, server=server), []
    except RemoteError as err:
        return None, _failed_ranks(err)


def test_server_error_outside_tasks_is_reported_to_the_client(par):
    outcome, at_the_end = _run_collecting(par, _patient_client, _broken_server)
    if par.on_main:
        if outcome is not None:
            results, failed = outcome
            assert results == [[0, 1, 4, 9]] * 2
        else:  # the client saw none before returning: run() reported them all
            failed = []
        assert sorted(failed + at_the_end) == list(range(1, par.nprocs))


def _quiet_client(parallelizer=None):
    return "done"


def test_server_error_is_raised_when_the_client_never_looks(par):
    if par.nprocs == 1:
        assert _run(par, _quiet_client, server=_broken_server) == "done"  # no servers at all
        return
    if par.on_main:
        with pytest.raises(RemoteError, match="server set-up failed") as info:
            ClientServerRunner(_quiet_client, server=_broken_server, parallelizer=par).run()
        assert info.value.rank >= 1
    else:
        ClientServerRunner(_quiet_client, server=_broken_server, parallelizer=par).run()


def _mismatched_server(parallelizer=None):
    parallelizer.broadcast(None)  # but the client maps first


def _mapping_client(parallelizer=None):
    failures = []
    while True:
        try:
            return parallelizer.map(_square, range(5)), failures
        except RemoteError as err:
            failures.append(err.rank)


def test_mismatched_server_call_is_reported(par):
    outcome, at_the_end = _run_collecting(par, _mapping_client, _mismatched_server)
    if par.on_main:
        if outcome is not None:
            result, failed = outcome
            assert result == [0, 1, 4, 9, 16]  # the map was served anyway
        else:
            failed = []
        assert sorted(failed + at_the_end) == list(range(1, par.nprocs))


def _bad_root_client(parallelizer=None):
    with pytest.raises(ValueError, match="root must be 0"):
        parallelizer.broadcast(1, root=parallelizer.nprocs - 1) if parallelizer.nprocs > 1 else parallelizer.gather(
            1, root=1
        )
    with pytest.raises(TypeError, match="func"):
        parallelizer.map(3, [1])
    with pytest.raises(RuntimeError, match="serve"):
        parallelizer.serve()
    return True


def test_client_argument_checks(par):
    if par.nprocs == 1:
        pytest.skip("a group of one has no rank 1 to pass as a wrong root")
    result = _run(par, _bad_root_client)
    assert result is True if par.on_main else result is None


def _progress_client(parallelizer=None):
    return parallelizer.map(_square, range(40), schedule="dynamic", progress=True)


def test_progress_bar_in_the_client(par, capsys):
    result = _run(par, _progress_client)
    if par.on_main:
        assert result == [x * x for x in range(40)]
        assert "40/40" in capsys.readouterr().err


def test_runner_checks_its_arguments():
    with pytest.raises(TypeError, match="client"):
        ClientServerRunner(3)
    with pytest.raises(TypeError, match="server"):
        ClientServerRunner(_quiet_client, server="no")


def _large_chunks_client(parallelizer=None):
    return parallelizer.map(abs, range(-60_000, 60_000), schedule="dynamic")


def test_dynamic_map_with_large_chunks_through_the_runner(par):
    result = _run(par, _large_chunks_client)
    if par.on_main:
        assert result == [abs(x) for x in range(-60_000, 60_000)]


# ---------------------------------------------------------------- issue 11: failures that broke sessions


class _Poisoned:
    """Pickles anywhere; fails to unpickle in process ``pid`` (main)."""

    def __init__(self, pid):
        self.pid = pid

    def __reduce__(self):
        return (_unpickle_poisoned, (self.pid,))


def _unpickle_poisoned(pid):
    if os.getpid() == pid:
        raise RuntimeError("cannot be unpickled on main")
    return _Poisoned(pid)


class _Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("str() fails")


def _bad_item(kind, main_pid, x):
    from parallelizer import Parallelizer

    if Parallelizer.lookup(None).on_main:
        time.sleep(0.02)  # main computes slowly: the servers surely get items of a dynamic map too
        return x  # only what servers send back is at stake
    if kind == "unpickles badly on main":
        return _Poisoned(main_pid)
    if kind == "cannot be pickled":
        return threading.Lock()
    raise _Unprintable()


def _bad_results_client(kind, main_pid, parallelizer=None):
    outcomes = []
    for schedule in ("dynamic", "static"):
        try:
            parallelizer.map(functools.partial(_bad_item, kind, main_pid), range(12), schedule=schedule)
            outcomes.append("no error")
        except RemoteError as err:
            outcomes.append(err.rank >= 1)
        outcomes.append(parallelizer.map(_square, range(6), schedule=schedule))  # still in step
    return outcomes


@pytest.mark.parametrize("kind", ["unpickles badly on main", "cannot be pickled", "raises with a broken str()"])
def test_a_bad_result_or_error_from_a_server_leaves_the_session_in_step(par, kind):
    if par.nprocs == 1:
        pytest.skip("a group of one has no server whose results travel")
    result = _run(par, _bad_results_client, kind, os.getpid())
    if par.on_main:
        assert result == [True, [0, 1, 4, 9, 16, 25]] * 2


def _interval_seen(x):
    return os.getpid(), sys.getswitchinterval()


def _turns_client(user_interval, parallelizer=None):
    before = sys.getswitchinterval()
    sys.setswitchinterval(user_interval)
    user_interval = sys.getswitchinterval()  # as the interpreter keeps it (whole microseconds)
    try:
        seen = parallelizer.map(_interval_seen, range(4 * parallelizer.nprocs), schedule="static")
        after_map = sys.getswitchinterval()
        applied = parallelizer.apply(_interval_seen, 0)
        after_apply = sys.getswitchinterval()
        changed = parallelizer.map(_set_interval_on_main, [os.getpid()] * 4, schedule="static")
        after_change = sys.getswitchinterval()
        return os.getpid(), user_interval, seen + applied, (after_map, after_apply), after_change, changed
    finally:
        sys.setswitchinterval(before)


def _set_interval_on_main(main_pid):
    if os.getpid() == main_pid:
        sys.setswitchinterval(0.0123)
    return sys.getswitchinterval()


@pytest.mark.parametrize("user_interval", [0.005, 0.0071, 0.0001])
def test_main_computes_in_short_gil_turns_beside_its_dispatcher(par, user_interval):
    """While main runs its share of a map or an apply beside the dispatcher thread, the switch
    interval is short (servers get their next chunk without waiting for main's 5 ms turn);
    afterwards it is exactly what it was, and a shorter one, or one set by the map's own
    function, is left alone."""
    from parallelizer._pool.turns import TURN

    result = _run(par, _turns_client, user_interval)
    if par.on_main:
        main_pid, user_interval, seen, after, after_change, changed = result
        on_main = [interval for pid, interval in seen if pid == main_pid]
        assert len(on_main) >= 2, "main ran no item of the static map, or not its apply"
        expected = min(user_interval, TURN) if par.nprocs > 1 else user_interval
        assert on_main == [pytest.approx(expected, rel=1e-3)] * len(on_main)
        assert after == (user_interval, user_interval)
        # the map's function set the interval itself on main: its setting stands
        assert after_change == pytest.approx(0.0123, rel=1e-3)
        assert len(changed) == 4
