"""A reduced-basis loop in the style of pymor's worker pools: push once, apply many times.

A parametrized model, the heat equation ``-(mu * u')' = 1`` on a line with
a conductivity ``mu`` that varies along it, is *pushed* to every process
once. Its parameter samples are *scattered*: each process keeps its share.
Then a greedy loop picks the worst-approximated sample again and again and
adds its solution to a reduced basis; every round asks each process, with
``apply``, for the error of its own samples (the model and the samples never
travel again), and ``apply_only`` solves the chosen sample where it lives::

    python examples/reduced_basis.py                                  # serial
    PARALLELIZER=multiprocessing:3 python examples/reduced_basis.py   # main + 2 servers
    mpiexec -n 3 python examples/reduced_basis.py                     # rank 0 + 2 servers

The basis, and the errors printed, are the same on every backend.
"""

from __future__ import annotations

import numpy as np

from parallelizer import ClientServerRunner


class HeatModel:
    """A finite-difference model: ``solve(mu)`` for a conductivity scale per segment."""

    def __init__(self, n=400, segments=4):
        self.n = n
        self.segment = np.repeat(np.arange(segments), n // segments)
        self.h = 1.0 / (n + 1)

    def matrix(self, mu):
        k = mu[self.segment]
        main = (k + np.roll(k, -1)) / self.h**2
        off = -k[1:] / self.h**2
        return np.diag(main) + np.diag(off, 1) + np.diag(off, -1)

    def solve(self, mu):
        return np.linalg.solve(self.matrix(mu), np.ones(self.n))

    def reduced_error(self, mu, basis):
        """How badly the span of ``basis`` (columns) approximates the solution for ``mu``."""
        a = self.matrix(mu)
        if basis is None:
            return float(np.linalg.norm(self.solve(mu)))
        reduced = np.linalg.solve(basis.T @ a @ basis, basis.T @ np.ones(self.n))
        residual = np.ones(self.n) - a @ (basis @ reduced)
        return float(np.linalg.norm(residual) * self.h**2)


def errors_of_my_samples(model, samples, basis):
    """What every process computes each round: the error of each of its own samples."""
    return [model.reduced_error(mu, basis) for mu in samples]


def solve_sample(model, samples, index):
    return model.solve(samples[index])


def greedy(samples, rounds=6, parallelizer=None):
    """The client: push the model and the samples once, then a greedy loop of applies."""
    model = parallelizer.push(HeatModel())
    mine = parallelizer.push(samples, scatter=True)
    sizes = parallelizer.apply(len, mine)
    basis, history = None, []
    for _ in range(rounds):
        errors = parallelizer.apply(errors_of_my_samples, model, mine, basis)
        rank = max(range(len(errors)), key=lambda r: max(errors[r], default=-1.0))
        local = int(np.argmax(errors[rank]))
        history.append((sum(sizes[:rank]) + local, max(errors[rank])))
        snapshot = parallelizer.apply_only(rank, solve_sample, model, mine, local)
        columns = snapshot[:, None] if basis is None else np.column_stack([basis, snapshot])
        basis, _ = np.linalg.qr(columns)
    return history


def main(parallelizer=None):
    rng = np.random.default_rng(7)
    samples = 10.0 ** rng.uniform(-1, 1, size=(60, 4))  # 60 conductivity profiles
    history = ClientServerRunner(greedy, parallelizer=parallelizer).run(samples)
    if history is None:  # a server (MPI rank > 0): the client has finished
        return None
    print(f"greedy reduced basis over {len(samples)} parameter samples:")
    for size, (index, error) in enumerate(history, 1):
        print(f"  basis size {size}: worst sample {index:2d}, error before adding it {error:.3e}")
    return history


if __name__ == "__main__":
    main()
