"""The seed's examples, as shipped in examples/, on the serial backend."""

from __future__ import annotations

import os
import sys

import numpy as np

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)

import map_applier  # noqa: E402
import run_job  # noqa: E402
import sample_program  # noqa: E402

from parallelizer import SerialNonParallelizer  # noqa: E402


def test_run_job_on_serial():
    assert SerialNonParallelizer().run(run_job.run_job) == [1000]
    assert run_job.main("serial") == [1000]


def test_map_applier_on_serial():
    result = SerialNonParallelizer().run(map_applier.map_applier)
    assert isinstance(result, np.ndarray)
    np.testing.assert_array_equal(result, np.arange(1, 11))


def test_sample_program_driven_by_name():
    program = sample_program.SampleProgram(nvals=10, parallelizer="serial")
    assert isinstance(program.par, SerialNonParallelizer)
    result = program.run()
    np.testing.assert_allclose(result, program.initialize_data())
