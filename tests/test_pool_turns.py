"""short_turns: the switch interval while main computes beside its dispatcher thread."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from parallelizer._pool import turns
from parallelizer._pool.turns import TURN, short_turns


@pytest.fixture(autouse=True)
def _keep_interval():
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)
    assert turns._inside == 0, "a block was left counted in"


def _set(seconds: float) -> float:
    sys.setswitchinterval(seconds)
    return sys.getswitchinterval()  # as the interpreter keeps it (whole microseconds)


@pytest.mark.parametrize("seconds", [0.004, 0.0071, 0.000501, 0.000507, 0.2])
def test_lowered_inside_and_put_back_exactly(seconds):
    found = _set(seconds)
    for _ in range(3):  # no drift from one block to the next
        with short_turns():
            assert sys.getswitchinterval() == pytest.approx(TURN)
        assert sys.getswitchinterval() == found


def test_nested_and_overlapping_blocks_restore_once_the_last_ends():
    found = _set(0.004)
    outer = short_turns()
    outer.__enter__()
    with short_turns():
        assert sys.getswitchinterval() == pytest.approx(TURN)
    assert sys.getswitchinterval() == pytest.approx(TURN)  # the outer block still runs
    entered, release = threading.Event(), threading.Event()

    def other_thread() -> None:
        with short_turns():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other_thread)
    thread.start()
    assert entered.wait(10)
    outer.__exit__(None, None, None)
    assert sys.getswitchinterval() == pytest.approx(TURN)  # the other thread's block still runs
    release.set()
    thread.join(10)
    assert not thread.is_alive()
    assert sys.getswitchinterval() == found


def test_a_shorter_interval_is_left_alone():
    found = _set(TURN / 4)
    with short_turns():
        assert sys.getswitchinterval() == found
    assert sys.getswitchinterval() == found


def test_an_interval_set_inside_the_block_stands():
    _set(0.004)
    with short_turns():
        changed = _set(0.02)
    assert sys.getswitchinterval() == changed
    with short_turns():
        pass
    assert sys.getswitchinterval() == changed  # and later blocks start from it


@pytest.mark.parametrize("error", [KeyError("inside"), KeyboardInterrupt()])
def test_put_back_when_the_block_raises(error):
    found = _set(0.004)
    with pytest.raises(type(error)), short_turns():
        raise error
    assert sys.getswitchinterval() == found


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_child_forked_inside_a_block_starts_afresh():
    found = _set(0.004)
    with short_turns():
        pid = os.fork()
        if pid == 0:  # the child: its interval is back, and its own blocks count from zero
            ok = sys.getswitchinterval() == found and turns._inside == 0
            with short_turns():
                ok = ok and sys.getswitchinterval() == pytest.approx(TURN) and turns._inside == 1
            ok = ok and sys.getswitchinterval() == found and turns._inside == 0
    if pid == 0:  # out of the parent's block too: nothing counted out twice
        ok = ok and turns._inside == 0 and sys.getswitchinterval() == found
        os._exit(0 if ok else 1)
    assert sys.getswitchinterval() == found
    deadline = 30
    for _ in range(deadline * 100):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        threading.Event().wait(0.01)
    else:
        os.kill(pid, 9)
        pytest.fail("the forked child did not end")
    assert os.waitstatus_to_exitcode(status) == 0
