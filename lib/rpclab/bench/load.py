"""Load on a server, two ways: an open loop (calls start on a schedule, whatever the replies do)
and a closed loop (a fixed number of callers, each waiting for its reply before its next call).

Measured in notebook 13 (latency against offered rate, coordinated omission, Little's law) and
by ``rpclab bench --load``.

* :func:`open_loop` draws a Poisson schedule of calls at ``rate`` calls per second (seeded, so
  a run can be repeated) and has ``callers`` threads, a connection each, take the calls in
  order: a caller waits until its call is *due*, or starts at once if it is already late. Each
  call's latency is measured **from when it was due**, so time a call spent waiting for a free
  caller counts. A tester that measures from when a call really started (``from_start``) hides
  that wait -- the server's slowness delays the calls that would have measured it: Gil Tene's
  *coordinated omission*. Both are recorded, so the difference can be shown.
* :func:`closed_loop` has ``callers`` threads call back to back. Its throughput is whatever the
  latency allows: by Little's law (L = λW) with L fixed at ``callers``, λ = callers / W.

Every run is bounded: a schedule holds at most :data:`MAX_CALLS` calls, every call has the
transports' timeout, and calls not started within ``drain`` seconds after the schedule ends
are counted as ``unserved`` (their latency is at least the time they waited, which the
percentiles then understate: :attr:`Load.unserved` says so).

::

    load = bench_load.open_loop(endpoint, rate=2_000, seconds=0.5)
    load.percentile_us(0.99), load.percentile_us(0.99, from_start=True), load.achieved_rate
    load.little()      # (L measured at arrivals, λ, W, λ × W)
"""

from __future__ import annotations

import bisect
import itertools
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rpclab import checks
from rpclab.bench.echo import CALL_TIMEOUT, PAYLOAD, Connection, Endpoint

__all__ = [
    "MAX_CALLS",
    "MAX_RATE",
    "Load",
    "poisson_schedule",
    "open_loop",
    "closed_loop",
    "md1_mean_s",
]

MAX_CALLS = 200_000  # calls one run may schedule
MAX_RATE = 200_000.0  # calls per second one run may offer
START_DELAY_NS = 20_000_000  # the first call is due 20 ms after the callers are ready


@dataclass
class Load:
    """One run of load: when each finished call was due, started and ended (ns, from the run's
    start), how many were left unserved, and any errors."""

    kind: str  # "open" or "closed"
    callers: int
    offered_rate: float | None  # calls per second scheduled; None for a closed loop
    seconds: float  # how long calls were scheduled (open) or made (closed)
    due_ns: list[int] = field(default_factory=list, repr=False)
    start_ns: list[int] = field(default_factory=list, repr=False)
    end_ns: list[int] = field(default_factory=list, repr=False)
    scheduled: int = 0
    unserved: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        """Calls that finished."""
        return len(self.end_ns)

    @property
    def window_s(self) -> float:
        """From the first call due to the last reply (s)."""
        if not self.end_ns:
            return 0.0
        return (max(self.end_ns) - min(self.due_ns)) / 1e9

    @property
    def achieved_rate(self) -> float:
        """Calls finished per second over the window."""
        return self.calls / self.window_s if self.window_s else 0.0

    def latencies_us(self, *, from_start: bool = False) -> list[float]:
        """Each finished call's latency (µs): from when it was due, or (``from_start``) from
        when it really started."""
        begin = self.start_ns if from_start else self.due_ns
        return [(e - b) / 1000 for b, e in zip(begin, self.end_ns, strict=True)]

    def percentile_us(self, fraction: float, *, from_start: bool = False) -> float:
        """The latency (µs) ``fraction`` of the finished calls stayed under."""
        ordered = sorted(self.latencies_us(from_start=from_start))
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * fraction)))]

    def mean_us(self, *, from_start: bool = False) -> float:
        values = self.latencies_us(from_start=from_start)
        return statistics.fmean(values) if values else float("nan")

    def in_system_at_arrivals(self) -> list[int]:
        """For each finished call, how many earlier calls were due and not yet answered at the
        moment it was due (PASTA: with Poisson arrivals, their average is the time average)."""
        order = sorted(range(self.calls), key=self.due_ns.__getitem__)
        ends = sorted(self.end_ns)
        due = [self.due_ns[i] for i in order]
        # every call answered by time t was due before t, so (calls due before) - (answered by t)
        return [k - bisect.bisect_right(ends, t) for k, t in enumerate(due)]

    def little(self) -> tuple[float, float, float, float]:
        """Little's law, measured: (L, the mean number of calls in the system seen at arrivals;
        λ, calls per second; W, mean seconds from due to answered; λ × W)."""
        seen = self.in_system_at_arrivals()
        level = statistics.fmean(seen) if seen else float("nan")
        rate = self.achieved_rate
        wait = self.mean_us() / 1e6
        return level, rate, wait, rate * wait


