"""A class that takes a parallelizer (the seed's ``SampleProgram``).

``run_par`` runs on every process: workers only take part in the parallel
step (``run_worker``), main also sets up the data and post-processes it
(``run_main``). The same class runs serially, with local processes and
under MPI::

    python examples/sample_program.py                      # serial
    python examples/sample_program.py multiprocessing:3    # 3 local processes
    mpiexec -n 3 python examples/sample_program.py mpi     # MPI
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
        block = parallelizer.scatter(data)
        return parallelizer.gather(block**2)  # usually something much more expensive

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
        return self.par.run(self.run_par)


def main(spec=None):
    program = SampleProgram(nvals=10, parallelizer=spec)
    result = program.run()
    program.par.print(f"{type(program.par).__name__}: {result}")
    return result


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
