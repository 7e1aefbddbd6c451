"""Runs pytest under an MPI launcher and reports it in one line per run.

    python tests/mpi_suite.py -n 3 [-n 1,2 ...] [--mpiexec PATH] [--flag F ...] [--timeout S] [--] PYTEST_ARGS...

Every rank runs ``python -m pytest --with-mpi ...`` with its output going to
its own log file (not interleaved with the other ranks' on the terminal).
Afterwards one line says how each rank's run ended; where a rank failed (or
the job ended badly), its whole log follows. The exit status is the job's.
``-n 1,2`` runs jobs of 1 and 2 ranks at the same time (each reported once it
ended); several ``-n`` run one after another, stopping at the first that fails.

Each rank finds its log through its rank number, which every launcher puts
in the environment (``PMI_RANK``, ``OMPI_COMM_WORLD_RANK``, ``PMIX_RANK``,
``SLURM_PROCID``), so this works with any MPI's ``mpiexec`` and with ``srun``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
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


class _Job:
    """One run of the suite under ``mpiexec -n N``: started at once, reported when it ends."""

    def __init__(self, options: argparse.Namespace, nprocs: int, pytest_args: list[str]) -> None:
        self.nprocs = nprocs
        self.timeout = options.timeout
        self.name = os.path.basename(options.mpiexec)
        self.log_dir = tempfile.TemporaryDirectory(prefix="mpi-suite-")
        command = [
            options.mpiexec,
            *(options.flag or _launcher_flags(options.mpiexec, nprocs)),
            "-n",
            str(nprocs),
            sys.executable,
            os.path.abspath(__file__),
            "--as-rank",
            self.log_dir.name,
            *PYTEST,
            *pytest_args,
        ]
        self.started = time.monotonic()
        # The launcher's own output goes to a file: nothing blocks on an unread pipe while another job
        # runs, and a killed job's leftover processes cannot hold a pipe open. Its own process group:
        # the timeout kills the whole job.
        self.launcher_log = os.path.join(self.log_dir.name, "launcher.log")
        with open(self.launcher_log, "wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def report(self) -> tuple[int, str]:
        """Waits for the job (killing it after the timeout); its exit status and report."""
        try:
            status = self.process.wait(timeout=max(0.0, self.started + self.timeout - time.monotonic()))
            killed = ""
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            status, killed = 124, f"killed after {self.timeout:.0f} s\n"
        elapsed = time.monotonic() - self.started
        with self.log_dir:
            launcher_output = killed + _read(self.launcher_log)
            logs = {rank: _read(os.path.join(self.log_dir.name, f"rank-{rank}.log")) for rank in range(self.nprocs)}
        lines = [f"{self.name} -n {self.nprocs} ({elapsed:.0f} s): exit {status}"]
        lines += [f"  rank {rank}: {summary(log)}" for rank, log in logs.items()]
        lines += [f"  {line}" for line in skip_reasons(list(logs.values()))]
        shown = [rank for rank, log in logs.items() if _went_wrong(summary(log))]
        if status != 0 and not shown:  # the job failed, yet every rank's pytest says it passed: show them all
            shown = list(logs)
        lines += [f"\n---- rank {rank} ----\n{logs[rank].rstrip()}" for rank in shown]
        if status != 0 and launcher_output.strip():
            lines.append(f"\n---- {self.name} ----\n{launcher_output.rstrip()}")
        return status, "\n".join(lines)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"-n takes rank counts separated by commas, like 3 or 1,2; got {text!r}")
    return sizes


def main(argv: list[str]) -> int:
    if argv[:1] == ["--as-rank"]:
        _as_rank(argv[1], argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-n",
        type=_sizes,
        action="append",
        required=True,
        help="number of ranks; 1,2: jobs of 1 and 2 ranks at the same time; repeat -n for jobs one after another",
    )
    parser.add_argument("--mpiexec", default=os.path.join(os.path.dirname(sys.executable), "mpiexec"))
    parser.add_argument(
        "--flag",
        action="append",
        default=[],
        help="a launcher option (repeat for several); default: the ones 'python -m parallelizer -n' adds",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a job is killed")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments for pytest (after --)")
    options = parser.parse_args(argv)
    pytest_args = options.pytest_args[1:] if options.pytest_args[:1] == ["--"] else options.pytest_args
    for together in options.n:
        jobs = [_Job(options, nprocs, pytest_args) for nprocs in together]
        reports = [job.report() for job in jobs]
        for _, report in reports:
            print(report, flush=True)
        failed = [status for status, _ in reports if status != 0]
        if failed:
            return failed[0]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
