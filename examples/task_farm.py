"""A task farm: a parameter sweep with uneven task times, and a progress bar.

The sweep finds the period of the logistic map's attractor,
``x -> r x (1 - x)``, for many values of ``r``. Some tasks converge after a
few hundred iterations, others (near a bifurcation, or chaotic) run to the
iteration limit: dozens of times longer. ``ClientServerRunner`` keeps main in
charge (ordinary, serial-looking code) while the other processes serve its
``map``; ``schedule="dynamic"`` hands the tasks out on demand, so a process
that drew cheap tasks takes more instead of waiting for the slow ones::

    python examples/task_farm.py                                  # serial
    PARALLELIZER=multiprocessing:3 python examples/task_farm.py   # main + 2 servers
    mpiexec -n 3 python examples/task_farm.py                     # rank 0 + 2 servers

The periods printed are the same on every backend.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np

from parallelizer import ClientServerRunner


def attractor_period(r, max_iter=20_000, chunk=512, tol=1e-10):
    """The period (up to 32) the logistic map settles into; 0 for chaos.

    Iterates in chunks until the last 128 points repeat with some period
    ``p``; the cost depends strongly on ``r``.
    """
    x = 0.5
    for _ in range(max_iter // chunk):
        orbit = np.empty(chunk)
        for i in range(chunk):
            x = r * x * (1.0 - x)
            orbit[i] = x
        tail = orbit[-128:]
        gaps = [np.max(np.abs(tail[p:] - tail[:-p])) for p in range(1, 33)]
        period = next((p for p, gap in enumerate(gaps, 1) if gap < tol), None)
        # Near a bifurcation a converging orbit looks periodic with 2p before it
        # settles on p: only accept p when no shorter period is nearly there.
        if period is not None and all(gaps[q - 1] > 1e-5 for q in range(1, period)):
            return period
    return 0


def sweep(rs, parallelizer=None):
    """The client: ordinary code on main; ``parallelizer.map`` uses every process."""
    # The bar needs tqdm; it is shown on a terminal only (piped or in a log it is noise).
    show_bar = importlib.util.find_spec("tqdm") is not None and sys.stderr.isatty()
    return parallelizer.map(attractor_period, rs, schedule="dynamic", progress=show_bar)


def main(parallelizer=None):
    rs = np.round(np.arange(2.902, 4.0, 0.004), 3)  # 275 values of r
    periods = ClientServerRunner(sweep, parallelizer=parallelizer).run(rs)
    if periods is None:  # a server (MPI rank > 0): the client has finished
        return None
    print(f"period of the logistic map's attractor for {len(rs)} values of r in [{rs[0]}, {rs[-1]}]:")
    onsets = {}
    for r, period in zip(rs, periods, strict=True):
        onsets.setdefault(period, r)
    for period, r in sorted(onsets.items(), key=lambda item: item[1]):
        name = "no period <= 32 (chaos)" if period == 0 else f"period {period}"
        print(f"  {name:>23} first at r = {r:.3f} ({periods.count(period)} of {len(rs)})")
    return periods


if __name__ == "__main__":
    main()
