"""Fixtures of the cluster tests: virtual hosts (network namespaces) and a
private Slurm cluster. They skip, saying why, where the machine does not allow
them (not root, no network namespaces, packages not installable); set
``PARALLELIZER_CLUSTER_TESTS=0`` to skip them on purpose.

Every test here launches its jobs itself (mpiexec, srun, sbatch) as
subprocesses with timeouts; they run in the ordinary pytest run, not under
``--with-mpi``.
"""

from __future__ import annotations

import functools
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import hosts  # noqa: E402
import slurm  # noqa: E402
import system  # noqa: E402


@functools.cache
def _hosts_unavailable() -> str | None:
    return hosts.unavailable_reason()


@functools.cache
def _slurm_unavailable(virtual: bool) -> str | None:
    return slurm.unavailable_reason(virtual=virtual)


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"{n}hosts")
def virtual_hosts(request: pytest.FixtureRequest):
    """``n`` virtual hosts node0.. (2, then 3); checks on the way out that nothing is left."""
    reason = _hosts_unavailable()
    if reason:
        pytest.skip(f"virtual hosts unavailable: {reason}")
    vh = hosts.VirtualHosts(request.param)
    vh.start()
    try:
        yield vh
        stray = system.wait_gone(vh.processes(), timeout=5)  # every job has ended: nothing may run there
        stray_text = system.describe(stray)
    finally:
        left_netns = vh.stop()
    assert not stray, "processes outlived their jobs:\n" + stray_text
    assert not left_netns, f"namespaces left behind: {left_netns}"


def _slurm_cluster(**options):
    reason = _slurm_unavailable(options.get("virtual", False))
    if reason:
        pytest.skip(f"Slurm test cluster unavailable: {reason}")
    cluster = slurm.SlurmCluster(**options)
    cluster.start()
    try:
        yield cluster
        left_in_queue = cluster.wait_jobs_gone(timeout=0)
        if left_in_queue:  # a test failed while its job ran: cancel it, as a user would
            cluster.kill_jobs()
        stray = system.wait_gone(cluster.job_processes(), timeout=10)  # every job has ended
        stray_text = system.describe(stray)
    finally:
        problems = cluster.stop()
    assert not stray, "processes outlived their Slurm jobs:\n" + stray_text
    assert not problems, "\n".join(problems)
    left = cluster.processes()
    assert not left, "left after the cluster stopped:\n" + system.describe(left)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A one-node Slurm cluster (node0, 8 CPUs) on this machine; stopped, and checked empty, on the way out."""
    yield from _slurm_cluster(nodes=1, cpus=8)


@pytest.fixture(scope="module")
def slurm_two_nodes():
    """Two Slurm nodes (4 CPUs each) on virtual hosts node0 and node1; the client commands run on host login."""
    yield from _slurm_cluster(nodes=2, cpus=4, virtual=True)
