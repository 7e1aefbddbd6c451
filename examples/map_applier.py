"""``map`` over blocks of an array (the seed's ``map_applier``).

``vectorized=True`` calls the function once per process on its whole block
and concatenates the results, so numpy does the work::

    python examples/map_applier.py
    PARALLELIZER=multiprocessing:3 python examples/map_applier.py
    mpiexec -n 3 python examples/map_applier.py
"""

from __future__ import annotations

import numpy as np

from parallelizer import Parallelizer


def map_applier(n=10, parallelizer=None):
    """Adds one to every element of ``np.arange(n)``, block by block."""
    data = np.arange(n) if parallelizer.on_main else None
    return parallelizer.map(lambda block: 1 + block, data, vectorized=True)


def main(parallelizer=None):
    par = Parallelizer.lookup(parallelizer)
    result = par.run(map_applier)
    par.print(f"{type(par).__name__}: {result}")
    return result


if __name__ == "__main__":
    main()
