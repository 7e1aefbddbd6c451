"""joblib's own ``test_parallel.py`` with the ``"parallelizer"`` backend enrolled.

The plugin in ``tests/joblib_suite`` registers the backend before joblib's
test module is imported, so every test joblib parametrizes over its
backends runs on ours too, on five local processes (``PARALLELIZER=
multiprocessing:5``): main and four that serve, as many as joblib's tests
ask for (``n_jobs=4``) and as loky starts for them. With fewer, a 30-second
task left running by the test before holds one of them, and a test's quick
tasks can come back after its slow one on a loaded machine.

Every enrolled test must pass except the ones below, which test something
only joblib's own backends (or processes that never imported parallelizer)
have; each is deselected with its reason printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

pytest.importorskip("joblib", reason="joblib is in the 'integrations' extra (make test installs it)")

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN_DIR = os.path.join(os.path.dirname(HERE), "joblib_suite")

NOT_APPLICABLE = {
    "test_nested_loop[loky-parallelizer]": "loky's workers never import parallelizer, so the name is unknown there",
    "test_nested_loop[back_compat_backend-parallelizer]": "runs in loky's workers, where the name is unknown",
    "test_backend_nesting_level[parallel_config-parallelizer-loky]": "loky's workers do not know the name",
    "test_backend_nesting_level[parallel_backend-parallelizer-loky]": "loky's workers do not know the name",
    "test_parallel_with_interactively_defined_functions[parallelizer]": (
        "a 'python -c' child names the backend without importing parallelizer.joblib"
    ),
    "test_auto_memmap_on_arrays_from_generator[parallelizer]": (
        "joblib memory-maps arrays only for its own loky/multiprocessing backends"
    ),
    "test_memmapping_leaks[parallelizer]": "joblib's memmapping temp folder belongs to its own backends",
    "test_error_capture[parallelizer]": (
        "asserts loky replaces its worker pool after an error; ours keeps its processes (API.md)"
    ),
}

MODULE = "joblib.test.test_parallel"


@pytest.mark.timeout(900)  # joblib's whole test_parallel.py: 80 s alone, longer beside other tests
def test_joblib_test_parallel_passes_with_our_backend(tmp_path, request):
    if request.config.getoption("--with-mpi", default=False):
        pytest.skip("runs once, in the run outside mpiexec (it starts its own processes)")
    report = tmp_path / "joblib.xml"
    for name, reason in NOT_APPLICABLE.items():
        print(f"not applicable: {name}: {reason}")
    env = dict(os.environ, PARALLELIZER="multiprocessing:5", PARALLELIZER_JOBLIB_DESELECT="\n".join(NOT_APPLICABLE))
    env["PYTHONPATH"] = os.pathsep.join([PLUGIN_DIR, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [
        sys.executable, "-m", "pytest", "--pyargs", MODULE,
        "-p", "parallelizer_joblib_plugin", "-k", "parallelizer",
        "-q", "-p", "no:cacheprovider", "-o", "timeout=120", f"--junitxml={report}",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    cases = ElementTree.parse(report).getroot().iter("testcase")
    outcome: dict[str, str] = {}
    for case in cases:
        kinds = {child.tag for child in case}
        outcome[case.get("name", "")] = (
            "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        )
    failed = sorted(name for name, kind in outcome.items() if kind == "failed")
    assert not failed, f"{len(failed)} of joblib's tests failed with our backend: {failed}\n{done.stdout[-4000:]}"
    passed = sum(kind == "passed" for kind in outcome.values())
    print(
        f"joblib's test_parallel with the parallelizer backend: {passed} passed, {len(NOT_APPLICABLE)} not applicable"
    )
    assert passed >= 100, done.stdout[-4000:]  # the enrollment really happened
    assert not set(NOT_APPLICABLE) & set(outcome), "a deselected test ran"
