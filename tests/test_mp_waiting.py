"""How a multiprocessing process reads its sockets and waits for collective messages."""

from __future__ import annotations

import socket
import struct
import threading
import warnings

import pytest

from parallelizer import MultiprocessingParallelizer
from parallelizer._core import env
from parallelizer._core.limits import SOCKET_READ, SPIN_WAIT
from parallelizer._mp import wire
from parallelizer._mp.loop import Loop

pytestmark = pytest.mark.timeout(60)


def _frames(count: int, start: int = 0) -> bytes:
    return b"".join(
        wire.pack(wire.Kind.USER, tag=7, epoch=1, token=number, body=struct.pack("<Q", number) * (number % 5))
        for number in range(start, start + count)
    )


def _loop(sock: socket.socket, received: list[tuple[int, int, bytes]]) -> Loop:
    def on_frame(rank: int, frame: wire.Frame) -> None:
        received.append((rank, frame.token, bytes(frame.body)))

    def unexpected(rank: int) -> None:
        raise AssertionError(f"rank {rank} went away")

    return Loop(
        {1: sock}, lambda rank: lambda frame, index: bytearray(frame.descs[index][1]), on_frame, unexpected, unexpected
    )


def _expected(count: int) -> list[tuple[int, int, bytes]]:
    return [(1, number, struct.pack("<Q", number) * (number % 5)) for number in range(count)]


def test_a_burst_of_small_frames_larger_than_one_read_arrives_whole_and_in_order():
    ours, theirs = socket.socketpair()
    received: list[tuple[int, int, bytes]] = []
    loop = _loop(ours, received)
    burst = _frames(30_000)
    assert len(burst) > 2 * SOCKET_READ  # several full reads, then a short one
    writer = threading.Thread(target=theirs.sendall, args=(burst,))
    writer.start()
    while len(received) < 30_000:
        loop.pump(block=True, timeout_ms=5_000)
    writer.join()
    assert received == _expected(30_000)
    loop.close()
    theirs.close()


def test_a_frame_split_across_writes_is_delivered_once_complete():
    ours, theirs = socket.socketpair()
    received: list[tuple[int, int, bytes]] = []
    loop = _loop(ours, received)
    data = _frames(3)
    theirs.sendall(data[:5])  # not even a whole header
    loop.pump(block=True, timeout_ms=5_000)
    assert received == []
    theirs.sendall(data[5:-3])
    loop.pump(block=True, timeout_ms=5_000)
    assert received == _expected(2)
    theirs.sendall(data[-3:])
    loop.pump(block=True, timeout_ms=5_000)
    assert received == _expected(3)
    loop.close()
    theirs.close()


def _spins(parallelizer):
    return parallelizer.gather(parallelizer._ep().spin)


@pytest.mark.parametrize(("cpus", "expected"), [(2, SPIN_WAIT), (1, 0.0)])
def test_processes_poll_before_sleeping_only_with_a_cpu_each(monkeypatch, cpus, expected):
    """A group with more processes than CPUs never spins: the process it waits for needs that CPU."""
    monkeypatch.setattr(env, "usable_cpus", lambda: cpus)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one CPU for two processes: the oversubscription warning
        par = MultiprocessingParallelizer(nprocs=2, start_method="fork")
    assert par.run(_spins) == [expected, expected]
    assert par.run(lambda parallelizer: parallelizer.allreduce(parallelizer.id + 1)) == 3
