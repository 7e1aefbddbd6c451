"""An executor the script drops without shutting it down: its work still finishes, and the job ends cleanly."""

import gc

from parallelizer import Parallelizer

executor = Parallelizer.lookup(None).executor()
tasks = [executor.submit(pow, 2, n) for n in range(20)]
del executor
gc.collect()
print("sum", sum(task.result() for task in tasks), flush=True)
