"""A stand-in for the standard library's ``test`` package, for CPython's executor tests.

Python 3.11 builds installed from source may lack ``test.test_concurrent_futures``
(Debian's ``libpython3.11-testsuite`` package has it). This package goes first
on ``PYTHONPATH``: it answers ``import test`` with the interpreter's own test
package (``test.support`` and the rest) and, after it, the directory named by
``PARALLELIZER_CF_TESTS`` (default ``/usr/lib/python3.11/test``). Worker
processes and MPI ranks inherit ``PYTHONPATH``, so they import the tests'
helper functions by the same names.
"""

import os
import sysconfig

__path__.append(os.path.join(sysconfig.get_paths()["stdlib"], "test"))
__path__.append(os.environ.get("PARALLELIZER_CF_TESTS", "/usr/lib/python3.11/test"))
