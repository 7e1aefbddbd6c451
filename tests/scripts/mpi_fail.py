"""Fails on one rank in a chosen way, while the others wait in a collective."""

import sys

from parallelizer import Parallelizer

how, rank = sys.argv[1], int(sys.argv[2])
par = Parallelizer.lookup(None)
print(f"<started {par.id}/{par.nprocs} {type(par).__name__}>", flush=True)


def body(parallelizer):
    if parallelizer.id == rank and how == "raise-in-run":
        raise ValueError(f"rank {rank} cannot go on")
    if how == "unpicklable":  # rank `rank` broadcasts what cannot be pickled
        import threading

        parallelizer.broadcast(threading.Lock() if parallelizer.id == rank else None, root=rank)
    parallelizer.barrier()
    return parallelizer.allgather(parallelizer.id)


if how == "raise-in-script" and par.id == rank:
    raise KeyError("outside run")
if how == "exit-in-script" and par.id == rank:
    sys.exit(3)
print(f"<result {par.run(body)}>", flush=True)  # delimited: the ranks output interleaves
par.barrier()
