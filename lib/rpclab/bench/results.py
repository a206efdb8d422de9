"""What a run of rpclab.bench measured, and its summaries: every round kept, ratios to raw taken
round by round.

Built by harness.py's ``run`` (notebook 13, ``rpclab bench``), printed by report.py. A
:class:`Result` holds one transport's rounds in every arrangement; :func:`summary` sums one
transport up in one arrangement (the median of its rounds' medians, their range, pooled
percentiles, CPU per call, and the ratios to raw's same rounds); :func:`summaries` does it for
every transport and arrangement of a run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "quantile",
    "Round",
    "ConcurrentRound",
    "PayloadPoint",
    "Summary",
    "Result",
    "format_size",
    "summary",
    "summaries",
]


def quantile(ordered: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of the sorted ``ordered`` lie (nearest rank)."""
    if not ordered:
        raise ValueError("no values")
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * fraction)))]


@dataclass
class Round:
    """One transport, one arrangement, one round: a new connection, calls one at a time."""

    transport: str
    where: str
    placement: str
    number: int  # 1, 2, ...
    calls: int
    seconds: float  # wall time of the whole loop
    median_us: float
    p99_us: float
    mean_us: float
    cpu_us: float  # CPU per call, client and server together
    client_cpu_us: float  # CPU per call of the thread that made the calls
    server_cpu_us: float | None  # CPU per call of the server's process; None: it is this one
    cpus: list[int]  # the CPUs pinned, the client's first; [] when not pinned
    latencies_ns: list[int] = field(default_factory=list, repr=False)

    @property
    def rate(self) -> float:
        """Calls per second in this round (calls over the loop's wall time)."""
        return self.calls / self.seconds if self.seconds else 0.0

    def quantiles(self) -> dict[str, float]:
        """The latency (µs) at a few fractions of the calls: enough to draw the round's CDF."""
        ordered = sorted(self.latencies_ns)
        marks = (0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1)
        return {f"{m:g}": quantile(ordered, m) / 1000 for m in marks} if ordered else {}


@dataclass
class ConcurrentRound:
    """Several connections calling at once (for grpc-aio: several calls in flight on one loop)."""

    transport: str
    where: str
    placement: str
    number: int
    connections: int
    calls: int
    seconds: float
    cpu_us: float | None  # CPU per call, client and server together

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


@dataclass
class PayloadPoint:
    """The echo of one payload size (first arrangement only): calls, time, each round's median."""

    size: int  # bytes of payload, each way
    calls: int = 0
    seconds: float = 0.0
    median_us: float = 0.0  # the median of the rounds' medians
    round_medians_us: list[float] = field(default_factory=list)

    @property
    def mib_per_second(self) -> float:
        """Payload carried per second, both directions counted (MiB/s), at the median time per
        echo."""
        return 2 * self.size / (self.median_us / 1e6) / 2**20 if self.median_us else 0.0


@dataclass
class Summary:
    """One transport in one arrangement, over its rounds.

    ``median_us`` is the median of the rounds' medians, ``low_us``-``high_us`` the lowest and
    highest round median; ``p99_us`` and ``mean_us`` pool every call of every round; ``cpu_us``
    is the median of the rounds' CPU per call. ``wall_vs_raw`` and ``cpu_vs_raw``: in each round,
    this transport's median (CPU per call) over raw's in the same round and arrangement, and the
    median of those ratios (``*_low``/``*_high``: their range). ``rate``: calls over wall time,
    all rounds; ``concurrent_rate``: the same with ``connections`` at once.
    """

    transport: str
    where: str
    placement: str
    rounds: int
    calls: int
    median_us: float
    low_us: float
    high_us: float
    p99_us: float
    mean_us: float
    cpu_us: float
    client_cpu_us: float
    server_cpu_us: float | None
    rate: float
    wall_vs_raw: float | None = None
    wall_vs_raw_low: float | None = None
    wall_vs_raw_high: float | None = None
    cpu_vs_raw: float | None = None
    cpu_vs_raw_low: float | None = None
    cpu_vs_raw_high: float | None = None
    connections: int = 0
    concurrent_rate: float | None = None
    concurrent_cpu_us: float | None = None

    @property
    def arrangement(self) -> str:
        return f"{self.where}, {self.placement}"


