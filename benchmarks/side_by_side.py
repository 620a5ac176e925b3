"""Timing shared by the benchmark scripts: contenders run alternately, so load on the machine
affects them alike. Imported by the scripts of this folder (``python benchmarks/bench_*.py``
puts it on the path)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_side_by_side(
    contenders: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds of each run of each contender, alternating, after ``warmup`` runs each."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return samples


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    """Median seconds per contender."""
    return {name: statistics.median(values) for name, values in samples.items()}


def median_side_by_side(
    contenders: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per contender, runs alternating (see :func:`time_side_by_side`)."""
    return medians(time_side_by_side(contenders, repeats, warmup))


def paired_ratios(samples: dict[str, list[float]], numerator: str, denominator: str) -> list[float]:
    """``numerator / denominator`` for each round of :func:`time_side_by_side`: the two runs of
    a round are adjacent in time, so a slow spell of the machine cancels out of their ratio."""
    return [a / b for a, b in zip(samples[numerator], samples[denominator], strict=True)]


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """First quartile, median and third quartile."""
    first, median, third = statistics.quantiles(values, n=4, method="inclusive")
    return first, median, third
