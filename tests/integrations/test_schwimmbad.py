"""schwimmbad's own pool tests, pointed at a parallelizer pool.

schwimmbad's wheel does not ship its tests; ``make test`` downloads its
sdist from PyPI into ``.venv/share/schwimmbad`` (``SCHWIMMBAD_TESTS`` says
where else to look). ``PoolTestBase`` (``tests/test_pools.py``) builds a pool
with ``PoolClass()`` and checks ``map``, ``map(callback=)`` and ``close``;
``test_mpi`` (``tests/test_mpi.py``, the script schwimmbad runs under
mpiexec) adds ``batched_map``. Both run here on our pool, inside a
``ClientServerRunner`` client, on serial, two local processes and mpiexec.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

import pytest

from parallelizer import ClientServerRunner

pytest.importorskip("schwimmbad", reason="schwimmbad is in the 'integrations' extra")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _schwimmbad_tests() -> str:
    where = os.environ.get("SCHWIMMBAD_TESTS")
    if where:
        return where
    found = sorted(glob.glob(os.path.join(ROOT, ".venv", "share", "schwimmbad", "schwimmbad-*", "tests")))
    if not found:
        pytest.skip("schwimmbad's sdist tests are not downloaded: 'make test' fetches them (make schwimmbad-tests)")
    return found[-1]


def _load(name: str):
    path = os.path.join(_schwimmbad_tests(), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"schwimmbad_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _pool_tests_client(pool_tests, test_mpi, parallelizer=None):
    class TestOurPool(pool_tests.PoolTestBase):
        def setup_method(self):
            self.PoolClass = parallelizer.pool

    ran = []
    for name in ("test_init_close", "test_map", "test_map_callback"):
        case = TestOurPool()
        case.setup_method()
        getattr(case, name)()
        ran.append(name)
    test_mpi.test_mpi(parallelizer.pool())
    ran.append("test_mpi")
    return ran


def test_schwimmbads_pool_tests_pass_on_our_pool(par):
    pool_tests, test_mpi = _load("test_pools"), _load("test_mpi")
    got = ClientServerRunner(_pool_tests_client, parallelizer=par).run(pool_tests, test_mpi)
    if par.on_main:
        assert got == ["test_init_close", "test_map", "test_map_callback", "test_mpi"]
    else:
        assert got is None
