"""Starts a group, prints main's and the workers' pids, then stays busy
until a signal arrives. No ``if __name__ == "__main__"`` guard, on purpose:
the spawn start method must not need one."""

import os
import sys
import time

import numpy as np

from parallelizer import MultiprocessingParallelizer


def body(parallelizer):
    pids = parallelizer.gather(os.getpid())
    parallelizer.broadcast(np.ones(4_000_000) if parallelizer.on_main else None)  # some large traffic first
    if parallelizer.on_main:
        print(" ".join(str(pid) for pid in pids), flush=True)
    time.sleep(600)  # every process busy outside any collective


MultiprocessingParallelizer(nprocs=int(sys.argv[1])).run(body)
