"""The small harness every benchmark shares: timing, comparisons, tables, JSON.

Timing: :func:`measure` warms every case up, picks for each a number of calls
per sample (so a sample lasts at least ``min_time``), then takes the samples
round-robin over the cases (so a slow drift of the machine hits every system
alike) and reports medians. In SPMD code each sample is the slowest rank's
(``agree``), so a collective counts until every rank has its result.

Comparisons: a *speed* ratio is peer time / our time (above 1: we are
faster); a *cost* ratio is our figure / the peer's (below 1: we are cheaper),
used where the target is written that way ("<= 1.3x raw comm.bcast").
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .context import RESULTS_DIR, command_line, environment

KiB = 1 << 10
MiB = 1 << 20
MARGIN = 0.05
"""A ratio within this fraction of its target is reported as marginal."""


# ---------------------------------------------------------------------- formatting


def fmt_seconds(seconds: float) -> str:
    """``seconds`` with a unit that keeps three significant digits."""
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


def fmt_bytes(nbytes: float) -> str:
    """``nbytes`` in KiB, MiB or GiB."""
    for unit, size in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if abs(nbytes) >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{nbytes:.0f} B"


def fmt_value(value: float | None, unit: str) -> str:
    """A figure of a table: seconds or bytes."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "did not finish"
    return fmt_bytes(value) if unit == "B" else fmt_seconds(value)


# ---------------------------------------------------------------------- records


@dataclasses.dataclass
class Timing:
    """One system's figure for one case: the median of its samples.

    Attributes:
        op: What was measured (``"broadcast"``, ``"map 100k trivial"``, ...).
        system: Who did it (``"ours (MPI)"``, ``"raw Bcast (warm)"``, ...).
        size: The message size in bytes or the number of items, if any.
        median: The median of ``samples`` (seconds, or bytes for memory).
        samples: Every sample.
        work: Bytes or items moved per call, for throughput (``work / median``).
        unit: ``"s"`` (time) or ``"B"`` (memory).
        note: How the system was used (buffers, chunk sizes, ...).
    """

    op: str
    system: str
    median: float
    samples: list[float]
    size: int | None = None
    work: float | None = None
    unit: str = "s"
    note: str = ""

    @property
    def throughput(self) -> float | None:
        """``work`` per second, if the work is known."""
        return None if self.work is None or self.median <= 0 else self.work / self.median


@dataclasses.dataclass
class Comparison:
    """Our figure against a peer's, with the target it is judged against (if any)."""

    section: str
    case: str
    ours: str
    ours_value: float
    peer: str
    peer_value: float
    kind: str  # "speed": peer / ours, higher is better; "cost": ours / peer, lower is better
    target: float | None = None
    unit: str = "s"
    note: str = ""
    ours_quartiles: list[float] | None = None
    peer_quartiles: list[float] | None = None

    @property
    def ratio(self) -> float:
        """The ratio, as ``kind`` defines it."""
        if self.kind == "speed":
            return self.peer_value / self.ours_value if self.ours_value > 0 else math.inf
        return self.ours_value / self.peer_value if self.peer_value > 0 else math.inf

    @property
    def passed(self) -> bool | None:
        """Whether the target is met (``None`` without a target)."""
        if self.target is None:
            return None
        return self.ratio >= self.target if self.kind == "speed" else self.ratio <= self.target

    def _optimistic_ratio(self) -> float | None:
        """The ratio from our better quartile and the peer's worse one (``None`` without quartiles)."""
        if not self.ours_quartiles or not self.peer_quartiles:
            return None
        ours_best, peer_worst = self.ours_quartiles[0], self.peer_quartiles[1]
        if self.kind == "speed":
            return peer_worst / ours_best if ours_best > 0 else math.inf
        return ours_best / peer_worst if peer_worst > 0 else math.inf

    @property
    def verdict(self) -> str:
        """``"pass"``, ``"marginal"`` (met, within ``MARGIN``), ``"MISS"`` or ``""``.

        A miss is ``"MISS (within noise)"`` when the target is met comparing
        our better quartile with the peer's worse one: the samples overlap too
        much to tell.
        """
        if self.target is None:
            return ""
        if not self.passed:
            optimistic = self._optimistic_ratio()
            if optimistic is not None and (
                optimistic >= self.target if self.kind == "speed" else optimistic <= self.target
            ):
                return "MISS (within noise)"
            return "MISS"
        close = (
            self.ratio < self.target * (1 + MARGIN) if self.kind == "speed" else self.ratio > self.target * (1 - MARGIN)
        )
        return "marginal" if close else "pass"

    def ratio_text(self) -> str:
        """The ratio for a table (cost ratios say so)."""
        return f"{self.ratio:.3g}x" + ("" if self.kind == "speed" else " (cost)")

    def target_text(self) -> str:
        """The target for a table."""
        if self.target is None:
            return "-"
        return f">= {self.target:g}x" if self.kind == "speed" else f"<= {self.target:g}x (cost)"

    def cells(self) -> list[str]:
        """The table cells: case, ours, our figure, peer, its figure, ratio, target, verdict."""
        return [
            self.case,
            self.ours,
            fmt_value(self.ours_value, self.unit),
            self.peer,
            fmt_value(self.peer_value, self.unit),
            self.ratio_text(),
            self.target_text(),
            self.verdict,
        ]

    def to_json(self) -> dict[str, Any]:
        """A JSON record, with the derived fields."""
        record = dataclasses.asdict(self)
        record.update(ratio=self.ratio, passed=self.passed, verdict=self.verdict)
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Comparison:
        """The inverse of :meth:`to_json`."""
        fields = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in record.items() if key in fields})


