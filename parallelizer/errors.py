"""Errors raised by parallelizer.

Every error a user can catch derives from :class:`ParallelizerError`.
Failures on other processes arrive on main as :class:`RemoteError`, which
carries the failing rank, the exception's type name and the remote traceback
text; the original exception is attached as ``__cause__`` when it could be
rebuilt on main. A process that died is reported as
:class:`WorkerTerminatedError`, naming its exit code or signal.

:class:`SerializationError` (an object that cannot be pickled or unpickled)
is a ``TypeError``; raised on another process, it reaches main as
:class:`RemoteSerializationError`, a ``RemoteError`` that is also a
``TypeError``, so ``except TypeError`` catches it wherever it happened.
:class:`OversubscriptionWarning` is a warning, not an error: more local
processes than CPUs.
"""

from __future__ import annotations

import signal as _signal
from typing import Any

__all__ = [
    "ParallelizerError",
    "RemoteError",
    "WorkerTerminatedError",
    "SerializationError",
    "RemoteSerializationError",
    "CombineError",
    "DeadlockError",
    "CollectiveMismatchError",
    "LaunchMismatchError",
    "OversubscriptionWarning",
]


class ParallelizerError(Exception):
    """Base class of every error raised by parallelizer itself.

    Example:
        >>> from parallelizer import ParallelizerError, RemoteError, SerializationError
        >>> issubclass(RemoteError, ParallelizerError), issubclass(SerializationError, ParallelizerError)
        (True, True)
    """


class RemoteError(ParallelizerError, RuntimeError):
    """An exception raised on another process of the group.

    Attributes:
        rank: Rank of the process that failed.
        host: Name of the host it ran on (``socket.gethostname()`` there),
            or ``""`` when unknown.
        exc_type: Name of the remote exception's type (e.g. ``"ValueError"``).
        message: The remote exception's message (``str(exc)``).
        remote_traceback: The remote traceback, formatted as text.

    Example:
        A worker's exception, caught on main:

        >>> from parallelizer import MultiprocessingParallelizer
        >>> def job(parallelizer):
        ...     if parallelizer.id == 1:
        ...         raise ValueError("negative density")
        ...     return parallelizer.gather(parallelizer.id)
        >>> try:
        ...     MultiprocessingParallelizer(nprocs=2).run(job)
        ... except RemoteError as err:
        ...     print(err.rank, err.exc_type, repr(err.__cause__))
        1 ValueError ValueError('negative density')

        Built by hand, e.g. in a test:

        >>> str(RemoteError(2, "ValueError", "bad input"))
        'rank 2 raised ValueError: bad input'
        >>> str(RemoteError(2, "ValueError", "bad input", host="node1"))
        'rank 2 on node1 raised ValueError: bad input'
    """

    def __init__(
        self,
        rank: int,
        exc_type: str,
        message: str = "",
        remote_traceback: str = "",
        host: str = "",
    ) -> None:
        self.rank = rank
        self.host = host
        self.exc_type = exc_type
        self.message = message
        self.remote_traceback = remote_traceback
        super().__init__(rank, exc_type, message, remote_traceback)

    @property
    def traceback(self) -> str:
        """Alias of :attr:`remote_traceback`.

        Example:
            >>> RemoteError(1, "KeyError", "'x'", "Traceback (most recent call last): ...").traceback
            'Traceback (most recent call last): ...'
        """
        return self.remote_traceback

    def _where(self) -> str:
        return f"rank {self.rank} on {self.host}" if self.host else f"rank {self.rank}"

    def _headline(self) -> str:
        text = f"{self._where()} raised {self.exc_type}"
        return f"{text}: {self.message}" if self.message else text

    def __str__(self) -> str:
        if not self.remote_traceback:
            return self._headline()
        body = self.remote_traceback.rstrip("\n")
        return f"{self._headline()}\n\nRemote traceback ({self._where()}):\n{body}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.rank, self.exc_type, self.message, self.remote_traceback, self.host))


