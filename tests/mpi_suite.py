"""Runs pytest under an MPI launcher and reports it in one line per run.

    python tests/mpi_suite.py -n 3 [--mpiexec PATH] [--flag F ...] [--timeout S] [--] PYTEST_ARGS...

Every rank runs ``python -m pytest --with-mpi ...`` with its output going to
its own log file (not interleaved with the other ranks' on the terminal).
Afterwards one line says how each rank's run ended; where a rank failed (or
the job ended badly), its whole log follows. The exit status is the job's.

Each rank finds its log through its rank number, which every launcher puts
in the environment (``PMI_RANK``, ``OMPI_COMM_WORLD_RANK``, ``PMIX_RANK``,
``SLURM_PROCID``), so this works with any MPI's ``mpiexec`` and with ``srun``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")
PYTEST = ["-m", "pytest", "--with-mpi", "-q", "--no-header", "-p", "no:cacheprovider", "--capture=sys"]
SUMMARY = re.compile(r"^=* ?(\d+ (passed|failed|skipped|errors?|deselected|xfailed|xpassed)\b.*?) ?=*$")


def _rank() -> str:
    for name in RANK_VARIABLES:
        if name in os.environ:
            return os.environ[name]
    return "unknown"


def _as_rank(log_dir: str, command: list[str]) -> None:
    """In every rank: its stdout and stderr into ``log_dir/rank-N.log``, then ``command``."""
    log = os.open(os.path.join(log_dir, f"rank-{_rank()}.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.execv(sys.executable, [sys.executable, *command])


def summary(log: str) -> str:
    """The last line of pytest's report in ``log`` (``12 passed, 1 skipped in 3.2s``), or what ended it.

    Example:
        >>> summary("....\\n===== 4 passed, 1 skipped in 0.52s =====\\n")
        '4 passed, 1 skipped in 0.52s'
        >>> summary("Traceback ...\\nKeyError: 'x'\\n")
        "no pytest summary (last line: KeyError: 'x')"
    """
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        found = SUMMARY.match(line)
        if found:
            return found.group(1)
    return f"no pytest summary (last line: {lines[-1] if lines else 'none'})"


def _read(path: str) -> str:
    if not os.path.exists(path):
        return "(no output)"
    with open(path, errors="replace") as log:
        return log.read()


def skip_reasons(logs: list[str]) -> list[str]:
    r"""The ``SKIPPED [n] file:line: reason`` lines of every rank's report, each once.

    Example:
        >>> skip_reasons(["SKIPPED [1] t.py:3: no GPU\n1 passed", "SKIPPED [1] t.py:3: no GPU\n"])
        ['SKIPPED [1] t.py:3: no GPU']
    """
    found = [line.strip() for log in logs for line in log.splitlines() if line.startswith("SKIPPED [")]
    return list(dict.fromkeys(found))


def _launcher_flags(mpiexec: str, nprocs: int) -> list[str]:
    """What ``python -m parallelizer -n`` adds for this mpiexec (Open MPI: as root, oversubscribed)."""
    from parallelizer import cli

    return cli.launcher_flags(mpiexec, nprocs)


def _went_wrong(line: str) -> bool:
    return line.startswith("no pytest summary") or re.search(r"\b\d+ (failed|errors?)\b", line) is not None


def main(argv: list[str]) -> int:
    if argv[:1] == ["--as-rank"]:
        _as_rank(argv[1], argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, required=True, help="number of ranks")
    parser.add_argument("--mpiexec", default=os.path.join(os.path.dirname(sys.executable), "mpiexec"))
    parser.add_argument(
        "--flag",
        action="append",
        default=[],
        help="a launcher option (repeat for several); default: the ones 'python -m parallelizer -n' adds",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds before the job is killed")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments for pytest (after --)")
    options = parser.parse_args(argv)
    pytest_args = options.pytest_args[1:] if options.pytest_args[:1] == ["--"] else options.pytest_args
    with tempfile.TemporaryDirectory(prefix="mpi-suite-") as log_dir:
        command = [
            options.mpiexec,
            *(options.flag or _launcher_flags(options.mpiexec, options.n)),
            "-n",
            str(options.n),
            sys.executable,
            os.path.abspath(__file__),
            "--as-rank",
            log_dir,
            *PYTEST,
            *pytest_args,
        ]
        started = time.monotonic()
        try:
            job = subprocess.run(command, capture_output=True, text=True, timeout=options.timeout)
            status, launcher_output = job.returncode, job.stdout + job.stderr
        except subprocess.TimeoutExpired as exc:
            status = 124
            launcher_output = f"killed after {options.timeout:.0f} s\n{exc.stdout or ''}{exc.stderr or ''}"
        elapsed = time.monotonic() - started
        logs = {}
        for rank in range(options.n):
            path = os.path.join(log_dir, f"rank-{rank}.log")
            logs[rank] = _read(path)
    name = os.path.basename(options.mpiexec)
    print(f"{name} -n {options.n} ({elapsed:.0f} s): exit {status}", flush=True)
    for rank, log in logs.items():
        print(f"  rank {rank}: {summary(log)}")
    for line in skip_reasons(list(logs.values())):
        print(f"  {line}")
    shown = [rank for rank, log in logs.items() if _went_wrong(summary(log))]
    if status != 0 and not shown:  # the job failed, yet every rank's pytest says it passed: show them all
        shown = list(logs)
    for rank in shown:
        print(f"\n---- rank {rank} ----\n{logs[rank].rstrip()}")
    if status != 0 and launcher_output.strip():
        print(f"\n---- {name} ----\n{launcher_output.rstrip()}")
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
