"""Where do the ranks run? Every rank gives its hostname (allgather) and
receives an array broadcast from main; main prints one line
``RESULT {json}`` with the backend, the group size, the hostnames by rank and
the sums of the array each rank received.

    python report_hosts.py [NBYTES]      (under mpiexec or srun)
"""

import json
import socket
import sys

import numpy as np

from parallelizer import Parallelizer

NBYTES = int(sys.argv[1]) if len(sys.argv) > 1 else 8_000_000


def where(parallelizer):
    hostnames = parallelizer.allgather(socket.gethostname())
    data = np.arange(NBYTES // 8, dtype=np.float64) if parallelizer.on_main else None
    received = parallelizer.broadcast(data)
    sums = parallelizer.gather(float(received.sum()))
    return hostnames, sums


par = Parallelizer.lookup(None)
hostnames, sums = par.run(where)
if par.on_main:
    report = {"backend": type(par).__name__, "nprocs": par.nprocs, "hostnames": hostnames, "sums": sums}
    print("RESULT " + json.dumps(report), flush=True)
