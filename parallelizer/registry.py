"""Choosing a parallelizer: backends by name, and what ``lookup(None)`` picks.

The registry is a dict from names to factories (a class, or any callable
taking the backend's options). The built-in backends are named here as
import paths, so nothing is imported until a backend is used; third-party
packages add theirs through the ``parallelizer.backends`` entry-point group::

    [options.entry_points]
    parallelizer.backends =
        mybackend = mypackage.backend:MyParallelizer

``lookup(None)`` resolves, in order: the innermost active ``with`` block (or
running ``run``); the ``PARALLELIZER`` environment variable (``name`` or
``name:N``); ``mpi`` when an MPI launcher started this process with more than
one rank; the default set with :func:`set_default`; ``serial``.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Hashable
from typing import Any

from . import _context, _env
from .base import Parallelizer

__all__ = ["ENTRY_POINT_GROUP", "lookup", "register", "set_default", "get_default", "known_names", "explain"]

ENTRY_POINT_GROUP = "parallelizer.backends"
"""The entry-point group through which installed packages add backends.

Example:
    A package declares its backend in its ``setup.cfg``; once it is
    installed, ``Parallelizer.lookup("mybackend")`` builds it::

        [options.entry_points]
        parallelizer.backends =
            mybackend = mypackage.backend:MyParallelizer
