"""Test configuration: which backends the conformance suite runs on.

The suite in ``tests/contract`` states the contract once. Its tests take the
fixture ``par``, parametrized here with the backends of this run:

* default: ``serial``, ``mp2`` and ``mp3`` (multiprocessing with 2 and 3
  processes), ``mp2fork`` (fork start method), ``mp3nack`` and ``mp2stream``
  (large buffers streamed through sockets instead of pulled);
* under ``mpiexec ... pytest --with-mpi``: ``mpi`` (the ranks of COMM_WORLD);
* ``tests/integrations`` (real scientific libraries): ``serial`` and ``mp2``;
* ``--backends serial,mp2`` picks explicitly.
"""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # so helper modules import the same way on every process
    sys.path.insert(0, HERE)

DEFAULT_BACKENDS = ("serial", "mp2", "mp3", "mp2fork", "mp3nack", "mp2stream")
# tests/integrations runs real libraries (slower): serial and two local processes (and mpi under mpiexec)
INTEGRATION_BACKENDS = ("serial", "mp2")
INTEGRATIONS = os.path.join(HERE, "integrations")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=None,
        help="comma-separated backends for the conformance suite: serial, mp<N>, mpi",
    )


def selected_backends(config: pytest.Config, path: str = "") -> list[str]:
    chosen = config.getoption("--backends")
    if chosen:
        return [name.strip() for name in chosen.split(",") if name.strip()]
    if config.getoption("--with-mpi", default=False):
        return ["mpi"]
    if path.startswith(INTEGRATIONS):
        return list(INTEGRATION_BACKENDS)
    return list(DEFAULT_BACKENDS)


def pytest_ignore_collect(collection_path, config: pytest.Config) -> bool | None:
    """Under mpiexec only the conformance suite, tests/integrations and tests/mpi run; otherwise tests/mpi does not."""
    under_mpi = bool(config.getoption("--with-mpi", default=False))
    path = str(collection_path)
    if not under_mpi:
        return os.path.join(HERE, "mpi") in path or None
    if path == HERE or any(path.startswith(os.path.join(HERE, part)) for part in ("contract", "mpi", "integrations")):
        return None
    return True


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "par" in metafunc.fixturenames:
        where = str(metafunc.definition.path)
        metafunc.parametrize("par", selected_backends(metafunc.config, where), indirect=True, scope="session")


@pytest.fixture(scope="session")
def par(request: pytest.FixtureRequest):
    from backends import started

    with started(request.param) as parallelizer:
        yield parallelizer
