"""Property tests: for random sequences, arrays and process counts,
scatter then gather is the identity, and every backend gives exactly the
serial result."""

from __future__ import annotations

import numpy as np
import pytest
from backends import mp_groups
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from parallelizer import MultiprocessingParallelizer, SerialNonParallelizer

SIZES = (1, 2, 3, 4)
_groups: dict[int, MultiprocessingParallelizer] = {}
SERIAL = SerialNonParallelizer()

ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.int8, np.int64, np.float32, np.float64, np.complex128, np.bool_, np.dtype("U3")]),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7),
)
ITEMS = st.one_of(st.integers(), st.text(max_size=3), st.floats(allow_nan=False), st.none(), st.tuples(st.integers()))
LISTS = st.lists(ITEMS, max_size=25)
PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def started_groups():
    with mp_groups(SIZES) as groups:
        _groups.update(groups)
        yield
    _groups.clear()


def _roundtrip(data, parallelizer):
    source = data if parallelizer.on_main else None
    block = parallelizer.scatter(source)
    return (
        parallelizer.gather(block),
        parallelizer.allgather(len(block)),
        parallelizer.map(repr, source),
        parallelizer.map(repr, source, schedule="dynamic", chunksize=2),
        parallelizer.broadcast(source),
    )


def _check(data, size):
    gathered, lengths, mapped, dynamic, broadcast = _groups[size].run(_roundtrip, data)
    expected_lengths = [len(block) for block in np.array_split(np.arange(len(data)), size)]
    assert lengths == expected_lengths
    reference = SERIAL.run(_roundtrip, data)
    assert mapped == dynamic == reference[2] == [repr(item) for item in data]
    return gathered, broadcast, reference


@PROPERTY
@given(data=ARRAYS, size=st.sampled_from(SIZES))
def test_arrays_roundtrip_and_match_serial(data, size):
    gathered, broadcast, reference = _check(data, size)
    assert isinstance(gathered, np.ndarray) and gathered.dtype == data.dtype and gathered.shape == data.shape
    np.testing.assert_array_equal(gathered, data)
    np.testing.assert_array_equal(gathered, reference[0])
    np.testing.assert_array_equal(broadcast, data)


@PROPERTY
@given(data=LISTS, size=st.sampled_from(SIZES))
def test_lists_roundtrip_and_match_serial(data, size):
    gathered, broadcast, reference = _check(data, size)
    assert [item for block in gathered for item in block] == data
    assert [item for block in reference[0] for item in block] == data
    assert broadcast == data


@PROPERTY
@given(
    values=st.lists(st.integers(-1000, 1000), min_size=4, max_size=4),
    op=st.sampled_from(["sum", "prod", "min", "max"]),
    size=st.sampled_from(SIZES),
)
def test_reductions_match_the_serial_fold(values, op, size):
    def body(parallelizer):
        mine = values[parallelizer.id]
        return parallelizer.reduce(mine, op=op), parallelizer.allreduce(np.array([mine, -mine]), op=op)

    on_root, everywhere = _groups[size].run(body)
    fold = {"sum": sum, "prod": np.prod, "min": min, "max": max}[op]
    assert on_root == fold(values[:size])
    np.testing.assert_array_equal(everywhere, [fold(values[:size]), fold([-v for v in values[:size]])])
