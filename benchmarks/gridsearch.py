"""scikit-learn's ``GridSearchCV`` through joblib: our backend against joblib's default (loky), in one run.

``python -m benchmarks.gridsearch`` times one ``GridSearchCV(...).fit`` of
300 small fits (logistic regression, 15 values of ``C`` x 2 x 10 folds) with
two processes computing:

* ours: ``parallel_config(backend="parallelizer")`` on
  ``MultiprocessingParallelizer(nprocs=3)`` (main dispatches, two serving
  processes fit), its executor started and warm;
* loky: ``parallel_config(backend="loky", n_jobs=2)``, its workers warm;
* under MPI (which loky cannot do): ours in ``mpiexec -n 3 python -m
  parallelizer --pool``, the same fit, rank 0 dispatching to ranks 1 and 2.

Both give the same ``best_params_`` (checked).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .context import entry_point, find_mpiexec, forward_args, launch
from .harness import Report, read_json, write_json

MODULE = "benchmarks.gridsearch"
SECTION = "scikit-learn GridSearchCV through joblib (2 processes fit)"
FIT = "GridSearchCV.fit: 300 small fits"
OURS = "ours (joblib backend, multiprocessing:3)"
LOKY = "joblib's default backend, loky (n_jobs=2)"
OURS_MPI = "ours (joblib backend, mpiexec -n 3 --pool)"


def _search():
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    X, y = make_classification(n_samples=300, n_features=10, random_state=0)
    grid = {"C": [10.0**k for k in range(-7, 8)], "fit_intercept": [True, False]}
    return GridSearchCV(LogisticRegression(max_iter=300), grid, cv=10), X, y


def _fits(repeats: int, **config) -> tuple[list[float], dict]:
    import joblib

    import parallelizer.joblib  # noqa: F401 - registers "parallelizer"

    times = []
    best: dict = {}
    with joblib.parallel_config(**config):
        search, X, y = _search()
        search.fit(X, y)  # warm: processes started, modules imported
        for _ in range(repeats):
            search, X, y = _search()
            began = time.perf_counter()
            search.fit(X, y)
            times.append(time.perf_counter() - began)
            best = search.best_params_
    return times, best


def run_child(args: argparse.Namespace) -> None:
    """Rank 0 of the MPI job (``--pool``): times the fit on the other ranks."""
    _, _, part = args.child.partition(":")
    times, best = _fits(3 if args.quick else 7, backend="parallelizer")
    write_json(Path(part), {"times": times, "best": best})


def run(args: argparse.Namespace) -> Report:
    from parallelizer import MultiprocessingParallelizer

    repeats = 3 if args.quick else 7
    report = Report("gridsearch", "GridSearchCV through joblib: ours vs loky", args)
    report.extra["fits"] = 300
    with MultiprocessingParallelizer(nprocs=3) as par:
        ours, ours_best = _fits(repeats, backend="parallelizer", parallelizer=par)
    loky, loky_best = _fits(repeats, backend="loky", n_jobs=2)
    assert ours_best == loky_best, (ours_best, loky_best)
    report.add(FIT, OURS, ours, work=300)
    report.add(FIT, LOKY, loky, work=300)
    part = Path(args.results) / "gridsearch.mpi.tmp"
    mpiexec = find_mpiexec(args.mpiexec)
    command = [mpiexec, "-n", "3", sys.executable, "-m", "parallelizer", "--pool", "-m", MODULE]
    launch([*command, *forward_args(args), "--child", f"mpi:{part}"], args.timeout)
    mpi = read_json(part)
    part.unlink()
    assert mpi["best"] == loky_best, (mpi["best"], loky_best)
    report.add(FIT, OURS_MPI, mpi["times"], work=300, note="loky cannot run under MPI")

    def compare(r: Report) -> None:
        r.compare(SECTION, FIT, r.find(FIT, OURS), r.find(FIT, LOKY), target=0.9)
        r.compare(SECTION, FIT, r.find(FIT, OURS_MPI), r.find(FIT, LOKY), note="MPI against local loky")

    return report.finish(compare)


def main() -> None:
    """Runs the benchmark, or is rank 0 of its MPI job."""
    entry_point(__doc__, run, run_child)


if __name__ == "__main__":
    main()
