"""Remote tracebacks of functions defined in the user's script (``__main__``),
which travel by value: they name the script and show its failing line."""

from __future__ import annotations

import linecache
import os
import socket
import subprocess
import sys
import traceback

import pytest
from processes import clean_environment, require_mpiexec

from parallelizer._core import pickling

HOST = socket.gethostname()

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "scripts", "failing_job.py")


def _script(mode, env=None, launcher=()):
    full_env = clean_environment(**(env or {}))
    return subprocess.run(
        [sys.executable, *launcher, SCRIPT, mode], capture_output=True, text=True, timeout=120, env=full_env
    )


def _assert_names_the_line(stderr, line, source):
    assert f'File "{SCRIPT}", line {line}' in stderr, stderr
    assert source in stderr, stderr
    assert "<dynamic-code>" not in stderr, stderr


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_workers_failure_in_run_shows_the_scripts_file_and_line(method):
    result = _script("run", {"PARALLELIZER": "multiprocessing:2", "PARALLELIZER_START_METHOD": method})
    assert result.returncode != 0
    assert f"RemoteError: rank 1 on {HOST} raised ValueError: negative density" in result.stderr
    _assert_names_the_line(result.stderr, 11, 'raise ValueError("negative density")  # a worker\'s line')


def _frames_above(stderr, headline):
    """The files of the traceback that ends in ``headline`` (the last one printed)."""
    text = stderr[: stderr.index(headline)]
    text = text[text.rindex("Traceback (most recent call last):") :]
    return [line.split('"')[1] for line in text.splitlines() if line.lstrip().startswith('File "')]


@pytest.mark.parametrize("mode", ["run", "map"])
def test_a_remote_error_shows_the_users_call_not_the_librarys_frames(mode):
    headline = "parallelizer.errors.RemoteError: rank 1 on"
    result = _script(mode, {"PARALLELIZER": "multiprocessing:2"})
    frames = _frames_above(result.stderr, headline)
    assert frames[0] == SCRIPT, result.stderr  # the user's own call comes first
    assert len([name for name in frames if "parallelizer" + os.sep in name]) <= 1, result.stderr
    debugging = _script(mode, {"PARALLELIZER": "multiprocessing:2", "PARALLELIZER_DEBUG": "1"})
    assert len([name for name in _frames_above(debugging.stderr, headline) if "parallelizer" + os.sep in name]) > 2


def test_a_workers_failing_map_item_shows_the_scripts_file_and_line():
    result = _script("map", {"PARALLELIZER": "multiprocessing:2"})
    assert result.returncode != 0
    _assert_names_the_line(result.stderr, 16, "return 1 // x  # fails on item 5")
    assert result.stderr.rstrip().endswith("(in map item 5: 0)")


@pytest.mark.parametrize("launcher", ["multiprocessing", "mpiexec"])
def test_a_servers_failing_task_shows_the_scripts_file_and_line(launcher):
    if launcher == "mpiexec":
        require_mpiexec()
        result = _script("pool", launcher=("-m", "parallelizer", "-n", "2"))
    else:
        result = _script("pool", {"PARALLELIZER": "multiprocessing:2"})
    assert result.returncode == 0, result.stderr
    assert f"rank 1 on {HOST} raised ZeroDivisionError" in result.stderr
    _assert_names_the_line(result.stderr, 16, "return 1 // x  # fails on item 5")


def test_code_without_a_file_takes_its_lines_along():
    # what a notebook cell is: code compiled under a name that is no file, its lines in linecache
    name = "<cell-17>"
    source = (
        "x = 1\n\ndef density(mass):\n    if mass < 0:\n        raise ValueError('negative mass')\n    return mass\n"
    )
    linecache.cache[name] = (len(source), None, source.splitlines(keepends=True), name)
    namespace = {"__name__": "__main__"}
    exec(compile(source, name, "exec"), namespace)
    try:
        pickled = pickling.dumps(namespace["density"], "func")
    finally:
        del linecache.cache[name]  # the receiver has never seen the cell
    assert b"<dynamic-code>" not in pickled and b"x = 1" not in pickled  # only the function's lines travel
    try:
        density = pickling.loads(pickled, "func")
        with pytest.raises(ValueError) as info:
            density(-1)
        text = "".join(traceback.format_exception(info.value))
    finally:
        linecache.cache.pop(name, None)
    assert f'File "{name}", line 5, in density' in text
    assert "raise ValueError('negative mass')" in text
