"""Builds the parallelizer a test backend name stands for.

``serial``; ``mp<N>`` (multiprocessing, N processes, spawn); ``mp<N>fork``
(fork start method); ``mp<N>stream`` and ``mp<N>nack`` (fork, with large
buffers streamed through the sockets: cross-memory attach switched off, or
refused by the kernel so every pull falls back); ``mpi``.
"""

from __future__ import annotations

import contextlib
import errno
import re
from collections.abc import Iterator

from parallelizer import Parallelizer, SerialNonParallelizer

_MP = re.compile(r"mp(\d+)(fork|stream|nack)?$")


@contextlib.contextmanager
def _transport_patched(variant: str | None) -> Iterator[None]:
    """Switches cross-memory attach off (``stream``) or makes it fail (``nack``)
    in this process, and so in workers forked from it."""
    from parallelizer._mp import cma

    saved = (cma.AVAILABLE, cma.read)

    def refuse(*args, **kwargs):
        raise OSError(errno.EPERM, "refused by the test")

    if variant == "stream":
        cma.AVAILABLE = False
    elif variant == "nack":
        cma.read = refuse
    try:
        yield
    finally:
        cma.AVAILABLE, cma.read = saved


@contextlib.contextmanager
def started(name: str) -> Iterator[Parallelizer]:
    """The parallelizer for ``name``, inside its ``with`` block."""
    if name == "serial":
        with SerialNonParallelizer() as par:
            yield par
        return
    if name == "mpi":
        from parallelizer import MPIParallelizer

        with MPIParallelizer() as par:
            yield par
        return
    match = _MP.match(name)
    if match is None:
        raise ValueError(f"unknown test backend {name!r}")
    from parallelizer import MultiprocessingParallelizer

    nprocs, variant = int(match.group(1)), match.group(2)
    method = "spawn" if variant is None else "fork"
    with _transport_patched(variant), MultiprocessingParallelizer(nprocs=nprocs, start_method=method) as par:
        yield par


def debug_twin(par: Parallelizer) -> Parallelizer:
    """A parallelizer like ``par`` (same backend and size) with debug mode on."""
    from parallelizer import MPIParallelizer, MultiprocessingParallelizer

    if isinstance(par, MPIParallelizer):
        return MPIParallelizer(debug=True)
    if isinstance(par, MultiprocessingParallelizer):
        return MultiprocessingParallelizer(nprocs=par.nprocs, start_method=par.start_method, debug=True)
    return SerialNonParallelizer(debug=True)


def spmd(par: Parallelizer, body, *args):
    """Runs ``body`` on every process: ``run`` where a failure must come back to
    main; under MPI directly (each rank calls it), since an exception in
    ``run`` would abort the job by design."""
    from parallelizer import MPIParallelizer

    if isinstance(par, MPIParallelizer):
        return body(*args, parallelizer=par)
    return par.run(body, *args)


@contextlib.contextmanager
def mp_groups(sizes: tuple[int, ...]) -> Iterator[dict[int, Parallelizer]]:
    """Multiprocessing groups of the given sizes, started for the duration."""
    from parallelizer import MultiprocessingParallelizer

    with contextlib.ExitStack() as stack:
        yield {size: stack.enter_context(MultiprocessingParallelizer(nprocs=size)) for size in sizes}