"""

Factory = Callable[..., Parallelizer]

_BUILTIN: dict[str, str] = {
    "serial": "parallelizer.serial:SerialNonParallelizer",
    "multiprocessing": "parallelizer.mp:MultiprocessingParallelizer",
    "mpi": "parallelizer.mpi:MPIParallelizer",
}

_lock = threading.RLock()
_registered: dict[str, Factory] = {}
_default: Parallelizer | str | None = None
# Parallelizers built by lookup(None) and get_default(), reused by later calls
# so that every function of a program shares one group.
_cache: dict[Hashable, Parallelizer] = {}


def _import(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_names() -> list[str]:
    """Every backend name ``lookup`` accepts, sorted.

    Built-in, registered with :func:`register`, and from installed packages
    (the ``parallelizer.backends`` entry points).

    Example:
        >>> from parallelizer.registry import known_names
        >>> {"mpi", "multiprocessing", "serial"} <= set(known_names())
        True
    """
    with _lock:
        names = set(_BUILTIN) | set(_registered)
    return sorted(names | set(_entry_points()))


def _unknown(name: str, where: str) -> ValueError:
    return ValueError(f"unknown parallelizer {name!r} in {where}; known names: {', '.join(known_names())}")


def _factory(name: str, where: str) -> Factory:
    with _lock:
        factory = _registered.get(name)
    if factory is not None:
        return factory
    if name in _BUILTIN:
        return _import(_BUILTIN[name])  # type: ignore[no-any-return]
    found = _entry_points().get(name)
    if found is None:
        raise _unknown(name, where)
    return found.load()  # type: ignore[no-any-return]


def parse_spec(spec: str, where: str) -> tuple[str, dict[str, Any]]:
    """Splits ``"name"`` or ``"name:N"`` into the name and its options.

    Args:
        spec: The text, e.g. ``"multiprocessing:4"``.
        where: Where the text came from, for error messages.

    Raises:
        ValueError: ``N`` is not a positive integer, or the name is empty.

    Example:
        >>> parse_spec("multiprocessing:4", "PARALLELIZER")
        ('multiprocessing', {'nprocs': 4})
    """
    name, sep, count = spec.strip().partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"{where} must name a parallelizer (e.g. 'multiprocessing:4'), got {spec!r}")
    if not sep:
        return name, {}
    try:
        nprocs = int(count)
    except ValueError:
        nprocs = 0
    if nprocs < 1:
        raise ValueError(f"{where}: the process count after ':' must be a positive integer, got {spec!r}")
    return name, {"nprocs": nprocs}


def _build(name: str, options: dict[str, Any], where: str) -> Parallelizer:
    par = _factory(name, where)(**options)
    if not isinstance(par, Parallelizer):
        raise TypeError(f"the factory registered as {name!r} returned {type(par).__name__}, not a Parallelizer")
    return par


def _shared(name: str, options: dict[str, Any], where: str) -> Parallelizer:
    """Builds ``name`` once per set of options and reuses it afterwards."""
    try:
        key: Hashable = (name, tuple(sorted(options.items())))
        hash(key)
    except TypeError:
        return _build(name, options, where)
    with _lock:
        par = _cache.get(key)
        if par is None:
            par = _cache[key] = _build(name, options, where)
        return par


def lookup(key: Any = None, **options: Any) -> Parallelizer:
    """Returns a parallelizer for ``key``.

    Args:
        key: A :class:`Parallelizer` (returned as it is); a registered name,
            optionally with a count (``"multiprocessing:4"``), built with
            ``options``; or ``None``: the innermost active ``with`` block's
            parallelizer, else the one named by ``PARALLELIZER``, else
            ``MPIParallelizer`` when launched by mpiexec with more than one
            rank, else the default set with :func:`set_default`, else
            ``SerialNonParallelizer``.
        **options: Passed to the backend when one is built; they win over
            the count in ``PARALLELIZER``.

    Raises:
        ValueError: The name is unknown (the message lists the known names).
        TypeError: ``key`` is of another type, or options come with an instance.

    Example:
        >>> from parallelizer import Parallelizer, SerialNonParallelizer
        >>> Parallelizer.lookup("serial")
        SerialNonParallelizer(id=0, nprocs=1)
        >>> Parallelizer.lookup("multiprocessing:3")  # not started until used
        MultiprocessingParallelizer(id=0, nprocs=3)
        >>> with SerialNonParallelizer() as par:
        ...     Parallelizer.lookup() is par  # None: the innermost with block
        True

        A scientific function takes ``parallelizer=None`` and looks it up, so
        it runs serially when simply called and in parallel when run on a group:

        >>> def total(values, parallelizer=None):
        ...     par = Parallelizer.lookup(parallelizer)
        ...     return par.allreduce(sum(par.scatter(values if par.on_main else None)))
        >>> total(range(10))
        45
        >>> Parallelizer.lookup("multiprocessing:2").run(total, range(10))
        45
    """
    if isinstance(key, Parallelizer):
        if options:
            raise TypeError(f"options {sorted(options)} cannot be applied to an existing parallelizer")
        return key
    if isinstance(key, str):
        name, spec_options = parse_spec(key, "key")
        return _build(name, {**spec_options, **options}, "key")
    if key is not None:
        raise TypeError(f"key must be a Parallelizer, a registered name or None, not {type(key).__name__}")
    active = _context.current()
    if active is not None:
        return active
    choice, spec_options, where = _automatic_choice()
    if isinstance(choice, Parallelizer):
        return choice
    return _shared(choice, {**spec_options, **options}, where)


def _automatic_choice() -> tuple[Parallelizer | str, dict[str, Any], str]:
    """What ``lookup(None)`` builds outside any ``with`` block.

    Returns:
        ``(parallelizer or name, options, reason)``.
    """
    spec = _env.backend_spec()
    if spec is not None:
        name, spec_options = parse_spec(spec, f"the environment variable {_env.BACKEND_VAR}")
        return name, spec_options, f"the environment variable {_env.BACKEND_VAR}={spec!r}"
    launcher = _env.launcher_world_size()
    if launcher is not None and launcher[0] > 1:
        return "mpi", {}, f"an MPI launcher started {launcher[0]} ranks ({launcher[1]}={launcher[0]})"
    with _lock:
        default = _default
    if isinstance(default, str):
        name, spec_options = parse_spec(default, "the default")
        return name, spec_options, "the default set with Parallelizer.set_default"
    if default is not None:
        return default, {}, "the default set with Parallelizer.set_default"
    return "serial", {}, "nothing else applies (no PARALLELIZER, no MPI launcher, no default)"


def explain() -> str:
    """Says which backend ``lookup(None)`` would choose here, and why.

    ``python -m parallelizer info`` prints it.

    Example:
        >>> from parallelizer import SerialNonParallelizer
        >>> with SerialNonParallelizer():
        ...     print(explain())
        SerialNonParallelizer(id=0, nprocs=1), the innermost active with-block
    """
    active = _context.current()
    if active is not None:
        return f"{active!r}, the innermost active with-block"
    choice, options, reason = _automatic_choice()
    name = repr(choice) if isinstance(choice, Parallelizer) else choice
    extra = f" with {options}" if options else ""
    return f"{name}{extra}, because of {reason}"


def register(name: str, factory: Factory) -> None:
    """Adds a backend (or replaces one) under ``name``.

    Args:
        name: The name for ``lookup``; no ``:`` (that introduces a count).
        factory: A :class:`Parallelizer` subclass, or a callable taking the
            backend's options and returning a parallelizer.

    Example:
        >>> from parallelizer import Parallelizer, SerialNonParallelizer
        >>> Parallelizer.register("quiet", SerialNonParallelizer)
        >>> Parallelizer.lookup("quiet")
        SerialNonParallelizer(id=0, nprocs=1)
    """
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"name must be a non-empty str, not {name!r}")
    if ":" in name:
        raise ValueError(f"name must not contain ':' (it introduces a process count), got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be a Parallelizer class or a callable, not {type(factory).__name__}")
    with _lock:
        _registered[name.strip()] = factory


def set_default(par_or_name: Parallelizer | str | None) -> None:
    """Sets what ``lookup(None)`` returns when nothing else applies.

    That is, outside any ``with`` block, when ``PARALLELIZER`` is not set and
    no MPI launcher started this process.

    Args:
        par_or_name: A parallelizer, a registered name (``"name:N"``
            allowed), or ``None`` to go back to serial.

    Raises:
        ValueError: The name is unknown.
        TypeError: ``par_or_name`` is of another type.

    Example:
        >>> from parallelizer import Parallelizer
        >>> Parallelizer.set_default("multiprocessing:2")
        >>> Parallelizer.get_default()
        MultiprocessingParallelizer(id=0, nprocs=2)
        >>> Parallelizer.set_default(None)  # back to serial
    """
    global _default
    given: object = par_or_name  # checked at run time whatever the annotation says
    if isinstance(given, str):
        name, _ = parse_spec(given, "par_or_name")
        _factory(name, "par_or_name")  # unknown names fail here, not later
    elif given is not None and not isinstance(given, Parallelizer):
        raise TypeError(f"par_or_name must be a Parallelizer, a registered name or None, not {type(given).__name__}")
    with _lock:
        _default = par_or_name


def get_default() -> Parallelizer:
    """The parallelizer set with :func:`set_default` (built if given by name).

    ``SerialNonParallelizer`` when none was set. A default given by name is
    built once and the same instance returned afterwards.

    Example:
        >>> from parallelizer import Parallelizer, SerialNonParallelizer
        >>> mine = SerialNonParallelizer()
        >>> Parallelizer.set_default(mine)
        >>> Parallelizer.get_default() is mine
        True
        >>> Parallelizer.set_default(None)
        >>> Parallelizer.get_default()
        SerialNonParallelizer(id=0, nprocs=1)
    """
    with _lock:
        default = _default
    if isinstance(default, Parallelizer):
        return default
    name, options = parse_spec(default or "serial", "the default")
    return _shared(name, options, "the default")
