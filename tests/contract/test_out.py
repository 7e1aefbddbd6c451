"""``out=``: collectives receive into the caller's own array (API.md, "Receiving into your own array").

On every backend: a process whose result is an array writes it into ``out``
and returns ``out`` itself; a process whose result is ``None`` ignores it;
an ``out`` that cannot take the result raises ``ValueError`` naming ``out``
on every process and nothing is written.
"""

from __future__ import annotations

import numpy as np
import pytest
from backends import debug_twin, spmd

from parallelizer import CollectiveMismatchError

SENTINEL = -7.0


def _fresh(shape, dtype=float):
    return np.full(shape, SENTINEL, dtype=dtype)


def _all_calls_body(parallelizer):
    n, me = parallelizer.nprocs, parallelizer.id
    main = parallelizer.on_main
    checks = []

    out = _fresh(4)
    got = parallelizer.broadcast(np.arange(4.0) if main else None, out=out)
    checks.append(got is out and (out == np.arange(4.0)).all())

    rows = 2 * n + 1
    from parallelizer.semantics import block_bounds

    start, stop = block_bounds(rows, n)[me]
    out = _fresh((stop - start, 3))
    got = parallelizer.scatter(np.arange(rows * 3.0).reshape(rows, 3) if main else None, out=out)
    checks.append(got is out and (out == np.arange(rows * 3.0).reshape(rows, 3)[start:stop]).all())

    mine = np.full((2, 2), float(me))
    out = _fresh((2 * n, 2)) if main else None
    got = parallelizer.gather(mine, out=out)
    want = np.repeat(np.arange(n, dtype=float), 2)[:, None] * np.ones((1, 2))
    checks.append(got is out and (out == want).all() if main else got is None)

    out = _fresh((2 * n, 2))
    got = parallelizer.allgather(mine, out=out)
    checks.append(got is out and (out == want).all())

    out = _fresh(3) if main else None
    got = parallelizer.reduce(np.full(3, me + 1.0), out=out)
    checks.append(got is out and (out == n * (n + 1) / 2).all() if main else got is None)

    out = _fresh(3, np.int64)
    got = parallelizer.allreduce(np.full(3, me + 1, dtype=np.int64), op="max", out=out)
    checks.append(got is out and (out == n).all())

    out = _fresh(3)
    got = parallelizer.allreduce(np.full(3, me + 1.0), op=lambda a, b: a * b, out=out)
    checks.append(got is out and np.allclose(out, float(np.prod(np.arange(1, n + 1)))))
    return parallelizer.allgather(checks)


def _every_check_passes(par, body, count):
    """Runs ``body`` on every process; each returns (gathered) its list of ``count`` checks, all True."""
    got = spmd(par, body)
    if par.on_main:
        for rank, checks in enumerate(got):
            assert checks == [True] * count, f"rank {rank}: {checks}"


def test_every_collective_writes_into_out_and_returns_it(par):
    _every_check_passes(par, _all_calls_body, 7)


def _ignored_off_root_body(parallelizer):
    spare = _fresh(5)  # off root the result is None: out is ignored, untouched
    got = parallelizer.gather(np.zeros(1), out=_fresh(parallelizer.nprocs) if parallelizer.on_main else spare)
    untouched = (spare == SENTINEL).all()
    return parallelizer.allgather((got is None) != parallelizer.on_main and untouched)


def test_out_is_ignored_where_the_result_is_none(par):
    got = spmd(par, _ignored_off_root_body)
    if par.on_main:
        assert got == [True] * par.nprocs


def _none_broadcast_body(parallelizer):
    """A broadcast whose result is None (root sends None): ``out`` is ignored everywhere, root included."""
    out = _fresh(3)
    got = parallelizer.broadcast(None, out=out)
    return parallelizer.allgather((got is None, bool((out == SENTINEL).all())))


def test_out_is_ignored_where_a_broadcast_result_is_none(par):
    got = spmd(par, _none_broadcast_body)
    if par.on_main:
        assert got == [(True, True)] * par.nprocs


