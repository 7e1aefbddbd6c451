"""The error hierarchy and what the messages say."""

from __future__ import annotations

import pickle

from parallelizer import ParallelizerError, RemoteError, SerializationError, WorkerTerminatedError


def test_remote_error_carries_rank_type_and_traceback():
    err = RemoteError(3, "KeyError", "'x'", "Traceback (most recent call last):\n  ...\nKeyError: 'x'\n")
    assert isinstance(err, RuntimeError) and isinstance(err, ParallelizerError)
    assert (err.rank, err.exc_type, err.message) == (3, "KeyError", "'x'")
    text = str(err)
    assert text.startswith("rank 3 raised KeyError: 'x'")
    assert "Remote traceback (rank 3)" in text and "KeyError: 'x'" in text.splitlines()[-1]
    assert err.traceback == err.remote_traceback
    assert err.host == ""


def test_remote_error_names_the_host_it_came_from():
    err = RemoteError(3, "KeyError", "'x'", "Traceback ...\nKeyError: 'x'\n", host="node2")
    assert err.host == "node2"
    assert str(err).startswith("rank 3 on node2 raised KeyError: 'x'")
    assert "Remote traceback (rank 3 on node2)" in str(err)


def test_errors_survive_pickling():
    errors = (
        RemoteError(1, "ValueError", "bad", "tb"),
        RemoteError(1, "E", "m", "tb", host="n1"),
        WorkerTerminatedError(2, -9),
        WorkerTerminatedError(1, 3),
    )
    for err in errors:
        clone = pickle.loads(pickle.dumps(err))
        assert type(clone) is type(err) and str(clone) == str(err) and clone.rank == err.rank
        assert clone.host == err.host


def test_worker_terminated_names_signal_or_exit_code():
    killed = WorkerTerminatedError(2, -9)
    assert isinstance(killed, RemoteError)
    assert killed.signal == "SIGKILL" and killed.exitcode == -9
    assert str(killed) == "worker rank 2 terminated with signal SIGKILL"
    exited = WorkerTerminatedError(1, 3, detail="os._exit")
    assert exited.signal is None
    assert str(exited) == "worker rank 1 terminated with exit code 3 (os._exit)"


def test_serialization_error_is_a_type_error():
    assert issubclass(SerializationError, TypeError) and issubclass(SerializationError, ParallelizerError)
