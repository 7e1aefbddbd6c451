"""What the cluster tests need from the machine: root, Debian packages,
commands that never hang, and a look at the processes they leave behind.

Also a command line, for CI or a Makefile, to install the packages up front
(quietly; nothing happens when they are there already)::

    python tests/cluster/system.py install
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence

# In the environment of every process a test cluster starts (its daemons, and
# through them every job step and task): the cluster's tag, to find them all.
MARKER = "PZ_CLUSTER_TAG"

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))  # the tests launch their jobs from the repository's top
SCRIPTS = os.path.join(HERE, "scripts")

# command -> the Debian package that provides it
HOSTS_PACKAGES = {"ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux"}
SLURM_PACKAGES = {
    "munged": "munge",
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "srun": "slurm-client",
    "sbatch": "slurm-client",
}
# The mpi/pmi2 plugin that `srun --mpi=pmi2` loads comes with slurm-wlm-basic-plugins,
# a dependency of slurmd.
APT_TIMEOUT = 600  # seconds for one apt-get call
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


class CommandTimeout(AssertionError):
    """A command ran longer than its timeout (it and its children were killed)."""


def job_env(**extra: str) -> dict[str, str]:
    """The environment for a launched job: ours, without what would make it
    believe it already runs under a launcher, a test or another backend.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PMI_", "PMIX_", "OMPI_", "SLURM_", "HYDRA_", "MPIR_", "PYTEST_"))
        and name not in ("PARALLELIZER", "MPIEXEC_PORT_RANGE")
    }
    env.update(extra)
    return env


def which(command: str) -> str | None:
    """``shutil.which`` that also looks in the sbin directories (not always on PATH)."""
    path = os.environ.get("PATH", os.defpath) + os.pathsep + os.pathsep.join(SBIN_DIRS)
    return shutil.which(command, path=path)


def missing_commands(commands: Iterable[str]) -> list[str]:
    return [command for command in commands if which(command) is None]


def is_root() -> bool:
    """Root of the machine: uid 0, and not just inside a user namespace (where
    the daemons' setgroups() and ``ip netns add`` are refused).
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as uid_map:
            return uid_map.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return True


def cluster_tests_disabled() -> str | None:
    """The reason to skip when ``PARALLELIZER_CLUSTER_TESTS=0`` asks for it."""
    if os.environ.get("PARALLELIZER_CLUSTER_TESTS", "").strip().lower() in ("0", "no", "false", "off"):
        return "PARALLELIZER_CLUSTER_TESTS=0"
    return None


def ensure_packages(needed: dict[str, str], log: Callable[[str], None] | None = None) -> str | None:
    """Installs the Debian packages providing the missing ``needed`` commands.

    Quiet and idempotent: nothing runs when every command is there already;
    ``apt-get update`` runs only when an install from the current package lists
    fails. Returns ``None`` when everything is there afterwards, else the
    reason why not (to skip with).
    """
    missing = missing_commands(needed)
    if not missing:
        return None
    packages = sorted({needed[command] for command in missing})
    if sys.platform != "linux":
        return f"needs {', '.join(missing)} (Linux only)"
    if not is_root():
        return f"needs {', '.join(missing)}: install the Debian packages {' '.join(packages)} (as root)"
    if which("apt-get") is None:
        return f"needs {', '.join(missing)} and there is no apt-get to install {' '.join(packages)}"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "-o",
        "DPkg::Lock::Timeout=300",
        *packages,
    ]
    started = time.monotonic()
    result = _quiet(install, env)
    if result.returncode != 0:  # stale or missing package lists (fresh machines): update once, retry
        _quiet(["apt-get", "update", "-qq", "-o", "DPkg::Lock::Timeout=300"], env)
        result = _quiet(install, env)
    if log is not None:
        log(f"apt-get install {' '.join(packages)}: exit {result.returncode} in {time.monotonic() - started:.1f} s")
    still = missing_commands(needed)
    if still:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        return f"apt-get install {' '.join(packages)} failed (exit {result.returncode}): " + " | ".join(tail)
    return None


def _quiet(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(argv, -1, _text(exc.stdout), _text(exc.stderr) + "\n(timed out)")


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    on_timeout: Callable[[], None] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Runs ``argv`` to completion, never longer than ``timeout`` seconds.

    The command runs in its own session; on timeout the whole session is
    killed, then ``on_timeout`` (which kills what lives elsewhere, e.g. in the
    network namespaces), and ``CommandTimeout`` is raised with what the
    command printed. Output goes through files, so a stray grandchild holding
    a pipe open can never block us.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True
        )
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_session(proc.pid)
            if on_timeout is not None:
                on_timeout()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            out.seek(0)
            err.seek(0)
            raise CommandTimeout(
                f"timed out after {timeout} s (killed): {' '.join(argv)}\n"
                f"--- stdout ---\n{out.read()[-6000:]}\n--- stderr ---\n{err.read()[-6000:]}"
            ) from None
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(list(argv), returncode, out.read(), err.read())
    if check and result.returncode != 0:
        raise AssertionError(
            f"exit {result.returncode}: {' '.join(argv)}\n--- stdout ---\n{result.stdout[-6000:]}\n"
            f"--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


def _kill_session(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def start_time(pid: int) -> int:
    """When ``pid`` started (clock ticks after boot; 0 if it is gone): with the pid, names a process for good."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def owner_alive(tag: str) -> bool:
    """``tag`` is ``<pid>s<start time>``: is that very process still running?"""
    pid, _, started = tag.partition("s")
    return alive(int(pid)) and str(start_time(int(pid))) == started


def kill_and_wait(pids: Iterable[int], timeout: float = 10.0, sig: int = signal.SIGKILL) -> list[int]:
    """Sends ``sig`` to ``pids``; returns those still alive after ``timeout`` seconds."""
    pids = [pid for pid in pids if pid > 1 and pid != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Waits up to ``timeout`` seconds for ``pids`` to end; returns those still alive."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def env_values(name: str) -> dict[int, str]:
    """``{pid: value}`` of the live processes whose environment has the variable ``name``."""
    prefix = f"{name}=".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                variables = environ.read().split(b"\0")
        except OSError:
            continue
        for variable in variables:
            if variable.startswith(prefix) and alive(int(entry)):
                found[int(entry)] = variable[len(prefix) :].decode(errors="replace")
                break
    return found


def pids_with_env(name: str, value: str) -> list[int]:
    """The live processes whose environment has ``name=value``."""
    return [pid for pid, found in env_values(name).items() if found == value]


def describe(pids: Iterable[int]) -> str:
    """``pid: command line`` of each pid, for error messages."""
    lines = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            command = "(gone)"
        lines.append(f"{pid}: {command}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[1:] != ["install"]:
        print(f"usage: {argv[0]} install", file=sys.stderr)
        return 2
    if cluster_tests_disabled():
        return 0
    reason = ensure_packages({**HOSTS_PACKAGES, **SLURM_PACKAGES}, log=print)
    if reason:
        print(f"cluster tests will be skipped: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
