"""An SPMD job in which one rank raises while the others wait in a collective.

    python raise_on_rank.py RANK      (under mpiexec or srun)

Every rank prints ``<started ID/N HOSTNAME>``; rank RANK then raises
``ValueError("rank RANK on HOSTNAME cannot go on")`` inside ``par.run`` while
the others wait in a barrier. Under MPI the job must abort (non-zero exit,
the traceback prefixed with ``[rank RANK]``), not hang.
"""

import socket
import sys

from parallelizer import Parallelizer

FAILING = int(sys.argv[1])


def body(parallelizer):
    parallelizer.barrier()
    if parallelizer.id == FAILING:
        raise ValueError(f"rank {FAILING} on {socket.gethostname()} cannot go on")
    parallelizer.barrier()
    return "finished"


par = Parallelizer.lookup(None)
print(f"<started {par.id}/{par.nprocs} {socket.gethostname()}>", flush=True)
print(f"<result {par.run(body)}>", flush=True)
