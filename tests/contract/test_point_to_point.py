"""send/recv on every backend: ordering per pair and tag, arrays, any pair."""

from __future__ import annotations

import numpy as np


def _ring_body(parallelizer):
    n, rank = parallelizer.nprocs, parallelizer.id
    parallelizer.send(("hello", rank), dest=(rank + 1) % n, tag=3)
    got = parallelizer.recv(source=(rank - 1) % n, tag=3)
    assert got == ("hello", (rank - 1) % n)
    return parallelizer.gather(got[1])


def test_ring_between_every_neighbour(par):
    result = par.run(_ring_body)
    if par.on_main:
        assert result == [(rank - 1) % par.nprocs for rank in range(par.nprocs)]


def _ordering_body(parallelizer):
    count = 200
    if not parallelizer.on_main:
        for index in range(count):
            parallelizer.send(index, dest=0, tag=7)
        return None
    received = {}
    for source in range(1, parallelizer.nprocs):
        received[source] = [parallelizer.recv(source, tag=7) for _ in range(count)]
    return received


def test_messages_arrive_in_the_order_sent(par):
    received = par.run(_ordering_body)
    if par.on_main:
        assert received == {source: list(range(200)) for source in range(1, par.nprocs)}


def _tags_body(parallelizer):
    # Every process sends itself (and its right neighbour) two tagged messages
    # and takes them in the opposite order: tags keep the streams apart.
    n, rank = parallelizer.nprocs, parallelizer.id
    right, left = (rank + 1) % n, (rank - 1) % n
    parallelizer.send("first", dest=right, tag=1)
    parallelizer.send("second", dest=right, tag=2)
    assert parallelizer.recv(left, tag=2) == "second"
    assert parallelizer.recv(left, tag=1) == "first"
    return True


def test_tags_are_separate_streams(par):
    assert par.run(_tags_body)


def _self_body(parallelizer):
    parallelizer.send([1, 2, 3], dest=parallelizer.id, tag=0)
    return parallelizer.recv(parallelizer.id, tag=0)


def test_send_to_oneself(par):
    assert par.run(_self_body) == [1, 2, 3]


def _array_body(parallelizer):
    n, rank = parallelizer.nprocs, parallelizer.id
    right, left = (rank + 1) % n, (rank - 1) % n
    small = np.arange(6, dtype=np.int16).reshape(2, 3) + rank
    large = np.full(2_000_000, float(rank))  # 16 MB: out of band

    def send():
        parallelizer.send(small, dest=right)
        parallelizer.send(large, dest=right, tag=1)

    def receive():
        return parallelizer.recv(left), parallelizer.recv(left, tag=1)

    # A large send may wait for its receiver (MPI's standard mode), so in a
    # ring half the ranks receive first. A rank alone sends to itself.
    if rank % 2 == 0 or n == 1:
        send()
        got_small, got_large = receive()
    else:
        got_small, got_large = receive()
        send()
    assert got_small.dtype == np.int16 and got_small.shape == (2, 3)
    np.testing.assert_array_equal(got_small, np.arange(6).reshape(2, 3) + left)
    assert got_large.flags.writeable and (got_large == left).all()
    got_large[:] = -1
    return True


def test_send_arrays(par):
    assert par.run(_array_body)


def _no_crosstalk_body(parallelizer):
    # a pending user message does not disturb collectives, and vice versa
    n, rank = parallelizer.nprocs, parallelizer.id
    parallelizer.send("user", dest=(rank + 1) % n, tag=0)
    value = parallelizer.broadcast("coll" if parallelizer.on_main else None)
    gathered = parallelizer.allgather(rank)
    got = parallelizer.recv((rank - 1) % n, tag=0)
    return value, gathered, got


def test_user_messages_and_collectives_do_not_mix(par):
    value, gathered, got = par.run(_no_crosstalk_body)
    assert (value, gathered, got) == ("coll", list(range(par.nprocs)), "user")


def _worker_pair_body(parallelizer):
    # the two last ranks talk directly, without main
    a, b = parallelizer.nprocs - 2, parallelizer.nprocs - 1
    if parallelizer.id == a:
        parallelizer.send({"from": a}, dest=b, tag=5)
        return parallelizer.recv(b, tag=6)
    if parallelizer.id == b:
        got = parallelizer.recv(a, tag=5)
        parallelizer.send({"from": b, "echo": got}, dest=a, tag=6)
    return None


def test_any_two_ranks_exchange(par):
    if par.nprocs < 2:
        assert par.run(_self_body) == [1, 2, 3]
        return_value_checked = True
    else:
        result = par.run(_worker_pair_body)
        if par.id == par.nprocs - 2:
            assert result == {"from": par.nprocs - 1, "echo": {"from": par.nprocs - 2}}
        return_value_checked = par.id == par.nprocs - 2 or result is None
    assert return_value_checked
