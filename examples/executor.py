"""A ``concurrent.futures`` executor over the group's processes.

Code written for ``concurrent.futures`` runs unchanged on ``par.executor()``:
``submit``, ``map``, ``as_completed``. In a script run serially or with
local processes, main's own code makes the executor; under ``mpiexec`` every
rank makes it, rank 0 gets it and the others serve it (the ``with ... as
executor: if executor is not None`` idiom of mpi4py's ``MPICommExecutor``)::

    python examples/executor.py                                  # serial: a thread of main
    PARALLELIZER=multiprocessing:3 python examples/executor.py   # 2 worker processes
    mpiexec -n 3 python examples/executor.py                     # ranks 1 and 2 serve rank 0
    mpiexec -n 3 python -m parallelizer --pool examples/executor.py   # only rank 0 runs the script

The primes printed are the same on every backend.
"""

from __future__ import annotations

import concurrent.futures
import math

from parallelizer import Parallelizer


def is_prime(n):
    if n < 2:
        return False
    return all(n % d for d in range(2, math.isqrt(n) + 1))


def count_primes(start, stop):
    return sum(is_prime(n) for n in range(start, stop))


def main():
    par = Parallelizer.lookup()
    with par.executor() as executor:
        if executor is None:  # an MPI rank > 0: it served rank 0's executor
            return None
        blocks = [(start, start + 20_000) for start in range(0, 200_000, 20_000)]
        futures = {executor.submit(count_primes, *block): block for block in blocks}
        counts = {futures[future]: future.result() for future in concurrent.futures.as_completed(futures)}
        small = list(executor.map(is_prime, range(30), chunksize=5))
    print(f"{type(par).__name__}: primes below 200000 = {sum(counts.values())}")
    print("primes below 30:", [n for n, prime in enumerate(small) if prime])
    return counts


if __name__ == "__main__":
    main()
