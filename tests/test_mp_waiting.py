"""How a multiprocessing process reads its sockets and waits for collective messages."""

from __future__ import annotations

import socket
import struct
import threading
import time
import warnings

import pytest

from parallelizer import MultiprocessingParallelizer
from parallelizer._core import env
from parallelizer._core.limits import SOCKET_READ, SPIN_WAIT
from parallelizer._mp import wire
from parallelizer._mp.loop import Loop

pytestmark = pytest.mark.timeout(60)


class _Peer:
    """A loop over one socket to 'rank 1', and what reached its frame and EOF handlers."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.frames: list[tuple[int, int, int, bytes]] = []
        self.closed: list[int] = []

        def on_frame(rank: int, frame: wire.Frame) -> None:
            self.frames.append((frame.kind, frame.tag, frame.epoch, bytes(frame.body)))

        def allocate(rank: int):
            return lambda frame, index: bytearray(frame.descs[index][1])

        self.loop = Loop({1: self.ours}, allocate, on_frame, self.closed.append, self.closed.append)

    def take(self, kind=wire.Kind.COLL, tag=3, epoch=1, tries=200):
        """take_small until it returns a body or ``tries`` polls (1 ms apart) found nothing for it."""
        for _ in range(tries):
            body = self.loop.take_small(1, kind, tag, epoch)
            if body is not None:
                return body
            time.sleep(0.001)
        return None

    def close(self) -> None:
        self.loop.close()
        self.theirs.close()


def _frame(tag=3, epoch=1, body=b"payload", flags=0, kind=wire.Kind.COLL):
    return wire.pack(kind, tag=tag, epoch=epoch, token=1, flags=flags, body=body)


def _body(number: int) -> bytes:
    return struct.pack("<Q", number) * (1 + number % 5)  # every frame's body differs


def _frames(count: int) -> bytes:
    return b"".join(_frame(kind=wire.Kind.USER, tag=7, body=_body(number)) for number in range(count))


def _expected(count: int) -> list[tuple[int, int, int, bytes]]:
    return [(wire.Kind.USER, 7, 1, _body(number)) for number in range(count)]


def test_a_burst_of_small_frames_larger_than_one_read_arrives_whole_and_in_order():
    peer = _Peer()
    burst = _frames(30_000)
    assert len(burst) > 2 * SOCKET_READ  # several full reads, then a short one
    writer = threading.Thread(target=peer.theirs.sendall, args=(burst,))
    writer.start()
    while len(peer.frames) < 30_000:
        peer.loop.pump(block=True, timeout_ms=5_000)
    writer.join()
    assert peer.frames == _expected(30_000)
    assert peer.closed == []
    peer.close()


def test_a_frame_split_across_writes_is_delivered_once_complete():
    peer = _Peer()
    data = _frames(3)
    peer.theirs.sendall(data[:5])  # not even a whole header
    peer.loop.pump(block=True, timeout_ms=5_000)
    assert peer.frames == []
    peer.theirs.sendall(data[5:-3])
    peer.loop.pump(block=True, timeout_ms=5_000)
    assert peer.frames == _expected(2)
    peer.theirs.sendall(data[-3:])
    peer.loop.pump(block=True, timeout_ms=5_000)
    assert peer.frames == _expected(3)
    assert peer.closed == []
    peer.close()


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


def test_one_whole_frame_of_what_is_waited_for_is_taken_straight_from_the_socket():
    peer = _Peer()
    peer.theirs.sendall(_frame(body=b"the value"))
    assert peer.take() == b"the value"
    assert peer.frames == []  # not delivered a second time
    peer.theirs.sendall(_frame(body=b"the next"))
    assert peer.take() == b"the next"
    peer.close()


@pytest.mark.parametrize(
    "data",
    [
        _frame(tag=4),  # another tag
        _frame(epoch=2),  # another run
        _frame(kind=wire.Kind.USER),  # a user message
        _frame(flags=wire.FLAG_LAZY),  # flags: the general path decides
        _frame(tag=4) + _frame(body=b"two"),  # another tag first, then what is waited for
    ],
    ids=["tag", "epoch", "kind", "flags", "another first"],
)
def test_anything_else_goes_to_the_frame_handler_whole_and_in_order(data):
    peer = _Peer()
    peer.theirs.sendall(data)
    assert peer.take(tries=20) is None
    expected = []
    reader = wire.FrameReader(lambda frame, index: None)
    reader.feed(data, lambda frame: expected.append((frame.kind, frame.tag, frame.epoch, bytes(frame.body))))
    assert peer.frames == expected
    peer.close()


@pytest.mark.parametrize("cut", [0, 1, 30], ids=["whole frames after it", "then 1 byte", "then 30 bytes"])
def test_what_is_waited_for_is_taken_and_the_frames_sent_after_it_go_to_the_frame_handler(cut):
    """Frames sent after the one waited for come in the same read: they are handled, in order, after it."""
    peer = _Peer()
    later = _frame(body=b"two") + _frame(kind=wire.Kind.USER, tag=7, body=b"three") + _frame(body=b"four")
    head, tail = later[: len(later) - cut], later[len(later) - cut :]
    peer.theirs.sendall(_frame(body=b"one") + head)
    assert peer.take() == b"one"
    peer.loop.pump(block=False)
    whole = 3 if not cut else 2
    assert peer.frames == [(wire.Kind.COLL, 3, 1, b"two"), (wire.Kind.USER, 7, 1, b"three")][:whole] + (
        [(wire.Kind.COLL, 3, 1, b"four")] if not cut else []
    )
    if cut:
        peer.theirs.sendall(tail)  # the rest of a frame half-read: the reader completes it
        assert peer.take(tries=5) is None
        assert peer.frames[-1] == (wire.Kind.COLL, 3, 1, b"four")
    peer.close()


def test_a_frame_arriving_in_pieces_is_delivered_by_the_frame_handler_once_complete():
    peer = _Peer()
    data = _frame(body=b"x" * 100)
    peer.theirs.sendall(data[:10])
    assert peer.take(tries=5) is None
    peer.theirs.sendall(data[10:])
    assert peer.take(tries=5) is None  # the reader holds its start: the rest goes there too
    assert peer.frames == [(wire.Kind.COLL, 3, 1, b"x" * 100)]
    peer.close()


def test_a_peer_closing_its_socket_is_reported_while_polling():
    peer = _Peer()
    peer.theirs.close()
    assert peer.take(tries=5) is None
    assert peer.closed == [1]
    peer.loop.close()


def _collectives_and_messages(parallelizer):
    """Collectives between point-to-point messages and messages of other tags, as a spinning process sees them."""
    me, n, problems = parallelizer.id, parallelizer.nprocs, []
    for step in range(50):
        if me == 1:
            parallelizer.send(("user", step), dest=0, tag=step % 3)
        total = parallelizer.allreduce(me + step)
        if total != sum(range(n)) + n * step:
            problems.append(f"step {step}: allreduce gave {total}")
        got = parallelizer.broadcast({"step": step} if me == 0 else None)
        if got != {"step": step}:
            problems.append(f"step {step}: broadcast gave {got}")
        if me == 0:
            message = parallelizer.recv(source=1, tag=step % 3)
            if message != ("user", step):
                problems.append(f"step {step}: recv gave {message}")
        parallelizer.barrier()
        big = parallelizer.allgather(
            list(range(100_000)) if step % 10 == 0 else me
        )  # a frame a socket cannot take at once
        if step % 10 == 0 and big != [list(range(100_000))] * n:
            problems.append(f"step {step}: allgather of big lists differs")
    return parallelizer.gather(problems)


def test_collectives_of_spinning_processes_mix_with_messages_of_other_tags(monkeypatch):
    monkeypatch.setattr(env, "usable_cpus", lambda: 2)
    par = MultiprocessingParallelizer(nprocs=2, start_method="fork")
    assert par.run(_spins) == [SPIN_WAIT, SPIN_WAIT]
    assert par.run(_collectives_and_messages) == [[], []]


def _late_rank_one(parallelizer):
    if parallelizer.id == 1:
        time.sleep(3)
    return parallelizer.allreduce(1)


def _rank_one_dies(parallelizer):
    import os

    if parallelizer.id == 1:
        os._exit(7)
    return parallelizer.allreduce(1)


def test_a_polling_process_still_reports_a_timeout_and_a_dead_peer(monkeypatch):
    from parallelizer import WorkerTerminatedError

    monkeypatch.setattr(env, "usable_cpus", lambda: 2)
    with MultiprocessingParallelizer(nprocs=2, start_method="fork", timeout=0.5) as par:
        assert par.run(_spins) == [SPIN_WAIT, SPIN_WAIT]
        with pytest.raises(TimeoutError, match=r"rank 0 waited more than 0.5 s in allreduce\(\) for rank\(s\) 1"):
            par.run(_late_rank_one)
    with (
        MultiprocessingParallelizer(nprocs=2, start_method="fork") as par,
        pytest.raises(WorkerTerminatedError, match="rank 1"),
    ):
        par.run(_rank_one_dies)


def _broadcasts_after_a_queued_one(parallelizer):
    """Rank 1 finds broadcast 1 in its mailbox (read during another wait) and broadcast 2 alone in its socket."""
    if parallelizer.id == 0:
        parallelizer.broadcast(1)
        parallelizer.send("go", dest=1, tag=5)
        parallelizer.recv(source=1, tag=6)
        parallelizer.broadcast(2)
        return None
    parallelizer.recv(source=0, tag=5)  # broadcast 1 arrives first and is queued
    parallelizer.send("ready", dest=0, tag=6)
    time.sleep(0.05)  # broadcast 2 is then alone in the socket
    return [parallelizer.broadcast(None), parallelizer.broadcast(None)]


def test_a_queued_collective_message_is_not_overtaken_by_one_in_the_socket(monkeypatch):
    monkeypatch.setattr(env, "usable_cpus", lambda: 2)
    par = MultiprocessingParallelizer(nprocs=2, start_method="fork")
    got = par.run(lambda parallelizer: parallelizer.gather(_broadcasts_after_a_queued_one(parallelizer)))
    assert got == [None, [1, 2]]