def poisson_schedule(rate: float, seconds: float, seed: int = 0) -> list[int]:
    """When each call is due (ns from the start): gaps drawn from an exponential distribution of
    mean 1/rate (a Poisson process), seeded, for ``seconds``."""
    checks.number("rate", rate, above=0, high=MAX_RATE)
    checks.seconds("seconds", seconds, above=0, high=60)
    if rate * seconds > MAX_CALLS:
        raise ValueError(f"{rate:g}/s for {seconds:g} s is over {MAX_CALLS:,} calls")
    draw = random.Random(f"rpclab.bench.load:{seed}").expovariate
    due, t, end = [], 0.0, seconds
    while True:
        t += draw(rate)
        if t >= end:
            return due
        due.append(int(t * 1e9))


def md1_mean_s(rate: float, service_s: float) -> float | None:
    """The mean time a call spends in a single server with a fixed service time ``service_s``
    and Poisson arrivals at ``rate`` (an M/D/1 queue), waiting plus service, by the
    Pollaczek-Khinchine formula: S + ρS / (2(1 - ρ)), where ρ = rate x S is the share of time
    the server is busy. None when ρ >= 1: then the queue has no steady state, it grows for as
    long as the load lasts."""
    checks.number("rate", rate, low=0)
    checks.seconds("service_s", service_s, above=0)
    busy = rate * service_s
    if busy >= 1:
        return None
    return service_s + busy * service_s / (2 * (1 - busy))


def _connections(endpoint: Endpoint, callers: int) -> list[Connection]:
    from rpclab.bench.harness import open_connection

    conns: list[Connection] = []
    try:
        for _ in range(callers):
            conns.append(open_connection("load", endpoint, PAYLOAD))
    except BaseException:
        for conn in conns:
            conn.close()
        raise
    return conns


def _run_callers(
    conns: Sequence[Connection],
    body: Callable[[int, Connection, int, threading.Event], None],
    disturb: tuple[float, Callable[[], None]] | None,
    limit_s: float,
) -> int:
    """Start a thread per connection running ``body(index, conn, t0, stop)``; return t0 (ns)."""
    stop = threading.Event()
    ready = threading.Barrier(len(conns) + 1, timeout=CALL_TIMEOUT)
    t0 = [0]

    def thread_main(index: int) -> None:
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            return
        body(index, conns[index], t0[0], stop)

    threads = [
        threading.Thread(target=thread_main, args=(i,), name=f"rpclab-load-{i}", daemon=True)
        for i in range(len(conns))
    ]
    helper = None
    try:
        for thread in threads:
            thread.start()
        t0[0] = time.perf_counter_ns() + START_DELAY_NS
        if disturb is not None:
            at, action = disturb

            def disturber() -> None:
                if not stop.wait(max(0.0, (t0[0] - time.perf_counter_ns()) / 1e9 + at)):
                    action()

            helper = threading.Thread(target=disturber, name="rpclab-load-disturb", daemon=True)
            helper.start()
        ready.wait()
        deadline = time.monotonic() + limit_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
    except BaseException:
        ready.abort()
        raise
    finally:
        stop.set()
        for conn in conns:
            conn.close()  # a caller still in a call gets an error and ends
        for thread in threads:
            thread.join(CALL_TIMEOUT)
        if helper is not None:
            helper.join(CALL_TIMEOUT)
    return t0[0]


