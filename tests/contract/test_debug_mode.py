"""Collective-mismatch detection (debug mode) on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from backends import debug_twin, spmd

from parallelizer import CollectiveMismatchError, MultiprocessingParallelizer, SerialNonParallelizer


@pytest.fixture(scope="module")
def checked(par):
    twin = debug_twin(par)
    with twin:
        yield twin


def _healthy(parallelizer):
    total = parallelizer.allreduce(parallelizer.id)
    block = parallelizer.scatter(np.arange(10) if parallelizer.on_main else None)
    gathered = parallelizer.gather(block)
    parallelizer.barrier()
    mapped = parallelizer.map(abs, list(range(-4, 4)) if parallelizer.on_main else None, schedule="dynamic")
    return total, gathered, mapped


def test_debug_mode_changes_no_result(par, checked):
    assert checked.debug and not par.debug
    total, gathered, mapped = spmd(checked, _healthy)
    assert total == sum(range(par.nprocs))
    if par.on_main:
        np.testing.assert_array_equal(gathered, np.arange(10))
        assert mapped == [4, 3, 2, 1, 0, 1, 2, 3]


def _different_collectives(parallelizer):
    parallelizer.barrier()
    if parallelizer.on_main:
        parallelizer.gather(1)
    else:
        parallelizer.broadcast(None)


def _different_roots(parallelizer):
    parallelizer.reduce(1, root=0 if parallelizer.id % 2 == 0 else parallelizer.nprocs - 1)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_different_collectives, r"rank 0 called gather\(root=0\) as collective #\d+; ranks? 1.* called broadcast"),
        (_different_roots, r"called reduce\(root=0\) as collective #\d+; ranks? 1.* called reduce\(root="),
    ],
)
def test_mismatch_is_detected_and_named(par, checked, body, expected):
    if par.nprocs == 1:
        pytest.skip("one process cannot disagree with itself (test_debug_mode_changes_no_result covers it)")
    with pytest.raises(CollectiveMismatchError, match=expected):
        spmd(checked, body)
    assert spmd(checked, _healthy)[0] == sum(range(par.nprocs))  # usable afterwards


def test_debug_flag_and_environment(monkeypatch):
    monkeypatch.setenv("PARALLELIZER_DEBUG", "1")
    assert SerialNonParallelizer().debug
    assert not SerialNonParallelizer(debug=False).debug
    assert MultiprocessingParallelizer(nprocs=2).debug
    monkeypatch.setenv("PARALLELIZER_DEBUG", "maybe")
    with pytest.raises(ValueError, match="PARALLELIZER_DEBUG"):
        SerialNonParallelizer()
    monkeypatch.delenv("PARALLELIZER_DEBUG")
    assert not SerialNonParallelizer().debug
    with pytest.raises(TypeError, match="debug"):
        SerialNonParallelizer(debug="yes")
