"""``python -m parallelizer``: run scripts, launch MPI jobs, show the set-up.

::

    python -m parallelizer script.py [args]        # like `python script.py`, but an
                                                   # uncaught exception aborts the MPI job
    python -m parallelizer -n 4 script.py [args]   # the same on 4 ranks, through the
                                                   # mpiexec of the installed MPI
    python -m parallelizer info                    # versions, MPI, mpiexec, backends, problems

``info`` never initializes MPI, so it also works where MPI cannot start
(under another MPI's ``mpiexec``). It ends with a line per problem it finds:
``error`` for what makes runs fail (a launcher of another MPI, a
``PARALLELIZER`` value that names no parallelizer), ``warning`` for what
may (the ``mpiexec`` first on ``PATH`` belongs to another MPI); its exit
status is 1 when there is an error, else 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import runpy
import sys
from collections.abc import Sequence

from . import __version__, registry
from ._core import context, env
from ._mpi import abort, runtime
from .base import Parallelizer
from .errors import LaunchMismatchError

USAGE = """\
python -m parallelizer [-n N] [--pool] script.py [args ...]
       python -m parallelizer [-n N] [--pool] -m module [args ...]
       python -m parallelizer info"""
MODULE_MARK = "python-module:"  # how a "-m module" target travels through the argument parsing


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m parallelizer`` and of the ``parallelizer`` command.

    Args:
        argv: The arguments after the program name; default ``sys.argv[1:]``.

    Returns:
        The exit status (``-n`` replaces the process with ``mpiexec`` instead).

    Example:
        >>> from parallelizer.cli import main
        >>> main(["info"])  # doctest: +ELLIPSIS
        parallelizer ...
        lookup(None) ...
        0
    """
    args = list(sys.argv[1:] if argv is None else argv)
    module = None
    for index, arg in enumerate(args):  # "-m module": like python, a module instead of a script
        if not arg.startswith("-") and not _is_count(args, index):
            break
        if arg == "-m" and index + 1 < len(args):
            module = args[index + 1]
            args = [*args[:index], MODULE_MARK + module, *args[index + 2 :]]
            break
    parser = argparse.ArgumentParser(
        prog="python -m parallelizer",
        usage=USAGE,
        description="Run a script with abort-on-exception under MPI, launch it on N ranks, or show the set-up.",
    )
    parser.add_argument("-n", "--nprocs", type=int, help="launch N processes with the installed MPI's mpiexec")
    parser.add_argument(
        "--pool",
        action="store_true",
        help="rank 0 runs the script; the other ranks serve its executors and ClientServerRunners",
    )
    parser.add_argument("script", help="the script to run, or 'info'")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    # Everything after the script belongs to the script, even what looks like an option.
    split = next(
        (
            i
            for i, arg in enumerate(args)
            if (not arg.startswith("-") or arg.startswith(MODULE_MARK)) and not _is_count(args, i)
        ),
        len(args),
    )
    options = parser.parse_args(args[: split + 1]) if split < len(args) else parser.parse_args(args)
    options.args = args[split + 1 :]
    if options.script == "info" and options.nprocs is None:
        return _info()
    if options.nprocs is not None:
        if options.nprocs < 1:
            parser.error("-n must be at least 1")
        return launch(options.nprocs, options.script, options.args, pool=options.pool)
    try:
        if options.pool:
            run_pool(options.script, options.args)
        else:
            run_script(options.script, options.args)
    except LaunchMismatchError as exc:  # raised before MPI started: nothing to abort
        sys.stderr.write(f"python -m parallelizer: LaunchMismatchError: {exc}\n")
        return 1
    return 0


def _is_count(args: list[str], index: int) -> bool:
    """True if ``args[index]`` is the value of a preceding ``-n``/``--nprocs``."""
    return index > 0 and args[index - 1] in ("-n", "--nprocs")


