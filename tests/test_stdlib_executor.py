"""CPython's own ``concurrent.futures`` tests, against ``par.executor()`` on every backend.

The generic mixins of ``test.test_concurrent_futures`` (``ExecutorTest``,
``WaitTests``, ``AsCompletedTests``, ``InitializerMixin``,
``FailingInitializerMixin``, ``ExecutorShutdownTest``) run through one mixin
of ours (tests/stdlib/cf_against.py): serially, on 2 and 3 local processes,
and under ``mpiexec -n 3 python -m parallelizer --pool``. The four runs go
side by side (the tests mostly sleep). Three tests cannot apply to any
executor outside the standard library (they import the executor class by
name from ``concurrent.futures`` in a subprocess): they are skipped, saying so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from processes import clean_environment

from parallelizer._mpi import runtime

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM = os.path.join(HERE, "stdlib")
SUITE = os.path.join(SHIM, "cf_against.py")
TESTS = os.environ.get("PARALLELIZER_CF_TESTS", "/usr/lib/python3.11/test")
APPLICABLE = 27  # of the 30 tests in the six mixins (3.11)


def _available() -> bool:
    return os.path.exists(os.path.join(TESTS, "test_concurrent_futures.py")) or os.path.isdir(
        os.path.join(TESTS, "test_concurrent_futures")
    )


pytestmark = pytest.mark.skipif(
    sys.version_info[:2] != (3, 11) or not _available(),
    reason=f"CPython 3.11's test_concurrent_futures is not in {TESTS} "
    "(Debian: apt-get install libpython3.11-testsuite; `make test` installs it when run as root)",
)


@pytest.fixture(scope="module")
def outcomes():
    env = clean_environment()
    env["PYTHONPATH"] = os.pathsep.join([SHIM, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PARALLELIZER_CF_TESTS"] = TESTS
    mpiexec = runtime.find_mpiexec()
    commands = {
        "serial": [sys.executable, SUITE],
        "multiprocessing:2": [sys.executable, SUITE],
        "multiprocessing:3": [sys.executable, SUITE],
        "mpi:3 (--pool)": [mpiexec, "-n", "3", sys.executable, "-m", "parallelizer", "--pool", SUITE],
    }
    running = {
        name: subprocess.Popen(
            command,
            env={**env, "PARALLELIZER_CF_BACKEND": "pool" if name.startswith("mpi") else name},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, command in commands.items()
    }
    results = {}
    for name, process in running.items():
        try:
            output, _ = process.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            output += "\n<timed out>"
        results[name] = (process.returncode, output)
    return results


@pytest.mark.timeout(300)  # the first runs CPython's suites on every backend (the module's fixture): 50 s alone
@pytest.mark.parametrize("backend", ["serial", "multiprocessing:2", "multiprocessing:3", "mpi:3 (--pool)"])
def test_the_standard_library_executor_tests_pass(outcomes, backend):
    status, output = outcomes[backend]
    ran = re.search(r"Ran (\d+) tests", output)
    assert status == 0 and ran is not None, output[-4000:]
    skipped = re.search(r"OK \(skipped=(\d+)\)", output)
    assert skipped is not None, output[-4000:]
    assert int(ran.group(1)) - int(skipped.group(1)) == APPLICABLE, output[-4000:]
    assert (
        output.count("imports the executor class from concurrent.futures")
        + output.count("only the standard library's own executors")
        == 3
    )
