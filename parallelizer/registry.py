"""Choosing a parallelizer: backends by name, and what ``lookup(None)`` picks.

The registry is a dict from names to factories (a class, or any callable
taking the backend's options). The built-in backends are named here as
import paths, so nothing is imported until a backend is used; third-party
packages add theirs through the ``parallelizer.backends`` entry-point group::

    [options.entry_points]
    parallelizer.backends =
        mybackend = mypackage.backend:MyParallelizer

``Parallelizer.lookup(None)`` resolves, in order: the innermost active
``with`` block (or running ``run``); the ``PARALLELIZER`` environment variable
(``name`` or ``name:N``); ``mpi`` when an MPI launcher started this process
with more than one rank; the default set with ``Parallelizer.set_default``;
``serial``.

This module knows names and factories only; :class:`parallelizer.Parallelizer`
(``lookup``, ``register``, ``set_default``, ``get_default``) checks that what
a factory builds is a parallelizer.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from ._core import context, env

__all__ = [
    "ENTRY_POINT_GROUP",
    "known_names",
    "parse_spec",
    "register",
    "automatic_choice",
    "lookup_error",
    "explain",
]

ENTRY_POINT_GROUP = "parallelizer.backends"
"""The entry-point group through which installed packages add backends.

Example:
    A package declares its backend in its ``setup.cfg``; once it is
    installed, ``Parallelizer.lookup("mybackend")`` builds it::

        [options.entry_points]
        parallelizer.backends =
            mybackend = mypackage.backend:MyParallelizer
