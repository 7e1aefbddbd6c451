"""Heat diffusing along a rod: collectives into arrays allocated once (``out=``).

An explicit finite-difference scheme for ``u_t = u_xx`` on a rod whose two
ends are held at zero. Every process keeps the whole temperature field in
one array, ``field``, allocated once, and owns a contiguous block of it. At
each step it updates its block from the field (a point needs its two
neighbours, which may belong to another process), and ``allgather`` puts
every block back into ``field``: with ``out=field`` the collective writes
into that same array at every step instead of returning a new one. Under
MPI and on local processes the bytes land in ``field`` directly, with no
new array and no second copy, and the processes first check together that
every ``out`` fits (a wrong shape raises ``ValueError`` on all of them and
nothing is written)::

    python examples/heat_diffusion.py                            # serial
    PARALLELIZER=multiprocessing:3 python examples/heat_diffusion.py
    mpiexec -n 3 python examples/heat_diffusion.py               # MPI

From a notebook or another script::

    diffuse(100_000, 50)                                           # serial
    MultiprocessingParallelizer(4).run(diffuse, 100_000, 50)       # 4 processes

Every backend prints the same numbers, bit for bit: each grid point gets
the same arithmetic whichever process owns it.
"""

from __future__ import annotations

import numpy as np

from parallelizer import Parallelizer

RATE = 0.25
"""``dt / dx**2``: the explicit scheme is stable up to 0.5."""


def diffuse(npoints=200_000, steps=200, parallelizer=None):
    """The temperature along the rod after ``steps`` steps, on every process.

    Args:
        npoints: Grid points, the two fixed ends included.
        steps: Time steps.
        parallelizer: Anything ``Parallelizer.lookup`` accepts; ``None`` finds
            the running one (or serial).

    Returns:
        The field, an array of ``npoints`` floats, on every process.
    """
    par = Parallelizer.lookup(parallelizer)
    field = np.empty(npoints)  # the whole rod on every process, allocated once

    # Main sets the initial temperature (a hot segment of 40 points in the
    # middle); broadcast writes it into every process's field.
    initial = None
    if par.on_main:
        initial = np.zeros(npoints)
        initial[npoints // 2 - 20 : npoints // 2 + 20] = 1.0
    par.broadcast(initial, out=field)

    # This process's block: numpy.array_split's rule, as allgather joins the blocks.
    sizes = [len(part) for part in np.array_split(np.empty(npoints), par.nprocs)]
    start = sum(sizes[: par.id])
    stop = start + sizes[par.id]
    inner = slice(max(start, 1), min(stop, npoints - 1))  # the ends stay at zero
    block = field[start:stop].copy()
    mine = slice(inner.start - start, inner.stop - start)

    for _ in range(steps):
        left = field[inner.start - 1 : inner.stop - 1]
        right = field[inner.start + 1 : inner.stop + 1]
        block[mine] = field[inner] + RATE * (left - 2.0 * field[inner] + right)
        par.allgather(block, out=field)  # every block into the same array, every step
    return field


def main(parallelizer=None):
    par = Parallelizer.lookup(parallelizer)  # serial, PARALLELIZER=..., or MPI under mpiexec
    field = par.run(diffuse)
    par.print(f"{type(par).__name__} with {par.nprocs} process(es)")
    # The heat stays (40.0, the ends are far away); the peak spreads out.
    par.print(f"heat {float(field.sum())!r}, peak {float(field.max())!r} at point {int(field.argmax())}")
    return field


if __name__ == "__main__":
    main()
