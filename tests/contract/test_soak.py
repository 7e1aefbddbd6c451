"""Soak: 100,000 mixed collectives with random payloads on every backend.

Results are checked exactly; memory (RSS) and open file descriptors must stay
flat on every process. Slow: run with ``make test-slow`` (not in CI).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.slow

STEPS = int(os.environ.get("SOAK_STEPS", "100000"))
CHECKPOINTS = 10
RSS_GROWTH_LIMIT = 64 << 20  # bytes, after the first checkpoint


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _plan(step):
    """What step ``step`` does: the same on every process (seeded by the step)."""
    rng = np.random.default_rng(step)
    return {
        "op": int(rng.integers(0, 8)),
        "kind": int(rng.integers(0, 4)),
        "scalar": int(rng.integers(-1000, 1000)),
        "values": [int(v) for v in rng.integers(0, 100, size=int(rng.integers(0, 50)))],
        "size": int(rng.integers(0, 2000)),
        "length": int(rng.integers(0, 300)),
        "stop": int(rng.integers(-5, 20)),
    }


def _payload(plan, rank):
    kind = plan["kind"]
    if kind == 0:
        return plan["scalar"] + rank
    if kind == 1:
        return [value + rank for value in plan["values"]]
    if kind == 2:
        return np.full(plan["size"], rank, dtype=np.float64)
    return {"rank": rank, "blob": np.full((plan["size"] % 4 + 1) << 18, rank, dtype=np.uint8)}  # 256 KiB-1 MiB


def _step(parallelizer, plan):
    n, rank, op = parallelizer.nprocs, parallelizer.id, plan["op"]
    if op == 0:
        return parallelizer.broadcast(_payload(plan, 0) if rank == 0 else None)
    if op == 1:
        block = parallelizer.scatter(np.arange(plan["length"]) if rank == 0 else None)
        return parallelizer.allgather(len(block))
    if op == 2:
        return parallelizer.gather(_payload(plan, rank))
    if op == 3:
        return parallelizer.allreduce(rank + 1)
    if op == 4:
        return parallelizer.allgather(rank)
    if op == 5:
        return parallelizer.barrier()
    if op == 6:
        return parallelizer.map(abs, list(range(-5, plan["stop"])) if rank == 0 else None)
    # a ring: large sends may wait for their receiver (MPI's standard mode),
    # so half the ranks receive first; a rank alone sends to itself
    if rank % 2 == 0 or n == 1:
        parallelizer.send(_payload(plan, rank), dest=(rank + 1) % n)
        return parallelizer.recv((rank - 1) % n)
    received = parallelizer.recv((rank - 1) % n)
    parallelizer.send(_payload(plan, rank), dest=(rank + 1) % n)
    return received


def _expected(plan, n, rank):
    from parallelizer import semantics

    op = plan["op"]
    if op == 0:
        return _payload(plan, 0)
    if op == 1:
        return [len(block) for block in np.array_split(np.arange(plan["length"]), n)]
    if op == 2:
        return semantics.join_gathered([_payload(plan, r) for r in range(n)]) if rank == 0 else None
    if op == 3:
        return n * (n + 1) // 2
    if op == 4:
        return list(range(n))
    if op == 5:
        return None
    if op == 6:
        return [abs(x) for x in range(-5, plan["stop"])] if rank == 0 else None
    return _payload(plan, (rank - 1) % n)


def _equal(got, expected):
    if isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for key in expected:
            _equal(got[key], expected[key])
    elif isinstance(expected, np.ndarray) or isinstance(got, np.ndarray):
        np.testing.assert_array_equal(got, expected)
        assert np.asarray(got).dtype == np.asarray(expected).dtype
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            _equal(a, b)
    else:
        assert got == expected


def _soak(steps, parallelizer):
    marks = []
    for step in range(steps):
        plan = _plan(step)
        _equal(_step(parallelizer, plan), _expected(plan, parallelizer.nprocs, parallelizer.id))
        if step % (steps // CHECKPOINTS) == 0:
            marks.append((_rss(), _fds()))
    marks.append((_rss(), _fds()))
    return parallelizer.allgather(marks)


def test_soak_mixed_collectives(par):
    per_process = par.run(_soak, STEPS)
    for rank, marks in enumerate(per_process):
        baseline_rss, baseline_fds = marks[1]  # after warming up
        final_rss, final_fds = marks[-1]
        assert final_fds == baseline_fds, f"rank {rank} leaks file descriptors: {baseline_fds} -> {final_fds}"
        growth = final_rss - baseline_rss
        assert growth < RSS_GROWTH_LIMIT, f"rank {rank} RSS grew by {growth >> 20} MiB"
