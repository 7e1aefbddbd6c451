"""Collectives called again and again with other shapes, dtypes, roots and ``out=``.

Backends may keep what they derived from one call's shapes and dtypes (the
MPI backend keeps its plans while the descriptions it exchanged stay the
same, :mod:`parallelizer._mpi.slots`). Whatever changes between calls, each
call must give what the contract says, with and without ``out=``, in debug
mode too; an ``out`` that cannot take its result still raises on every
process with nothing written.

The sequences are random but the same on every process (one seed): a
property test whose examples every process draws alike, as the collectives
need.
"""

from __future__ import annotations

import numpy as np
import pytest
from backends import debug_twin, spmd

SENTINEL = 99
CALLS = ("broadcast", "scatter", "gather", "allgather", "reduce", "allreduce")
DTYPES = ("float64", "int64", "int32", "float32", "complex128")
SHAPES = ((4,), (2, 2), (5, 2), (1, 3), (0, 2), (3, 1, 2), (8,))
OUT_MODES = ("none", "out", "out=None", "wrong shape", "wrong dtype", "read-only")
STEPS = 60


def _data(shape, dtype, rank, step):
    count = int(np.prod(shape))
    return (np.arange(count) % 7 + 3 * rank + step % 5).reshape(shape).astype(dtype)


def _expected(call, parts, root, op, me):
    """What ``call`` gives process ``me`` when process ``r`` passed ``parts[r]`` (root's for broadcast/scatter)."""
    receives = call in ("broadcast", "scatter", "allgather", "allreduce") or me == root
    if not receives:
        return None
    if call == "broadcast":
        return parts[root]
    if call == "scatter":
        return np.array_split(parts[root], len(parts))[me]
    if call in ("gather", "allgather"):
        return np.concatenate(parts)
    result = parts[0].copy()
    for part in parts[1:]:
        result = result + part if op == "sum" else np.maximum(result, part)
    return result


def _wrong_out(mode, want):
    if mode == "wrong shape":
        return np.full(want.size + 1, SENTINEL, dtype=want.dtype)
    if mode == "wrong dtype":
        return np.full(want.shape, SENTINEL, dtype=np.int8 if want.dtype != np.int8 else np.float64)
    out = np.full(want.shape, SENTINEL, dtype=want.dtype)
    out.flags.writeable = False
    return out


def _call(parallelizer, call, mine, root, op, kwargs):
    main = parallelizer.id == root
    if call == "broadcast":
        return parallelizer.broadcast(mine if main else None, root=root, **kwargs)
    if call == "scatter":
        return parallelizer.scatter(mine if main else None, root=root, **kwargs)
    if call == "gather":
        return parallelizer.gather(mine, root=root, **kwargs)
    if call == "allgather":
        return parallelizer.allgather(mine, **kwargs)
    if call == "reduce":
        return parallelizer.reduce(mine, op=op, root=root, **kwargs)
    return parallelizer.allreduce(mine, op=op, **kwargs)


