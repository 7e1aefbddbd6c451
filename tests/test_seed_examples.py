"""The seed's examples, as shipped in examples/, on the serial backend."""

from __future__ import annotations

import os

import numpy as np
import pytest

from parallelizer import SerialNonParallelizer

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.fixture(autouse=True)
def examples_importable(monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)


def test_run_job_on_serial():
    import run_job

    assert SerialNonParallelizer().run(run_job.run_job) == [1000]
    assert run_job.main("serial") == [1000]


def test_map_applier_on_serial():
    import map_applier

    result = SerialNonParallelizer().run(map_applier.map_applier)
    assert isinstance(result, np.ndarray)
    np.testing.assert_array_equal(result, np.arange(1, 11))


def test_sample_program_driven_by_name():
    import sample_program

    program = sample_program.SampleProgram(nvals=10, parallelizer="serial")
    assert isinstance(program.par, SerialNonParallelizer)
    result = program.run()
    np.testing.assert_allclose(result, program.initialize_data())