BAD_OUTS = {
    "shape": "shape",
    "dtype": "dtype",
    "read-only": "read-only",
    "layout": "C-contiguous",
    "not an array": "numpy array",
}


def _wrong(kind, shape):
    """An ``out`` for a float64 result of ``shape`` that is wrong in one way."""
    if kind == "shape":
        return _fresh(99)
    if kind == "dtype":
        return _fresh(shape, np.float32)
    if kind == "read-only":
        out = _fresh(shape)
        out.flags.writeable = False
        return out
    if kind == "layout":
        return np.asfortranarray(_fresh(shape))
    return [SENTINEL] * 4


def _bad_out_body(kind, call, parallelizer):
    n = parallelizer.nprocs
    shape = (2 * n, 2) if call in ("gather", "allgather") else (2, 2)
    culprit = 0 if call in ("gather", "reduce") else n - 1  # one process's out is wrong; every process must raise
    fine = None if call in ("gather", "reduce") else _fresh(shape)
    out = _wrong(kind, shape) if parallelizer.id == culprit else fine
    mine = np.ones((2, 2))
    raised = None
    try:
        if call == "broadcast":
            parallelizer.broadcast(mine if parallelizer.on_main else None, out=out)
        elif call == "gather":
            parallelizer.gather(mine, out=out)
        elif call == "allgather":
            parallelizer.allgather(mine, out=out)
        elif call == "scatter":
            parallelizer.scatter(np.ones((2 * n, 2)) if parallelizer.on_main else None, out=out)
        elif call == "reduce":
            parallelizer.reduce(mine, out=out)
        else:
            parallelizer.allreduce(mine, out=out)
    except ValueError as exc:
        raised = str(exc)
    untouched = not isinstance(out, np.ndarray) or (out == SENTINEL).all()
    return parallelizer.allgather((raised, untouched))


@pytest.mark.parametrize("kind", list(BAD_OUTS))
@pytest.mark.parametrize("call", ["broadcast", "scatter", "gather", "allgather", "reduce", "allreduce"])
def test_an_out_that_cannot_take_the_result_raises_on_every_process_and_nothing_is_written(par, call, kind):
    got = spmd(par, _bad_out_body, kind, call)
    if par.on_main:
        words = BAD_OUTS[kind]
        for rank, (raised, untouched) in enumerate(got):
            assert raised is not None, f"rank {rank} did not raise"
            assert "out" in raised and words in raised, raised
            assert untouched, f"rank {rank}'s out was written"


def _scalar_result_body(parallelizer):
    try:
        parallelizer.allreduce(1, out=np.zeros(1))
    except ValueError as exc:
        return parallelizer.allgather("not a numpy array" in str(exc))
    return parallelizer.allgather(False)


def test_out_for_a_result_that_is_not_an_array_raises(par):
    got = spmd(par, _scalar_result_body)
    if par.on_main:
        assert got == [True] * par.nprocs


def _mixed_body(parallelizer):
    twin = parallelizer
    try:
        if twin.on_main:
            twin.allreduce(np.ones(2), out=np.zeros(2))
        else:
            twin.allreduce(np.ones(2))
    except CollectiveMismatchError as exc:
        return twin.allgather("out=" in str(exc))
    return twin.allgather(False)


def test_debug_mode_reports_out_passed_on_some_processes_only(par):
    if par.nprocs == 1:
        pytest.skip("one process cannot disagree with itself")
    with debug_twin(par) as twin:
        got = spmd(twin, _mixed_body)
    if twin.on_main:
        assert got == [True] * par.nprocs


