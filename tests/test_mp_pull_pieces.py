"""A large pull, when it is the only one, is read in pieces side by side (``Rendezvous._try_read``).

One ``process_vm_readv`` runs well below memory bandwidth; pieces in the
endpoint's threads run at once. These tests check the pieces cover the
buffer exactly once, that an error in any piece is reported, and the bytes.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from parallelizer._core.limits import PULL_PIECE_MIN
from parallelizer._mp import cma, rendezvous
from parallelizer._mp.channel import address_of

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pool():
    with ThreadPoolExecutor(4) as executor:
        yield executor


def _rendezvous(pool, pieces=2):
    found = rendezvous.Rendezvous({1: os.getpid()}, None, None, lambda: pool)  # type: ignore[arg-type]
    found._pieces = pieces
    return found


@pytest.mark.skipif(not cma.AVAILABLE, reason="this platform has no process_vm_readv")
@pytest.mark.parametrize("nbytes", [2 * PULL_PIECE_MIN, 8 * PULL_PIECE_MIN + 12_345])
def test_a_pull_in_pieces_copies_every_byte(pool, nbytes):
    source = np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8)
    target = np.zeros_like(source)
    error = _rendezvous(pool)._try_read(1, address_of(source), address_of(target), nbytes, alone=True)
    if error is not None and error.errno in cma.REFUSED:
        pytest.skip(f"process_vm_readv is refused here ({error}): the streaming fallback is tested instead")
    assert error is None
    assert np.array_equal(source, target)


def _recording(monkeypatch, fail_at=None):
    calls = []

    def read(pid, remote, local, nbytes):
        calls.append((remote, nbytes, threading.get_ident()))
        if remote == fail_at:
            raise OSError(errno.EPERM, "refused")

    monkeypatch.setattr(cma, "read", read)
    return calls


@pytest.mark.parametrize("pieces", [2, 3, 4])
def test_pieces_cover_the_buffer_once_in_whole_pages_side_by_side(pool, monkeypatch, pieces):
    calls = _recording(monkeypatch)
    size = 8 * PULL_PIECE_MIN + 5
    assert _rendezvous(pool, pieces)._try_read(1, 1 << 40, 0, size, alone=True) is None
    spans = sorted((remote - (1 << 40), nbytes) for remote, nbytes, _ in calls)
    assert len(spans) == pieces
    assert spans[0][0] == 0 and sum(nbytes for _, nbytes in spans) == size
    assert all(start + nbytes == following for (start, nbytes), (following, _) in itertools.pairwise(spans))
    assert all(start % 4096 == 0 for start, _ in spans)
    assert len({thread for _, _, thread in calls}) > 1  # not all in the calling thread


def test_a_pull_that_is_not_alone_or_small_is_one_read(pool, monkeypatch):
    calls = _recording(monkeypatch)
    found = _rendezvous(pool, 4)
    assert found._try_read(1, 0, 0, 8 * PULL_PIECE_MIN, alone=False) is None
    assert found._try_read(1, 0, 0, PULL_PIECE_MIN + 1, alone=True) is None  # less than two pieces' worth
    assert [nbytes for _, nbytes, _ in calls] == [8 * PULL_PIECE_MIN, PULL_PIECE_MIN + 1]


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_an_error_in_any_piece_is_reported(pool, monkeypatch, failing):
    step = 2 * PULL_PIECE_MIN
    calls = _recording(monkeypatch, fail_at=failing * step)
    error = _rendezvous(pool, 3)._try_read(1, 0, 0, 3 * step, alone=True)
    assert len(calls) == 3  # every piece ran, so none still writes after the caller moves on
    assert error is not None and error.errno == errno.EPERM
