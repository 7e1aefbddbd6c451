"""The joblib backend with joblib and scikit-learn themselves (issue: the ecosystem's pool interfaces).

Each test runs a ``ClientServerRunner`` client on the backend of the run:
serial, two local processes, and every rank under mpiexec (main runs the
client; the others serve it). Inside a client, ``parallel_config(backend=
"parallelizer")`` sends joblib's batches to the client's processes.
"""

from __future__ import annotations

import importlib
import os
import time

import pytest

joblib = pytest.importorskip("joblib", reason="joblib is in the 'integrations' extra (make test installs it)")
sklearn = pytest.importorskip("sklearn", reason="scikit-learn is in the 'integrations' extra")

import numpy as np  # noqa: E402
from joblib import Parallel, delayed, parallel_config  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402

import parallelizer.joblib  # noqa: E402  (registers "parallelizer")
from parallelizer import ClientServerRunner, RemoteError  # noqa: E402


def _run(par, client, *args):
    result = ClientServerRunner(client, parallelizer=par).run(*args)
    if not par.on_main:
        assert result is None
    return result


def _pid_and_square(x):
    return os.getpid(), x * x


def _data():
    return make_classification(n_samples=120, n_features=6, random_state=0)


def _search(backend):
    X, y = _data()
    grid = {"C": [0.01, 0.1, 1.0, 10.0], "fit_intercept": [True, False]}
    if backend is None:
        search = GridSearchCV(LogisticRegression(max_iter=200), grid, cv=4).fit(X, y)
        scores = cross_val_score(LogisticRegression(max_iter=200), X, y, cv=5)
    else:
        with parallel_config(backend=backend):
            search = GridSearchCV(LogisticRegression(max_iter=200), grid, cv=4).fit(X, y)
            scores = cross_val_score(LogisticRegression(max_iter=200), X, y, cv=5)
    return search.best_params_, search.cv_results_["mean_test_score"], scores


def _sklearn_client(parallelizer=None):
    pids = {pid for pid, _ in Parallel(backend="parallelizer")(delayed(_pid_and_square)(x) for x in range(40))}
    return _search("parallelizer"), len(pids)


def test_grid_search_and_cross_val_score_match_a_serial_run(par):
    got = _run(par, _sklearn_client)
    if par.on_main:
        (best, means, scores), processes = got
        want_best, want_means, want_scores = _search(None)
        assert best == want_best
        np.testing.assert_array_equal(means, want_means)
        np.testing.assert_array_equal(scores, want_scores)
        assert 1 <= processes <= par.nprocs


def _ordered_client(parallelizer=None):
    with parallel_config(backend="parallelizer"):
        ordered = Parallel()(delayed(_pid_and_square)(x) for x in range(50))
        generated = Parallel(return_as="generator")(delayed(_pid_and_square)(x) for x in range(50))
        first = next(generated)
        rest = list(generated)
        unordered = list(Parallel(return_as="generator_unordered")(delayed(_pid_and_square)(x) for x in range(50)))
    return [v for _, v in ordered], [first[1]] + [v for _, v in rest], sorted(v for _, v in unordered)


def test_results_come_in_order_and_as_generators(par):
    got = _run(par, _ordered_client)
    if par.on_main:
        ordered, generated, unordered = got
        squares = [x * x for x in range(50)]
        assert ordered == squares
        assert generated == squares
        assert unordered == squares


def _interval(x):
    start = time.time()
    time.sleep(0.03)
    return start, time.time()


def _most_at_once(intervals):
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def _concurrency_client(parallelizer=None):
    with parallel_config(backend="parallelizer"):
        return {
            n_jobs: _most_at_once(Parallel(n_jobs=n_jobs, batch_size=1)(delayed(_interval)(x) for x in range(12)))
            for n_jobs in (1, 2, -1)
        }


def test_n_jobs_bounds_how_many_calls_run_at_once(par):
    got = _run(par, _concurrency_client)
    if par.on_main:
        assert got[1] == 1
        assert got[2] <= 2
        assert got[-1] <= par.nprocs


