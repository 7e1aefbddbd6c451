"""short_turns: the switch interval while main computes beside its dispatcher thread."""

from __future__ import annotations

import sys
import threading

import pytest

from parallelizer._pool.turns import TURN, short_turns


@pytest.fixture(autouse=True)
def _keep_interval():
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_lowered_inside_and_put_back_after():
    sys.setswitchinterval(0.004)
    with short_turns():
        assert sys.getswitchinterval() == pytest.approx(TURN)
    assert sys.getswitchinterval() == pytest.approx(0.004)


def test_nested_and_overlapping_blocks_restore_once_the_last_ends():
    sys.setswitchinterval(0.004)
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
    assert sys.getswitchinterval() == pytest.approx(0.004)


def test_a_shorter_interval_is_left_alone():
    sys.setswitchinterval(TURN / 4)
    with short_turns():
        assert sys.getswitchinterval() == pytest.approx(TURN / 4)
    assert sys.getswitchinterval() == pytest.approx(TURN / 4)


def test_an_interval_set_inside_the_block_stands():
    sys.setswitchinterval(0.004)
    with short_turns():
        sys.setswitchinterval(0.02)
    assert sys.getswitchinterval() == pytest.approx(0.02)
    with short_turns():
        pass
    assert sys.getswitchinterval() == pytest.approx(0.02)  # and later blocks start from it


def test_put_back_when_the_block_raises():
    sys.setswitchinterval(0.004)
    with pytest.raises(KeyError), short_turns():
        raise KeyError("inside")
    assert sys.getswitchinterval() == pytest.approx(0.004)