"""

Factory = Callable[..., Any]
P = TypeVar("P", bound="Choosing")

_BUILTIN: dict[str, str] = {
    "serial": "parallelizer.serial:SerialNonParallelizer",
    "multiprocessing": "parallelizer.mp:MultiprocessingParallelizer",
    "mpi": "parallelizer.mpi:MPIParallelizer",
}

_lock = threading.RLock()
_registered: dict[str, Factory] = {}
_default: object | None = None  # a parallelizer, a "name[:N]", or None
# Parallelizers built by lookup(None) and get_default(), reused by later calls
# so that every function of a program shares one group.
_cache: dict[Hashable, object] = {}


def resolve(path: str) -> Any:
    """The object named ``"package.module:attribute"``, imported on first use.

    How the built-in backends (and the pool layer, for
    ``Parallelizer.executor``) are named, so that nothing is imported, and no
    module imports its own users, until they are needed.
    """
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


def factory(name: str, where: str) -> Factory:
    """The factory registered as ``name``.

    Raises:
        ValueError: No backend has that name; the message lists the known ones.
    """
    with _lock:
        found = _registered.get(name)
    if found is not None:
        return found
    if name in _BUILTIN:
        return resolve(_BUILTIN[name])  # type: ignore[no-any-return]
    entry = _entry_points().get(name)
    if entry is None:
        raise ValueError(f"unknown parallelizer {name!r} in {where}; known names: {', '.join(known_names())}")
    return entry.load()  # type: ignore[no-any-return]


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


def _takes(make: Factory, keyword: str) -> bool:
    """Whether ``make`` accepts the keyword argument ``keyword`` (``True`` when its signature is unknown)."""
    import inspect  # only where a spec names a process count (inspect is slow to import)

    try:
        parameters = inspect.signature(make).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        or (p.name == keyword and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        for p in parameters
    )


def _no_count(name: str, nprocs: object, where: str) -> ValueError:
    """The error for a process count given to a backend that takes none."""
    if name == "mpi":
        why = f"MPI takes the number of processes from the launcher (mpiexec -n {nprocs} python script.py)"
    elif name == "serial":
        why = "the serial parallelizer always runs one process"
    else:
        why = "its factory has no nprocs parameter"
    return ValueError(
        f"{where} asks for {nprocs} processes, but {name!r} takes no process count: {why}; "
        f"only 'multiprocessing' takes one (e.g. multiprocessing:{nprocs})"
    )


def build(name: str, options: dict[str, Any], where: str) -> object:
    """Calls the factory of ``name`` with ``options``.

    Raises:
        ValueError: ``options`` has a process count (``name:N``, ``nprocs=N``)
            that the backend does not take: ``serial`` and ``mpi`` take none.
    """
    make = factory(name, where)
    if "nprocs" in options and not _takes(make, "nprocs"):
        raise _no_count(name, options["nprocs"], where)
    return make(**options)


Maker = Callable[[str, dict[str, Any], str], object]


def shared(name: str, options: dict[str, Any], where: str, make: Maker) -> object:
    """Builds ``name`` once per set of options (with ``make``) and reuses it afterwards."""
    try:
        key: Hashable = (name, tuple(sorted(options.items())))
        hash(key)
    except TypeError:
        return make(name, options, where)
    with _lock:
        par = _cache.get(key)
        if par is None:
            par = _cache[key] = make(name, options, where)
        return par


def automatic_choice() -> tuple[object, dict[str, Any], str]:
    """What ``lookup(None)`` builds outside any ``with`` block.

    Returns:
        ``(parallelizer or name, options, where)``; ``where`` names what
        chose it, for error messages.
    """
    return _choice()[:3]


def _choice() -> tuple[object, dict[str, Any], str, str]:
    """:func:`automatic_choice`, plus why, as a clause that follows "because"."""
    spec = env.backend_spec()
    if spec is not None:
        name, spec_options = parse_spec(spec, f"the environment variable {env.BACKEND_VAR}")
        where = f"the environment variable {env.BACKEND_VAR}={spec!r}"
        return name, spec_options, where, f"the environment variable {env.BACKEND_VAR} is {spec!r}"
    launcher = env.launcher_world_size()
    if launcher is not None and launcher[0] > 1:
        where = f"an MPI launcher that started {launcher[0]} ranks ({launcher[1]}={launcher[0]})"
        return "mpi", {}, where, f"an MPI launcher started {launcher[0]} ranks ({launcher[1]}={launcher[0]})"
    with _lock:
        default = _default
    where = "the default set with Parallelizer.set_default"
    why = "it is the default set with Parallelizer.set_default"
    if isinstance(default, str):
        name, spec_options = parse_spec(default, "the default")
        return name, spec_options, where, why
    if default is not None:
        return default, {}, where, why
    where = "the fallback (no PARALLELIZER, no MPI launcher, no default)"
    return "serial", {}, where, "nothing else applies (no PARALLELIZER, no MPI launcher, no default)"


def lookup_error() -> str | None:
    """The message of the ``ValueError`` that ``lookup(None)`` would raise here, or ``None``.

    Outside ``with`` blocks only the ``PARALLELIZER`` variable can make it
    fail (an unknown name, a bad count); ``python -m parallelizer info``
    reports it.

    Example:
        >>> import os
        >>> os.environ["PARALLELIZER"] = "bogus"
        >>> try:
        ...     print(lookup_error())
        ... finally:
        ...     del os.environ["PARALLELIZER"]  # doctest: +ELLIPSIS
        unknown parallelizer 'bogus' in the environment variable PARALLELIZER='bogus'; known names: ...
    """
    try:
        choice, _, where, _ = _choice()
        if isinstance(choice, str):
            factory(choice, where)
    except ValueError as exc:
        return str(exc)
    return None


def explain(active: object | None) -> str:
    """Says which backend ``lookup(None)`` would choose here, and why.

    ``python -m parallelizer info`` prints it.

    Args:
        active: The innermost active parallelizer, if any.

    Example:
        >>> from parallelizer import SerialNonParallelizer
        >>> print(explain(SerialNonParallelizer()))
        SerialNonParallelizer(id=0, nprocs=1), the innermost active with-block
        >>> print(explain(None))
        serial, because nothing else applies (no PARALLELIZER, no MPI launcher, no default)
    """
    if active is not None:
        return f"{active!r}, the innermost active with-block"
    problem = lookup_error()
    if problem is not None:
        return f"raises ValueError: {problem}"
    choice, options, _, why = _choice()
    name = choice if isinstance(choice, str) else repr(choice)
    extra = f" with {options}" if options else ""
    return f"{name}{extra}, because {why}"


def register(name: str, factory: Factory) -> None:
    """Adds a backend (or replaces one) under ``name``.

    Args:
        name: The name for ``lookup``; no ``:`` (that introduces a count).
        factory: A :class:`~parallelizer.Parallelizer` subclass, or a callable
            taking the backend's options and returning a parallelizer.

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