# ---------------------------------------------------------------------- timing


def _no_sync() -> None:
    return None


def _identity(value: float) -> float:
    return value


def measure(
    cases: dict[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int = 2,
    min_time: float = 0.01,
    max_inner: int = 2000,
    inner: int | None = None,
    sync: Callable[[], Any] = _no_sync,
    agree: Callable[[float], float] = _identity,
) -> dict[str, list[float]]:
    """Times every case; returns the per-call seconds of each sample.

    Args:
        cases: Name -> a call doing the work once.
        repeats: Samples per case, taken round-robin over the cases.
        warmup: Untimed calls per case first (pages touched, pools started).
        min_time: A sample makes as many calls as needed to last this long.
        max_inner: At most this many calls per sample.
        inner: Exactly this many calls per sample (no calibration call).
        sync: Called before each sample (a barrier in SPMD code).
        agree: Turns this process's figure into one all processes agree on
            (the slowest rank's in SPMD code); identity otherwise.
    """
    calls: dict[str, int] = {}
    for name, op in cases.items():
        for _ in range(warmup):
            op()
        if inner is not None:
            calls[name] = inner
            continue
        sync()
        began = time.perf_counter()
        op()
        once = agree(time.perf_counter() - began)
        calls[name] = max(1, min(max_inner, math.ceil(min_time / once) if once > 0 else max_inner))
    samples: dict[str, list[float]] = {name: [] for name in cases}
    gc.collect()
    for _ in range(repeats):
        for name, op in cases.items():
            count = calls[name]
            sync()
            began = time.perf_counter()
            for _ in range(count):
                op()
            samples[name].append(agree((time.perf_counter() - began) / count))
    return samples


ALONE = " (alone after a barrier)"
"""Suffix of a case timed one call at a time (:func:`measure_alone`)."""
LOOP = " (in a loop)"
"""Suffix of the same case timed in a loop (:func:`measure`)."""


def measure_alone(
    cases: dict[str, Callable[[], Any]],
    *,
    repeats: int,
    calls: int,
    warmup: int = 50,
    sync: Callable[[], Any] = _no_sync,
    agree: Callable[[float], float] = _identity,
) -> dict[str, list[float]]:
    """Times every case one call at a time, each call right after ``sync`` (a barrier).

    How an iterative solver calls a collective: some work, then one call.
    Unlike :func:`measure`, no call overlaps the next one's start, so what
    a call costs before and after its data moves is all counted. The cases
    take turns call by call, so a noisy moment spreads over all of them.

    Args:
        cases: Name -> a call doing the work once.
        repeats: Samples per case.
        calls: Calls per sample; a sample is their mean time.
        warmup: Untimed calls per case first.
        sync: Called before every call, outside the timing.
        agree: Turns this process's figure into one all processes agree on.

    Returns:
        Name -> the per-call seconds of each sample.
    """
    for op in cases.values():
        for _ in range(warmup):
            sync()
            op()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    gc.collect()
    for _ in range(repeats):
        spent = dict.fromkeys(cases, 0.0)
        for _ in range(calls):
            for name, op in cases.items():
                sync()
                began = time.perf_counter()
                op()
                spent[name] += time.perf_counter() - began
        for name in cases:
            samples[name].append(agree(spent[name] / calls))
    return samples


def mpi_job(name: str, title: str, args: argparse.Namespace) -> tuple[Any, Any, Any, Callable[[float], float], Report]:
    """What every rank of an MPI benchmark job starts with.

    Returns:
        ``(MPI, COMM_WORLD, MPIParallelizer(), agree, report)``, where ``agree``
        turns a rank's time into the slowest rank's (for :func:`measure`).
    """
    from mpi4py import MPI

    from parallelizer import MPIParallelizer

    comm = MPI.COMM_WORLD

    def agree(seconds: float) -> float:
        return float(comm.allreduce(seconds, op=MPI.MAX))

    report = Report(name, title, args)
    report.extra["mpi_library"] = " ".join(MPI.Get_library_version().split()[:3])
    report.extra["nprocs"] = comm.Get_size()
    return MPI, comm, MPIParallelizer(), agree, report


def median(samples: Sequence[float]) -> float:
    """The median of ``samples``."""
    return float(statistics.median(samples))


def quartiles(samples: Sequence[float]) -> list[float] | None:
    """The first and third quartiles of ``samples`` (``None`` for fewer than 3)."""
    if len(samples) < 3:
        return None
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return [q1, q3]


# ---------------------------------------------------------------------- a benchmark's report


class Report:
    """Collects one benchmark's timings and comparisons; prints and writes them.

    Args:
        name: File name of the JSON (``results/<name>.json``).
        title: The heading of the printed table.
        args: The parsed command line (``quick``, ``results``).
    """

    def __init__(self, name: str, title: str, args: argparse.Namespace) -> None:
        self.name = name
        self.title = title
        self.args = args
        self.timings: list[Timing] = []
        self.comparisons: list[Comparison] = []
        self.extra: dict[str, Any] = {}
        self.started = time.time()

    def add(self, op: str, system: str, samples: Sequence[float], **fields: Any) -> Timing:
        """Records a timing from its samples."""
        timing = Timing(op=op, system=system, median=median(samples), samples=list(samples), **fields)
        self.timings.append(timing)
        return timing

    def add_timing(self, timing: Timing) -> Timing:
        """Records a timing measured elsewhere (another process)."""
        self.timings.append(timing)
        return timing

    def find(self, op: str, system: str, size: int | None = None) -> Timing | None:
        """The timing of ``system`` for ``op`` (and ``size``), if measured."""
        for timing in self.timings:
            if timing.op == op and timing.system == system and (size is None or timing.size == size):
                return timing
        return None

    def compare(
        self,
        section: str,
        case: str,
        ours: Timing | None,
        peer: Timing | None,
        *,
        kind: str = "speed",
        target: float | None = None,
        note: str = "",
    ) -> Comparison | None:
        """Records our timing against a peer's (skipped if either is missing)."""
        if ours is None or peer is None:
            return None
        comparison = Comparison(
            section=section,
            case=case,
            ours=ours.system,
            ours_value=ours.median,
            peer=peer.system,
            peer_value=peer.median,
            kind=kind,
            target=target,
            unit=ours.unit,
            note=note,
            ours_quartiles=quartiles(ours.samples),
            peer_quartiles=quartiles(peer.samples),
        )
        self.comparisons.append(comparison)
        return comparison

    def finish(self, compare: Callable[[Report], None]) -> Report:
        """Adds the comparisons (``compare(self)``), prints the table, writes the JSON."""
        compare(self)
        self.print_table()
        self.write()
        return self

    def print_table(self, file: Any = None) -> None:
        """Prints the comparisons as a readable table."""
        print_comparisons(self.title, self.comparisons, file=file)

    def write(self) -> Path:
        """Writes ``results/<name>.json``; returns its path."""
        directory = Path(getattr(self.args, "results", RESULTS_DIR))
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        document = {
            "benchmark": self.name,
            "title": self.title,
            "quick": bool(getattr(self.args, "quick", False)),
            "command": command_line(),
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "elapsed_s": round(time.time() - self.started, 2),
            "environment": environment(),
            "extra": self.extra,
            "timings": [dataclasses.asdict(timing) for timing in self.timings],
            "comparisons": [comparison.to_json() for comparison in self.comparisons],
        }
        write_json(path, document)
        return path


def print_comparisons(title: str, comparisons: Sequence[Comparison], file: Any = None) -> None:
    """Prints comparisons as a table: case, ours, peer, ratio, target, verdict."""
    out = sys.stdout if file is None else file
    header = ("case", "ours", "", "peer", "", "ratio", "target", "")
    rows = [tuple(c.cells()) for c in comparisons]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print(f"\n== {title} ==", file=out)
    print(
        "speed ratio = peer time / our time (>1: we are faster); cost ratio = ours / peer (<1: we are cheaper)",
        file=out,
    )
    section = None
    for comparison, row in zip([None, *comparisons], [header, *rows], strict=True):
        if comparison is not None and comparison.section != section:
            section = comparison.section
            print(f"-- {section}", file=out)
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)
    out.flush()


# ---------------------------------------------------------------------- files


def write_json(path: Path, document: Any) -> None:
    """Writes ``document`` to ``path`` atomically (via a ``.tmp`` file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".part.tmp")
    temporary.write_text(json.dumps(document, indent=1, default=_json_default) + "\n")
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    """Reads a JSON file."""
    return json.loads(Path(path).read_text())


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
