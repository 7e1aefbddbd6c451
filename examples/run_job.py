"""broadcast, scatter and gather in one SPMD function (the seed's ``run_job``).

SPMD ("single program, multiple data"): ``run_job`` runs on every process
of the group at once. Process 0, *main*, holds the data; the collectives
(``broadcast``, ``scatter``, ``gather``) move it, and every process must call
them in the same order. Run it serially, on local processes, or under MPI
without changing the code::

    python examples/run_job.py                                  # 1 process: [1000]
    PARALLELIZER=multiprocessing:3 python examples/run_job.py   # [334, 333, 333]
    mpiexec -n 3 python examples/run_job.py                     # [334, 333, 333]
"""

from __future__ import annotations

import numpy as np

from parallelizer import Parallelizer


def run_job(parallelizer=None):
    """Every process runs this; main holds the data."""
    data = np.arange(1000) if parallelizer.on_main else None
    flag = parallelizer.broadcast("woop" if parallelizer.on_main else None)  # main's flag, everywhere
    assert flag == "woop"
    block = parallelizer.scatter(data)  # this process's share of main's data
    return parallelizer.gather(len(block))  # main gets every share's length


def main(parallelizer=None):
    """Runs ``run_job`` on the parallelizer chosen by ``Parallelizer.lookup``."""
    # None: serial, unless PARALLELIZER is set or mpiexec started several ranks.
    par = Parallelizer.lookup(parallelizer)
    lengths = par.run(run_job)  # run_job(parallelizer=par) on every process
    par.print(f"{type(par).__name__} with {par.nprocs} process(es): block lengths {lengths}")  # main only
    return lengths


if __name__ == "__main__":
    main()
