"""Every collective, every failing position, every moment: a failure is
reported with the right rank, releases everyone, and nothing hangs.

Multiprocessing: main raises (the failing rank's exception as RemoteError,
or its own) and the parallelizer is reusable. MPI: the job aborts with a
non-zero status and the failing rank's traceback."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest
from backends import mp_groups
from faults import CALLS, WHEN, InjectedFault, cannot_finish, failing_body, positions
from processes import clean_environment, mpiexec_command

from parallelizer import MultiprocessingParallelizer, RemoteError
from parallelizer._mpi import runtime

HERE = os.path.dirname(os.path.abspath(__file__))
MP_SIZES = (2, 3)
_groups: dict[int, MultiprocessingParallelizer] = {}


@pytest.fixture(scope="module", autouse=True)
def started_groups():
    with mp_groups(MP_SIZES) as groups:
        _groups.update(groups)
        yield
    _groups.clear()


MP_CASES = [
    (size, call, failing, when)
    for size in MP_SIZES
    for call, when in itertools.product(CALLS, WHEN)
    for failing in positions(size)
]


@pytest.mark.parametrize(("size", "call", "failing", "when"), MP_CASES)
def test_multiprocessing_fault(size, call, failing, when):
    par = _groups[size]
    if failing == 0:
        with pytest.raises(InjectedFault, match=f"rank 0 fails {when} {call}"):
            par.run(failing_body, call, failing, when)
    else:
        with pytest.raises(RemoteError) as info:
            par.run(failing_body, call, failing, when)
        assert info.value.rank == failing
        assert info.value.exc_type.endswith("InjectedFault")
        assert f"rank {failing} fails {when} {call}" in str(info.value)
    assert par.run(failing_body, call, -1, "never") == "ok"  # released and reusable


MPI_CASES = [
    (size, call, failing, when)
    for size in (2, 3)
    for call, when in itertools.product(CALLS, WHEN)
    for failing in positions(size)
]


@pytest.mark.parametrize(("size", "call", "failing", "when"), MPI_CASES)
def test_mpi_fault_aborts_the_job(size, call, failing, when):
    mpiexec = runtime.find_mpiexec()
    assert mpiexec is not None, "the test extras install mpich, which brings mpiexec"
    env = clean_environment()
    script = os.path.join(HERE, "scripts", "mpi_fault.py")
    result = subprocess.run(
        [
            *mpiexec_command(size, mpiexec),
            sys.executable,
            script,
            call,
            str(failing),
            when,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode != 0
    assert f"[rank {failing}] faults.InjectedFault: rank {failing} fails {when} {call}" in result.stderr
    survivors = {
        int(line.split()[2].rstrip(":")) for line in result.stdout.splitlines() if line.startswith("<survived")
    }
    assert failing not in survivors
    # the ranks that needed the failing rank's part never report success (the job ended them)
    assert not survivors & cannot_finish(call, failing, when, size), result.stdout