def _overlapping_body(parallelizer):
    """``out`` that is (or overlaps) the process's own input: MPI must not see aliased buffers."""
    n, me, main = parallelizer.nprocs, parallelizer.id, parallelizer.on_main
    checks = []
    mine = np.full(3, me + 1.0)
    got = parallelizer.allreduce(mine, out=mine)  # in place
    checks.append(got is mine and (mine == n * (n + 1) / 2).all())
    mine = np.full(3, me + 1.0)
    got = parallelizer.reduce(mine, out=mine if main else None)
    checks.append(got is mine and (mine == n * (n + 1) / 2).all() if main else got is None)
    whole = _fresh((n, 2))
    mine = whole[me : me + 1] if main else np.full((1, 2), float(me))  # root's part is a view of out
    mine[:] = me
    got = parallelizer.allgather(mine, out=whole)
    checks.append(got is whole and (whole == np.arange(n, dtype=float)[:, None]).all())
    data = np.arange(8.0)
    got = parallelizer.broadcast(data if main else None, out=data if main else _fresh(8))
    checks.append((got == np.arange(8.0)).all())
    return parallelizer.allgather(checks)


def test_out_may_be_the_input_itself(par):
    _every_check_passes(par, _overlapping_body, 4)


RECORD = np.dtype([("x", "<f8"), ("n", "<i4")])


def _broadcast_kinds_body(parallelizer):
    main = parallelizer.on_main
    checks = []
    grid = np.arange(12.0).reshape(3, 4)
    out = _fresh((4, 3))
    got = parallelizer.broadcast(grid.T if main else None, out=out)  # a non-contiguous array on root
    checks.append(got is out and (out == grid.T).all())
    records = np.zeros(3, dtype=RECORD)
    records["x"], records["n"] = [1.5, 2.5, 3.5], [1, 2, 3]
    out = np.zeros(3, dtype=RECORD)
    got = parallelizer.broadcast(records if main else None, out=out)
    checks.append(got is out and (out == records).all())
    empty = parallelizer.broadcast(np.zeros((0, 2)) if main else None, out=np.empty((0, 2)))
    checks.append(empty.shape == (0, 2))
    got = parallelizer.broadcast(np.arange(5) if main else None, out=None if main else np.zeros(5, dtype=int))
    checks.append((got == np.arange(5)).all())  # root passes None: only the others receive into out
    got = parallelizer.broadcast(np.arange(5) if main else None, out=np.zeros(5, dtype=int) if main else None)
    checks.append((got == np.arange(5)).all())  # the others pass None: they get a new array
    return parallelizer.allgather(checks)


def test_broadcast_into_out_of_every_kind(par):
    _every_check_passes(par, _broadcast_kinds_body, 5)


def _changing_shapes_body(parallelizer):
    """Successive calls with other shapes and dtypes: nothing of an earlier call is reused wrongly."""
    main, checks = parallelizer.on_main, []
    for size, dtype in [(4, float), (7, float), (7, np.int32), (1, np.complex128), (4, float)]:
        data = np.arange(size).astype(dtype)
        out = np.zeros(size, dtype=dtype)
        checks.append((parallelizer.broadcast(data if main else None, out=out) == data).all())
        out = np.zeros(size, dtype=dtype)
        checks.append((parallelizer.allreduce(data, op="max", out=out) == data).all())
    return parallelizer.allgather(all(checks))


def test_out_calls_with_changing_shapes(par):
    got = spmd(par, _changing_shapes_body)
    if par.on_main:
        assert got == [True] * par.nprocs


BIG = 1 << 20  # bytes per process: above the sizes sent inline or from pooled memory
"""Large enough for every transport's bulk path (cross-memory attach or streaming, MPI's rendezvous)."""


def _big_calls(parallelizer, rows):
    """Every copying collective with ``out=``, on arrays of ``rows`` x 1 KiB per process; their checks."""
    n, me, main = parallelizer.nprocs, parallelizer.id, parallelizer.on_main
    from parallelizer.semantics import block_bounds

    width = 128  # float64: 1 KiB a row
    full = np.arange(n * rows * width, dtype=float).reshape(n * rows, width)
    checks = []
    out = _fresh(full.shape)
    checks.append(parallelizer.broadcast(full if main else None, out=out) is out and (out == full).all())
    start, stop = block_bounds(len(full), n)[me]
    out = _fresh((stop - start, width))
    checks.append(parallelizer.scatter(full if main else None, out=out) is out and (out == full[start:stop]).all())
    mine = full[me * rows : (me + 1) * rows].copy()
    out = _fresh(full.shape) if main else None
    got = parallelizer.gather(mine, out=out)
    checks.append(got is out and (out == full).all() if main else got is None)
    out = _fresh(full.shape)
    checks.append(parallelizer.allgather(mine, out=out) is out and (out == full).all())
    return checks


