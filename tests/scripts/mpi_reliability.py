"""Cases of issue 11 that need a whole MPI job: python mpi_reliability.py CASE."""

import os
import sys
import time

from parallelizer import CollectiveMismatchError, DeadlockError, MPIParallelizer

case = sys.argv[1]


def stuck_peer(parallelizer):
    if parallelizer.id == parallelizer.nprocs - 1:
        time.sleep(60)  # stuck: the others wait for it
    return parallelizer.allreduce(1)


def tag_nobody_sends(parallelizer):
    if parallelizer.on_main:
        try:
            parallelizer.recv(source=1, tag=5)
        except DeadlockError as err:
            print(f"<detected: {err}>", flush=True)
    return "done"


def one_collective_fewer(parallelizer):
    if parallelizer.on_main:
        try:
            parallelizer.barrier()
        except CollectiveMismatchError as err:
            print(f"<mismatch: {err}>", flush=True)
    return "done"


class UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError("str() fails")


def unprintable(parallelizer):
    if parallelizer.id == 1:
        raise UnprintableError("x")
    parallelizer.barrier()


if case == "timeout":
    par = MPIParallelizer(timeout=1.0)
    print(f"<result {par.run(stuck_peer)}>", flush=True)
elif case == "debug-recv":
    par = MPIParallelizer(debug=True)
    print(f"<result {par.run(tag_nobody_sends)}>", flush=True)
    print(f"<again {par.run(lambda parallelizer: parallelizer.allgather(parallelizer.id))}>", flush=True)
elif case == "debug-collective":
    par = MPIParallelizer(debug=True)
    print(f"<result {par.run(one_collective_fewer)}>", flush=True)
elif case == "unprintable":
    MPIParallelizer().run(unprintable)
elif case == "no-parallelizer":
    # never builds a parallelizer: rank 0 fails, the others would run on
    if int(os.environ.get("PMI_RANK", "0")) == 0:
        raise ValueError("rank 0 gives up before any parallelizer exists")
    time.sleep(30)
    print("<finished>", flush=True)
