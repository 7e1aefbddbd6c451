"""An mpi4py-communicator-shaped view of a parallelizer, for libraries that take ``comm=``.

SPMD libraries written for mpi4py (ultranest, many samplers and solvers)
accept a communicator and call its lowercase, pickle-based methods.
:class:`Comm` gives them those methods over any parallelizer, so the same
library runs on local processes, serially, or under ``mpiexec``::

    from parallelizer import Parallelizer
    from parallelizer.comm import Comm

    def fit(parallelizer=None):
        sampler = ReactiveNestedSampler(names, loglike, transform, comm=Comm(parallelizer))
        return sampler.run()

    Parallelizer.lookup("multiprocessing:4").run(fit)

The semantics are mpi4py's lowercase ones, not the parallelizer's: ``gather``
and ``allgather`` return lists (never joined arrays), ``scatter`` takes one
item per process, ``Get_rank``/``Get_size`` and ``rank``/``size`` name the
process and the group. Every process must call the collectives, in the same
order, as with MPI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._core import checks
from .base import Parallelizer

__all__ = ["ANY_SOURCE", "ANY_TAG", "MAX", "MIN", "PROD", "SUM", "Comm"]

SUM = "sum"
PROD = "prod"
MIN = "min"
MAX = "max"

# mpi4py's values, accepted and refused with a clear message (a receive names its source)
ANY_SOURCE = -1
ANY_TAG = -1

_MPI_OPS = {"SUM": SUM, "PROD": PROD, "MIN": MIN, "MAX": MAX}


def _op(op: Any) -> str | Callable[[Any, Any], Any]:
    """The reduction ``op`` names: ours (``"sum"``, a callable) or mpi4py's ``MPI.SUM``/``PROD``/``MIN``/``MAX``."""
    if type(op).__module__.startswith("mpi4py"):
        from ._mpi import runtime

        mpi = runtime.load()
        for name, ours in _MPI_OPS.items():
            if op == getattr(mpi, name):
                return ours
        raise ValueError(f"op {op!r} is not supported: use MPI.SUM, MPI.PROD, MPI.MIN, MPI.MAX or a callable f(a, b)")
    checked: str | Callable[[Any, Any], Any] = op  # the parallelizer checks it
    return checked


class Comm:
    """mpi4py's lowercase communicator calls over a parallelizer (see the module docstring).

    Args:
        parallelizer: Anything ``Parallelizer.lookup`` takes (default: the
            current one, e.g. inside ``run``).

    Example:
        >>> from parallelizer import MultiprocessingParallelizer
        >>> def job(parallelizer):
        ...     comm = Comm(parallelizer)
        ...     rank, size = comm.Get_rank(), comm.Get_size()
        ...     item = comm.scatter([10 * r for r in range(size)] if rank == 0 else None, root=0)
        ...     return comm.gather((rank, item), root=0)
        >>> MultiprocessingParallelizer(nprocs=3).run(job)
        [(0, 0), (1, 10), (2, 20)]
    """

    def __init__(self, parallelizer: Any = None) -> None:
        self._par: Parallelizer = Parallelizer.lookup(parallelizer)

    @property
    def parallelizer(self) -> Parallelizer:
        """The parallelizer the calls go to."""
        return self._par

    # ------------------------------------------------------------------ identity

    @property
    def rank(self) -> int:
        """This process's rank."""
        return self._par.id

    @property
    def size(self) -> int:
        """The number of processes."""
        return self._par.nprocs

    def Get_rank(self) -> int:
        """This process's rank."""
        return self._par.id

    def Get_size(self) -> int:
        """The number of processes."""
        return self._par.nprocs

    # ------------------------------------------------------------------ collectives

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """Root's ``obj`` on every process."""
        return self._par.broadcast(obj, root=root)

    def scatter(self, sendobj: Sequence[Any] | None, root: int = 0) -> Any:
        """Item ``rank`` of root's ``sendobj`` (a sequence of exactly ``size`` items) on each process.

        Raises:
            ValueError: Root's ``sendobj`` does not have one item per process
                (raised on every process).
        """
        par = self._par
        if par.id == checks.check_rank(root, par.nprocs, "root"):
            try:
                items = list(sendobj)  # type: ignore[arg-type]
                problem = None if len(items) == par.nprocs else f"has {len(items)} items"
            except TypeError:
                problem = f"is a {type(sendobj).__name__}, not a sequence"
            if problem is not None:
                refusal = checks.Refusal(
                    ValueError(f"scatter: sendobj {problem}; it needs one per process ({par.nprocs})")
                )
                items = [refusal] * par.nprocs
            block = par.scatter([[item] for item in items], root=root)
        else:
            block = par.scatter(None, root=root)
        checks.refused(block[0][0])
        return block[0][0]

    def gather(self, sendobj: Any, root: int = 0) -> list[Any] | None:
        """Every process's object, as a list in rank order, on root; ``None`` elsewhere."""
        got = self._par.gather((sendobj,), root=root)
        return None if got is None else [one[0] for one in got]

    def allgather(self, sendobj: Any) -> list[Any]:
        """Every process's object, as a list in rank order, on every process."""
        return [one[0] for one in self._par.allgather((sendobj,))]

    def reduce(self, sendobj: Any, op: Any = SUM, root: int = 0) -> Any:
        """Every process's object combined with ``op`` on root; ``None`` elsewhere."""
        return self._par.reduce(sendobj, op=_op(op), root=root)

    def allreduce(self, sendobj: Any, op: Any = SUM) -> Any:
        """Every process's object combined with ``op``, on every process."""
        return self._par.allreduce(sendobj, op=_op(op))

    def barrier(self) -> None:
        """Returns when every process has called it."""
        self._par.barrier()

    Barrier = barrier

    # ------------------------------------------------------------------ point to point

    def send(self, obj: Any, dest: int, tag: int = 0) -> None:
        """Sends ``obj`` to ``dest``."""
        self._par.send(obj, dest=dest, tag=tag)

    def recv(self, buf: Any = None, source: int = ANY_SOURCE, tag: int = 0, status: Any = None) -> Any:
        """The next object ``source`` sent with ``tag``.

        Raises:
            ValueError: ``source`` is ``ANY_SOURCE`` or ``tag`` is ``ANY_TAG``
                (a receive names its sender and tag here).
        """
        if source == ANY_SOURCE or tag == ANY_TAG:
            raise ValueError("recv needs an explicit source and tag (ANY_SOURCE and ANY_TAG are not supported)")
        return self._par.recv(source=source, tag=tag)

    def __repr__(self) -> str:
        return f"Comm(rank={self.rank}, size={self.size}, parallelizer={type(self._par).__name__})"
