"""A pytest plugin that enrolls the ``"parallelizer"`` backend in joblib's own tests.

``pytest --pyargs joblib.test.test_parallel -p parallelizer_joblib_plugin``
(this directory on ``PYTHONPATH``). joblib builds most of its backend lists
from its registry when ``test_parallel`` is imported, so registering ours
here, before collection, enrolls it; the two hard-coded lists (process and
parallel backends) are extended in place before pytest expands their
parametrizations. Which parallelizer the backend uses comes from
``PARALLELIZER`` (e.g. ``multiprocessing:3``).
"""

from __future__ import annotations

import os

import pytest

import parallelizer.joblib

_extended: set[str] = set()


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module
    if module.__name__ == "joblib.test.test_parallel" and module.__name__ not in _extended:
        _extended.add(module.__name__)
        for name in ("PROCESS_BACKENDS", "PARALLEL_BACKENDS"):
            backends = getattr(module, name)
            if parallelizer.joblib.NAME not in backends:
                backends.append(parallelizer.joblib.NAME)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselects the tests named (one per line) in ``PARALLELIZER_JOBLIB_DESELECT``."""
    names = set(filter(None, os.environ.get("PARALLELIZER_JOBLIB_DESELECT", "").splitlines()))
    if not names:
        return
    kept = [item for item in items if item.name not in names]
    config.hook.pytest_deselected(items=[item for item in items if item.name in names])
    items[:] = kept
