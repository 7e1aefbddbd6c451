"""Messages over 2 GiB, for real (slow: ``make test-slow``).

The fast tests force the chunked paths with tiny limits; this one moves
more than 2**31 bytes through broadcast, send/recv, scatter and gather.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SIZE = (1 << 31) + (1 << 20)  # just over 2 GiB


def _huge_body(parallelizer):
    data = None
    if parallelizer.on_main:
        data = np.empty(SIZE, dtype=np.uint8)
        data[::4096] = 7
        data[-1] = 9
    got = parallelizer.broadcast(data)
    ok = [got.nbytes == SIZE and got[-1] == 9 and got[4096] == 7]
    del got
    if parallelizer.nprocs > 1:
        if parallelizer.id == 0:
            parallelizer.send(data, dest=parallelizer.nprocs - 1, tag=3)
        elif parallelizer.id == parallelizer.nprocs - 1:
            received = parallelizer.recv(0, tag=3)
            ok.append(received.nbytes == SIZE and received[-1] == 9)
            del received
    wide = np.full((1 << 28) + 8, parallelizer.id, dtype=np.float64)  # 2 GiB + 64 bytes from every process
    gathered = parallelizer.gather(wide)
    if parallelizer.on_main:
        ok.append(gathered.shape[0] == wide.shape[0] * parallelizer.nprocs and gathered[-1] == parallelizer.nprocs - 1)
    del gathered
    return parallelizer.allgather(all(ok))


def test_messages_over_two_gib(par):
    assert par.run(_huge_body) == [True] * par.nprocs