def _allocating(call, *args, **kwargs):
    """``call(*args, **kwargs)`` and the sizes of the arrays of 64 KiB and more this process allocated meanwhile."""
    from parallelizer._core import memory

    taken = []
    empty = memory.empty

    def recording(shape, dtype, *more, **options):
        array = empty(shape, dtype, *more, **options)
        if array.nbytes >= 64 << 10:
            taken.append(array.nbytes)
        return array

    memory.empty = recording
    try:
        return call(*args, **kwargs), taken
    finally:
        memory.empty = empty


def _no_allocation_body(parallelizer):
    rows = BIG // 1024
    _big_calls(parallelizer, rows)  # first calls: whatever a transport sets up once
    return parallelizer.allgather(_allocating(_big_calls, parallelizer, rows))


def test_out_receives_large_arrays_without_a_new_array(par):
    """``out=`` on broadcast, scatter, gather and allgather: the data lands in ``out``, no array is allocated."""
    got = spmd(par, _no_allocation_body)
    if par.on_main:
        for rank, (checks, taken) in enumerate(got):
            assert checks == [True] * 4, f"rank {rank}: {checks}"
            assert taken == [], f"rank {rank} allocated arrays of {taken} bytes"


def _big_reductions_body(parallelizer):
    """Reductions of 1 MiB arrays into ``out``: the same values, bit for bit, as without ``out=``."""
    n, me = parallelizer.nprocs, parallelizer.id
    rows = BIG // 1024
    mine = np.random.default_rng(me).standard_normal((rows, 128))  # float sums depend on the order
    checks = []
    for op in ("sum", "prod", "min", "max"):
        want = parallelizer.allreduce(mine, op=op)
        out = _fresh(mine.shape)
        checks.append(parallelizer.allreduce(mine, op=op, out=out) is out and np.array_equal(out, want))
        for root in (0, n - 1):  # (MPI may add in another order than its allreduce)
            want = parallelizer.reduce(mine, op=op, root=root)
            out = _fresh(mine.shape) if me == root else None
            got = parallelizer.reduce(mine, op=op, root=root, out=out)
            checks.append(got is out and np.array_equal(out, want) if me == root else got is None)
    same = mine.copy()
    checks.append(parallelizer.allreduce(same, out=same) is same and np.array_equal(same, parallelizer.allreduce(mine)))
    mixed = mine.astype(np.float32) if me == n - 1 and n > 1 else mine  # dtypes differ: the result is float64
    out = _fresh(mine.shape)
    checks.append(parallelizer.allreduce(mixed, out=out) is out and np.array_equal(out, parallelizer.allreduce(mixed)))
    return parallelizer.allgather(checks)


def test_reductions_of_large_arrays_into_out_give_the_same_values(par):
    _every_check_passes(par, _big_reductions_body, 14)


