"""An SPMD job that runs until it is killed (for scancel).

    python sleep_job.py SECONDS      (under srun or mpiexec)

The ranks gather their pids and hostnames; main prints one line
``READY {json}`` with them; then every rank sleeps SECONDS (idle: no busy
wait) and the job ends normally if nobody cancels it.
"""

import json
import os
import socket
import sys
import time

from parallelizer import Parallelizer

SECONDS = float(sys.argv[1])


def body(parallelizer):
    where = parallelizer.gather((os.getpid(), socket.gethostname()))
    if parallelizer.on_main:
        print("READY " + json.dumps(where), flush=True)
    time.sleep(SECONDS)
    parallelizer.barrier()


Parallelizer.lookup(None).run(body)
