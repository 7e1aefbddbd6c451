"""MultiprocessingParallelizer and the operating system: signals to main,
Ctrl-C, what is left behind, sockets, scripts without a main guard."""

from __future__ import annotations

import ast
import os
import select
import signal
import subprocess
import sys

import numpy as np
import pytest
from processes import other_libraries_prefixes, shm_files, shm_left_behind, wait_gone

from parallelizer import MultiprocessingParallelizer, Parallelizer

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "scripts")
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")


def _start_holder(nprocs=3):
    proc = subprocess.Popen(
        [sys.executable, os.path.join(SCRIPTS, "hold_workers.py"), str(nprocs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a terminal job
    )
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    assert ready, "the script did not start its workers in time"
    pids = [int(pid) for pid in proc.stdout.readline().split()]
    assert len(pids) == nprocs and pids[0] == proc.pid
    return proc, pids[1:]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_no_worker_outlives_a_signalled_main(signum):
    before = shm_files()
    proc, workers = _start_holder()
    os.kill(proc.pid, signum)
    proc.wait(timeout=30)
    stderr = proc.stderr.read()
    assert proc.returncode != 0
    assert wait_gone(workers) == [], f"workers outlived main after {signum.name}"
    # MPI's segments and joblib's folders are not this backend's (it uses neither): a test running
    # alongside may have made one at that moment
    assert shm_left_behind(before, ignore=other_libraries_prefixes()) == set(), "a shared-memory segment was left"
    if signum == signal.SIGINT:
        assert "KeyboardInterrupt" in stderr


def test_ctrl_c_in_a_terminal_interrupts_main_cleanly():
    before = shm_files()
    proc, workers = _start_holder()
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
    proc.wait(timeout=30)
    stderr = proc.stderr.read()
    assert wait_gone(workers) == []
    assert stderr.count("Traceback") == 1 and "KeyboardInterrupt" in stderr  # main's only: workers ignore SIGINT
    assert shm_left_behind(before, ignore=other_libraries_prefixes()) == set()


def test_functions_from_main_without_guard():
    result = subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, "main_functions.py")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    squares, norms, blocks = ast.literal_eval(result.stdout.strip())
    assert squares == [3 * x + 10 for x in range(8)]
    assert norms == [25, 26, 27]
    assert blocks == pytest.approx(np.sqrt(np.arange(9.0)).tolist())


def _socket_inodes(parallelizer):
    inodes = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.append(int(target[8:-1]))
    return parallelizer.gather(inodes)


def _listening_inodes():
    listening = set()
    with open("/proc/net/unix") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON
                listening.add(int(fields[6]))
    for name in ("tcp", "tcp6", "udp", "udp6"):
        path = f"/proc/net/{name}"
        if os.path.exists(path):
            with open(path) as table:
                next(table)
                for line in table:
                    fields = line.split()
                    if name.startswith("udp") or fields[3] == "0A":
                        listening.add(int(fields[9]))
    return listening


def test_no_listening_sockets():
    with MultiprocessingParallelizer(nprocs=3) as par:
        per_process = par.run(_socket_inodes)
        listening = _listening_inodes()
    ours = {inode for inodes in per_process for inode in inodes}
    assert ours, "expected the group's socketpairs"
    assert not ours & listening


def _large_first(parallelizer):
    data = np.arange(5_000_000.0) if parallelizer.on_main else None
    got = parallelizer.broadcast(data)
    block = parallelizer.scatter(data)
    return parallelizer.gather(float(got.sum()) + float(block.sum()))


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_large_messages_right_after_start(start_method):
    # the workers' first frames are large: nothing may depend on set-up order
    expected_total = float(np.arange(5_000_000.0).sum())
    result = MultiprocessingParallelizer(nprocs=3, start_method=start_method).run(_large_first)
    assert sum(result) == pytest.approx(3 * expected_total + expected_total)


def test_seed_run_job_on_fifteen_processes(monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)  # workers import run_job the way main does
    import run_job

    assert MultiprocessingParallelizer(nprocs=15).run(run_job.run_job) == [67] * 10 + [66] * 5


def _print_body(parallelizer):
    parallelizer.print("hello", where="all")
    parallelizer.print("only workers\nsecond line", where="workers")
    parallelizer.barrier()


def test_worker_prints_reach_main(capfd):
    with MultiprocessingParallelizer(nprocs=3) as par:
        par.run(_print_body)
    lines = capfd.readouterr().out.splitlines()
    assert "hello" in lines and "[1/3] hello" in lines and "[2/3] hello" in lines
    assert "[1/3] only workers" in lines and "[2/3] second line" in lines
    assert "only workers" not in lines


def test_constructor_checks_its_arguments(monkeypatch):
    with pytest.raises(ValueError, match="nprocs must be greater than 0"):
        MultiprocessingParallelizer(nprocs=0)
    with pytest.raises(TypeError, match="nprocs"):
        MultiprocessingParallelizer(nprocs=2.5)
    with pytest.raises(ValueError, match="start_method"):
        MultiprocessingParallelizer(start_method="forkserver-ish")
    monkeypatch.setenv("PARALLELIZER_START_METHOD", "fork")
    assert MultiprocessingParallelizer(nprocs=2).start_method == "fork"
    assert MultiprocessingParallelizer().nprocs == len(os.sched_getaffinity(0))


def test_one_process_group_has_no_workers():
    par = MultiprocessingParallelizer(nprocs=1)
    assert par.run(lambda parallelizer: parallelizer.gather(parallelizer.scatter([1, 2, 3]))) == [[1, 2, 3]]


def test_registry_builds_it(monkeypatch):
    assert isinstance(Parallelizer.lookup("multiprocessing", nprocs=2), MultiprocessingParallelizer)
    from parallelizer import registry
    from parallelizer._core import context as _context

    monkeypatch.setattr(registry, "_cache", {})
    monkeypatch.setattr(_context, "_stack", [])
    monkeypatch.setenv("PARALLELIZER", "multiprocessing:2")
    found = Parallelizer.lookup(None)
    assert isinstance(found, MultiprocessingParallelizer) and found.nprocs == 2
    assert found.run(lambda parallelizer: parallelizer.allreduce(1)) == 2


# ---------------------------------------------------------------- more processes than CPUs


def _oversubscription_warnings(caught):
    from parallelizer import OversubscriptionWarning

    return [w for w in caught if issubclass(w.category, OversubscriptionWarning)]


def test_more_processes_than_cpus_warns_once_naming_both(monkeypatch):
    import warnings

    from parallelizer import mp
    from parallelizer._core import env

    monkeypatch.setattr(env, "usable_cpus", lambda: 2)
    monkeypatch.setattr(mp, "_oversubscription_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MultiprocessingParallelizer(nprocs=2)  # as many as CPUs: fine
        assert _oversubscription_warnings(caught) == []
        MultiprocessingParallelizer(nprocs=5)
        MultiprocessingParallelizer(nprocs=5)
        MultiprocessingParallelizer(nprocs=9)
        Parallelizer.lookup("multiprocessing:7")
    (warning,) = _oversubscription_warnings(caught)
    assert issubclass(warning.category, RuntimeWarning)
    assert str(warning.message).startswith(
        "MultiprocessingParallelizer(nprocs=5) starts 5 processes on 2 usable CPU(s): they share the CPUs"
    )
    assert warning.filename == __file__  # points at the caller's line


_PINNED = """
import os, sys
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one usable CPU
from parallelizer import MultiprocessingParallelizer

def job(parallelizer=None):
    return parallelizer.gather(parallelizer.id)

if __name__ == "__main__":
    first = MultiprocessingParallelizer(nprocs=2, start_method=sys.argv[1])
    print(first.run(job), first.run(job), MultiprocessingParallelizer(nprocs=3).nprocs)
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity to pin a process")
@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_oversubscription_warning_is_given_once_per_process(tmp_path, method):
    script = tmp_path / "pinned.py"
    script.write_text(_PINNED)
    result = subprocess.run(
        [sys.executable, str(script), method], capture_output=True, text=True, timeout=120, cwd=str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[0,", "1]", "[0,", "1]", "3"]
    assert result.stderr.count(": OversubscriptionWarning: ") == 1, result.stderr
    assert "MultiprocessingParallelizer(nprocs=2) starts 2 processes on 1 usable CPU(s)" in result.stderr
    assert f"{script}:10" in result.stderr  # the line that asked for the processes