def run_script(path: str, args: Sequence[str]) -> None:
    """Runs ``path`` as ``__main__`` with ``sys.argv = [path, *args]`` (``python-module:name``: the module ``name``).

    An exception escaping the script aborts the MPI job (or, without MPI,
    exits with status 1) after printing the traceback with the rank.

    Args:
        path: The script.
        args: Its command-line arguments.

    Example:
        ``mpiexec -n 4 python -m parallelizer simulate.py --steps 10`` calls,
        on every rank::

            run_script("simulate.py", ["--steps", "10"])
    """
    module = path[len(MODULE_MARK) :] if path.startswith(MODULE_MARK) else None
    if module is None and not os.path.exists(path):
        sys.stderr.write(f"python -m parallelizer: can't open file {path!r}: no such file\n")
        raise SystemExit(2)
    sys.argv = [module or path, *args]
    sys.path.insert(0, os.getcwd() if module else os.path.dirname(os.path.abspath(path)))
    launched = env.launcher_world_size()
    if launched is not None and launched[0] > 1:
        # Under mpiexec every rank initializes MPI now, whether the script uses
        # it or not: a failure anywhere can then abort the whole job.
        runtime.load()
    try:
        if module is not None:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code in (None, 0) or not runtime.initialized():
            raise  # a plain exit: nobody waits for this process
        abort.abort(exc)
    except BaseException as exc:
        abort.abort(exc)


def run_pool(path: str, args: Sequence[str]) -> None:
    """``--pool``: rank 0 runs ``path``; the other ranks serve its executors and runners until it ends.

    Without an MPI launcher (one process) it runs the script like :func:`run_script`.

    Example:
        ``mpiexec -n 4 python -m parallelizer --pool fit.py`` calls, on every rank::

            run_pool("fit.py", [])
    """
    launched = env.launcher_world_size()
    if launched is None or launched[0] <= 1:
        run_script(path, args)
        return
    from .mpi import MPIParallelizer
    from .runner import end_pool, serve_pool

    par = MPIParallelizer()
    if not par.on_main:
        try:
            serve_pool(par)
        except BaseException as exc:
            abort.abort(exc)
        return
    par._pool_main = True
    context.push(par)  # the script's Parallelizer.lookup() finds the pool's group
    try:
        run_script(path, args)
    finally:
        from .executor import shut_down_on

        shut_down_on(par)  # executors the script left open (joblib's, say) finish their work first
        end_pool(par)


