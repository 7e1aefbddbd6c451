"""Every snippet of docs/porting.md runs, each of the ways its ``<!-- run: ... -->`` line names.

``python``: a plain run; ``mp2``: with ``PARALLELIZER=multiprocessing:2``;
``mpi2``: ``mpiexec -n 2 python script.py``; ``pool2``: ``mpiexec -n 2
python -m parallelizer --pool script.py``. A snippet passes when it exits
with status 0 (each ends in asserts).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from processes import clean_environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE = os.path.join(ROOT, "docs", "porting.md")
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
_SNIPPET = re.compile(r"<!-- run: ([a-z0-9 ]+) -->\s*```python\n(.*?)```", re.S)
_MODES = {"python", "mp2", "mpi2", "pool2"}
_NEEDS = {"mpi4py": "mpi4py", "schwimmbad": "schwimmbad", "pymor": "pymor", "ipyparallel": "ipyparallel"}


def _snippets() -> list[tuple[str, str, str]]:
    with open(GUIDE, encoding="utf-8") as handle:
        text = handle.read()
    found = []
    for number, match in enumerate(_SNIPPET.finditer(text), 1):
        heading = [line for line in text[: match.start()].splitlines() if line.startswith("## ")][-1][3:]
        for mode in match.group(1).split():
            found.append((f"{number:02d}-{heading}-{mode}", mode, match.group(2)))
    return found


SNIPPETS = _snippets()


def test_the_guide_has_a_runnable_before_and_after_for_each_tool():
    headings = {name.split("-")[1] for name, _, _ in SNIPPETS}
    assert {"Raw mpi4py", "multiprocessing.Pool", "concurrent.futures", "schwimmbad `choose_pool`"} <= headings
    assert {"pymor `new_parallel_pool`", "IPython parallel `apply_async`"} <= headings
    assert "WaterTAP's `create_parallel_manager` pattern" in headings
    assert {mode for _, mode, _ in SNIPPETS} <= _MODES
    for heading in headings:
        assert len({code for name, _, code in SNIPPETS if name.split("-")[1] == heading}) >= 2, heading


@pytest.mark.parametrize(
    ("mode", "code"), [(mode, code) for _, mode, code in SNIPPETS], ids=[n for n, _, _ in SNIPPETS]
)
def test_snippet_runs(mode, code, tmp_path):
    for module, package in _NEEDS.items():
        if re.search(rf"^\s*(import|from) {module}\b", code, re.M):
            why = f"{package} is not installed: it is in the 'integrations' extra (make test installs it)"
            pytest.importorskip(module, reason=why)
    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    env = clean_environment(PYTHONPATH=ROOT)
    command = [sys.executable, str(script)]
    if mode == "mp2":
        env["PARALLELIZER"] = "multiprocessing:2"
    elif mode == "mpi2":
        command = [MPIEXEC, "-n", "2", *command]
    elif mode == "pool2":
        command = [MPIEXEC, "-n", "2", sys.executable, "-m", "parallelizer", "--pool", str(script)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