@dataclass
class Result:
    """Everything measured of one transport: every round, in every arrangement."""

    transport: str
    rounds: list[Round] = field(default_factory=list)
    concurrent: list[ConcurrentRound] = field(default_factory=list)
    payload: list[PayloadPoint] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    connections: int = 0
    concurrency: str = ""  # how the concurrent calls were made
    headline: tuple[str, str] = ("kernel", "free")  # the first arrangement measured

    def rounds_in(self, where: str | None = None, place: str | None = None) -> list[Round]:
        """The rounds of one arrangement (the first one measured by default)."""
        where, place = where or self.headline[0], place or self.headline[1]
        return [r for r in self.rounds if r.where == where and r.placement == place]

    def latencies_ns(self, where: str | None = None, place: str | None = None) -> list[int]:
        """Every call of every round of one arrangement (the first by default), in ns."""
        return [ns for r in self.rounds_in(where, place) for ns in r.latencies_ns]

    # The figures of the first arrangement, by the names notebook 05 reads.
    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.rounds_in())

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.rounds_in())

    @property
    def rate(self) -> float:
        """Calls per second on one connection, one at a time (first arrangement, all rounds)."""
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def median_us(self) -> float:
        """The median of the rounds' median latencies (first arrangement)."""
        rounds = self.rounds_in()
        return statistics.median(r.median_us for r in rounds) if rounds else 0.0

    @property
    def p99_us(self) -> float:
        ordered = sorted(self.latencies_ns())
        return quantile(ordered, 0.99) / 1000 if ordered else 0.0

    @property
    def concurrent_rate(self) -> float:
        """Calls per second with ``connections`` at once (all rounds of the first arrangement
        where they were measured)."""
        if not self.concurrent:
            return 0.0
        first = (self.concurrent[0].where, self.concurrent[0].placement)
        rounds = [c for c in self.concurrent if (c.where, c.placement) == first]
        seconds = sum(c.seconds for c in rounds)
        return sum(c.calls for c in rounds) / seconds if seconds else 0.0

    def payload_us(self, size: int) -> float | None:
        """The median microseconds per echo of ``size`` bytes, or None if not measured."""
        for point in self.payload:
            if point.size == size and point.calls:
                return point.median_us
        return None


# =========================================================================== summing up


def _ratios(rounds: list[Round], base: list[Round], value: Callable[[Round], float]) -> list[float]:
    """This transport's figure over raw's, round by round (same round number and arrangement)."""
    by_number = {r.number: r for r in base}
    return [
        value(r) / value(by_number[r.number])
        for r in rounds
        if r.number in by_number and value(by_number[r.number]) > 0
    ]


def summary(
    result: Result, where: str, place: str, baseline: Result | None = None
) -> Summary | None:
    """One transport in one arrangement, over its rounds (None if it has none there)."""
    rounds = result.rounds_in(where, place)
    if not rounds:
        return None
    pooled = sorted(ns for r in rounds for ns in r.latencies_ns)
    calls = sum(r.calls for r in rounds)
    seconds = sum(r.seconds for r in rounds)
    medians = [r.median_us for r in rounds]
    servers = [r.server_cpu_us for r in rounds if r.server_cpu_us is not None]
    s = Summary(
        transport=result.transport,
        where=where,
        placement=place,
        rounds=len(rounds),
        calls=calls,
        median_us=statistics.median(medians),
        low_us=min(medians),
        high_us=max(medians),
        p99_us=quantile(pooled, 0.99) / 1000 if pooled else 0.0,
        mean_us=sum(pooled) / len(pooled) / 1000 if pooled else 0.0,
        cpu_us=statistics.median(r.cpu_us for r in rounds),
        client_cpu_us=statistics.median(r.client_cpu_us for r in rounds),
        server_cpu_us=statistics.median(servers) if servers else None,
        rate=calls / seconds if seconds else 0.0,
        connections=result.connections,
    )
    if baseline is not None:
        base = baseline.rounds_in(where, place)
        for attr, value in (("wall", lambda r: r.median_us), ("cpu", lambda r: r.cpu_us)):
            ratios = _ratios(rounds, base, value)
            if ratios:
                setattr(s, f"{attr}_vs_raw", statistics.median(ratios))
                setattr(s, f"{attr}_vs_raw_low", min(ratios))
                setattr(s, f"{attr}_vs_raw_high", max(ratios))
    together = [c for c in result.concurrent if (c.where, c.placement) == (where, place)]
    if together:
        seconds = sum(c.seconds for c in together)
        s.concurrent_rate = sum(c.calls for c in together) / seconds if seconds else 0.0
        cpus = [c.cpu_us for c in together if c.cpu_us is not None]
        s.concurrent_cpu_us = statistics.median(cpus) if cpus else None
    return s


def summaries(results: dict[str, Result], baseline: str = "raw") -> list[Summary]:
    """A Summary of every transport in every arrangement it was measured in, arrangement by
    arrangement, in the order measured; ratios against ``baseline`` where it was measured."""
    base = results.get(baseline)
    seen: list[tuple[str, str]] = []
    for result in results.values():
        for r in result.rounds:
            if (r.where, r.placement) not in seen:
                seen.append((r.where, r.placement))
    out = []
    for where, place in seen:
        for result in results.values():
            s = summary(result, where, place, base)
            if s is not None:
                out.append(s)
    return out


def format_size(size: int) -> str:
    """16 B, 1 KiB, 64 KiB, 1 MiB."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"