def _one_step(parallelizer, rng, step):
    """One random call, checked on this process; returns what went wrong (``None``: nothing)."""
    n, me = parallelizer.nprocs, parallelizer.id
    call = CALLS[rng.integers(len(CALLS))]
    root = int(rng.integers(n))
    dtype = DTYPES[rng.integers(len(DTYPES))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    ragged = call in ("gather", "allgather") and rng.random() < 0.3  # other lengths on other processes
    op = ("sum", "max")[rng.integers(2)] if dtype != "complex128" else "sum"
    mode = OUT_MODES[rng.integers(len(OUT_MODES))]
    culprit = root if call in ("gather", "reduce") else int(rng.integers(n))

    def shape_of(rank):
        return (shape[0] + rank % 2, *shape[1:]) if ragged else shape

    parts = [_data(shape_of(rank), dtype, rank, step) for rank in range(n)]
    want = _expected(call, parts, root, op, me)
    bad = mode not in ("none", "out", "out=None")
    kwargs = {}
    if mode == "out=None":
        kwargs["out"] = None
    elif mode != "none":
        right = None if want is None else np.full(want.shape, SENTINEL, dtype=want.dtype)
        culprit_want = _expected(call, parts, root, op, culprit)
        kwargs["out"] = _wrong_out(mode, culprit_want) if bad and me == culprit else right
    where = f"step {step}: {call}(root={root}, {dtype}{list(shape)}{' ragged' if ragged else ''}, op={op}, {mode})"
    try:
        got = _call(parallelizer, call, parts[me], root, op, kwargs)
    except ValueError as exc:
        if not bad:
            return f"{where} raised {exc}"
        out = kwargs["out"]
        if "out" not in str(exc):
            return f"{where}: the error does not name out: {exc}"
        if out is not None and not (out == SENTINEL).all():
            return f"{where}: out was written before the error"
        return None
    if bad:
        return f"{where} did not raise"
    if want is None:
        return None if got is None else f"{where} gave {got!r}, not None"
    if kwargs.get("out") is not None and got is not kwargs["out"]:
        return f"{where} did not return out"
    if not isinstance(got, np.ndarray) or got.dtype != want.dtype or not np.array_equal(got, want):
        return f"{where} gave {got!r}, not {want!r}"
    return None


def _sequence_body(seed, parallelizer):
    rng = np.random.default_rng(seed)  # the same draws on every process
    problems = [_one_step(parallelizer, rng, step) for step in range(STEPS)]
    return parallelizer.allgather([problem for problem in problems if problem is not None])


def _assert_no_problems(par, body, *args):
    """Runs ``body`` on every process; each returns the allgathered list of every process's problems."""
    got = spmd(par, body, *args)
    if par.on_main:
        assert got == [[]] * par.nprocs, got


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sequences_of_collectives_give_what_fresh_calls_give(par, seed, debug):
    if debug:
        with debug_twin(par) as twin:
            _assert_no_problems(twin, _sequence_body, seed)
    else:
        _assert_no_problems(par, _sequence_body, seed)


def _same_bytes_body(parallelizer):
    """Descriptions of equal size whose meaning differs: float64 vs int64, (4,) vs (2, 2), another root."""
    n, problems = parallelizer.nprocs, []
    for step, (dtype, shape, root) in enumerate(
        [("float64", (4,), 0), ("int64", (4,), 0), ("float64", (2, 2), 0), ("float64", (4,), n - 1)] * 3
    ):
        parts = [_data(shape, dtype, rank, step) for rank in range(n)]
        mine = parts[parallelizer.id]
        for call in ("broadcast", "scatter", "gather", "allreduce"):
            want = _expected(call, parts, root, "sum", parallelizer.id)
            for kwargs in ({}, {"out": None if want is None else np.zeros(want.shape, want.dtype)}):
                got = _call(parallelizer, call, mine, root, "sum", kwargs)
                fine = got is None if want is None else got.dtype == want.dtype and np.array_equal(got, want)
                if not fine or (kwargs.get("out") is not None and got is not kwargs["out"]):
                    problems.append(f"step {step}: {call}({dtype}{list(shape)}, root={root}, {kwargs and 'out'})")
        if parallelizer.broadcast(None, root=root) is not None:  # after an array: an object again
            problems.append(f"step {step}: broadcast(None)")
    return parallelizer.allgather(problems)


def test_calls_whose_descriptions_are_alike_are_not_confused(par):
    _assert_no_problems(par, _same_bytes_body)


def _fresh_values_body(parallelizer):
    """Small objects gathered with arrays, again: new objects each call, whatever the caller did to the last ones."""
    me, main, problems = parallelizer.id, parallelizer.on_main, []

    def part_of(rank):
        return [rank, "x"] if rank % 2 == 1 else np.arange(3.0)

    for attempt in range(3):
        for call in ("gather", "allgather"):
            got = parallelizer.gather(part_of(me)) if call == "gather" else parallelizer.allgather(part_of(me))
            if call == "gather" and not main:
                continue
            for rank, part in enumerate(got):
                want = part_of(rank)
                same = type(part) is type(want) and np.array_equal(
                    np.asarray(part, dtype=object), np.asarray(want, dtype=object)
                )
                if not same:
                    problems.append(f"attempt {attempt}, {call}: rank {rank}'s part is {part!r}")
                if isinstance(part, list):
                    part.append("changed by the caller")
    return parallelizer.allgather(problems)


def test_small_objects_gathered_again_are_new_objects(par):
    if par.nprocs == 1:
        pytest.skip("one process gathers no other process's objects (its array alone is the result)")
    _assert_no_problems(par, _fresh_values_body)


def _alternating_body(parallelizer):
    """A scatter and a gather, again and again: each rank's gather part is not root's scatter array."""
    n, problems = parallelizer.nprocs, []
    whole = np.arange(4.0 * n * 3).reshape(4 * n, 3)  # root's array to scatter: (4n, 3)
    for step in range(4):
        block = parallelizer.scatter(whole if parallelizer.on_main else None)
        if not np.array_equal(block, whole[4 * parallelizer.id : 4 * (parallelizer.id + 1)]):
            problems.append(f"step {step}: scatter gave {block.shape}")
        mine = np.full((2, 3), float(parallelizer.id))  # (2, 3): another description than root's
        got = parallelizer.gather(mine)
        if parallelizer.on_main and not np.array_equal(got, np.repeat(np.arange(float(n)), 2 * 3).reshape(2 * n, 3)):
            problems.append(f"step {step}: gather gave {getattr(got, 'shape', got)}")
    return parallelizer.allgather(problems)


def test_a_scatter_between_gathers_does_not_change_what_a_rank_describes(par):
    _assert_no_problems(par, _alternating_body)


def _pair(a, b):
    return [a, b]


def _kinds(rank, step):
    """Objects of every kind a rank describes differently: numbers, small and large objects, arrays."""
    kinds = (
        np.full((2, 3), float(rank)),
        7 * rank + step,  # a number right after an array, then the same array description again
        np.full((2, 3), float(rank + step)),
        0.5 * rank,
        None,
        f"rank {rank}",
        (rank, "t"),
        list(range(50 + rank)),
        10**60 + rank,
        True,
    )
    return kinds[(rank + step) % len(kinds)]


def _equal(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _mixed_body(parallelizer):
    """Numbers on some ranks and other objects on the others, in every order, call after call."""
    n, me, problems = parallelizer.nprocs, parallelizer.id, []
    for step in range(24):
        parts = [_kinds(rank, step) for rank in range(n)]
        mine = parts[me]
        if step % 3 == 0:
            got, want = parallelizer.gather(mine), None
            if me == 0:
                arrays = all(isinstance(p, np.ndarray) for p in parts)
                want = np.concatenate(parts) if arrays else parts
        elif step % 3 == 1:
            got = parallelizer.allgather(mine)
            want = np.concatenate(parts) if all(isinstance(p, np.ndarray) for p in parts) else parts
        else:
            got = parallelizer.allreduce(mine, op=_pair)
            want = parts[0]
            for part in parts[1:]:
                want = [want, part]
            if n == 1:
                want = parts[0]
        if not _equal(got, want):
            problems.append(f"step {step}: rank {me} got {got!r}, wanted {want!r}")
    return parallelizer.allgather(problems)


def test_numbers_beside_other_objects_give_what_the_contract_says(par):
    _assert_no_problems(par, _mixed_body)