def open_loop(
    endpoint: Endpoint,
    rate: float,
    *,
    seconds: float = 0.5,
    callers: int = 8,
    seed: int = 0,
    drain: float = 1.0,
    disturb: tuple[float, Callable[[], None]] | None = None,
) -> Load:
    """Offer ``rate`` calls per second (a Poisson schedule) for ``seconds``, taken by ``callers``
    threads with a connection each; latency counts from when each call was due.

    ``disturb=(at, action)`` runs ``action()`` in a thread ``at`` seconds into the schedule
    (notebook 13 pauses the server's process). A call not started by ``seconds + drain`` is
    counted in ``unserved``.
    """
    checks.integer("callers", callers, low=1, high=256)
    checks.seconds("drain", drain, low=0, high=60)
    schedule = poisson_schedule(rate, seconds, seed)
    load = Load("open", callers, float(rate), float(seconds), scheduled=len(schedule))
    done: list[tuple[int, int, int]] = []
    take = itertools.count().__next__  # one atomic step in CPython: each call goes to one caller
    errors: list[str] = []
    cutoff_ns = int((seconds + drain) * 1e9)

    def body(_: int, conn: Connection, t0: int, stop: threading.Event) -> None:
        call, record, clock = conn.call, done.append, time.perf_counter_ns
        while not stop.is_set():
            i = take()
            if i >= len(schedule):
                return
            due = t0 + schedule[i]
            now = clock()
            if due > now and stop.wait((due - now) / 1e9):
                return
            start = clock()
            if start - t0 > cutoff_ns:
                return  # the schedule is over and this caller is still this far behind
            try:
                call()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            record((due - t0, start - t0, clock() - t0))

    conns = _connections(endpoint, callers)
    _run_callers(conns, body, disturb, seconds + drain + 2 * CALL_TIMEOUT)
    done.sort()
    load.due_ns = [d for d, _, _ in done]
    load.start_ns = [s for _, s, _ in done]
    load.end_ns = [e for _, _, e in done]
    load.errors = errors
    load.unserved = len(schedule) - len(done) - len(errors)
    return load


def closed_loop(
    endpoint: Endpoint,
    callers: int,
    *,
    seconds: float = 0.5,
    max_calls: int = MAX_CALLS,
) -> Load:
    """``callers`` threads, a connection each, calling back to back for ``seconds``. Each call is
    'due' when it starts: a closed loop has no schedule to fall behind."""
    checks.integer("callers", callers, low=1, high=256)
    checks.seconds("seconds", seconds, above=0, high=60)
    checks.integer("max_calls", max_calls, low=1, high=MAX_CALLS)
    load = Load("closed", callers, None, float(seconds))
    done: list[tuple[int, int]] = []
    errors: list[str] = []
    per_caller = max(1, max_calls // callers)

    def body(_: int, conn: Connection, t0: int, stop: threading.Event) -> None:
        call, record, clock = conn.call, done.append, time.perf_counter_ns
        now = clock()
        if t0 > now and stop.wait((t0 - now) / 1e9):
            return
        end_at = t0 + int(seconds * 1e9)
        for _ in range(per_caller):
            start = clock()
            if start >= end_at or stop.is_set():
                return
            try:
                call()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            record((start - t0, clock() - t0))

    conns = _connections(endpoint, callers)
    _run_callers(conns, body, None, seconds + 2 * CALL_TIMEOUT)
    done.sort()
    load.due_ns = load.start_ns = [s for s, _ in done]
    load.end_ns = [e for _, e in done]
    load.scheduled = len(done)
    load.errors = errors
    return load
