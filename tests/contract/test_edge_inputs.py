"""Inputs at the edges work on every backend: object dtypes, non-contiguous
and zero-length arrays, empty sequences, nested containers."""

from __future__ import annotations

import numpy as np
from backends import spmd


def _object_array_body(parallelizer):
    data = np.array([{"k": 0}, [0], "s", None, 3.5, (1, 2)] * 2, dtype=object) if parallelizer.on_main else None
    got = parallelizer.broadcast(data)
    assert got.dtype == object and got[0] == {"k": 0}
    block = parallelizer.scatter(data)
    assert block.dtype == object
    gathered = parallelizer.gather(block)
    return None if gathered is None else gathered.tolist()


def test_object_dtype_arrays(par):
    result = spmd(par, _object_array_body)
    if par.on_main:
        assert result == [{"k": 0}, [0], "s", None, 3.5, (1, 2)] * 2


def _non_contiguous_body(parallelizer):
    base = np.arange(120.0).reshape(12, 10)
    views = [base[::2], base[:, ::3], base.T, np.asfortranarray(base)]
    out = []
    for view in views:
        got = parallelizer.broadcast(view if parallelizer.on_main else None)
        np.testing.assert_array_equal(got, view)
        block = parallelizer.scatter(view if parallelizer.on_main else None)
        np.testing.assert_array_equal(block, np.array_split(view, parallelizer.nprocs)[parallelizer.id])
        out.append(parallelizer.allgather(block))
    return out


def test_non_contiguous_arrays(par):
    base = np.arange(120.0).reshape(12, 10)
    for got, view in zip(spmd(par, _non_contiguous_body), [base[::2], base[:, ::3], base.T, base], strict=True):
        np.testing.assert_array_equal(got, view)


def _empty_body(parallelizer):
    empty_array = np.zeros((0, 4), dtype=np.int16)
    block = parallelizer.scatter(empty_array if parallelizer.on_main else None)
    assert block.shape == (0, 4) and block.dtype == np.int16
    gathered = parallelizer.allgather(block)
    assert gathered.shape == (0, 4) and gathered.dtype == np.int16
    assert parallelizer.scatter([] if parallelizer.on_main else None) == []
    assert parallelizer.map(abs, [] if parallelizer.on_main else None) in ([], None)
    assert parallelizer.map(abs, [] if parallelizer.on_main else None, schedule="dynamic") in ([], None)
    got = parallelizer.broadcast(np.array([], dtype=complex) if parallelizer.on_main else None)
    assert got.shape == (0,) and got.dtype == complex
    return parallelizer.allgather([])


def test_zero_length_arrays_and_empty_sequences(par):
    assert spmd(par, _empty_body) == [[]] * par.nprocs


def _nested_body(parallelizer):
    payload = {"a": [np.arange(3), {"b": (np.ones((2, 2)), "x")}], "c": {1, 2}} if parallelizer.on_main else None
    got = parallelizer.broadcast(payload)
    np.testing.assert_array_equal(got["a"][0], np.arange(3))
    np.testing.assert_array_equal(got["a"][1]["b"][0], np.ones((2, 2)))
    assert got["c"] == {1, 2}
    return parallelizer.gather({"rank": parallelizer.id, "arr": np.full(2, parallelizer.id)})


def test_nested_containers_with_arrays(par):
    result = spmd(par, _nested_body)
    if par.on_main:
        assert [item["rank"] for item in result] == list(range(par.nprocs))
        assert all((item["arr"] == item["rank"]).all() for item in result)
