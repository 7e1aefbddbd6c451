"""A private Slurm cluster on this machine, for tests (Debian's Slurm 22.05 + munge).

``SlurmCluster()`` runs one compute node, ``node0``, in the machine's own
network namespace. ``SlurmCluster(nodes=2, virtual=True)`` runs each
``slurmd`` on its own virtual host (hosts.py: network namespace, address and
hostname): a ``login`` host runs ``slurmctld`` and the client commands
(srun, sbatch, ...), hosts ``node0``, ``node1``, ... run one ``slurmd`` each,
so ``srun -N 2`` really spans hosts.

Everything lives in one temporary directory: ``slurm.conf``, the munge key
and socket, the state, spool, pid and log files. Each slurmd (and so every
job step and task) has its own /dev/shm, a tmpfs in a private mount
namespace (where the machine allows it): a killed MPI job's shared-memory
segments go with the node. The daemons (``munged -F``, ``slurmctld -D``,
``slurmd -D``) are our child processes; ``stop()`` ends them
and every process of the cluster's jobs, also after a failure: all of them
carry ``PZ_CLUSTER_TAG=<tag>`` in their environment (the daemons get it
from us, job steps and tasks from slurmd/srun), which is how they are found.
A cluster left behind by a test process that died without ``stop()`` is
cleaned up by the next ``start()``.

Missing packages (slurmctld slurmd slurm-client munge) are installed with
apt-get, quietly, when running as root.

Try it by hand::

    python tests/cluster/slurm.py [--nodes 2] -- srun -n 3 hostname
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import hosts as hosts_module  # noqa: E402
import system  # noqa: E402

MARKER = system.MARKER
START_TIMEOUT = 30  # seconds until every node is idle
STOP_TIMEOUT = 10  # seconds for the daemons to end after SIGTERM
COMMAND_TIMEOUT = 30  # default for short client commands (sinfo, squeue, scancel)

ENDED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}

SLURM_CONF = """\
# A private test cluster (tests/cluster/slurm.py). All paths are in {dir}.
ClusterName={cluster_name}
SlurmctldHost={ctl_host}({ctl_addr})
SlurmctldPort={ctl_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge/munge.socket
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool/%n
# each node's own temporary directory (PMIx puts per-node files there)
TmpFS={dir}/tmp/%n
SlurmctldPidFile={dir}/run/slurmctld.pid
SlurmdPidFile={dir}/run/slurmd-%n.pid
SlurmctldLogFile={dir}/log/slurmctld.log
SlurmdLogFile={dir}/log/slurmd-%n.log
# no cgroups, no accounting, no mail: what a container or a CI machine can do
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# tasks find MPI through PMI2 (what the mpich wheel speaks) without --mpi=pmi2
MpiDefault=pmi2
# more CPUs than the machine has: several tasks per core
SlurmdParameters=config_overrides
ReturnToService=2
# Job ids of each new cluster start elsewhere: MPICH names its shared-memory
# segments after the PMI job.step id, and a killed job's segment in /dev/shm
# makes a later job with the same id fail in MPI_Init.
FirstJobId={first_job_id}
KillWait=5
InactiveLimit=0
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
{nodes}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """A private Slurm cluster; ``with SlurmCluster() as cluster: cluster.run([...])``."""

    def __init__(self, nodes: int = 1, cpus: int = 8, virtual: bool = False):
        if nodes > 1 and not virtual:
            raise ValueError("several nodes need virtual hosts (virtual=True): one slurmd per network namespace")
        self.nnodes = nodes
        self.cpus = cpus
        self.virtual = virtual
        self.tag = hosts_module.unique_tag("c")
        self.node_names = [f"node{i}" for i in range(nodes)]
        self.dir: str | None = None
        self.conf: str | None = None
        self.hosts: hosts_module.VirtualHosts | None = None
        self.daemons: dict[str, subprocess.Popen] = {}
        self.timings: dict[str, float] = {}

    # -- life cycle --------------------------------------------------------

    def start(self) -> SlurmCluster:
        started = time.monotonic()
        hosts_module.sweep_stale()  # clusters of test processes that died without stop()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - started
        return self

    def _start(self) -> None:
        self.dir = tempfile.mkdtemp(prefix=f"{self.tag}-slurm-")
        os.chmod(self.dir, 0o755)  # munged wants every directory above its socket searchable by all
        for sub in ("state", "spool", "tmp", "run", "log", "munge", "key"):
            os.mkdir(os.path.join(self.dir, sub))
        for node in self.node_names:
            os.mkdir(os.path.join(self.dir, "spool", node))
            os.mkdir(os.path.join(self.dir, "tmp", node))
        os.chmod(os.path.join(self.dir, "key"), 0o700)
        if self.virtual:
            self.hosts = hosts_module.VirtualHosts(self.nnodes + 1, names=["login", *self.node_names]).start()
        self.conf = os.path.join(self.dir, "slurm.conf")
        with open(self.conf, "w") as conf:
            conf.write(self._config())

        key = os.path.join(self.dir, "key", "munge.key")
        with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400), "wb") as keyfile:
            keyfile.write(os.urandom(1024))
        socket_path = os.path.join(self.dir, "munge", "munge.socket")
        self._daemon(
            "munged",
            [
                system.which("munged") or "munged",
                "-F",
                f"--socket={socket_path}",
                f"--key-file={key}",
                f"--pid-file={self.dir}/run/munged.pid",
                f"--log-file={self.dir}/log/munged.log",
                f"--seed-file={self.dir}/key/munged.seed",
            ],
        )
        self._wait_for(lambda: os.path.exists(socket_path), "munged's socket")
        self._daemon("slurmctld", self._on_login([system.which("slurmctld") or "slurmctld", "-D", "-f", self.conf]))
        for i, node in enumerate(self.node_names):
            argv = [system.which("slurmd") or "slurmd", "-D", "-f", self.conf, "-N", node]
            if self.hosts is not None:
                argv = self.hosts.hosts[i + 1].argv(argv)
            elif hosts_module.private_shm_refused() is None:  # a private /dev/shm for the node's jobs
                argv = ["unshare", "--mount", "sh", "-c", f'{hosts_module.PRIVATE_SHM} && exec "$@"', "slurmd", *argv]
            self._daemon(f"slurmd-{node}", argv)
        self._wait_for(self._all_idle, "every node idle in sinfo")

    def _config(self) -> str:
        assert self.dir is not None
        if self.hosts is not None:
            ctl_host, ctl_addr = self.hosts.hosts[0].name, self.hosts.hosts[0].address
            ctl_port, d_port = 6817, 6818  # each host has its own ports
            addresses = [host.address for host in self.hosts.hosts[1:]]
        else:
            ctl_host, ctl_addr = socket.gethostname().split(".")[0], "127.0.0.1"
            ctl_port, d_port = _free_ports(2)
            addresses = ["127.0.0.1"]
        nodes = "\n".join(
            f"NodeName={name} NodeAddr={addr} CPUs={self.cpus} RealMemory=1000 State=UNKNOWN"
            for name, addr in zip(self.node_names, addresses, strict=True)
        )
        return SLURM_CONF.format(
            dir=self.dir,
            cluster_name=f"pz{os.getpid()}",
            ctl_host=ctl_host,
            ctl_addr=ctl_addr,
            ctl_port=ctl_port,
            d_port=d_port,
            first_job_id=random.randint(100_000, 60_000_000),
            nodes=nodes,
        )

    def _daemon(self, name: str, argv: list[str]) -> None:
        assert self.dir is not None
        with open(os.path.join(self.dir, "log", f"{name}.out"), "w") as out:
            self.daemons[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
            )

    def _wait_for(self, condition, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not condition():
            dead = {name: proc.returncode for name, proc in self.daemons.items() if proc.poll() is not None}
            if dead or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Slurm test cluster: no {what} after {START_TIMEOUT} s; daemons that exited: {dead}\n"
                    + self.logs()
                )
            time.sleep(0.1)

    def _all_idle(self) -> bool:
        result = self._query(["sinfo", "-h", "-N", "-o", "%N %t"])
        states = dict(line.split() for line in result.stdout.splitlines() if line.strip())
        return result.returncode == 0 and all(states.get(node) == "idle" for node in self.node_names)

    def stop(self) -> list[str]:
        """Stops the daemons, kills every process of the cluster, deletes its files.

        Returns what could not be cleaned up (empty when all is gone).
        """
        problems = []
        # the slurmds first, munged last
        order = [name for name in self.daemons if name.startswith("slurmd-")] + ["slurmctld", "munged"]
        for name in [name for name in order if name in self.daemons]:
            proc = self.daemons[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=STOP_TIMEOUT)
                    problems.append(f"{name} ignored SIGTERM for {STOP_TIMEOUT} s (killed)")
        left = system.kill_and_wait(self.processes())
        if left:
            problems.append("processes that would not die:\n" + system.describe(left))
        if self.hosts is not None:
            left_netns = self.hosts.stop()
            if left_netns:
                problems.append(f"namespaces left: {left_netns}")
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return problems

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- using it -------------------------------------------------------------

    def env(self, base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
        """``base`` (default: ours) with this cluster's ``SLURM_CONF`` and marker."""
        env = dict(os.environ if base is None else base)
        env.update({"SLURM_CONF": self.conf or "", MARKER: self.tag}, **extra)
        return env

    def _on_login(self, argv: Sequence[str]) -> list[str]:
        return self.hosts.hosts[0].argv(argv) if self.hosts is not None else list(argv)

    def run(
        self, argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None, **kwargs
    ) -> subprocess.CompletedProcess[str]:
        """Runs a client command (srun, sbatch, squeue, ...) against this cluster.

        ``env`` is the base environment (our own by default); on timeout every
        job of the cluster is killed and ``system.CommandTimeout`` raised.
        """
        return system.run(self._on_login(argv), timeout=timeout, env=self.env(env), on_timeout=self.kill_jobs, **kwargs)

    def _query(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """A short client command (squeue, sinfo, scontrol, scancel): nothing to clean up after it."""
        return system.run(self._on_login(argv), timeout=COMMAND_TIMEOUT, env=self.env())

    def processes(self) -> list[int]:
        """Every live process of this cluster: daemons, job steps, tasks."""
        return system.pids_with_env(MARKER, self.tag)

    def job_processes(self) -> list[int]:
        """The processes of the cluster's jobs (job steps, batch scripts, tasks).

        Not the daemons, not their helpers (slurmctld's slurmscriptd), not the
        client commands this process runs (srun, sbatch, ...: our children).
        """
        daemons = {proc.pid for proc in self.daemons.values()}
        return [
            pid
            for pid in self.processes()
            if pid not in daemons and _parent(pid) not in daemons and _parent(pid) != os.getpid()
        ]

    def kill_jobs(self) -> None:
        """Cancels every job in the queue, then kills whatever of them still runs."""
        with contextlib.suppress(system.CommandTimeout):
            queued = self._query(["squeue", "-h", "-o", "%i"]).stdout.split()
            if queued:
                self._query(["scancel", *queued])
                self.wait_jobs_gone(timeout=STOP_TIMEOUT + 5)  # KillWait=5: SIGTERM, then SIGKILL
        system.kill_and_wait(self.job_processes())

    def wait_jobs_gone(self, timeout: float = 30.0) -> str:
        """Waits until squeue lists no job; returns what squeue last said."""
        deadline = time.monotonic() + timeout
        while True:
            result = self._query(["squeue", "-h", "-o", "%i %T"])
            if result.returncode == 0 and not result.stdout.strip():
                return ""
            if time.monotonic() > deadline:
                return result.stdout + result.stderr
            time.sleep(0.2)

    def submit(self, argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None) -> str:
        """``sbatch --parsable ARGV...``; returns the job id."""
        result = self.run(["sbatch", "--parsable", *argv], timeout=COMMAND_TIMEOUT, env=env, cwd=cwd, check=True)
        return result.stdout.strip().split(";")[0]

    def wait_job(self, job_id: str, timeout: float) -> dict[str, str]:
        """Waits until the job has ended; returns its ``job_info`` (JobState, ExitCode, ...).

        Polls every 0.2 s (``sbatch --wait`` polls far less often). A job still
        running after ``timeout`` seconds is cancelled, its processes killed,
        and ``system.CommandTimeout`` raised.
        """
        deadline = time.monotonic() + timeout
        while True:
            info = self.job_info(job_id)
            if info.get("JobState") in ENDED:
                return info
            if time.monotonic() > deadline:
                self.kill_jobs()
                raise system.CommandTimeout(f"job {job_id} still {info.get('JobState')} after {timeout} s (cancelled)")
            time.sleep(0.2)

    def job_info(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, ExitCode, ...)."""
        result = self._query(["scontrol", "show", "job", "-o", job_id])
        return dict(re.findall(r"(\w+)=(\S*)", result.stdout))

    def logs(self, lines: int = 15) -> str:
        """The last lines of every log file, for error messages."""
        if not self.dir:
            return ""
        text = []
        logdir = os.path.join(self.dir, "log")
        for name in sorted(os.listdir(logdir)) if os.path.isdir(logdir) else []:
            with open(os.path.join(logdir, name), errors="replace") as log:
                tail = log.read().splitlines()[-lines:]
            text.append(f"--- {name} ---\n" + "\n".join(tail))
        return "\n".join(text)


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def unavailable_reason(virtual: bool = False) -> str | None:
    """Why a test cluster cannot run here (to skip with), or ``None``."""
    reason = system.cluster_tests_disabled()
    if reason:
        return reason
    if sys.platform != "linux":
        return "the Slurm test cluster is Linux only"
    if not system.is_root():
        return "the Slurm test cluster runs its daemons as root (the machine's, not a user namespace's)"
    if virtual:
        reason = hosts_module.unavailable_reason()
        if reason:
            return reason
    return system.ensure_packages(system.SLURM_PACKAGES)


def _main(argv: list[str]) -> int:
    nodes = 1
    if argv[1:2] == ["--nodes"]:
        nodes = int(argv[2])
    command = argv[argv.index("--") + 1 :]
    reason = unavailable_reason(virtual=nodes > 1)
    if reason:
        print(f"cannot start a test cluster: {reason}", file=sys.stderr)
        return 1
    cluster = SlurmCluster(nodes=nodes, cpus=4 if nodes > 1 else 8, virtual=nodes > 1)
    try:
        cluster.start()
        print(f"cluster up in {cluster.timings['start']:.2f} s, SLURM_CONF={cluster.conf}", flush=True)
        result = cluster.run(command, timeout=600)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.returncode
    finally:
        problems = cluster.stop()
        if problems:
            print("\n".join(problems), file=sys.stderr)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(_main(sys.argv))
