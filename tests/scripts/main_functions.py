"""Functions, lambdas, closures and classes defined in __main__ (as in a
notebook cell or a script), run on worker processes. No main guard."""

import numpy as np

from parallelizer import MultiprocessingParallelizer

SCALE = 3


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm2(self):
        return self.x * self.x + self.y * self.y


def helper(x):
    return x * SCALE


def body(parallelizer):
    offset = 10
    squares = parallelizer.map(lambda x: helper(x) + offset, list(range(8)) if parallelizer.on_main else None)
    point = parallelizer.broadcast(Point(3, 4) if parallelizer.on_main else None)
    norms = parallelizer.gather(point.norm2() + parallelizer.id)
    blocks = parallelizer.map(np.sqrt, np.arange(9.0) if parallelizer.on_main else None, vectorized=True)
    return squares, norms, blocks.tolist() if blocks is not None else None


print(MultiprocessingParallelizer(nprocs=3).run(body))