def set_default(value: object) -> None:
    """Stores what ``lookup(None)`` falls back to: a parallelizer, a name, or ``None``.

    Raises:
        ValueError: A name that no backend has, or a count for a backend that takes none.
    """
    global _default
    if isinstance(value, str):
        name, options = parse_spec(value, "par_or_name")
        make = factory(name, "par_or_name")  # unknown names and counts fail here, not later
        if "nprocs" in options and not _takes(make, "nprocs"):
            raise _no_count(name, options["nprocs"], f"par_or_name {value!r}")
    with _lock:
        _default = value


def get_default() -> object | None:
    """What :func:`set_default` stored."""
    with _lock:
        return _default


class Choosing:
    """The registry as :class:`~parallelizer.Parallelizer` offers it: ``lookup`` and friends.

    A base class of ``Parallelizer``, so ``Parallelizer.lookup(...)`` returns
    a ``Parallelizer`` without this module importing the base class.
    """

    @classmethod
    def lookup(cls: type[P], key: P | str | None = None, **options: Any) -> P:
        """Returns a parallelizer for ``key``.

        Args:
            key: A :class:`Parallelizer` (returned as it is); a registered name,
                optionally with a count (``"multiprocessing:4"``), built with
                ``options``; or ``None``: the innermost active ``with`` block's
                parallelizer, else the one named by ``PARALLELIZER``, else
                ``MPIParallelizer`` when launched by mpiexec with more than one
                rank, else the default set with :meth:`set_default`, else
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
        if isinstance(key, Choosing):
            if options:
                raise TypeError(f"options {sorted(options)} cannot be applied to an existing parallelizer")
            return key
        if isinstance(key, str):
            name, spec_options = parse_spec(key, "key")
            return _build(cls, name, {**spec_options, **options}, f"key {key!r}")
        if key is not None:
            raise TypeError(f"key must be a Parallelizer, a registered name or None, not {type(key).__name__}")
        active = context.current()
        if isinstance(active, cls):
            return active
        choice, spec_options, where = automatic_choice()
        if isinstance(choice, cls):
            return choice
        assert isinstance(choice, str)
        return _shared(cls, choice, {**spec_options, **options}, where)

    @staticmethod
    def register(name: str, factory: Callable[..., Any]) -> None:
        """Adds a backend by name: see :func:`parallelizer.registry.register`.

        Example:
            >>> from parallelizer import Parallelizer, SerialNonParallelizer
            >>> Parallelizer.register("laptop", lambda nprocs=1: SerialNonParallelizer())
            >>> Parallelizer.lookup("laptop")
            SerialNonParallelizer(id=0, nprocs=1)
        """
        register(name, factory)

    @classmethod
    def set_default(cls, par_or_name: Choosing | str | None) -> None:
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
        given: object = par_or_name  # checked at run time whatever the annotation says
        if given is not None and not isinstance(given, (str, Choosing)):
            raise TypeError(
                f"par_or_name must be a Parallelizer, a registered name or None, not {type(given).__name__}"
            )
        set_default(given)

    @classmethod
    def get_default(cls: type[P]) -> P:
        """The parallelizer set with :meth:`set_default` (built if given by name).

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
        default = get_default()
        if isinstance(default, cls):
            return default
        name, options = parse_spec(default if isinstance(default, str) else "serial", "the default")
        return _shared(cls, name, options, "the default")

    @classmethod
    def explain_lookup(cls) -> str:
        """Says which parallelizer ``lookup(None)`` would return here, and why.

        ``python -m parallelizer info`` prints it.

        Example:
            >>> from parallelizer import Parallelizer, SerialNonParallelizer
            >>> with SerialNonParallelizer():
            ...     print(Parallelizer.explain_lookup())
            SerialNonParallelizer(id=0, nprocs=1), the innermost active with-block
        """
        active = context.current()
        return explain(active if isinstance(active, Choosing) else None)


def _build(kind: type[P], name: str, options: dict[str, Any], where: str) -> P:
    """Builds the backend ``name`` and checks that its factory made a parallelizer."""
    par = build(name, options, where)
    if not isinstance(par, kind):
        raise TypeError(f"the factory registered as {name!r} returned {type(par).__name__}, not a Parallelizer")
    return par


def _shared(kind: type[P], name: str, options: dict[str, Any], where: str) -> P:
    """Builds ``name`` once per set of options and reuses it afterwards."""
    par = shared(name, options, where, lambda n, o, w: _build(kind, n, o, w))
    assert isinstance(par, kind)
    return par