def _n_jobs_client(parallelizer=None):
    backend = parallelizer_backend()
    return (
        backend.effective_n_jobs(-1),
        backend.effective_n_jobs(1),
        backend.effective_n_jobs(None),
        backend.effective_n_jobs(10_000),
    )


def parallelizer_backend():
    return parallelizer.joblib.ParallelizerBackend()


def test_n_jobs_counts_the_processes_that_compute(par):
    got = _run(par, _n_jobs_client)
    if par.on_main:
        assert got == (par.nprocs, 1, par.nprocs, par.nprocs)
    with pytest.raises(ValueError, match="n_jobs == 0"):
        parallelizer_backend().effective_n_jobs(0)


def _fails_at(x, bad):
    if x == bad:
        raise ZeroDivisionError(f"item {x}")
    return x


def _sleep_then(x):
    time.sleep(0.05)
    return x


def _errors_client(parallelizer=None):
    with parallel_config(backend="parallelizer"):
        try:
            Parallel(batch_size=1)(delayed(_fails_at)(x, 3) for x in range(8))
        except ZeroDivisionError as exc:
            raised = (type(exc).__name__, str(exc), type(exc.__cause__).__name__)
        else:
            raised = None
        start = time.monotonic()
        try:  # the failure comes first; the 200 slow calls behind it must not all run
            Parallel(batch_size=1, pre_dispatch="all")(
                [delayed(_fails_at)(0, 0)] + [delayed(_sleep_then)(x) for x in range(200)]
            )
        except ZeroDivisionError:
            aborted_after = time.monotonic() - start
        else:
            aborted_after = None
        again = Parallel()(delayed(_fails_at)(x, -1) for x in range(6))  # the pool still works
    return raised, aborted_after, again


def test_errors_are_raised_as_joblib_raises_them_and_abort_stops_the_rest(par):
    got = _run(par, _errors_client)
    if par.on_main:
        raised, aborted_after, again = got
        assert raised is not None and raised[:2] == ("ZeroDivisionError", "item 3")
        if par.nprocs > 1:
            assert raised[2] == RemoteError.__name__  # the remote traceback is the cause
        assert aborted_after is not None
        assert aborted_after < 200 * 0.05 / par.nprocs  # less than running every call
        assert again == list(range(6))


def _nested(x):
    return sum(Parallel(backend="parallelizer")(delayed(abs)(-y) for y in range(x)))


def _nested_client(parallelizer=None):
    with parallel_config(backend="parallelizer"):
        return Parallel()(delayed(_nested)(x) for x in range(6))


def test_nested_parallel_calls_run_sequentially_inside_a_task(par):
    got = _run(par, _nested_client)
    if par.on_main:
        assert got == [sum(range(x)) for x in range(6)]


def test_spmd_code_is_told_where_joblib_work_can_go(par):
    if par.nprocs == 1:
        pytest.skip("a group of one has no other process: joblib work runs on it directly")

    def body(parallelizer=None):
        importlib.import_module("parallelizer.joblib")  # as a script run on every process registers it on each

        with parallel_config(backend="parallelizer"), pytest.raises(RuntimeError, match="--pool"):
            Parallel()(delayed(abs)(-1) for _ in range(3))
        return parallelizer.gather(True)

    from backends import spmd

    got = spmd(par, body)
    if par.on_main:
        assert got == [True] * par.nprocs


def _blas_threads(_):
    from threadpoolctl import threadpool_info

    return sorted({info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"})


def _threads_client(parallelizer=None):
    with parallel_config(backend="parallelizer", inner_max_num_threads=1):
        limited = Parallel(n_jobs=2)(delayed(_blas_threads)(x) for x in range(4))
    return limited, _blas_threads(None)


def test_tasks_limit_their_blas_threads_to_their_share_of_the_cpus(par):
    pytest.importorskip("threadpoolctl", reason="threadpoolctl comes with scikit-learn ('integrations' extra)")
    if par.nprocs == 1:
        pytest.skip("one process: joblib runs the calls itself, one after the other, with the process's threads")
    got = _run(par, _threads_client)
    if par.on_main:
        limited, after = got
        assert limited == [[1]] * 4
        assert (after and after != [1]) or os.cpu_count() == 1  # main's own libraries are left alone
