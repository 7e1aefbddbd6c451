"""Fit a model with scipy and sample its posterior with emcee, in parallel.

Both libraries expect one process in charge and something that maps a
function over many inputs: scipy's ``differential_evolution`` takes
``workers=`` (a ``map``-like callable), emcee's ``EnsembleSampler`` takes
``pool=`` (an object with a ``.map``). ``ClientServerRunner`` gives exactly
that on every backend: ``client`` runs on main and the other processes serve
its ``parallelizer.map`` calls::

    python examples/fit_model.py                                  # serial
    PARALLELIZER=multiprocessing:3 python examples/fit_model.py   # main + 2 servers
    mpiexec -n 3 python examples/fit_model.py                     # rank 0 + 2 servers

With the seeds fixed the results are identical on every backend. Here each
model evaluation takes microseconds, so parallelism cannot pay off; it does
when one evaluation takes milliseconds or more (a simulation, an ODE solve).
Needs scipy and emcee (``pip install 'parallelizer[examples]'``).
"""

from __future__ import annotations

import emcee
import numpy as np
from scipy.optimize import differential_evolution

from parallelizer import ClientServerRunner

NAMES = ("amplitude", "decay time", "frequency", "phase")
TRUE = np.array([2.0, 3.0, 2.5, 0.7])
BOUNDS = [(0.1, 5.0), (0.1, 10.0), (0.5, 5.0), (-np.pi, np.pi)]


def damped_oscillation(theta, t):
    amplitude, decay, omega, phase = theta
    return amplitude * np.exp(-t / decay) * np.cos(omega * t + phase)


def chi2(theta, t, y, sigma):
    return float(np.sum(((y - damped_oscillation(theta, t)) / sigma) ** 2))


def log_probability(theta, t, y, sigma):
    """Flat priors inside BOUNDS, Gaussian likelihood."""
    if any(not low < value < high for value, (low, high) in zip(theta, BOUNDS, strict=True)):
        return -np.inf
    return -0.5 * chi2(theta, t, y, sigma)


def fit(t, y, sigma, parallelizer=None):
    """The client: ordinary serial-looking code, run on main only."""
    # 1. Global optimum: every generation's candidates go through parallelizer.map.
    best = differential_evolution(
        chi2, BOUNDS, args=(t, y, sigma), workers=parallelizer.map, updating="deferred", seed=1, tol=1e-6
    )

    # 2. Posterior around it: each half-ensemble step goes through pool.map.
    nwalkers, nsteps = 16, 100
    sampler = emcee.EnsembleSampler(nwalkers, len(TRUE), log_probability, args=(t, y, sigma), pool=parallelizer)
    sampler.random_state = np.random.RandomState(2).get_state()
    start = best.x + 1e-4 * np.random.default_rng(3).standard_normal((nwalkers, len(TRUE)))
    sampler.run_mcmc(start, nsteps)
    samples = sampler.get_chain(discard=40, flat=True)
    return best, samples


def main(parallelizer=None):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 10, 120)
    sigma = 0.1
    y = damped_oscillation(TRUE, t) + sigma * rng.standard_normal(t.size)  # synthetic measurements

    outcome = ClientServerRunner(fit, parallelizer=parallelizer).run(t, y, sigma)
    if outcome is None:  # a server (MPI rank > 0)
        return None
    best, samples = outcome
    print(f"differential evolution: chi2 = {best.fun:.2f} for {t.size} points after {best.nfev} evaluations")
    print(f"{'parameter':>12} {'true':>7} {'best fit':>9} {'posterior':>17}")
    for name, true, value, mean, std in zip(
        NAMES, TRUE, best.x, samples.mean(axis=0), samples.std(axis=0), strict=True
    ):
        print(f"{name:>12} {true:7.3f} {value:9.3f} {mean:9.3f} +- {std:.3f}")
    return best, samples


if __name__ == "__main__":
    main()
