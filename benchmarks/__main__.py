"""Runs the whole suite: ``python -m benchmarks [--quick] [--mpiexec PATH] [--only NAME ...]``.

Every benchmark runs in its own process under a timeout (MPI ones launch
their own ``mpiexec`` jobs, each under a timeout too), so nothing can hang
the suite; a benchmark that fails is reported and the others still run.
Then ``RESULTS.md`` and the plots are rebuilt and the targets summarized.
``--quick`` (``make bench QUICK=1``) runs a subset into ``results/quick/``,
leaving the full results alone. The exit status is non-zero only if a
benchmark could not run: missed targets are reported, never asserted.
"""

from __future__ import annotations

import sys
import time

from . import report
from .context import RESULTS_DIR, find_mpiexec, launch, parser, python_module
from .harness import Comparison, print_comparisons, write_json

BENCHMARKS = report.ORDER
BUDGET = {"quick": 240.0, "full": 1200.0}
"""Seconds one benchmark may take before it is killed."""


def main() -> int:
    """Runs the suite; returns the exit status."""
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    args = p.parse_args()
    if args.quick and args.results == RESULTS_DIR:
        args.results = RESULTS_DIR / "quick"
    args.results.mkdir(parents=True, exist_ok=True)
    mpiexec = find_mpiexec(args.mpiexec)
    budget = BUDGET["quick" if args.quick else "full"]
    began = time.perf_counter()
    failed = []
    for name in args.only or BENCHMARKS:
        print(f"\n#### benchmarks.{name}", flush=True)
        command = python_module(f"benchmarks.{name}", "--results", str(args.results), "--mpiexec", mpiexec)
        command += ["--timeout", str(min(args.timeout, budget))] + (["--quick"] if args.quick else [])
        started = time.perf_counter()
        try:
            launch(command, budget)
        except RuntimeError as exc:
            print(f"benchmarks.{name} did not finish: {exc}", flush=True)
            failed.append(name)
        print(f"#### benchmarks.{name}: {time.perf_counter() - started:.0f} s", flush=True)
    total = time.perf_counter() - began
    write_json(args.results / report.SUITE, {"elapsed_s": round(total, 1), "failed": failed, "quick": args.quick})
    report.build(args.results)
    judged = [
        Comparison.from_json(c)
        for document in report.load(args.results).values()
        for c in document["comparisons"]
        if c["target"] is not None
    ]
    print_comparisons("targets", judged)
    print(f"\nthe suite took {total / 60:.1f} min; results in {args.results}", flush=True)
    if failed:
        print(f"did not finish: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
