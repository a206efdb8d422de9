"""Move one table several ways and measure them side by side, fairly (notebook 14).

A *way* is a function that opens a fresh connection, moves some rows, closes the connection
and returns what arrived. :func:`measure` runs every way in rounds -- one warm-up round that
is not counted, then ``rounds`` rounds, each in a different order, so that a machine growing
busier or quieter during the run touches every way alike -- checks that every round moved the
right rows, and keeps every round's time, so that the spread can be shown, not just a median::

    ways = [transfer.Way("Flight DoGet", 2_000_000, lambda: ...), ...]
    results = transfer.measure(ways, expected=table, rounds=5)
    print(transfer.format_table(results))
    print(transfer.compare(results["Flight DoPut"], results["Flight DoGet"]))

Rates count the table's own data: 16 bytes a row (two 8-byte columns), whatever the encoding
adds on the wire. ``MB`` is 10**6 bytes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from rpclab import checks
from rpclab.bigdata.table import check_rows, same_rows

__all__ = ["Way", "Result", "measure", "format_table", "compare", "MAX_ROUNDS"]

MAX_ROUNDS = 50


@dataclass(frozen=True)
class Way:
    """A way to move ``rows`` rows: ``move()`` opens a connection, moves them, closes, returns them.

    A way that sends (a DoPut) returns what the server holds once the upload is done.
    """

    name: str
    rows: int
    move: Callable[[], pa.Table]
    note: str = ""


@dataclass
class Result:
    """Every counted round of one way: its seconds, and the rows and data bytes each moved."""

    way: str
    rows: int
    nbytes: int
    seconds: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def rows_per_s(self) -> list[float]:
        return [self.rows / s for s in self.seconds]

    @property
    def mb_per_s(self) -> list[float]:
        return [self.nbytes / s / 1e6 for s in self.seconds]

    @property
    def median_rows_per_s(self) -> float:
        return statistics.median(self.rows_per_s)

    @property
    def median_mb_per_s(self) -> float:
        return statistics.median(self.mb_per_s)


def measure(
    ways: Sequence[Way], *, expected: pa.Table, rounds: int = 5, warmup: bool = True
) -> dict[str, Result]:
    """Run every way ``rounds`` times (after one uncounted warm-up round), in rotating order.

    Each round's result must hold the first ``way.rows`` rows of ``expected``; a way that
    moves wrong rows raises AssertionError naming it.
    """
    checks.integer("rounds", rounds, low=1, high=MAX_ROUNDS)
    if not ways or len({w.name for w in ways}) != len(ways):
        raise ValueError("measure needs at least one way, and ways with different names")
    slices = {}
    for way in ways:
        rows = check_rows(way.rows, f"{way.name}'s rows")
        if rows > expected.num_rows:
            raise ValueError(f"{way.name} moves {rows:,} rows; the table has {expected.num_rows:,}")
        slices[way.name] = expected.slice(0, rows)
    results = {w.name: Result(w.name, w.rows, slices[w.name].nbytes, note=w.note) for w in ways}
    for round_number in range(-1 if warmup else 0, rounds):
        shift = max(round_number, 0) % len(ways)
        for way in [*ways[shift:], *ways[:shift]]:
            start = time.perf_counter()
            got = way.move()
            took = time.perf_counter() - start
            try:
                same_rows(slices[way.name], got)
            except AssertionError as exc:
                raise AssertionError(f"{way.name} moved the wrong rows: {exc}") from None
            if round_number >= 0:
                results[way.name].seconds.append(took)
    return results


def format_table(results: dict[str, Result]) -> str:
    """One line per way: rows moved, rounds, median rows/s and MB/s, and the range of rounds."""
    lines = [
        f"{'way':<28}{'rows':>11}{'rounds':>7}{'rows/s (median)':>17}{'MB/s':>8}"
        f"{'MB/s, slowest-fastest round':>30}"
    ]
    for r in results.values():
        low, high = min(r.mb_per_s), max(r.mb_per_s)
        lines.append(
            f"{r.way:<28}{r.rows:>11,}{len(r.seconds):>7}{r.median_rows_per_s:>17,.0f}"
            f"{r.median_mb_per_s:>8,.1f}{f'{low:,.1f} - {high:,.1f}':>30}"
        )
    return "\n".join(lines)


def compare(a: Result, b: Result) -> str:
    """How ``a`` did against ``b`` in this measurement, in rows a second, said in words: the ratio
    of the medians, and "clearly faster" only when a's slowest round beat b's fastest (clearly
    slower the other way round); rounds that overlap are "neither clearly faster nor slower"."""
    ratio = a.median_rows_per_s / b.median_rows_per_s
    if min(a.rows_per_s) > max(b.rows_per_s):
        verdict = "clearly faster: its slowest round beat the other's fastest"
    elif max(a.rows_per_s) < min(b.rows_per_s):
        verdict = "clearly slower: its fastest round lost to the other's slowest"
    else:
        verdict = "neither clearly faster nor slower: the rounds overlap"
    return f"{a.way}: {ratio:.2f} x the rows a second of {b.way}, {verdict}"
