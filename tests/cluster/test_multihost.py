"""MPI jobs whose ranks run on several hosts: virtual hosts on this machine
(network namespaces, each with its own hostname and address, see hosts.py),
hydra's mpiexec starting one proxy per host through an ssh stand-in.

Checked on 2 and 3 hosts with 2 ranks each: the ranks really run on different
hosts, data crosses the virtual network, and the whole MPI conformance suite
passes.
"""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
from system import REPO, SCRIPTS, job_env

PER_HOST = 2
JOB_TIMEOUT = 60
SUITE_TIMEOUT = 240
# UCX (the mpich wheel's network layer) sees that all the namespaces share one
# kernel and by default moves data between them through shared memory; TCP
# makes the messages between hosts go over the (virtual) network as on a cluster.
OVER_TCP = {"UCX_TLS": "tcp,self"}

pytestmark = pytest.mark.timeout(SUITE_TIMEOUT + 60)


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, stdout
    return json.loads(lines[0][len("RESULT ") :])


def _expected_hostnames(virtual_hosts) -> list[str]:
    return [host.name for host in virtual_hosts.hosts for _ in range(PER_HOST)]


def test_ranks_run_on_different_hosts(virtual_hosts):
    result = virtual_hosts.mpiexec(
        [sys.executable, os.path.join(SCRIPTS, "report_hosts.py"), "800000"],
        PER_HOST,
        timeout=JOB_TIMEOUT,
        env=job_env(),
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    report = _result(result.stdout)
    assert report["backend"] == "MPIParallelizer"
    assert report["nprocs"] == PER_HOST * len(virtual_hosts.hosts)
    assert report["hostnames"] == _expected_hostnames(virtual_hosts)
    assert len(set(report["hostnames"])) == len(virtual_hosts.hosts)
    assert report["hostnames"][0] != os.uname().nodename or os.uname().nodename == "node0"


def test_info_shows_the_hosts_of_the_job(virtual_hosts):
    result = virtual_hosts.mpiexec(
        [sys.executable, "-m", "parallelizer", "info"], PER_HOST, timeout=JOB_TIMEOUT, env=job_env(), cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("parallelizer ") == 1, result.stdout
    nranks, hosts = PER_HOST * len(virtual_hosts.hosts), virtual_hosts.hosts
    places = ", ".join(f"{host.name} (ranks {PER_HOST * i}-{PER_HOST * i + 1})" for i, host in enumerate(hosts))
    assert f"layout       {nranks} ranks on {len(hosts)} hosts: {places}" in result.stdout.splitlines(), result.stdout


def test_messages_cross_the_virtual_network(virtual_hosts):
    nbytes = 8_000_000
    before = [virtual_hosts.rx_bytes(i) for i in range(len(virtual_hosts.hosts))]
    result = virtual_hosts.mpiexec(
        [sys.executable, os.path.join(SCRIPTS, "report_hosts.py"), str(nbytes)],
        PER_HOST,
        timeout=JOB_TIMEOUT,
        env=job_env(),
        mpi_env=OVER_TCP,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    report = _result(result.stdout)
    n = nbytes // 8
    assert report["sums"] == [float(n * (n - 1) // 2)] * report["nprocs"]
    received = [virtual_hosts.rx_bytes(i) - before[i] for i in range(len(virtual_hosts.hosts))]
    assert all(got >= nbytes for got in received[1:]), f"bytes received per host: {received}"


def test_conformance_suite_across_hosts(virtual_hosts):
    nranks = PER_HOST * len(virtual_hosts.hosts)
    result = virtual_hosts.mpiexec(
        [sys.executable, "-m", "pytest", "--with-mpi", "-q", "-p", "no:cacheprovider", "tests/contract"],
        PER_HOST,
        timeout=SUITE_TIMEOUT,
        env=job_env(),
        mpi_env=OVER_TCP,
        cwd=REPO,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    summaries = re.findall(r"\b(\d+) passed\b", result.stdout)
    assert len(summaries) == nranks, output[-8000:]
    assert not re.search(r"\b\d+ (failed|errors?)\b", result.stdout), output[-8000:]
