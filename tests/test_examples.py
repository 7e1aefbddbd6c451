"""The examples in examples/, run the way their docstrings tell a user to:
serially, with ``PARALLELIZER=multiprocessing:3`` and under ``mpiexec -n 3``.

Every run is a subprocess with a timeout; each test checks what the example
prints, and that every backend prints the same answer. Also: the Slurm
script is valid bash and launches a tested example, the notebook executes
(serially and with the multiprocessing backend), and the examples in the
public modules' docstrings pass as doctests.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
from processes import clean_environment, mpiexec_command

from parallelizer._mpi import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
MPIEXEC = runtime.find_mpiexec()
TIMEOUT = 120
MODES = ["serial", "multiprocessing", "mpiexec"]
# What each mode runs on: the backend lookup(None) picks and its process count.
BACKEND = {
    "serial": "SerialNonParallelizer with 1 process(es)",
    "multiprocessing": "MultiprocessingParallelizer with 3 process(es)",
    "mpiexec": "MPIParallelizer with 3 process(es)",
}

# Every example script that runs in all three modes below; the Slurm script
# must launch one of these.
TESTED_SCRIPTS = {
    "run_job.py",
    "map_applier.py",
    "sample_program.py",
    "monte_carlo.py",
    "task_farm.py",
    "fit_model.py",
    "reduced_basis.py",
    "async_tasks.py",
    "executor.py",
    "heat_diffusion.py",
}


def _environment(extra=None):
    env = clean_environment()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))  # this checkout's package
    env.update(extra or {})
    return env


def _run(command, extra_env=None, timeout=TIMEOUT):
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=_environment(extra_env), cwd=ROOT
    )
    assert result.returncode == 0, f"{shlex.join(command)} failed ({result.returncode}):\n{result.stderr}"
    return result.stdout


def run_example(name, mode, *args):
    """Runs ``examples/<name>`` as the docstrings say; returns its stdout."""
    command = [sys.executable, os.path.join("examples", name), *args]
    if mode == "serial":
        return _run(command)
    if mode == "multiprocessing":
        return _run(command, {"PARALLELIZER": "multiprocessing:3"})
    assert mode == "mpiexec"
    if MPIEXEC is None:
        pytest.skip("no mpiexec found: install the mpi extra (pip install -e '.[mpi]') to run the examples under MPI")
    return _run([*mpiexec_command(3, MPIEXEC), *command])


def _lines(text):
    return [line for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------
# the seed's examples


@pytest.mark.parametrize("mode", MODES)
def test_run_job(mode):
    out = _lines(run_example("run_job.py", mode))
    lengths = "[1000]" if mode == "serial" else "[334, 333, 333]"
    assert out == [f"{BACKEND[mode]}: block lengths {lengths}"]  # main prints, the workers do not


@pytest.mark.parametrize("mode", MODES)
def test_map_applier(mode):
    out = _lines(run_example("map_applier.py", mode))
    backend = BACKEND[mode].split()[0]
    assert out == [f"{backend}: [ 1  2  3  4  5  6  7  8  9 10]"]


@pytest.fixture(scope="module")
def serial_outputs():
    """Each example's serial output, run once and compared with the other backends'."""
    return {}


def _sample_program_numbers(out):
    name, _, numbers = out.partition(":")
    return name.strip(), numbers.split()


@pytest.mark.parametrize(
    ("mode", "args", "backend"),
    [
        ("serial", (), "SerialNonParallelizer"),
        ("serial", ("multiprocessing:3",), "MultiprocessingParallelizer"),
        ("multiprocessing", (), "MultiprocessingParallelizer"),
        ("mpiexec", (), "MPIParallelizer"),
        ("mpiexec", ("mpi",), "MPIParallelizer"),
    ],
)
def test_sample_program_on_every_backend(mode, args, backend, serial_outputs):
    serial = _sample_program_numbers(_serial_output("sample_program.py", serial_outputs))[1]
    name, numbers = _sample_program_numbers(run_example("sample_program.py", mode, *args))
    assert name == backend
    assert len(serial) == 10 and numbers == serial  # sqrt(x**2) gives main's random numbers back, on every backend


# ---------------------------------------------------------------------------
# a scientific function, a task farm, scipy and emcee: same answer everywhere


def _serial_output(name, serial_outputs):
    if name not in serial_outputs:
        serial_outputs[name] = run_example(name, "serial")
    return serial_outputs[name]


def _same_as_serial(name, mode, serial_outputs):
    serial = _serial_output(name, serial_outputs)
    return (serial if mode == "serial" else run_example(name, mode)), serial


@pytest.mark.parametrize("mode", MODES)
def test_monte_carlo_integral(mode, serial_outputs):
    out, serial = _same_as_serial("monte_carlo.py", mode, serial_outputs)
    header, result = _lines(out)
    assert header == BACKEND[mode]
    assert result == _lines(serial)[1]  # bit for bit, whatever the number of processes
    estimate, error, exact = map(float, re.search(r": (\S+) \+- (\S+) \(exact (\S+)\)", result).groups())
    assert 0 < error < 1e-3 and abs(estimate - exact) < 5 * error


def test_monte_carlo_integral_called_as_its_docstring_says():
    code = (
        "import numpy as np, monte_carlo as mc\n"
        "from parallelizer import MultiprocessingParallelizer\n"
        "serial = mc.monte_carlo_integral(mc.gaussian, 4, nsamples=64_000)\n"
        "parallel = MultiprocessingParallelizer(2).run(mc.monte_carlo_integral, mc.gaussian, 4, nsamples=64_000)\n"
        "print(serial == parallel, serial)\n"
    )
    out = _run([sys.executable, "-c", code], {"PYTHONPATH": os.pathsep.join([ROOT, EXAMPLES])})
    assert out.startswith("True (0.3")  # (sqrt(pi)/2 erf(1))^4 = 0.311


@pytest.mark.parametrize("mode", MODES)
def test_heat_diffusion(mode, serial_outputs):
    out, serial = _same_as_serial("heat_diffusion.py", mode, serial_outputs)
    header, result = _lines(out)
    assert header == BACKEND[mode]
    assert result == _lines(serial)[1]  # bit for bit, whatever the number of processes
    heat, peak, where = re.search(r"heat (\S+), peak (\S+) at point (\d+)", result).groups()
    assert abs(float(heat) - 40.0) < 1e-9 and 0.5 < float(peak) < 1.0 and int(where) in range(99_980, 100_020)


def test_heat_diffusion_called_as_its_docstring_says():
    code = (
        "import numpy as np, heat_diffusion as hd\n"
        "from parallelizer import MultiprocessingParallelizer\n"
        "serial = hd.diffuse(100_000, 50)\n"
        "parallel = MultiprocessingParallelizer(2).run(hd.diffuse, 100_000, 50)\n"
        "print(np.array_equal(serial, parallel), serial.max() < 1.0)\n"
    )
    out = _run([sys.executable, "-c", code], {"PYTHONPATH": os.pathsep.join([ROOT, EXAMPLES])})
    assert out.split() == ["True", "True"]


@pytest.mark.parametrize("mode", MODES)
def test_task_farm(mode, serial_outputs):
    out, serial = _same_as_serial("task_farm.py", mode, serial_outputs)
    assert out == serial
    assert "period 2 first at r = 3.002" in out and "period 4 first at r = 3.450" in out
    assert "no period <= 32 (chaos) first at r = 3.570" in out  # the end of the period-doubling cascade


@pytest.mark.parametrize("mode", MODES)
def test_reduced_basis_pool(mode, serial_outputs):
    out, serial = _same_as_serial("reduced_basis.py", mode, serial_outputs)
    assert out == serial  # the same greedy choices and errors on every backend
    lines = _lines(out)
    assert lines[0] == "greedy reduced basis over 60 parameter samples:" and len(lines) == 7
    errors = [float(line.split()[-1]) for line in lines[2:]]
    assert max(errors) < 1e-2 < float(lines[1].split()[-1])  # the first snapshot removes most of the error


def _task_rows(out):
    return [line for line in _lines(out) if line.startswith("  seed ")]


@pytest.mark.parametrize("mode", MODES)
def test_async_tasks_with_metadata(mode, serial_outputs):
    out, serial = _same_as_serial("async_tasks.py", mode, serial_outputs)
    assert _task_rows(out) == _task_rows(serial) and len(_task_rows(out)) == 8
    assert all("successful=True" in row and "printed 'walk" in row for row in _task_rows(out))
    assert f"8 tasks, run by {'main' if mode == 'serial' else 'the servers'}" in out
    assert all(f"walk {seed}: done" in out for seed in range(8))  # what tasks print is shown too


@pytest.mark.parametrize("mode", [*MODES, "mpiexec --pool"])
def test_executor(mode, serial_outputs):
    if mode == "mpiexec --pool":
        out = _run(
            [
                *mpiexec_command(3, MPIEXEC),
                sys.executable,
                "-m",
                "parallelizer",
                "--pool",
                "examples/executor.py",
            ]
        )
    else:
        out, _ = _same_as_serial("executor.py", mode, serial_outputs)
    backend = BACKEND["mpiexec" if "mpiexec" in mode else mode].split()[0]
    assert _lines(out) == [
        f"{backend}: primes below 200000 = 17984",
        "primes below 30: [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]",
    ]


@pytest.mark.parametrize("mode", MODES)
def test_fit_model_with_scipy_and_emcee(mode, serial_outputs):
    pytest.importorskip("scipy", reason="fit_model.py needs scipy: pip install -e '.[examples]'")
    pytest.importorskip("emcee", reason="fit_model.py needs emcee: pip install -e '.[examples]'")
    out, serial = _same_as_serial("fit_model.py", mode, serial_outputs)
    assert out == serial  # seeded: the same optimum and the same chain on every backend
    assert _lines(out)[0].startswith("differential evolution: chi2 = ")
    rows = {line.split()[0]: line.split() for line in _lines(out)[2:]}  # name true best mean +- std
    for name in ("amplitude", "frequency", "phase"):
        true, best, mean, std = (float(rows[name][i]) for i in (1, 2, 3, 5))
        assert abs(best - true) < 5 * std and abs(mean - true) < 5 * std  # the fit finds the truth


# ---------------------------------------------------------------------------
# the Slurm script and the notebook


def test_slurm_script_is_valid_bash_and_launches_a_tested_example():
    script = os.path.join(EXAMPLES, "slurm_job.sh")
    subprocess.run(["bash", "-n", script], check=True, timeout=30)
    with open(script, encoding="utf-8") as lines:
        commands = [
            line.strip()
            for line in lines
            if line.strip() and not line.lstrip().startswith("#") and re.search(r"\b(srun|mpiexec)\b", line)
        ]
    assert commands, "the script launches nothing"
    launched = set()
    for command in commands:
        launched.update(re.findall(r"python (?:-m parallelizer )?examples/(\w+\.py)", command))
    assert launched and launched <= TESTED_SCRIPTS
    assert all(os.path.exists(os.path.join(EXAMPLES, name)) for name in launched)


_EXECUTE_NOTEBOOK = """
import sys, nbformat, nbclient
nb = nbformat.read(sys.argv[1], as_version=4)
nbclient.NotebookClient(nb, timeout=90, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
for cell in nb.cells:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            sys.stdout.write(output["text"])
        elif output.get("output_type") == "error":
            sys.stdout.write("ERROR " + output["ename"] + "\\n")
"""


def test_notebook_runs_serially_and_with_multiprocessing():
    pytest.importorskip("nbclient", reason="executing the notebook needs nbclient: pip install nbclient ipykernel")
    pytest.importorskip("ipykernel", reason="executing the notebook needs ipykernel: pip install nbclient ipykernel")
    notebook = os.path.join(EXAMPLES, "random_walks.ipynb")
    out = _run([sys.executable, "-c", _EXECUTE_NOTEBOOK, notebook, EXAMPLES])
    assert "ERROR" not in out
    assert re.search(r"serial: <x\^2> after 200 steps = 197\.4, slope 0\.9\d\d \(theory: 1\)", out)
    assert "3 processes: <x^2> after 200 steps = 197.4" in out
    assert "identical to the serial result: True" in out
    assert "serial: (1, 197.3914)" in out and "multiprocessing: (3, 197.3914)" in out


# ---------------------------------------------------------------------------
# the examples in the docstrings

_DOCTEST = """
import doctest, importlib, pkgutil, sys
import parallelizer
failed = tried = 0
names = ["parallelizer"] + [info.name for info in pkgutil.walk_packages(parallelizer.__path__, "parallelizer.")]
for name in names:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    failed += result.failed
    tried += result.attempted
print(f"{tried} tried, {failed} failed")
"""


def test_docstring_examples_pass():
    out = _run([sys.executable, "-c", _DOCTEST])
    tried, failed = map(int, re.search(r"(\d+) tried, (\d+) failed", out).groups())
    assert failed == 0, out
    assert tried >= 20
