"""Several hosts on one machine: a network namespace per host, joined by a
bridge, each host with its own address and hostname.

Layout of ``VirtualHosts(3)`` (nothing is added to the machine's own network
namespace; ``T`` is a tag naming the creating process and instance,
``pzc<pid>s<start time>v<n>``)::

    namespace T-sw:  bridge br0 --+-------------------+-------------------+
                                  |                   |                   |
    namespace        T-h0: eth0 10.77.0.10   T-h1: eth0 10.77.0.11   T-h2: eth0 10.77.0.12
    hostname (UTS)   node0                   node1                   node2

``host.argv(cmd)`` runs a command on a host: it enters the host's network
namespace (``nsenter --net``, which keeps the machine's mounts, /sys/fs/cgroup
included: slurmd needs it, and ``ip netns exec`` would hide it behind a fresh
/sys), a new UTS namespace with the host's name (``unshare --uts`` +
``hostname``), so ``socket.gethostname()`` differs per host, and a new mount
namespace with a private /dev/shm and an /etc/hosts that names every host
(a file bound over it), so host names resolve as on a cluster.

MPI jobs: ``hosts.mpiexec_argv(...)`` starts Hydra's ``mpiexec`` on host 0
with ``-launcher ssh -launcher-exec <script>``, where the script (written by
``start``) stands in for ssh: ``script [-x] HOST COMMAND...`` runs COMMAND on
HOST as above. So hydra starts one proxy per host as on a real cluster.

``stop()`` kills every process in the namespaces (``ip netns pids``) and
deletes them (the veths and the bridge go with them). Namespaces left behind
by a process that died without ``stop()`` (pytest-timeout's exit, SIGKILL)
are deleted by the next ``start()``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import system  # noqa: E402

PREFIX = "pzc"
NETNS_DIR = "/var/run/netns"  # where `ip netns` keeps its namespaces
SUBNET = "10.77.0"  # private to our namespaces: the same subnet elsewhere never meets it
FIRST_HOST = 10  # host i has address 10.77.0.(10 + i)
IP_TIMEOUT = 20
# Every host gets its own /dev/shm (a tmpfs in a private mount namespace), as
# separate machines have: shared-memory segments a killed job leaves behind
# vanish with it, and never meet the next job or another user's.
PRIVATE_SHM = "mount -t tmpfs -o mode=1777 shm /dev/shm"


@dataclass(frozen=True)
class Host:
    """One virtual host: its hostname, network namespace and address."""

    name: str
    netns: str
    address: str
    etc_hosts: str = ""  # a file bound over /etc/hosts on the host: every host's name resolves

    def setup(self) -> str:
        """Shell commands that make a process (in new UTS and mount namespaces) this host's."""
        steps = [f"hostname {self.name}", PRIVATE_SHM]
        if self.etc_hosts:
            steps.append(f"mount --bind {shlex.quote(self.etc_hosts)} /etc/hosts")
        return " && ".join(steps)

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run on this host (network namespace + own hostname)."""
        return [
            "nsenter",
            f"--net={NETNS_DIR}/{self.netns}",
            "unshare",
            "--uts",
            "--mount",
            "sh",
            "-c",
            f'{self.setup()} && exec "$@"',
            "sh",
            *command,
        ]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: exit {result.returncode}: {result.stderr.strip()}")
    return result


def list_netns() -> list[str]:
    result = _ip("netns", "list", check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def netns_pids(netns: str) -> list[int]:
    result = _ip("netns", "pids", netns, check=False)
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def delete_netns(netns: str) -> list[int]:
    """Kills every process in ``netns`` and deletes it; returns pids that would not die."""
    left = system.kill_and_wait(netns_pids(netns))
    _ip("netns", "delete", netns, check=False)
    return left


_instances = itertools.count()


def unique_tag(kind: str) -> str:
    """``pzc<pid>s<start time><kind><n>``: a new name for something this process creates.

    With the pid and the process's start time it is stale once this very
    process is gone (``stale_tag``), even if the pid has been reused.
    """
    pid = os.getpid()
    return f"{PREFIX}{pid}s{system.start_time(pid)}{kind}{next(_instances)}"


def stale_tag(name: str) -> bool:
    """Is ``name`` (one made from a ``unique_tag``) owned by a process that is gone?"""
    match = re.match(rf"{PREFIX}(\d+s\d+)[a-z]\d+", name)
    return bool(match) and not system.owner_alive(match.group(1))


def sweep_stale() -> list[str]:
    """Cleans up after test processes that died without cleaning up (SIGKILL, pytest-timeout's exit).

    Kills the processes marked with a stale tag (``system.MARKER`` in their
    environment: Slurm daemons and jobs), deletes the namespaces and
    temporary directories named with one. Returns the namespaces.
    """
    system.kill_and_wait([pid for pid, tag in system.env_values(system.MARKER).items() if stale_tag(tag)])
    stale = []
    for netns in list_netns():
        if stale_tag(netns):
            delete_netns(netns)
            stale.append(netns)
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        if stale_tag(name):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
    return stale


@functools.cache
def private_shm_refused() -> str | None:
    """Why a private /dev/shm (unshare --mount + tmpfs) cannot be had here, or ``None``."""
    try:
        result = subprocess.run(
            ["unshare", "--mount", "sh", "-c", PRIVATE_SHM],
            capture_output=True,
            text=True,
            timeout=IP_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if result.returncode == 0 else (result.stderr.strip() or f"exit {result.returncode}")


def unavailable_reason() -> str | None:
    """Why virtual hosts cannot be made here (to skip with), or ``None``."""
    reason = system.cluster_tests_disabled()
    if reason:
        return reason
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if not system.is_root():
        return "network namespaces need root (ip netns add), the machine's, not a user namespace's"
    reason = system.ensure_packages(system.HOSTS_PACKAGES)
    if reason:
        return reason
    probe = f"{unique_tag('p')}-probe"
    try:
        added = _ip("netns", "add", probe, check=False)
        if added.returncode != 0:
            return f"ip netns add refused: {added.stderr.strip()}"
        host = Host("probe", probe, "")
        try:
            result = subprocess.run(
                host.argv(["hostname"]), capture_output=True, text=True, timeout=IP_TIMEOUT, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            return "nsenter/unshare did not return"
        if result.returncode != 0 or result.stdout.strip() != "probe":
            return f"nsenter --net + unshare --uts --mount refused: {result.stderr.strip() or result.stdout.strip()}"
    finally:
        delete_netns(probe)
    return None


class VirtualHosts:
    """``n`` virtual hosts (see the module's docstring). A context manager."""

    def __init__(self, n: int, names: Sequence[str] | None = None):
        self.tag = unique_tag("v")
        self.names = list(names) if names is not None else [f"node{i}" for i in range(n)]
        if len(self.names) != n:
            raise ValueError("names: one per host")
        self.hosts = [Host(name, f"{self.tag}-h{i}", f"{SUBNET}.{FIRST_HOST + i}") for i, name in enumerate(self.names)]
        self.switch = f"{self.tag}-sw"
        self.workdir: str | None = None
        self.launcher: str | None = None
        self.start_seconds = 0.0

    # -- life cycle --------------------------------------------------------

    def start(self) -> VirtualHosts:
        started = time.monotonic()
        sweep_stale()
        for netns in [self.switch, *(host.netns for host in self.hosts)]:
            if netns in list_netns():  # left over by this very process (a failed earlier start)
                delete_netns(netns)
        try:
            self._create()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def _create(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix=f"{self.tag}-")
        os.chmod(self.workdir, 0o755)
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "set", "lo", "up")
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for i, host in enumerate(self.hosts):
            _ip("netns", "add", host.netns)
            # both ends are created inside the namespaces: nothing appears on the machine's own network
            veth = ["eth0", "type", "veth", "peer", "name", f"port{i}", "netns", self.switch]
            _ip("-n", host.netns, "link", "add", *veth)
            _ip("-n", self.switch, "link", "set", f"port{i}", "master", "br0")
            _ip("-n", self.switch, "link", "set", f"port{i}", "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
        etc_hosts = os.path.join(self.workdir, "hosts")
        with open(etc_hosts, "w") as hosts_file:
            hosts_file.write("127.0.0.1 localhost\n")
            hosts_file.writelines(f"{host.address} {host.name}\n" for host in self.hosts)
        self.hosts = [dataclasses.replace(host, etc_hosts=etc_hosts) for host in self.hosts]
        self.launcher = os.path.join(self.workdir, "ssh-to-netns")
        with open(self.launcher, "w") as script:
            script.write(self._launcher_script())
        os.chmod(self.launcher, 0o755)

    def _launcher_script(self) -> str:
        cases = "\n".join(
            f"  {host.address}|{host.name}) netns={host.netns}; setup={shlex.quote(host.setup())} ;;"
            for host in self.hosts
        )
        return f"""#!/bin/sh
# Stands in for ssh for hydra's `-launcher ssh -launcher-exec`: [options] HOST COMMAND...
# Like ssh, joins COMMAND's words and hands them to a shell, on HOST: in its
# network namespace, with its hostname, /dev/shm and /etc/hosts.
while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done
host=$1; shift
case "$host" in
{cases}
  *) echo "ssh-to-netns: unknown host $host" >&2; exit 255 ;;
esac
exec nsenter --net={NETNS_DIR}/$netns unshare --uts --mount sh -c "$setup && exec $*"
"""

    def processes(self) -> list[int]:
        """Pids of every process in the namespaces."""
        return [pid for netns in [self.switch, *(h.netns for h in self.hosts)] for pid in netns_pids(netns)]

    def kill_processes(self) -> list[int]:
        """Kills every process in the namespaces; returns those that would not die."""
        return system.kill_and_wait(self.processes())

    def stop(self) -> list[str]:
        """Kills everything in the namespaces and deletes them; returns what is left (should be empty)."""
        ours = [self.switch, *(host.netns for host in self.hosts)]
        for netns in ours:
            if netns in list_netns():
                delete_netns(netns)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        left = [netns for netns in list_netns() if netns in ours]
        return left

    def __enter__(self) -> VirtualHosts:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- running things ------------------------------------------------------

    def run(self, host: int, command: Sequence[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
        """Runs ``command`` on host ``host``; on timeout everything in the namespaces is killed."""
        return system.run(self.hosts[host].argv(command), timeout=timeout, on_timeout=self.kill_processes, **kwargs)

    def mpiexec_argv(
        self, mpiexec: str, command: Sequence[str], per_host: int = 2, *, env: dict[str, str] | None = None
    ) -> list[str]:
        """``mpiexec`` started on host 0, with ``per_host`` ranks on every host (ranks 0.. on host 0)."""
        assert self.launcher is not None, "start() first"
        genv = [arg for name, value in (env or {}).items() for arg in ("-genv", name, value)]
        return self.hosts[0].argv(
            [
                mpiexec,
                "-launcher",
                "ssh",
                "-launcher-exec",
                self.launcher,
                "-hosts",
                ",".join(host.name for host in self.hosts),
                "-ppn",
                str(per_host),
                "-n",
                str(per_host * len(self.hosts)),
                *genv,
                *command,
            ]
        )

    def mpiexec(
        self,
        command: Sequence[str],
        per_host: int = 2,
        *,
        timeout: float,
        mpi_env: dict[str, str] | None = None,
        mpiexec: str | None = None,
        **kwargs,
    ) -> subprocess.CompletedProcess[str]:
        """Runs an MPI job over the hosts (``per_host`` ranks each), never longer than ``timeout``."""
        argv = self.mpiexec_argv(mpiexec or find_mpiexec(), command, per_host, env=mpi_env)
        return system.run(argv, timeout=timeout, on_timeout=self.kill_processes, **kwargs)

    def rx_bytes(self, host: int) -> int:
        """Bytes received so far by the host's eth0 (to see that traffic crossed the virtual network)."""
        result = _ip("-n", self.hosts[host].netns, "-s", "-j", "link", "show", "eth0")
        return int(json.loads(result.stdout)[0]["stats64"]["rx"]["bytes"])

    def describe(self) -> str:
        return ", ".join(f"{h.name}={h.address} ({h.netns})" for h in self.hosts)


def find_mpiexec() -> str:
    """The mpiexec next to this Python (the `mpich` wheel's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("mpiexec")
    if found is None:
        raise FileNotFoundError("no mpiexec: install the mpi extra (pip install -e '.[mpi]')")
    return found


def _main(argv: list[str]) -> int:
    """``python hosts.py N [per_host] -- command...``: runs an MPI job over N fresh hosts (for trying things)."""
    n = int(argv[1])
    split = argv.index("--")
    per_host = int(argv[2]) if split > 2 else 2
    with VirtualHosts(n) as hosts:
        print(f"hosts: {hosts.describe()} (made in {hosts.start_seconds:.2f} s)", flush=True)
        result = hosts.mpiexec(argv[split + 1 :], per_host, timeout=600)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.returncode


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(_main(sys.argv))
