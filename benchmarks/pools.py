"""Pools on local processes: ours against concurrent.futures and loky, in one run.

``python -m benchmarks.pools`` measures, on 2 local processes:

* *submit 10,000 trivial tasks then collect them*: ours ``par.executor()``
  (``MultiprocessingParallelizer(2)``: main plus one serving process) against
  ``ProcessPoolExecutor(2)`` and loky's ``get_reusable_executor(2)`` (joblib's
  process pool), every pool started and warmed up first;
* *50 applies on a pushed 256 MiB array* (``push(scatter=True)`` once, then
  ``apply(f, handle)``), against 50 applies of a function that ignores a small
  argument: the pushed array must cost no transfer;
* *push(scatter=True) of 256 MiB* against ``scatter`` of the same array (SPMD,
  inside ``run``), both into the processes' own memory;
* *executor start-up*: from ``par.executor()`` to its first result, in a
  fresh interpreter each time, against ``ProcessPoolExecutor(2)``'s first
  result.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .context import entry_point, forward_args, launch, python_module
from .harness import MiB, Report, read_json, write_json
from .workloads import noop, square

MODULE = "benchmarks.pools"
NPROCS = 2
TASKS = 10_000
BIG = 256 * MiB
SECTION = "pools on local processes (2 processes)"
SUBMIT = f"submit {TASKS:,} trivial tasks, then collect"
APPLY = "50 applies on a pushed 256 MiB array"
PUSH = "push(scatter=True) of 256 MiB"
START = "executor start-up: first result"


def _submit_all(executor) -> float:
    began = time.perf_counter()
    futures = [executor.submit(square, i) for i in range(TASKS)]
    total = sum(future.result() for future in futures)
    assert total == sum(i * i for i in range(TASKS))
    return time.perf_counter() - began


def bench_submit(report: Report, repeats: int) -> None:
    from joblib.externals.loky import get_reusable_executor

    from parallelizer import MultiprocessingParallelizer

    systems = {
        "ours (executor, multiprocessing:2)": lambda: MultiprocessingParallelizer(nprocs=NPROCS).executor(),
        "ProcessPoolExecutor(2)": lambda: ProcessPoolExecutor(NPROCS),
        "loky (joblib) get_reusable_executor(2)": lambda: get_reusable_executor(max_workers=NPROCS),
    }
    for name, make in systems.items():
        executor = make()
        executor.submit(square, 1).result()  # started, warm
        samples = [_submit_all(executor) for _ in range(repeats)]
        report.add(SUBMIT, name, samples, work=TASKS)
        executor.shutdown()


def _ignore(_):
    return 0.0


def _block_sum(block):
    return float(block[:1].sum())


def _apply_client(repeats, parallelizer=None):
    import numpy as np

    handle = parallelizer.push(np.ones(BIG // 8), scatter=True)
    small = parallelizer.push(0.0)
    timings = {"pushed": [], "ignored": []}
    for _ in range(repeats):
        for name, func, arg in (("pushed", _block_sum, handle), ("ignored", _ignore, small)):
            began = time.perf_counter()
            for _ in range(50):
                parallelizer.apply(func, arg)
            timings[name].append(time.perf_counter() - began)
    pushes = []
    for _ in range(repeats):
        data = np.ones(BIG // 8)
        began = time.perf_counter()
        with parallelizer.push(data, scatter=True):
            pushes.append(time.perf_counter() - began)
    return timings, pushes


def _scatter_body(repeats, parallelizer=None):
    import numpy as np

    times = []
    for _ in range(repeats):
        data = np.ones(BIG // 8) if parallelizer.on_main else None
        parallelizer.barrier()
        began = time.perf_counter()
        block = parallelizer.scatter(data)
        block = block.copy() if parallelizer.on_main else block  # root's own copy, as push keeps one
        parallelizer.barrier()
        times.append(time.perf_counter() - began)
        del block
    return times


def bench_remote_objects(report: Report, repeats: int) -> None:
    from parallelizer import ClientServerRunner, MultiprocessingParallelizer

    with MultiprocessingParallelizer(nprocs=NPROCS) as par:
        timings, pushes = ClientServerRunner(_apply_client, parallelizer=par).run(repeats)
        scatters = par.run(_scatter_body, repeats)
    report.add(APPLY, "ours (apply on the pushed handle)", timings["pushed"], note="50 applies")
    report.add(APPLY, "ours (apply ignoring a small argument)", timings["ignored"], note="50 applies")
    report.add(PUSH, "ours (push(scatter=True))", pushes, size=BIG)
    report.add(PUSH, "ours (scatter, SPMD; root copies its block)", scatters, size=BIG)


STARTS = {
    "ours-fork": "ours (executor, multiprocessing:2, fork)",
    "ours-spawn": "ours (executor, multiprocessing:2, spawn)",
    "peer-fork": "ProcessPoolExecutor(2) (fork)",
    "peer-spawn": "ProcessPoolExecutor(2) (spawn)",
}


def _start_child(kind: str) -> float:
    """One start in this fresh interpreter; every module is imported before the clock starts."""
    import multiprocessing

    import parallelizer.executor  # noqa: F401 - imported before the clock, as the peer's modules are
    from parallelizer import MultiprocessingParallelizer

    system, _, method = kind.partition("-")
    began = time.perf_counter()
    if system == "ours":
        executor = MultiprocessingParallelizer(nprocs=NPROCS, start_method=method).executor()
    else:
        executor = ProcessPoolExecutor(NPROCS, mp_context=multiprocessing.get_context(method))
    executor.submit(noop).result()
    first = time.perf_counter() - began
    executor.shutdown()
    return first


def run_child(args: argparse.Namespace) -> None:
    kind, _, part = args.child.partition(":")
    write_json(Path(part), {"first": _start_child(kind)})


def bench_startup(report: Report, args: argparse.Namespace, repeats: int) -> None:
    results: dict[str, list[float]] = {kind: [] for kind in STARTS}
    for _ in range(repeats):
        for kind in results:
            part = Path(args.results) / f"pools.{kind}.tmp"
            launch(python_module(MODULE, *forward_args(args), "--child", f"{kind}:{part}"), min(args.timeout, 120))
            results[kind].append(read_json(part)["first"])
            part.unlink()
    for kind, samples in results.items():
        report.add(START, STARTS[kind], samples, note="fresh interpreter each, modules imported before")


def compare(report: Report) -> None:
    find = report.find
    ours = "ours (executor, multiprocessing:2)"
    for peer in ("ProcessPoolExecutor(2)", "loky (joblib) get_reusable_executor(2)"):
        report.compare(SECTION, SUBMIT, find(SUBMIT, ours), find(SUBMIT, peer), target=1.0)
    report.compare(
        SECTION,
        APPLY,
        find(APPLY, "ours (apply on the pushed handle)"),
        find(APPLY, "ours (apply ignoring a small argument)"),
        kind="cost",
        target=1.2,
    )
    report.compare(
        SECTION,
        PUSH,
        find(PUSH, "ours (push(scatter=True))"),
        find(PUSH, "ours (scatter, SPMD; root copies its block)"),
        target=0.9,
    )
    for method in ("fork", "spawn"):
        report.compare(
            SECTION,
            START,
            find(START, STARTS[f"ours-{method}"]),
            find(START, STARTS[f"peer-{method}"]),
            kind="cost",
            target=1.5,
        )


def run(args: argparse.Namespace) -> Report:
    repeats = 3 if args.quick else 7
    report = Report("pools", "pools on local processes: ours vs ProcessPoolExecutor and loky", args)
    report.extra["nprocs"] = NPROCS
    bench_submit(report, repeats)
    bench_remote_objects(report, repeats)
    bench_startup(report, args, repeats)
    return report.finish(compare)


def main() -> None:
    """Runs the benchmark, or is one fresh process of it."""
    entry_point(__doc__, run, run_child)


if __name__ == "__main__":
    main()
