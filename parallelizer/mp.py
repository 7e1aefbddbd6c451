"""``MultiprocessingParallelizer``: the contract on processes of one machine.

The caller is rank 0 (main); ``nprocs - 1`` worker processes are started by
``with par:`` (and reused by every ``run`` inside it) or by ``run`` itself.
The machinery lives in :mod:`parallelizer._mp` (:mod:`parallelizer._mp.group`
draws a whole run): sockets between every pair of processes for small
messages, and large arrays copied straight from the sender's memory into the
receiver's (cross-memory attach, with a socket fallback), so numpy data is
never pickled into a byte stream and nothing is ever left in ``/dev/shm``.
"""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any, TextIO

from ._core import checks, env, outbuf
from ._core.tags import Space
from ._mp import collectives, into, launch, wire, worker
from ._mp.endpoint import Endpoint
from ._mp.group import Group
from ._mp.protocol import MainProtocol
from ._mp.rendezvous import PendingSend
from .base import Parallelizer
from .errors import OversubscriptionWarning, SerializationError

__all__ = ["MultiprocessingParallelizer"]

_KINDS = {Space.USER: wire.Kind.USER, Space.COLL: wire.Kind.COLL}

# Every MultiprocessingParallelizer of this process, by token, so that a
# pickled one comes back as the same object (on a worker: that worker's view).
_instances: weakref.WeakValueDictionary[str, MultiprocessingParallelizer] = weakref.WeakValueDictionary()


_oversubscription_warned = False  # OversubscriptionWarning is given once per process


def _warn_if_oversubscribed(nprocs: int) -> None:
    """Warns (once per process) when ``nprocs`` exceeds the CPUs this process may use."""
    global _oversubscription_warned
    cpus = env.usable_cpus()
    if nprocs <= cpus or _oversubscription_warned:
        return
    _oversubscription_warned = True
    warnings.warn(
        f"MultiprocessingParallelizer(nprocs={nprocs}) starts {nprocs} processes on {cpus} usable CPU(s): "
        f"they share the CPUs, so CPU-bound work gets no faster beyond nprocs={cpus} "
        "(warned once per process; see parallelizer.OversubscriptionWarning)",
        OversubscriptionWarning,
        stacklevel=3,
    )


def _restore(token: str) -> MultiprocessingParallelizer:
    par = _instances.get(token)
    if par is None:
        raise RuntimeError(
            "a pickled MultiprocessingParallelizer can only be unpickled in the processes of its own group"
        )
    return par


