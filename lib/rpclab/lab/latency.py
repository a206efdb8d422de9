"""What a round-trip time means for a program that makes calls: the latency explorer's logic.

Used in notebook 01 (the latency explorer).
"""

from __future__ import annotations

from dataclasses import dataclass

from rpclab.lab.timing import format_seconds

__all__ = ["Estimate", "estimate", "PRESETS"]

# Typical round-trip times, for the explorer's presets (order of magnitude, not measurements).
PRESETS: dict[str, float] = {
    "same process (a local call)": 50e-9,
    "loopback (this machine)": 50e-6,
    "same data centre": 500e-6,
    "same continent": 30e-3,
    "across an ocean": 150e-3,
}


@dataclass(frozen=True)
class Estimate:
    """How long ``calls`` calls take over a link, and how many fit in a second."""

    rtt: float
    service: float
    calls: int
    in_flight: int
    total: float
    per_second: float

    def summary(self) -> str:
        each = format_seconds(self.rtt + self.service)
        how = "one after another" if self.in_flight == 1 else f"{self.in_flight} at a time"
        noun = "call" if self.calls == 1 else "calls"
        return (
            f"{self.calls:,} {noun} {how}, {each} each: {format_seconds(self.total)} in all; "
            f"at most {self.per_second:,.0f} calls per second."
        )


def estimate(rtt: float, calls: int, *, service: float = 0.0, in_flight: int = 1) -> Estimate:
    """Time for ``calls`` calls that each wait one round trip plus ``service`` seconds of work.

    With ``in_flight`` calls outstanding at once (pipelining or several
    connections) the waits overlap; the server is assumed never to be the bottleneck.
    """
    if rtt < 0 or service < 0:
        raise ValueError("round-trip time and service time must not be negative")
    if calls < 0:
        raise ValueError("the number of calls must not be negative")
    if in_flight < 1:
        raise ValueError("at least one call must be in flight")
    each = rtt + service
    rounds = -(-calls // in_flight)  # ceiling division: the last round may be partly full
    per_second = in_flight / each if each > 0 else float("inf")
    return Estimate(rtt, service, calls, in_flight, rounds * each, per_second)
