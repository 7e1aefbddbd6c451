"""``map`` over blocks of an array (the seed's ``map_applier``).

``map(func, data)`` spreads root's ``data`` over every process (root works
too) and returns the results on root, in input order. ``vectorized=True``
calls ``func`` once per process on its whole block and concatenates the
results, so numpy does the work instead of a Python loop over items::

    python examples/map_applier.py                                  # [ 1  2 ... 10]
    PARALLELIZER=multiprocessing:3 python examples/map_applier.py   # the same, on 3 processes
    mpiexec -n 3 python examples/map_applier.py                     # the same, on 3 MPI ranks
"""

from __future__ import annotations

import numpy as np

from parallelizer import Parallelizer


def map_applier(n=10, parallelizer=None):
    """Adds one to every element of ``np.arange(n)``, block by block."""
    data = np.arange(n) if parallelizer.on_main else None  # only root's data counts
    # With 3 processes: blocks [0..3], [4..6], [7..9]; each adds 1 to its own.
    return parallelizer.map(lambda block: 1 + block, data, vectorized=True)  # None off root


def main(parallelizer=None):
    par = Parallelizer.lookup(parallelizer)
    result = par.run(map_applier)
    par.print(f"{type(par).__name__}: {result}")
    return result


if __name__ == "__main__":
    main()
