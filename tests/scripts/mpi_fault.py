"""One cell of the fault matrix under mpiexec: python mpi_fault.py CALL FAILING WHEN."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from faults import failing_body

from parallelizer import MPIParallelizer

call, failing, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
par = MPIParallelizer()
result = par.run(failing_body, call, failing, when)
print(f"<survived rank {par.id}: {result}>", flush=True)