def launch(nprocs: int, script: str, args: Sequence[str], *, pool: bool = False) -> int:
    """Runs ``script`` on ``nprocs`` ranks through the installed MPI's mpiexec.

    Replaces this process with ``mpiexec [flags] -n nprocs python -m
    parallelizer script args...`` (see :func:`launcher_flags`).

    Args:
        nprocs: The number of ranks.
        script: The script every rank runs.
        args: Its command-line arguments.
        pool: Launch in ``--pool`` mode (rank 0 runs the script, the others serve it).

    Returns:
        2 when no ``mpiexec`` was found; otherwise it does not return.

    Example:
        ``python -m parallelizer -n 4 simulate.py --steps 10`` calls::

            launch(4, "simulate.py", ["--steps", "10"])
    """
    mpiexec = runtime.find_mpiexec(runtime.library_family()) or runtime.find_mpiexec()
    if mpiexec is None:
        sys.stderr.write(f"python -m parallelizer: no mpiexec found; install one with: {runtime.INSTALL_HINT}\n")
        return 2
    command = [mpiexec, *launcher_flags(mpiexec, nprocs), "-n", str(nprocs)]
    target = ["-m", script[len(MODULE_MARK) :]] if script.startswith(MODULE_MARK) else [script]
    command += [sys.executable, "-m", "parallelizer", *(["--pool"] if pool else []), *target, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(mpiexec, command)  # replaces this process: never returns


def launcher_flags(mpiexec: str, nprocs: int) -> list[str]:
    """Flags Open MPI's mpiexec needs to run as root or on more ranks than cores.

    Args:
        mpiexec: Path of the ``mpiexec`` that will launch.
        nprocs: The number of ranks.

    Returns:
        ``--allow-run-as-root`` (as root) and ``--oversubscribe`` (more ranks
        than cores) for Open MPI; nothing for other MPI libraries.

    Example:
        Open MPI, as root, 8 ranks on a 4-core machine::

            >>> launcher_flags("/usr/bin/mpiexec", 8)  # doctest: +SKIP
            ['--allow-run-as-root', '--oversubscribe']
    """
    if runtime.mpiexec_flavor(mpiexec) != "openmpi":
        return []
    flags = []
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--allow-run-as-root")
    if nprocs > (os.cpu_count() or 1):
        flags.append("--oversubscribe")
    return flags


def info() -> str:
    """The versions, the MPI set-up, the backends, what ``lookup(None)`` picks, and the problems found.

    The text ``python -m parallelizer info`` prints. MPI is not initialized.

    Example:
        >>> from parallelizer.cli import info
        >>> print(info())  # doctest: +ELLIPSIS
        parallelizer ...
        mpiexec      ...
        lookup(None) ...
    """
    return _report()[0]


def _info() -> int:
    """``python -m parallelizer info``: prints :func:`info`, once per job; returns the exit status.

    Started by a launcher with several ranks (and no mismatch), every rank
    takes part in finding the job's layout (hosts, ranks per host) and rank 0
    alone prints the report with it.
    """
    layout = None
    announced = env.launcher_world_size()
    if announced is not None and announced[0] > 1:
        try:
            world = runtime.load().COMM_WORLD
        except (ImportError, LaunchMismatchError):
            pass  # the report says what is wrong
        else:
            from ._mpi import layout as job_layout

            layout = job_layout.gather(world)
            if world.Get_rank() != 0:
                return _report()[1]
    text, status = _report(layout)
    print(text, flush=True)
    return status


def _report(layout: str | None = None) -> tuple[str, int]:
    """The text of :func:`info` and the exit status of ``info``: 1 when it found an error.

    Args:
        layout: The job's hosts and ranks (:mod:`parallelizer._mpi.layout`), when known.
    """
    lines = [
        f"parallelizer {__version__}",
        f"python       {platform.python_version()} ({sys.executable})",
        f"numpy        {_version_of('numpy')}",
        f"cloudpickle  {_version_of('cloudpickle')}",
        f"mpi4py       {_version_of('mpi4py')}",
    ]
    errors: list[str] = []
    warnings: list[str] = []
    try:
        mpi_state = runtime.library_version()
        mismatch = runtime.launch_problem()
        path_warning = None if env.launcher_world_size() else runtime.path_problem()
    except ImportError as exc:
        mpi_state, mismatch, path_warning = f"not available ({exc})", None, None
    lines.append(f"MPI library  {mpi_state}")
    mpiexec = runtime.find_mpiexec(runtime.library_family()) or runtime.find_mpiexec()
    flavor = f" ({runtime.mpiexec_flavor(mpiexec)})" if mpiexec else ""
    lines.append(f"mpiexec      {mpiexec or 'not found: ' + runtime.INSTALL_HINT}{flavor}")
    from ._mp import cma, launch

    lines.append("backends     serial: available")
    lines.append(
        f"             multiprocessing: available ({env.usable_cpus()} usable CPUs; start methods "
        f"{', '.join(launch.START_METHODS)}; large arrays by "
        f"{'cross-memory attach' if cma.AVAILABLE else 'socket streaming'})"
    )
    if mismatch is not None:
        mpi_line = "not usable here: started by another MPI's launcher (see the error below)"
    else:
        mpi_line = "available" if mpiexec and not mpi_state.startswith("not available") else mpi_state
    lines.append(f"             mpi: {mpi_line}")
    lines.append(f"launcher     {_launcher_line()}")
    if layout is not None:
        lines.append(f"layout       {layout}")
    lines.append(f"lookup(None) {Parallelizer.explain_lookup()}")
    if mismatch is not None:
        errors.append(f"LaunchMismatchError: {mismatch}")
    if registry.lookup_error() is not None:
        errors.append(
            f"{env.BACKEND_VAR}={env.backend_spec()!r} is invalid, so lookup(None) raises (see above): set it to "
            f"one of {', '.join(registry.known_names())} (a name, or name:N), or unset it"
        )
    if path_warning is not None:
        warnings.append(path_warning)
    lines += [f"error        {text}" for text in errors] + [f"warning      {text}" for text in warnings]
    return "\n".join(lines), 1 if errors else 0


def _launcher_line() -> str:
    """Who started this process, for :func:`info`."""
    from ._mpi import launcher

    announced = env.launcher_world_size()
    started_by = launcher.detect(env.launcher_variables())
    if started_by is not None:
        count = f", {started_by.size} processes" if started_by.size is not None else ""
        return f"{started_by.name}{count} ({started_by.evidence})"
    if announced is not None:
        return f"{announced[1]}={announced[0]}"
    return "none (not started by mpiexec/srun)"


def _version_of(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
