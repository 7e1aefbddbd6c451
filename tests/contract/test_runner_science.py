"""ClientServerRunner handed to scientific libraries: scipy's ``workers=`` and
emcee's ``pool=``. Results equal a serial run with the same seeds."""

from __future__ import annotations

import numpy as np
import pytest

from parallelizer import ClientServerRunner

scipy_optimize = pytest.importorskip("scipy.optimize", reason="scipy is an optional example dependency")
emcee = pytest.importorskip("emcee", reason="emcee is an optional example dependency")


def _objective(x):
    return float(np.sum((x - 0.5) ** 2) + np.sum(np.sin(3 * x) ** 2))


def _evolve(workers):
    return scipy_optimize.differential_evolution(
        _objective, [(-2, 2)] * 3, seed=7, maxiter=15, popsize=6, polish=False, updating="deferred", workers=workers
    )


def _de_client(parallelizer=None):
    return _evolve(parallelizer.map)


def test_differential_evolution_with_workers_map(par):
    result = ClientServerRunner(_de_client, parallelizer=par).run()
    if par.on_main:
        serial = _evolve(1)
        np.testing.assert_array_equal(result.x, serial.x)
        assert result.nfev == serial.nfev and result.fun == serial.fun


def _log_prob(theta):
    return -0.5 * float(np.sum(theta**2 / np.array([1.0, 4.0])))


def _sample(pool):
    sampler = emcee.EnsembleSampler(8, 2, _log_prob, pool=pool)
    sampler.random_state = np.random.RandomState(3).get_state()
    sampler.run_mcmc(np.random.RandomState(4).randn(8, 2), 25)
    return sampler.get_chain()


def _emcee_client(parallelizer=None):
    return _sample(parallelizer)


def test_emcee_with_pool(par):
    chain = ClientServerRunner(_emcee_client, parallelizer=par).run()
    if par.on_main:
        np.testing.assert_array_equal(chain, _sample(None))