def _allreduce_allocation_body(parallelizer):
    mine = np.full((BIG // 1024, 128), parallelizer.id + 1.0)
    out = _fresh(mine.shape)
    parallelizer.allreduce(mine, out=out)  # first call: whatever a transport sets up once
    got, taken = _allocating(lambda: parallelizer.allreduce(mine, out=out))
    n = parallelizer.nprocs
    return parallelizer.allgather((got is out and bool((out == n * (n + 1) / 2).all()), taken))


def test_allreduce_into_out_allocates_no_array_off_rank_0(par):
    """Rank 0 may compute the result (it combines what it receives); the others receive it straight into out."""
    got = spmd(par, _allreduce_allocation_body)
    if par.on_main:
        for rank, (right, taken) in enumerate(got):
            assert right, f"rank {rank}"
            assert rank == 0 or taken == [], f"rank {rank} allocated arrays of {taken} bytes"


def _reduce_allocation_body(parallelizer):
    n, me = parallelizer.nprocs, parallelizer.id
    mine = np.full((BIG // 1024, 128), me + 1.0)
    results = []
    for root in sorted({0, n - 1}):
        out = _fresh(mine.shape) if me == root else None
        parallelizer.reduce(mine, root=root, out=out)  # first call: whatever a transport sets up once
        for op, want in (("sum", n * (n + 1) / 2), ("max", n)):
            got, taken = _allocating(parallelizer.reduce, mine, op, root, out=out)
            right = got is out and bool((out == want).all()) if me == root else got is None
            results.append((root, op, right, taken))
    return parallelizer.allgather(results)


def test_reduce_into_out_allocates_no_array(par, request):
    """Root folds the others' parts into ``out`` as it reads them: no array of a part's size, on any process.

    Where root may not read the senders' memory (streamed transports), each
    part streams whole into a new array first: at most one part per sender.
    """
    streams = any(variant in request.node.callspec.id for variant in ("stream", "nack"))
    got = spmd(par, _reduce_allocation_body)
    if par.on_main:
        for rank, results in enumerate(got):
            for root, op, right, taken in results:
                assert right, f"rank {rank}, root {root}, {op}"
                if streams and rank == root:
                    assert len(taken) <= par.nprocs - 1 and set(taken) <= {BIG}, f"root {root} allocated {taken}"
                else:
                    assert taken == [], f"rank {rank} (root {root}, {op}) allocated arrays of {taken} bytes"


def _bad_big_out_body(kind, call, parallelizer):
    """As ``_bad_out_body``, with 1 MiB per process: the data waits in its sender until all agree, then is dropped."""
    n, main = parallelizer.nprocs, parallelizer.on_main
    rows = BIG // 1024
    full = np.ones((n * rows, 128))
    shape = full.shape if call in ("broadcast", "gather", "allgather") else (rows, 128)
    culprit = 0 if call in ("gather", "reduce") else n - 1
    if call == "scatter":
        from parallelizer.semantics import block_bounds

        start, stop = block_bounds(len(full), n)[parallelizer.id]
        shape = (stop - start, 128)
    fine = None if call in ("gather", "reduce") else _fresh(shape)
    out = _wrong(kind, shape) if parallelizer.id == culprit else fine
    raised = None
    try:
        if call == "broadcast":
            parallelizer.broadcast(full if main else None, out=out)
        elif call == "scatter":
            parallelizer.scatter(full if main else None, out=out)
        elif call == "gather":
            parallelizer.gather(full[:rows], out=out)
        elif call == "allgather":
            parallelizer.allgather(full[:rows], out=out)
        elif call == "reduce":
            parallelizer.reduce(full[:rows], out=out)
        else:
            parallelizer.allreduce(full[:rows], out=out)
    except ValueError as exc:
        raised = str(exc)
    untouched = not isinstance(out, np.ndarray) or (out == SENTINEL).all()
    after = parallelizer.allgather(parallelizer.broadcast(np.arange(3.0) if main else None).tolist())  # in step
    return parallelizer.allgather((raised, untouched, after))


@pytest.mark.parametrize("kind", ["shape", "read-only", "not an array"])
@pytest.mark.parametrize("call", ["broadcast", "scatter", "gather", "allgather", "reduce", "allreduce"])
def test_a_bad_out_for_a_large_array_raises_everywhere_and_the_group_stays_in_step(par, call, kind):
    got = spmd(par, _bad_big_out_body, kind, call)
    if par.on_main:
        for rank, (raised, untouched, after) in enumerate(got):
            assert raised is not None and "out" in raised and BAD_OUTS[kind] in raised, f"rank {rank}: {raised}"
            assert untouched, f"rank {rank}'s out was written"
            assert after == [[0.0, 1.0, 2.0]] * par.nprocs
