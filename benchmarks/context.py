"""Where and how a benchmark runs: its command line, the machine, and launching other processes.

Launched processes (a benchmark's fresh interpreters, its ``mpiexec`` jobs)
import the same ``parallelizer`` and ``benchmarks`` as the launcher, run in
their own process group, and are killed with it after a timeout, so nothing
a benchmark starts can hang the suite.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PACKAGES = ("parallelizer", "numpy", "cloudpickle", "mpi4py", "mpich", "schwimmbad", "joblib", "matplotlib")


# ---------------------------------------------------------------------- the machine and this process


def relative(text: str) -> str:
    """``text`` with the repository's path left out of the paths in it."""
    return text.replace(f"{REPO}{os.sep}", "")


def command_line() -> str:
    """How this process was started, as a shell line (paths in the repository made relative)."""
    words = [Path(sys.executable).name, *sys.orig_argv[1:]]
    if under_mpiexec():
        size = os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE") or "N"
        words = ["mpiexec", "-n", size, *words]
    return relative(" ".join(words))


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        if package == "parallelizer":
            import parallelizer

            return str(parallelizer.__version__)
        return None


def _git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "parallelizer"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + (" (parallelizer/ modified)" if dirty.stdout.strip() else "")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_total() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    return "?"


_ENVIRONMENT: dict[str, Any] | None = None


def environment() -> dict[str, Any]:
    """The machine and the versions of everything measured."""
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        import parallelizer

        _ENVIRONMENT = {
            "machine": f"{_cpu_model()}, {os.cpu_count()} CPUs, {_memory_total()}",
            "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "parallelizer_path": relative(str(Path(parallelizer.__file__).resolve().parent)),
            "git": _git_commit(),
            "packages": {package: _version(package) for package in PACKAGES},
        }
    return _ENVIRONMENT


# ---------------------------------------------------------------------- command line and launching


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a short subset (for make bench QUICK=1)")
    p.add_argument("--results", type=Path, default=RESULTS_DIR, help="where the JSON results go")
    p.add_argument("--mpiexec", default=None, help="the mpiexec to use (default: next to python, else on PATH)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before a launched job is killed")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p


def find_mpiexec(explicit: str | None = None) -> str:
    """The mpiexec to launch MPI jobs with."""
    candidates = [explicit, os.environ.get("MPIEXEC"), str(Path(sys.executable).parent / "mpiexec")]
    for candidate in candidates:
        if candidate and (Path(candidate).exists() or shutil.which(candidate)):
            return candidate
    found = shutil.which("mpiexec")
    if found is None:
        raise SystemExit("no mpiexec found: pass --mpiexec (make bench passes $(MPIEXEC))")
    return found


def child_env() -> dict[str, str]:
    """The environment of launched processes: they import the same parallelizer and benchmarks."""
    import parallelizer

    paths = [str(Path(parallelizer.__file__).resolve().parent.parent), str(REPO)]
    existing = os.environ.get("PYTHONPATH")
    if existing:
        paths.append(existing)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.pop("PARALLELIZER", None)  # each benchmark says which backend it measures
    return env


def launch(command: Sequence[str], timeout: float, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Runs ``command`` in its own process group; kills the whole group after ``timeout`` seconds.

    Raises:
        RuntimeError: The command timed out or failed.
    """
    process = subprocess.Popen(
        list(command),
        env=child_env(),
        start_new_session=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=None,
        text=True,
    )
    try:
        stdout, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(command)}") from None
    except BaseException:
        _kill_group(process)
        raise
    if process.returncode != 0:
        raise RuntimeError(f"exit status {process.returncode}: {' '.join(command)}")
    return subprocess.CompletedProcess(list(command), process.returncode, stdout, None)


def _kill_group(process: subprocess.Popen[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=3)
            return
        except subprocess.TimeoutExpired:
            continue


def python_module(module: str, *args: str) -> list[str]:
    """``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def mpi_command(mpiexec: str, nprocs: int, module: str, *args: str, futures: bool = False) -> list[str]:
    """``mpiexec -n N python [-m mpi4py.futures] -m module args``."""
    runner = ["-m", "mpi4py.futures"] if futures else []
    return [mpiexec, "-n", str(nprocs), sys.executable, *runner, "-m", module, *args]


def forward_args(args: argparse.Namespace) -> list[str]:
    """The common options, to pass on to a launched child."""
    forwarded = ["--results", str(args.results), "--timeout", str(args.timeout)]
    if args.quick:
        forwarded.append("--quick")
    return forwarded


def compile_package() -> None:
    """Writes the package's compiled modules (``__pycache__``), as ``pip install`` and a first import do.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (some sandboxes and CI images set
    it), nothing else would, and every process a benchmark starts would compile
    the package again: about 0.13 s more per process here, which a peer's
    compiled standard library never pays. Up-to-date files are left alone.
    """
    import compileall

    import parallelizer

    compileall.compile_dir(os.path.dirname(parallelizer.__file__), quiet=1)


def entry_point(
    doc: str,
    run: Callable[[argparse.Namespace], Any],
    run_child: Callable[[argparse.Namespace], Any] | None = None,
) -> None:
    """A benchmark module's ``main``: parses the arguments (described by the
    first line of ``doc``), then runs the parent part, or the child part when
    started with ``--child``."""
    args = parser(doc.splitlines()[0]).parse_args()
    if args.child is None or run_child is None:
        compile_package()
        run(args)
    else:
        run_child(args)


def mpi_entry_point(doc: str, module: str, nprocs: int, run_ranks: Callable[[argparse.Namespace], Any]) -> None:
    """``main`` of a benchmark that is one ``mpiexec`` job: launches the job,
    whose ranks (started with ``--child rank``) run ``run_ranks``."""

    def launch_job(args: argparse.Namespace) -> None:
        command = mpi_command(find_mpiexec(args.mpiexec), nprocs, module, *forward_args(args), "--child", "rank")
        launch(command, args.timeout)

    entry_point(doc, launch_job, run_ranks)


def under_mpiexec() -> bool:
    """True when this process was started by mpiexec (MPICH, Open MPI, Slurm)."""
    return any(name in os.environ for name in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"))
