"""Optimizers with a parallelizer pool: scipy's ``workers=`` and pymoo's ``StarmapParallelization``.

Each runs inside a ``ClientServerRunner`` client on serial, two local
processes and under mpiexec, and must give exactly what the same seeded run
gives without a pool.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from parallelizer import ClientServerRunner

scipy_optimize = pytest.importorskip("scipy.optimize", reason="scipy is in the 'integrations' extra")


def rosen(x):
    x = np.asarray(x)
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def _run(par, client, *args):
    result = ClientServerRunner(client, parallelizer=par).run(*args)
    if not par.on_main:
        assert result is None
    return result


def _scipy_runs(workers):
    bounds = [(-2.0, 2.0)] * 3
    de = scipy_optimize.differential_evolution(
        rosen, bounds, seed=5, maxiter=30, popsize=8, polish=False, updating="deferred", workers=workers
    )
    grid = scipy_optimize.brute(rosen, [(-2.0, 2.0, 0.25)] * 2, finish=None, workers=workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shgo warns about its own sampling choices
        shgo = scipy_optimize.shgo(rosen, [(-2.0, 2.0)] * 2, n=32, iters=1, workers=workers)
    return (de.x, de.fun, de.nfev), grid, (shgo.x, shgo.fun)


def _counted(method, calls):
    def call(*args, **kwargs):
        calls.append(1)
        return method(*args, **kwargs)

    return call


def _scipy_client(parallelizer=None):
    calls = []
    return _scipy_runs(_counted(parallelizer.pool().map, calls)), len(calls)


def test_scipy_workers_give_the_serial_optima(par):
    got = _run(par, _scipy_client)
    if par.on_main:
        ((de_x, de_fun, de_nfev), grid, (shgo_x, shgo_fun)), maps = got
        assert maps > 30  # every generation, the grid and shgo went through the pool
        (want_x, want_fun, want_nfev), want_grid, (want_shgo_x, want_shgo_fun) = _scipy_runs(1)
        np.testing.assert_array_equal(de_x, want_x)
        assert (de_fun, de_nfev) == (want_fun, want_nfev)
        np.testing.assert_array_equal(grid, want_grid)
        np.testing.assert_array_equal(shgo_x, want_shgo_x)
        assert shgo_fun == want_shgo_fun


# ---------------------------------------------------------------- pymoo


def _pymoo_run(starmap):
    from pymoo.algorithms.soo.nonconvex.ga import GA
    from pymoo.core.problem import ElementwiseProblem
    from pymoo.optimize import minimize
    from pymoo.parallelization import StarmapParallelization

    runner = {} if starmap is None else {"elementwise_runner": StarmapParallelization(starmap)}
    problem = _Rosenbrock(**runner)
    assert isinstance(problem, ElementwiseProblem)
    result = minimize(problem, GA(pop_size=20), ("n_gen", 15), seed=11, verbose=False)
    return result.X, result.F


def _pymoo_client(parallelizer=None):
    calls = []
    return _pymoo_run(_counted(parallelizer.pool().starmap, calls)), len(calls)


def test_pymoo_starmap_gives_the_serial_result(par):
    pytest.importorskip("pymoo", reason="pymoo is in the 'integrations' extra")
    got = _run(par, _pymoo_client)
    if par.on_main:
        (x, f), starmaps = got
        assert starmaps >= 15  # one per generation
        want_x, want_f = _pymoo_run(None)
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(f, want_f)


try:
    from pymoo.core.problem import ElementwiseProblem
except ImportError:  # pymoo missing: the test above skips, saying so
    ElementwiseProblem = object


class _Rosenbrock(ElementwiseProblem):  # type: ignore[misc,valid-type]
    def __init__(self, **kwargs):
        super().__init__(n_var=3, n_obj=1, xl=-2.0, xu=2.0, **kwargs)

    def _evaluate(self, x, out, *args, **kwargs):
        out["F"] = rosen(x)
