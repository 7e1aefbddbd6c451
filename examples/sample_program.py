"""A class that takes a parallelizer (the seed's ``SampleProgram``).

A larger program splits its SPMD code by role. ``run_par`` runs on every
process: main sets up the data, takes part in the parallel step and
post-processes (``run_main``); the workers only take part in the parallel
step (``run_worker``). The program stores its parallelizer (``self.par``),
given as a name, an instance, or ``None``. The same class runs on all three
backends; the optional argument is handed to ``Parallelizer.lookup``::

    python examples/sample_program.py                          # serial
    python examples/sample_program.py multiprocessing:3        # 3 local processes
    PARALLELIZER=multiprocessing:3 python examples/sample_program.py   # the same
    mpiexec -n 3 python examples/sample_program.py             # MPI (found by lookup(None))
    mpiexec -n 3 python examples/sample_program.py mpi         # MPI, by name

Every run prints the same numbers: the square roots of the squares are the
random numbers main started from.
"""

from __future__ import annotations

import sys

import numpy as np

from parallelizer import Parallelizer


class SampleProgram:
    """Squares random numbers in parallel and takes their square roots."""

    def __init__(self, nvals=1000, parallelizer=None, seed=0):
        self.par = Parallelizer.lookup(parallelizer)  # a name, an instance, or None
        self.nvals = nvals
        self.seed = seed

    def initialize_data(self):
        return np.random.default_rng(self.seed).random(self.nvals)

    def eval_parallel(self, data, parallelizer=None):
        """The parallel step, on every process: main's data in, main's result out."""
        block = parallelizer.scatter(data)  # each process gets its share of main's array
        return parallelizer.gather(block**2)  # usually something much more expensive; None off main

    def run_main(self, parallelizer=None):
        """Main: set up, take part in the parallel step, post-process."""
        data = self.initialize_data()
        values = self.eval_parallel(data, parallelizer=parallelizer)
        return np.sqrt(values)

    def run_worker(self, parallelizer=None):
        """Workers: only the parallel step."""
        self.eval_parallel(None, parallelizer=parallelizer)

    def run_par(self, parallelizer=None):
        """Called on every process."""
        if parallelizer.on_main:
            return self.run_main(parallelizer=parallelizer)
        return self.run_worker(parallelizer=parallelizer)

    def run(self):
        """Runs ``run_par`` on every process; returns main's result."""
        return self.par.run(self.run_par)  # a bound method travels to the workers with its object


def main(spec=None):
    """``spec``: a backend name such as ``"multiprocessing:3"``, or ``None``."""
    program = SampleProgram(nvals=10, parallelizer=spec)
    result = program.run()
    program.par.print(f"{type(program.par).__name__}: {result}")
    return result


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
