"""Time a call honestly: many runs, bounded in count and in seconds, summarised by median and
p99.

Used in notebooks 01, 03, 05, 07, 10, 12 and 13.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Timing", "time_calls", "format_seconds"]


@dataclass(frozen=True)
class Timing:
    """Per-call durations of one measurement, in seconds.

    Each sample is one call, or with ``batch`` > 1 the mean of ``batch`` calls timed together:
    then median and p99 are of those means, which hide how single calls spread.
    """

    samples: tuple[float, ...]
    batch: int = 1

    @property
    def calls(self) -> int:
        """How many samples (each one call, or the mean of ``batch`` calls)."""
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]

    @property
    def per_second(self) -> float:
        return 1.0 / self.median if self.median > 0 else float("inf")

    def __str__(self) -> str:
        spread = f"median {format_seconds(self.median)}, p99 {format_seconds(self.p99)}"
        if self.batch == 1:
            return f"{spread} over {self.calls:,} calls"
        return (
            f"{spread} of {self.calls:,} means of {self.batch:,} calls each "
            f"({self.calls * self.batch:,} calls)"
        )


def time_calls(
    fn: Callable[[], object],
    *,
    max_calls: int = 1000,
    max_seconds: float = 1.0,
    batch: int = 1,
    warmup: int = 1,
) -> Timing:
    """Call ``fn`` until ``max_calls`` or ``max_seconds``, whichever comes first.

    With ``batch`` > 1 each sample times ``batch`` calls and divides: for calls so short that
    reading the clock (tens of nanoseconds, a call of its own) would be a large part of each
    sample. The median and p99 are then of batch means, not of single calls.
    """
    if max_calls < 1 or batch < 1 or max_seconds <= 0:
        raise ValueError("max_calls and batch must be at least 1, and max_seconds above 0")
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter
    deadline = clock() + max_seconds
    while len(samples) < max_calls:
        start = clock()
        for _ in range(batch):
            fn()
        end = clock()
        samples.append((end - start) / batch)
        if end >= deadline:
            break
    return Timing(tuple(samples), batch)


def format_seconds(seconds: float) -> str:
    """A duration in the unit that reads best: ns, µs, ms, s, min or h."""
    if seconds < 0:
        return "-" + format_seconds(-seconds)
    for limit, unit, scale in (
        (1e-6, "ns", 1e9),
        (1e-3, "µs", 1e6),
        (1.0, "ms", 1e3),
        (60.0, "s", 1.0),
        (3600.0, "min", 1 / 60),
    ):
        if seconds < limit:
            value = seconds * scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{seconds / 3600:.3g} h"
