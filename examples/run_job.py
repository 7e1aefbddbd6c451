"""broadcast, scatter and gather in one SPMD function (the seed's ``run_job``).

Run it serially, on local processes, or under MPI without changing the code::

    python examples/run_job.py
    PARALLELIZER=multiprocessing:4 python examples/run_job.py
    mpiexec -n 4 python examples/run_job.py
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
    par = Parallelizer.lookup(parallelizer)
    lengths = par.run(run_job)
    par.print(f"{type(par).__name__} with {par.nprocs} process(es): block lengths {lengths}")
    return lengths


if __name__ == "__main__":
    main()
