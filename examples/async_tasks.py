"""Submit and carry on, IPython-parallel style: tasks, their results and their metadata.

The client submits one task per simulation and goes on with its own work;
each :class:`~parallelizer.pools.Task` is a ``concurrent.futures.Future``
with the ``AsyncResult`` methods (``ready``, ``get``, ``successful``) and
``metadata``: which process ran it, when, and what it printed::

    python examples/async_tasks.py                                  # serial: a thread of main runs them
    PARALLELIZER=multiprocessing:3 python examples/async_tasks.py   # main + 2 servers
    mpiexec -n 3 python examples/async_tasks.py                     # rank 0 + 2 servers

The numbers printed are the same on every backend; where each task ran differs.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np

from parallelizer import ClientServerRunner


def random_walk_extent(seed, steps=20_000):
    """The farthest a seeded random walk gets; prints a line (captured in the metadata)."""
    walk = np.cumsum(np.random.default_rng(seed).choice([-1, 1], size=steps))
    print(f"walk {seed}: done")
    return int(np.abs(walk).max())


def client(seeds, parallelizer=None):
    tasks = [parallelizer.submit(random_walk_extent, seed) for seed in seeds]
    busy = sum(i * i for i in range(200_000))  # main's own work meanwhile
    done, _ = concurrent.futures.wait(tasks, timeout=120)
    assert len(done) == len(tasks) and busy > 0
    rows = []
    for seed, task in zip(seeds, tasks, strict=True):
        meta = task.metadata
        rows.append((seed, task.get(), task.successful(), meta["stdout"].strip()))
    ranks = sorted({task.metadata["rank"] for task in tasks})
    return rows, ranks


def main(parallelizer=None):
    outcome = ClientServerRunner(client, parallelizer=parallelizer).run(range(8))
    if outcome is None:  # a server (MPI rank > 0)
        return None
    rows, ranks = outcome
    print(f"{len(rows)} tasks, run by {'main' if ranks == [0] else 'the servers'}")
    for seed, extent, ok, printed in rows:
        print(f"  seed {seed}: extent {extent:4d}  successful={ok}  printed {printed!r}")
    return rows


if __name__ == "__main__":
    main()