def describe_exit(exitcode: int | None) -> str:
    """Says how a process ended, from a ``Popen.returncode``-style value.

    Args:
        exitcode: ``None`` (unknown), a non-negative exit status, or minus
            the number of the signal that killed the process.

    Returns:
        A phrase such as ``"exit code 3"`` or ``"signal SIGKILL"``.

    Example:
        >>> describe_exit(3), describe_exit(-9), describe_exit(None)
        ('exit code 3', 'signal SIGKILL', 'an unknown exit status')
    """
    if exitcode is None:
        return "an unknown exit status"
    if exitcode < 0:
        return f"signal {signal_name(-exitcode)}"
    return f"exit code {exitcode}"


def signal_name(signum: int) -> str:
    """``9 -> "SIGKILL"``; the bare number for signals Python does not name.

    Example:
        >>> signal_name(11), signal_name(200)
        ('SIGSEGV', '200')
    """
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return str(signum)


class WorkerTerminatedError(RemoteError):
    """A process of the group died (killed, crashed, or exited) mid-run.

    Attributes:
        exitcode: The exit status, or minus the signal number, or ``None``
            when it is not known.
        signal: The name of the killing signal (``"SIGKILL"``), or ``None``.

    Example:
        >>> str(WorkerTerminatedError(1, -9)).splitlines()[0]
        'worker rank 1 terminated with signal SIGKILL'
    """

    def __init__(self, rank: int, exitcode: int | None = None, detail: str = "") -> None:
        self.exitcode = exitcode
        self.signal = signal_name(-exitcode) if exitcode is not None and exitcode < 0 else None
        how = describe_exit(exitcode)
        message = f"worker rank {rank} terminated with {how}"
        if detail:
            message = f"{message} ({detail})"
        super().__init__(rank, "WorkerTerminatedError", message, "")
        self.detail = detail

    def _headline(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.rank, self.exitcode, self.detail))


class DeadlockError(ParallelizerError, RuntimeError):
    """A process waits for a message that can never come.

    Raised when the process it waits for has already returned from ``func``
    (for example after calling one collective fewer than the others); the
    message names both ranks and the call that waits.

    Example:
        >>> from parallelizer import MultiprocessingParallelizer
        >>> def job(parallelizer):
        ...     if parallelizer.on_main:
        ...         return parallelizer.recv(source=1)  # rank 1 never sends
        >>> try:
        ...     MultiprocessingParallelizer(nprocs=2).run(job)
        ... except DeadlockError as err:
        ...     print(err)  # doctest: +ELLIPSIS
        rank 0 waits in recv(source=1, tag=0) for rank(s) 1, which already returned from func ...
    """


class SerializationError(ParallelizerError, TypeError):
    """An object could not be pickled to be sent, or unpickled on arrival.

    The message says which object (``the object sent to rank 2``, ``func``
    of ``run()``, ...) and why. When sending, it is raised before anything is
    sent; when receiving, the message has been taken, so the sender and the
    receiver stay in step. In a collective, a process that cannot pickle
    what it must send (its part of ``gather``, ``allgather``, ``reduce``,
    ``allreduce``; root's blocks of ``scatter``; root's object of
    ``broadcast``) sends a refusal in its place: it raises once it has done
    the rest of its share, and so does every process that would have
    received it, so catching the error leaves the group in step. A
    subclass of ``TypeError``.

    Attributes:
        rank: The rank whose message could not be unpickled here, or which
            could not pickle its part of a collective (the message starts
            ``rank 2:``); ``None``: an object this process could not pickle,
            of which nothing was sent.

    Example:
        >>> import threading
        >>> from parallelizer import SerialNonParallelizer
        >>> try:
        ...     SerialNonParallelizer().send(threading.Lock(), dest=0)
        ... except SerializationError as err:
        ...     print(str(err).split(" (")[0])
        cannot pickle the object sent to rank 0
    """

    def __init__(self, message: str, rank: int | None = None) -> None:
        super().__init__(message)
        self.rank = rank

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.rank))


class CombineError(ParallelizerError, TypeError):
    """A reduction's operation could not combine two of the values.

    Raised where the operation runs (``reduce``: root; ``allreduce``: every
    process), with the call, the operation and the values' types in the
    message. A subclass of ``TypeError``.

    Example:
        >>> from parallelizer import SerialNonParallelizer
        >>> try:
        ...     SerialNonParallelizer().reduce({"a": 1})
        ... except CombineError as err:
        ...     print(str(err).split(":")[0])
        reduce(op='sum') cannot combine dict and dict
    """