class MultiprocessingParallelizer(Parallelizer):
    """Runs SPMD code on ``nprocs`` local processes; the caller is rank 0.

    Args:
        nprocs: Processes in the group, the caller included; default: the
            number of CPUs this process may use. More than that works but
            gives an :class:`~parallelizer.OversubscriptionWarning` (once per
            process).
        start_method: ``"spawn"`` (default: a fresh interpreter per worker,
            safe with threads, no ``__main__`` guard needed) or ``"fork"``
            (faster start; unsafe if main runs threads). The default can be
            set with ``PARALLELIZER_START_METHOD``.
        debug: Check that every process calls the same collectives (see
            :attr:`Parallelizer.debug`); default: ``PARALLELIZER_DEBUG``.
        timeout: The longest any process waits in one call, in seconds
            (see :attr:`Parallelizer.timeout`); default: ``PARALLELIZER_TIMEOUT``,
            else no limit. A worker waiting on main alone gives main one more
            second, so that main, which may be waiting in the same call for
            the rank really stuck, is the one that reports it.

    Example:
        >>> import numpy as np
        >>> def run_job(parallelizer=None):
        ...     data = np.arange(1000) if parallelizer.on_main else None
        ...     return parallelizer.gather(len(parallelizer.scatter(data)))
        >>> MultiprocessingParallelizer(nprocs=3).run(run_job)
        [334, 333, 333]
    """

    def __init__(
        self,
        nprocs: int | None = None,
        start_method: str | None = None,
        *,
        debug: bool | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(debug=debug, timeout=timeout)
        self._nprocs = env.usable_cpus() if nprocs is None else checks.check_nprocs(nprocs)
        _warn_if_oversubscribed(self._nprocs)
        method = start_method if start_method is not None else (env.start_method() or launch.DEFAULT_START_METHOD)
        if method not in launch.START_METHODS:
            raise ValueError(f"start_method must be one of {launch.START_METHODS}, got {method!r}")
        self._start_method = method
        self._rank = 0
        self._token = os.urandom(16).hex()  # not uuid: a spawned worker imports this module, and uuid costs it 4 ms
        self._group: Group | None = None
        self._endpoint: Endpoint | None = None  # workers only
        self._later: list[PendingSend] = []  # sends that do not wait (_send_later)
        _instances[self._token] = self

    @classmethod
    def _worker_view(
        cls, setup: dict[str, Any], rank: int, nprocs: int, endpoint: Endpoint
    ) -> MultiprocessingParallelizer:
        """The parallelizer as a worker process sees it (a :data:`worker.ViewFactory`)."""
        view = cls.__new__(cls)
        Parallelizer.__init__(view, debug=setup["debug"], timeout=setup["timeout"])
        view._nprocs = nprocs
        view._start_method = "worker"
        view._rank = rank
        view._token = setup["token"]
        view._group = None
        view._endpoint = endpoint
        view._later = []
        view._nesting = 1  # started: the group runs as long as the worker does
        _instances[view._token] = view
        return view

    @property
    def id(self) -> int:
        """This process's rank (0 on main).

        Example:
            >>> MultiprocessingParallelizer(nprocs=2).run(lambda parallelizer: parallelizer.gather(parallelizer.id))
            [0, 1]
        """
        return self._rank

    @property
    def nprocs(self) -> int:
        """The number of processes, main included.

        Example:
            >>> MultiprocessingParallelizer(nprocs=4).nprocs
            4
        """
        return self._nprocs

    @property
    def start_method(self) -> str:
        """How worker processes are started: ``"spawn"`` or ``"fork"``.

        Example:
            >>> MultiprocessingParallelizer(nprocs=2, start_method="fork").start_method
            'fork'
        """
        return self._start_method

    def __repr__(self) -> str:
        return f"MultiprocessingParallelizer(id={self._rank}, nprocs={self._nprocs})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self._token,))

    # ------------------------------------------------------------------ lifecycle

    def _start(self) -> None:
        if self._endpoint is not None:
            return  # a worker's view is started for as long as the worker lives
        settings = {"token": self._token, "debug": self._debug, "timeout": self._timeout}
        group = Group(self._nprocs, self._start_method, settings, type(self)._worker_view)
        group.start()
        self._group = group

    def _stop(self, exc: BaseException | None) -> None:
        if self._group is not None:
            group, self._group = self._group, None
            group.stop(exc)

    def _run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        group = self._group
        if group is None or group.running:
            raise RuntimeError("run() cannot be called from inside run(): func already runs on every process")
        return group.run(func, args, kwargs, self)

    # ------------------------------------------------------------------ transport

    def _ep(self) -> Endpoint:
        if self._endpoint is not None:
            return self._endpoint
        group = self._group
        if group is None or not group.running or group.endpoint is None:
            raise RuntimeError(
                "MultiprocessingParallelizer: collectives and send/recv are called inside run(), "
                "where every process runs func; outside it only main exists"
            )
        return group.endpoint

    def _connected(self) -> bool:
        group = self._group
        return self._endpoint is not None or (group is not None and group.running)

    def _spmd_here(self) -> bool:
        # main's group may be running for another thread (a background executor's)
        return self._endpoint is not None or threading.get_ident() in self._run_threads

    def _send_to(self, obj: Any, dest: int, tag: int, space: Space) -> None:
        self._ep().send(obj, dest, _KINDS[space], tag, f"the object sent to rank {dest}")

    def _recv_from(self, source: int, tag: int, space: Space) -> Any:
        what = f"recv(source={source}, tag={tag})" if space == Space.USER else (self._caller or "a collective")
        return self._ep().recv(source, _KINDS[space], tag, what)

    def _recv_from_any(self, tag: int, space: Space, block: bool) -> tuple[int, Any] | None:
        return self._ep().recv_any(_KINDS[space], tag, self._caller or "map", block)

    def _send_later(self, obj: Any, dest: int, tag: int, space: Space) -> None:
        if dest == self.id:
            self._send(obj, dest, tag, space)
            return
        endpoint = self._ep()
        self._later = [pending for pending in self._later if not endpoint.rendezvous.done(pending)]
        self._later.append(endpoint.post(obj, (dest,), _KINDS[space], tag, f"the object sent to rank {dest}"))

    def _complete_sends(self) -> None:
        if self._later:
            pending, self._later = self._later, []
            self._ep().wait_sent(*pending)

    def _replace(self, rank: int, entry: Callable[..., Any]) -> bool:
        group = self._group
        if group is None or not group.owned():
            return False
        group.replace(rank, entry)
        return True

    def _excuse(self, rank: int) -> None:
        protocol = self._ep().protocol
        if isinstance(protocol, MainProtocol):
            protocol.excused.add(rank)

    def _idle(self, seconds: float | None, fd: int | None) -> None:
        endpoint = self._ep()
        if fd is not None:
            endpoint.loop.watch(fd)
        endpoint.loop.pump(block=True, timeout_ms=None if seconds is None else max(1, int(seconds * 1000)))

    def _bcast(self, obj: Any, root: int) -> Any:
        return collectives.bcast(self._ep(), obj, root)

    def _scatter(self, data: Any, bounds: list[tuple[int, int]] | None, root: int) -> Any:
        return collectives.scatter(self._ep(), data, bounds, root)

    def _gather(self, obj: Any, root: int) -> Any:
        return collectives.gather(self._ep(), obj, root)

    def _allgather(self, obj: Any) -> Any:
        endpoint = self._ep()
        if endpoint.polls:
            return collectives.allgather_all(endpoint, obj, self._caller or "allgather()")
        return super()._allgather(obj)

    def _allreduce(self, obj: Any, op: object, func: Callable[[Any, Any], Any]) -> Any:
        endpoint = self._ep()
        if endpoint.nprocs == 2 and endpoint.polls:
            return collectives.allreduce_pair(endpoint, obj, func, self._caller or "allreduce()")
        return super()._allreduce(obj, op, func)

    # out=: arrays pulled straight into out once every process has checked its own (_mp.into)

    def _agreement(self, call: str) -> Callable[[str | None], None]:
        """Every process's verdict on its ``out`` exchanged; ``ValueError`` on all if one is bad."""
        return lambda problem: outbuf.check_all(self._allgather(problem), call)

    def _bcast_into(self, obj: Any, root: int, out: Any) -> Any:
        if not self._together():
            return super()._bcast_into(obj, root, out)
        return into.bcast(self._ep(), obj, root, out, self._agreement("broadcast"))

    def _scatter_into(self, data: Any, bounds: list[tuple[int, int]] | None, root: int, out: Any) -> Any:
        if not self._together():
            return super()._scatter_into(data, bounds, root, out)
        return into.scatter(self._ep(), data, bounds, root, out, self._agreement("scatter"))

    def _gather_into(self, obj: Any, root: int, out: Any) -> Any:
        if not self._together():
            return super()._gather_into(obj, root, out)
        if self.id != root:
            return into.gather_part(self._ep(), obj, root, self._agreement("gather"))
        return collectives.gather_into(self._ep(), outbuf.apart(obj, out), root, out, self._agreement("gather"))

    def _allgather_into(self, obj: Any, out: Any) -> Any:
        if not self._together():
            return super()._allgather_into(obj, out)
        what = self._caller or "allgather()"
        return collectives.allgather_all(self._ep(), outbuf.apart(obj, out), what, out, self._agreement("allgather"))

    def _reduce_into(self, obj: Any, op: object, func: Callable[[Any, Any], Any], root: int, out: Any) -> Any:
        if not self._together():
            return super()._reduce_into(obj, op, func, root, out)
        if self.id != root:  # off root the result is None: out is ignored, but this process agrees too
            return into.gather_part(self._ep(), obj, root, self._agreement("reduce"))
        return into.reduce_root(self._ep(), obj, root, op, func, out, self._agreement("reduce"))

    def _allreduce_into(self, obj: Any, op: object, func: Callable[[Any, Any], Any], out: Any) -> Any:
        if not self._together():
            return super()._allreduce_into(obj, op, func, out)
        endpoint = self._ep()
        agree = self._agreement("allreduce")
        if endpoint.nprocs == 2 and endpoint.polls:
            what = self._caller or "allreduce()"
            return into.allreduce_pair(endpoint, outbuf.apart(obj, out), op, func, out, agree, what)
        # rank 0 computes the result, which every process pulls into its out
        outcome = self._reduced_on_0(obj, func)
        try:
            got = into.bcast(endpoint, outcome, 0, out, agree, "allreduce")
        except SerializationError as exc:  # a result rank 0 cannot pickle (what a callable op returned)
            self._refuse_unpicklable(exc, 0)
            raise
        checks.refused(outcome)  # (elsewhere: this process's own part, refused; see _on_0)
        checks.refused(got)
        return got

    def _barrier(self) -> None:
        endpoint = self._ep()
        if endpoint.polls:
            collectives.barrier(endpoint, self._caller or "barrier()")
        else:
            super()._barrier()

    def _emit(self, text: str, file: TextIO | None) -> None:
        if self._endpoint is not None and file is None:  # a worker: main prints it
            self._endpoint.control(0, wire.Kind.PRINT, body=text.encode("utf-8"))
        else:
            super()._emit(text, file)


def _spawned_worker(argv: list[str]) -> None:
    """Entry point of a spawned worker process (``launch._BOOTSTRAP`` calls it)."""
    worker.spawn_main(argv, MultiprocessingParallelizer._worker_view)
