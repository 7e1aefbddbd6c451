"""Samplers with a parallelizer pool: emcee, dynesty and zeus take ``pool=``, ultranest takes ``comm=``.

Each sampler runs inside a ``ClientServerRunner`` client with the client's
pool (``parallelizer.pool()``), on serial, two local processes and under
mpiexec; with the same seed the chain is the one a run without a pool
gives, since the pool only evaluates the likelihood. ultranest is SPMD: every
process runs it with an mpi4py-shaped :class:`parallelizer.comm.Comm`.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from parallelizer import ClientServerRunner, MPIParallelizer
from parallelizer.comm import Comm

MEAN = np.array([0.3, -0.2, 0.1])


def log_prob(theta):
    return -0.5 * float(np.sum(((np.asarray(theta) - MEAN) / 0.5) ** 2))


def _run(par, client, *args):
    result = ClientServerRunner(client, parallelizer=par).run(*args)
    if not par.on_main:
        assert result is None
    return result


# ---------------------------------------------------------------- emcee


def _emcee_chain(pool):
    import emcee

    np.random.seed(42)  # emcee draws its state from numpy's global one
    start = MEAN + 1e-3 * np.random.default_rng(1).standard_normal((8, 3))
    sampler = emcee.EnsembleSampler(8, 3, log_prob, pool=pool)
    sampler.run_mcmc(start, 40, progress=False)
    return sampler.get_chain()


def _emcee_client(parallelizer=None):
    pool = parallelizer.pool()
    assert pool.size == parallelizer.nprocs
    return _emcee_chain(pool)


def test_emcee_with_a_pool_gives_the_serial_chain(par):
    pytest.importorskip("emcee", reason="emcee is in the 'integrations' extra")
    chain = _run(par, _emcee_client)
    if par.on_main:
        np.testing.assert_array_equal(chain, _emcee_chain(None))


# ---------------------------------------------------------------- zeus


def _zeus_chain(pool):
    import zeus

    np.random.seed(7)
    random.seed(7)  # zeus draws from both
    start = MEAN + 1e-2 * np.random.default_rng(2).standard_normal((8, 3))
    sampler = zeus.EnsembleSampler(8, 3, log_prob, pool=pool, verbose=False)
    sampler.run_mcmc(start, 30, progress=False)
    return sampler.get_chain()


def _zeus_client(parallelizer=None):
    return _zeus_chain(parallelizer.pool())


def test_zeus_with_a_pool_gives_the_serial_chain(par):
    pytest.importorskip("zeus", reason="zeus-mcmc is in the 'integrations' extra")
    chain = _run(par, _zeus_client)
    if par.on_main:
        np.testing.assert_array_equal(chain, _zeus_chain(None))


# ---------------------------------------------------------------- dynesty


def prior_transform(u):
    return 4.0 * u - 2.0


def _dynesty_run(pool, queue_size):
    import dynesty

    sampler = dynesty.NestedSampler(
        log_prob, prior_transform, 3, nlive=60, pool=pool, queue_size=queue_size, rstate=np.random.default_rng(3)
    )
    sampler.run_nested(dlogz=0.5, print_progress=False)
    return sampler.results


class _InProcess:
    """The reference: a pool that maps in this process."""

    @staticmethod
    def map(func, iterable):
        return list(map(func, iterable))


def _dynesty_client(parallelizer=None):
    pool = parallelizer.pool()
    results = _dynesty_run(pool, None)  # dynesty sizes its queue with pool.size
    return results["logz"][-1], results["samples"], pool.size


def test_dynesty_with_a_pool_sizes_its_queue_and_gives_the_serial_result(par):
    pytest.importorskip("dynesty", reason="dynesty is in the 'integrations' extra")
    got = _run(par, _dynesty_client)
    if par.on_main:
        logz, samples, size = got
        want = _dynesty_run(_InProcess(), size)  # the same queue, evaluated in this process
        assert logz == want["logz"][-1]
        np.testing.assert_array_equal(samples, want["samples"])
        analytic = np.log((2 * np.pi * 0.25) ** 1.5 / 4.0**3)
        assert abs(logz - analytic) < 1.0


# ---------------------------------------------------------------- ultranest (comm=)


def loglike_vectorized(theta):
    return -0.5 * np.sum(((theta - 0.5) / 0.1) ** 2, axis=-1)


def _identity(cube):
    return cube


def _ultranest_body(parallelizer=None):
    import ultranest

    sampler = ultranest.ReactiveNestedSampler(
        ["a", "b"], loglike_vectorized, _identity, vectorized=True, comm=Comm(parallelizer)
    )
    result = sampler.run(min_num_live_points=80, show_status=False, viz_callback=False)
    return parallelizer.gather((result["logz"], sampler.mpi_size, sampler.mpi_rank))


def test_ultranest_runs_spmd_on_the_comm_adapter(par):
    pytest.importorskip(
        "ultranest",
        reason="ultranest has no wheel (a 1-2 minute C build): 'make test-ultranest' installs it and runs this",
    )
    import logging

    logging.getLogger("ultranest").setLevel(logging.WARNING)
    got = par.run(_ultranest_body) if not isinstance(par, MPIParallelizer) else _ultranest_body(parallelizer=par)
    if par.on_main:
        assert [(size, rank) for _, size, rank in got] == [(par.nprocs, r) for r in range(par.nprocs)]
        logz = {value for value, _, _ in got}
        assert len(logz) == 1  # every process agrees: the run really was one, shared
        analytic = np.log(2 * np.pi * 0.01)
        assert abs(logz.pop() - analytic) < 0.5
