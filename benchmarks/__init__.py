"""Benchmarks of parallelizer against what a user would otherwise pick.

Run everything with ``make bench`` (``make bench QUICK=1`` for a short
subset) or ``python -m benchmarks``; one benchmark with
``python -m benchmarks.<name>``. Results land in ``benchmarks/results/``,
and ``benchmarks/RESULTS.md`` is regenerated from them. See
``benchmarks/README.md``.
"""
