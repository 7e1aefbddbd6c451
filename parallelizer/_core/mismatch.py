"""Debug mode: every collective first checks that all processes called the same one.

With ``PARALLELIZER_DEBUG=1`` (or ``debug=True``) each collective starts by
exchanging a small *signature*, ``(number, name, root)``: its position in the
sequence of collectives of this run, which collective, and its root. When
the signatures differ the processes would deadlock or mix up data; instead
every process raises :class:`~parallelizer.CollectiveMismatchError` whose
message names each rank's call, for example::

    processes called different collectives: rank 0 called gather(root=0) as
    collective #5; ranks 1, 2 called broadcast(root=0) as collective #5

The exchange itself is ``Transport._exchange_signatures`` (rank 0 collects
the signatures and sends the list back; a backend with a native allgather
overrides it); this module decides and words the verdict.
"""

from __future__ import annotations

from typing import Any

from ..errors import CollectiveMismatchError

Signature = tuple[int, str, "int | None"]


def check(signatures: list[Signature], mine: Signature) -> None:
    """Raises :class:`CollectiveMismatchError` unless every signature equals ``mine``."""
    if any(signature != mine for signature in signatures):
        raise CollectiveMismatchError(describe(signatures))


def describe(signatures: list[Signature]) -> str:
    r"""The message of a mismatch: each distinct call and the ranks that made it.

    Example:
        >>> print(*describe([(5, "gather", 0), (5, "broadcast", 0), (5, "broadcast", 0)]).split("; "), sep="\n")
        processes called different collectives: rank 0 called gather(root=0) as collective #5
        ranks 1, 2 called broadcast(root=0) as collective #5
        >>> print(*describe([(2, "map(schedule='dynamic')", 0), (2, "barrier", None)]).split("; "), sep="\n")
        processes called different collectives: rank 0 called map(schedule='dynamic', root=0) as collective #2
        rank 1 called barrier() as collective #2
    """
    groups: dict[str, list[int]] = {}
    for rank, signature in enumerate(signatures):
        groups.setdefault(_call(signature), []).append(rank)
    parts = [
        f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))} called {text}"
        for text, ranks in groups.items()
    ]
    return "processes called different collectives: " + "; ".join(parts)


def _call(signature: Any) -> str:
    number, name, root = signature
    where = "" if root is None else f"root={root}"
    if "(" not in name:
        label = f"{name}({where})"
    elif root is None:
        label = name
    else:
        label = f"{name[:-1]}, {where})"
    return f"{label} as collective #{number}"
