"""Where the ranks of a job run: hosts, and the ranks on each.

``python -m parallelizer info`` under ``mpiexec`` or ``srun`` shows it once,
from rank 0, so a user sees at a glance whether the job spans the nodes it
was given.
"""

from __future__ import annotations

from typing import Any

from .._core import remote


def rank_ranges(ranks: list[int]) -> str:
    """Ranks as short ranges: ``0-3``, or ``0, 2, 4`` when not consecutive.

    Example:
        >>> rank_ranges([0, 1, 2, 3]), rank_ranges([0, 2, 4]), rank_ranges([1, 2, 5])
        ('0-3', '0, 2, 4', '1-2, 5')
    """
    parts: list[str] = []
    start = previous = ranks[0]
    for rank in [*ranks[1:], None]:
        if rank is not None and rank == previous + 1:
            previous = rank
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if rank is not None:
            start = previous = rank
    return ", ".join(parts)


def describe(hostnames: list[str]) -> str:
    """One line for the hosts of a job, from each rank's hostname in rank order.

    Example:
        >>> describe(["node0", "node0", "node1", "node1"])
        '4 ranks on 2 hosts: node0 (ranks 0-1), node1 (ranks 2-3)'
        >>> describe(["login"])
        '1 rank on 1 host: login (rank 0)'
    """
    ranks_on: dict[str, list[int]] = {}
    for rank, host in enumerate(hostnames):
        ranks_on.setdefault(host, []).append(rank)
    hosts = ", ".join(
        f"{host} ({'rank' if len(ranks) == 1 else 'ranks'} {rank_ranges(ranks)})" for host, ranks in ranks_on.items()
    )
    nranks, nhosts = len(hostnames), len(ranks_on)
    return f"{nranks} rank{'s' * (nranks != 1)} on {nhosts} host{'s' * (nhosts != 1)}: {hosts}"


def gather(comm: Any) -> str | None:
    """:func:`describe` of ``comm``'s ranks, on its rank 0 (``None`` on the others).

    A collective: every rank of ``comm`` calls it.
    """
    hostnames = comm.gather(remote.HOST, root=0)
    return describe(hostnames) if hostnames is not None else None
