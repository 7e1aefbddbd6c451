"""A scientific function that runs serially, on local processes and under MPI.

``monte_carlo_integral`` estimates an integral over the unit hypercube by
averaging the integrand at random points. Like every function written for
parallelizer it takes ``parallelizer=None`` and asks
``Parallelizer.lookup(parallelizer)`` for the group it runs on, so its code
never changes; only how it is called does::

    python examples/monte_carlo.py                               # serial
    PARALLELIZER=multiprocessing:3 python examples/monte_carlo.py
    mpiexec -n 3 python examples/monte_carlo.py                  # MPI

From a notebook or another script::

    monte_carlo_integral(f, 6)                                    # serial
    MultiprocessingParallelizer(4).run(monte_carlo_integral, f, 6)  # 4 processes

The samples are drawn in fixed batches, each with its own random stream, and
the batch sums are added up on main in batch order: the estimate is the same,
bit for bit, whatever the number of processes.
"""

from __future__ import annotations

import math

import numpy as np

from parallelizer import Parallelizer


def batch_moments(f, ndim, nsamples, seed_sequence):
    """Sum and sum of squares of ``f`` at ``nsamples`` uniform points in [0, 1]^ndim."""
    rng = np.random.default_rng(seed_sequence)
    values = f(rng.random((nsamples, ndim)))
    return np.array([values.sum(), (values**2).sum()])


def monte_carlo_integral(f, ndim, nsamples=2_000_000, nbatches=32, seed=0, parallelizer=None):
    """Integral of ``f`` over the unit hypercube, with its standard error.

    SPMD: every process of the group calls it and gets the same answer.

    Args:
        f: Vectorized integrand: takes an ``(n, ndim)`` array of points and
            returns their ``n`` values.
        ndim: Dimension of the hypercube.
        nsamples: Total number of random points.
        nbatches: Independent random streams; the unit of work a process gets.
        seed: Seed of the whole computation.
        parallelizer: Anything ``Parallelizer.lookup`` accepts; ``None`` finds
            the running one (or serial).

    Returns:
        ``(estimate, standard_error)`` on every process.
    """
    par = Parallelizer.lookup(parallelizer)

    # Main decides the work; scatter hands each process a contiguous share of
    # the batches (with 3 processes and 32 batches: 11, 11 and 10).
    streams = np.random.SeedSequence(seed).spawn(nbatches) if par.on_main else None
    my_streams = par.scatter(streams)

    per_batch = nsamples // nbatches
    mine = [batch_moments(f, ndim, per_batch, stream) for stream in my_streams]
    mine = np.array(mine).reshape(-1, 2)  # (my batch count, 2), also when I got none

    # gather concatenates the (k, 2) arrays in rank order: (nbatches, 2) on main.
    moments = par.gather(mine)
    result = None
    if par.on_main:
        total, total_sq = moments.sum(axis=0)  # always summed in batch order: reproducible
        n = per_batch * nbatches
        mean = total / n
        variance = total_sq / n - mean**2
        result = (float(mean), math.sqrt(variance / n))
    return par.broadcast(result)  # every process returns the answer


def gaussian(points):
    """exp(-|x|^2): its integral over [0, 1]^d is known exactly."""
    return np.exp(-np.sum(points**2, axis=1))


def main(parallelizer=None, ndim=6):
    par = Parallelizer.lookup(parallelizer)  # serial, PARALLELIZER=..., or MPI under mpiexec
    estimate, error = par.run(monte_carlo_integral, gaussian, ndim)
    exact = (math.sqrt(math.pi) / 2 * math.erf(1)) ** ndim
    par.print(f"{type(par).__name__} with {par.nprocs} process(es)")
    par.print(f"integral of exp(-|x|^2) over [0,1]^{ndim}: {estimate:.6f} +- {error:.6f} (exact {exact:.6f})")
    return estimate, error


if __name__ == "__main__":
    main()
