"""CPython's own executor tests, run against ``par.executor()``.

``PARALLELIZER_CF_BACKEND`` names the parallelizer (``serial``,
``multiprocessing:2``, ``multiprocessing:3``, or ``pool`` for the
parallelizer of ``python -m parallelizer --pool``). The generic mixins of
``test.test_concurrent_futures`` (3.11) are combined with one mixin of ours
that builds the executor, the way a third-party executor enrolls; the tests
that cannot apply to one are replaced by skips that say why.

Run: ``PYTHONPATH=tests/stdlib python -m unittest tests/stdlib/cf_against.py``.
"""

from __future__ import annotations

import os
import unittest

import test.test_concurrent_futures as cf

from parallelizer import Parallelizer

BACKEND = os.environ.get("PARALLELIZER_CF_BACKEND", "serial")

GENERIC = [
    cf.ExecutorTest,
    cf.WaitTests,
    cf.AsCompletedTests,
    cf.InitializerMixin,
    cf.FailingInitializerMixin,
    cf.ExecutorShutdownTest,
]

DO_NOT_APPLY = {
    "test_interpreter_shutdown": "starts 'python -I -c from concurrent.futures import <executor class>': "
    "only the standard library's own executors can be imported that way",
    "test_submit_after_interpreter_shutdown": "the same: imports the executor class from concurrent.futures",
    "test_hang_gh83386": "the same: imports the executor class from concurrent.futures",
}


def make_executor(max_workers=None, **kwargs):
    """What the tests call ``executor_type``: a fresh group's executor (or the --pool group's)."""
    par = Parallelizer.lookup() if BACKEND == "pool" else Parallelizer.lookup(BACKEND)
    return par.executor(max_workers=max_workers, **kwargs)


class ParallelizerMixin(cf.ExecutorMixin):
    executor_type = staticmethod(make_executor)
    worker_count = 5


def _skip(reason):
    def skipped(self):
        self.skipTest(reason)

    return skipped


def _build(namespace):
    for mixin in GENERIC:
        name = "Parallelizer" + mixin.__name__.replace("Mixin", "")
        body = {"__module__": __name__}
        body.update({method: _skip(reason) for method, reason in DO_NOT_APPLY.items() if hasattr(mixin, method)})
        namespace[name] = type(name, (mixin, ParallelizerMixin, cf.BaseTestCase), body)


_build(globals())


def load_tests(loader, tests, pattern):
    suite = unittest.TestSuite()
    for name in sorted(globals()):
        if name.startswith("Parallelizer") and name != "ParallelizerMixin":
            suite.addTests(loader.loadTestsFromTestCase(globals()[name]))
    return suite


if __name__ == "__main__":
    unittest.main(module=__name__, verbosity=2)