class RemoteSerializationError(RemoteError, TypeError):
    """A :class:`SerializationError` raised on another process, as main receives it.

    A ``RemoteError`` (``.rank``, ``.exc_type``, the remote traceback) that is
    also a ``TypeError``, like the ``SerializationError`` it reports: so
    ``except TypeError`` catches a failure to pickle or unpickle on any
    process, as it does on this one. The worker's ``SerializationError`` is its
    ``__cause__`` when it could be rebuilt here.

    Example:
        A worker cannot pickle what it sends to main:

        >>> import threading
        >>> from parallelizer import MultiprocessingParallelizer
        >>> def job(parallelizer):
        ...     if parallelizer.id == 1:
        ...         parallelizer.send(threading.Lock(), dest=0)
        ...     elif parallelizer.on_main:
        ...         return parallelizer.recv(source=1)
        >>> try:
        ...     MultiprocessingParallelizer(nprocs=2).run(job)
        ... except TypeError as err:
        ...     print(type(err).__name__, err.rank, err.exc_type, isinstance(err, RemoteError))
        RemoteSerializationError 1 parallelizer.errors.SerializationError True
    """


class LaunchMismatchError(ParallelizerError, RuntimeError):
    """The ``mpiexec`` that started this process belongs to another MPI library than mpi4py's.

    The classic "wrong mpiexec": an ``mpiexec`` from one MPI library (say the
    system's Open MPI) started processes linked against another (mpi4py's,
    say the ``mpich`` wheel). Left alone, MPICH would abort inside
    ``MPI_Init`` ("unsupported PMI version PMIx") and Open MPI would start
    every process alone, in a world of one. It is raised before MPI is
    initialized when the launcher's environment shows the mismatch (see
    :mod:`parallelizer._mpi.launcher`), otherwise after, when the launcher
    announced several processes but MPI sees one. The message names the
    ``mpiexec`` to use instead.

    Example:
        Debian's Open MPI ``mpiexec`` launching a venv whose mpi4py uses the
        ``mpich`` wheel::

            $ mpiexec -n 2 python -c "from parallelizer import MPIParallelizer; MPIParallelizer()"
            parallelizer.errors.LaunchMismatchError: this process was started by Open MPI's mpiexec
            (OMPI_COMM_WORLD_SIZE=2), but mpi4py uses MPICH 5.0.2, which cannot join its jobs (...).
            Launch with the mpiexec of MPICH: '/venv/bin/mpiexec -n 2 python script.py', or let
            parallelizer find it: 'python -m parallelizer -n 2 script.py'.
    """


class CollectiveMismatchError(ParallelizerError, RuntimeError):
    """Processes of the group called different collectives at the same step.

    Raised only when mismatch detection is on (``PARALLELIZER_DEBUG=1`` or
    ``debug=True``); the message names both calls and their ranks.

    Example:
        >>> from parallelizer import MultiprocessingParallelizer
        >>> def job(parallelizer):
        ...     if parallelizer.on_main:
        ...         return parallelizer.gather(0)
        ...     parallelizer.broadcast(None)  # a bug: rank 1 calls another collective
        >>> try:
        ...     MultiprocessingParallelizer(nprocs=2, debug=True).run(job)
        ... except CollectiveMismatchError as err:
        ...     print(err)  # doctest: +ELLIPSIS
        processes called different collectives: rank 0 called gather(root=0)...; rank 1 called broadcast(root=0)...
    """


class OversubscriptionWarning(RuntimeWarning):
    """More local processes were asked for than this process has CPUs.

    ``MultiprocessingParallelizer(nprocs)`` warns when ``nprocs`` exceeds the
    CPUs this process may use (its affinity mask, else ``os.cpu_count()``),
    once per process. The processes still start and work correctly, but they
    share the CPUs, so CPU-bound work gets no faster, and usually slower,
    beyond one process per CPU. A ``RuntimeWarning``, shown by default
    (Python hides ``ResourceWarning`` unless asked); silence it with
    ``warnings.filterwarnings("ignore", category=OversubscriptionWarning)``.

    Example:
        >>> import warnings
        >>> from parallelizer import MultiprocessingParallelizer, OversubscriptionWarning
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", OversubscriptionWarning)
        ...     MultiprocessingParallelizer(nprocs=4096)  # not started: no processes yet
        MultiprocessingParallelizer(id=0, nprocs=4096)
    """
