"""The measurement harness behind ``rpclab bench`` and notebook 13: every transport, measured the
same way.

Notebook 05 times raw sockets against the socket RPC with it. One module of about 800 lines:
settings, rounds, results, the choices table and the command line all serve one measurement,
and notebook 13 reads them in that order; the transports themselves are in echo.py.

Each transport is registered by name with a setup function that starts an
echo server and returns an :class:`Endpoint` (rpclab.bench.echo has one for each);
``endpoint.connect(payload)`` opens a client connection whose ``call()``
makes one round trip, an **echo** of ``payload``::

    results = bench.run(["raw", "socketrpc", "grpc"], bench.QUICK)
    print(bench.format_table(results))

``raw`` is a length-prefixed ping-pong over a plain socket: no encoding, no
dispatch -- the physical limit of a round trip here. Every other transport is
measured against it. For each transport the harness measures:

* latency (median and 99th percentile) and calls per second on one
  connection, one call at a time;
* calls per second with several connections calling at once, a thread each
  (for gRPC aio: that many calls in flight at once on its event loop);
* a payload sweep: the median time to echo payloads of several sizes, up to 1 MiB.

Rounds alternate between transports, so that a machine getting busier or
quieter during the run affects them all alike. Client and server run in this
one process, so they share the GIL: that is part of what is measured. Every
loop is bounded in calls and in time, and every server is stopped at the end,
also when the run is interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TextIO

from rpclab import checks
from rpclab.bench import echo
from rpclab.bench.echo import (
    CALL_TIMEOUT,
    LIMITS,
    MAX_MESSAGE,
    MAX_PAYLOAD,
    PAYLOAD,
    Connection,
    Endpoint,
)

__all__ = [
    "PAYLOAD",
    "MAX_PAYLOAD",
    "MAX_MESSAGE",
    "Connection",
    "Endpoint",
    "Settings",
    "QUICK",
    "NORMAL",
    "PayloadPoint",
    "Result",
    "Choice",
    "TRANSPORTS",
    "DESCRIPTIONS",
    "LIMITS",
    "register",
    "transport_names",
    "measure_round_trips",
    "open_connection",
    "measure_concurrent",
    "run",
    "choices",
    "format_table",
    "format_choices",
    "to_json",
    "ProgressLine",
    "benchmark",
    "add_arguments",
    "main",
]


@dataclass(frozen=True)
class Settings:
    """How long to measure: rounds, the limits (calls and seconds) of each, and the payload sizes to
    sweep."""

    rounds: int = 5
    calls_per_round: int = 50_000  # single-connection calls per round, at most
    seconds_per_round: float = 0.5
    connections: int = 8  # for the concurrent measurement
    concurrent_calls: int = (
        200_000  # calls per concurrent round (all connections together), at most
    )
    concurrent_seconds: float = 0.8
    warmup_calls: int = 300
    payload_sizes: tuple[
        int, ...
    ] = ()  # bytes echoed each way, measured every round; () for no sweep
    payload_calls: int = 5_000  # calls per size per round, at most
    payload_seconds: float = 0.2  # seconds per size per round, at most

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "payload_sizes":
                if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                    raise TypeError(
                        f"payload_sizes must be a sequence of ints (bytes), not {value!r}"
                    )
                value = tuple(value)
                for size in value:  # in bytes, 1 MiB at most
                    checks.integer("each payload size", size, low=1, high=MAX_PAYLOAD)
                object.__setattr__(self, "payload_sizes", value)  # a list given becomes a tuple
            elif f.type == "int":
                checks.integer(f.name, value, low=1)
            else:
                checks.seconds(f.name, value, above=0)

    @property
    def steps(self) -> int:
        """How many measurements one transport takes: set-up, then per round 2 and 1 per payload
        size."""
        return 1 + self.rounds * (2 + len(self.payload_sizes))


SWEEP = (16, 1024, 64 * 1024, 1024 * 1024)  # 16 B, 1 KiB, 64 KiB, 1 MiB
SWEEP_WARMUP_CALLS = 3  # calls made, not counted, on each new connection of the sweep
QUICK = Settings(
    rounds=3,
    calls_per_round=10_000,
    seconds_per_round=0.15,
    concurrent_calls=40_000,
    concurrent_seconds=0.2,
    warmup_calls=100,
    payload_sizes=SWEEP,
    payload_calls=2_000,
    payload_seconds=0.05,
)
NORMAL = Settings(payload_sizes=SWEEP)


@dataclass
class PayloadPoint:
    """The echo of one payload size: calls made and time taken (all rounds), and the median time per
    echo."""

    size: int  # bytes of payload, each way
    calls: int = 0
    seconds: float = 0.0
    median_us: float = 0.0

    @property
    def mib_per_second(self) -> float:
        """Payload carried per second, both directions counted (MiB/s), at the median time per
        echo."""
        return 2 * self.size / (self.median_us / 1e6) / 2**20 if self.median_us else 0.0


@dataclass
class Result:
    """What one transport achieved: on one connection, with several at once, and per payload
    size."""

    transport: str
    calls: int = 0  # single-connection round trips made
    seconds: float = 0.0
    median_us: float = 0.0
    p99_us: float = 0.0
    concurrent_calls: int = 0
    concurrent_seconds: float = 0.0
    connections: int = 0
    concurrency: str = ""  # how the concurrent calls were made
    payload: list[PayloadPoint] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Round trips per second on one connection."""
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def concurrent_rate(self) -> float:
        """Calls per second with ``connections`` connections (or calls in flight) at once."""
        return self.concurrent_calls / self.concurrent_seconds if self.concurrent_seconds else 0.0

    def payload_us(self, size: int) -> float | None:
        """The median microseconds per echo of ``size`` bytes, or None if that size was not
        measured."""
        for point in self.payload:
            if point.size == size and point.calls:
                return point.median_us
        return None


# =========================================================================== transports

TRANSPORTS: dict[str, Callable[[], Endpoint]] = {}
DESCRIPTIONS: dict[str, str] = {}


def register(name: str, setup: Callable[[], Endpoint], description: str = "") -> None:
    """Add (or replace) a transport: ``setup()`` starts its server and returns an Endpoint."""
    if not isinstance(name, str) or not name or "," in name:
        raise ValueError(f"a transport's name must be a non-empty str without commas, not {name!r}")
    checks.function("setup", setup, "setup() -> Endpoint")
    TRANSPORTS[name] = setup
    DESCRIPTIONS[name] = description


def transport_names(transports: str | Iterable[str] | None = None) -> list[str]:
    """The transports to measure: all registered ones for None; a list, or a comma-separated string,
    checked."""
    if transports is None:
        return list(TRANSPORTS)
    names = (
        [n.strip() for n in transports.split(",")]
        if isinstance(transports, str)
        else list(transports)
    )
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise ValueError(f"name at least one transport; registered: {', '.join(TRANSPORTS)}")
    unknown = [n for n in names if n not in TRANSPORTS]
    if unknown:
        raise ValueError(
            f"unknown transport{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"registered: {', '.join(TRANSPORTS)}"
        )
    return list(dict.fromkeys(names))  # each once, in the order given


register("raw", echo.setup_raw, "length-prefixed bytes over TCP, echoed as they came: the limit")
register(
    "socketrpc",
    echo.setup_socketrpc,
    "RPC Lab's JSON-RPC over TCP (notebook 04), a thread per connection",
)
register(
    "xmlrpc", echo.setup_xmlrpc, "XML in HTTP/1.1 POSTs, the standard library's client and server"
)
register(
    "rest", echo.setup_rest, "JSON in HTTP/1.1 POSTs, FastAPI on uvicorn (one event loop thread)"
)
register(
    "thrift",
    echo.setup_thrift,
    "Thrift binary protocol, framed, thriftpy2 (a thread per connection)",
)
register(
    "grpc",
    echo.setup_grpc,
    "protobuf over HTTP/2, gRPC's synchronous API (a thread pool serves calls)",
)
register(
    "grpc-aio",
    echo.setup_grpc_aio,
    "protobuf over HTTP/2, grpc.aio: client and server on one event loop",
)


# =========================================================================== measuring


def measure_round_trips(
    call: Callable[[], object], max_calls: int, max_seconds: float
) -> tuple[list[int], float]:
    """Call ``call()`` until ``max_calls`` or ``max_seconds``; return each call's latency (ns) and
    the time taken."""
    clock = time.perf_counter_ns
    latencies: list[int] = []
    record = latencies.append
    start = clock()
    stop_at = start + int(max_seconds * 1e9)
    for _ in range(max_calls):
        before = clock()
        call()
        after = clock()
        record(after - before)
        if after >= stop_at:
            break
    return latencies, (clock() - start) / 1e9


def _measure(conn: Connection, max_calls: int, max_seconds: float) -> tuple[list[int], float]:
    if conn.measure is not None:
        return conn.measure(max_calls, max_seconds)
    return measure_round_trips(conn.call, max_calls, max_seconds)


def _as_text(reply: object) -> object:
    if isinstance(reply, (bytes, bytearray, memoryview)):
        return bytes(reply).decode("utf-8", "replace")
    return reply


def open_connection(name: str, endpoint: Endpoint, payload: str) -> Connection:
    """Connect, and check with one call (which also sets the connection up) that the echo comes back
    whole."""
    conn = endpoint.connect(payload)
    try:
        reply = _as_text(conn.call())
        if reply != payload:
            got = f"{len(reply):,} characters" if isinstance(reply, str) else repr(reply)[:60]
            raise RuntimeError(f"{name} echoed {got} for a payload of {len(payload):,}")
    except BaseException:
        conn.close()
        raise
    return conn


def measure_concurrent(
    endpoint: Endpoint,
    connections: int,
    max_calls: int,
    max_seconds: float,
    name: str = "transport",
) -> tuple[int, float, list[str]]:
    """Call from ``connections`` threads, one connection each, at once; return (calls, seconds,
    errors)."""
    if endpoint.concurrent is not None:
        return endpoint.concurrent(connections, max_calls, max_seconds)
    conns: list[Connection] = []
    try:
        for _ in range(connections):
            conns.append(open_connection(name, endpoint, PAYLOAD))
    except BaseException:
        for conn in conns:
            conn.close()
        raise
    counts = [0] * connections
    errors: list[str] = []
    ready = threading.Barrier(connections + 1, timeout=CALL_TIMEOUT)
    per_thread = max(1, max_calls // connections)
    deadline = [0.0]

    def worker(index: int) -> None:
        call = conns[index].call
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            return
        stop_at = deadline[0]
        done = 0
        try:
            while done < per_thread:
                call()
                done += 1
                if done % 16 == 0 and time.perf_counter() >= stop_at:
                    break
        except Exception as exc:  # reported, not raised: the other threads finish their run
            errors.append(f"{type(exc).__name__}: {exc}")
        counts[index] = done

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"rpclab-bench-{i}", daemon=True)
        for i in range(connections)
    ]
    try:
        for thread in threads:
            thread.start()
        start = time.perf_counter()
        deadline[0] = start + max_seconds
        ready.wait()
        for thread in threads:
            thread.join(max_seconds + 3 * CALL_TIMEOUT)
        elapsed = time.perf_counter() - start
    except BaseException:
        ready.abort()
        raise
    finally:
        for conn in conns:
            conn.close()  # a thread still calling (after Ctrl-C, say) gets an error and ends
        for thread in threads:
            thread.join(CALL_TIMEOUT)
    if any(thread.is_alive() for thread in threads):
        errors.append("a benchmark thread did not finish in time")
    return sum(counts), elapsed, errors


def _percentile(ordered: Sequence[int], fraction: float) -> int:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def run(
    transports: str | Iterable[str] | None = None,
    settings: Settings = QUICK,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Result]:
    """Measure each transport (all registered ones by default), alternating between them round by
    round.

    Each round measures every transport on one connection, then with several
    at once, then echoing each payload size; who goes first changes every
    round. ``progress(done, total, what)`` is called before each measurement.
    A transport that fails during the rounds is reported in its Result's
    ``errors``; one that cannot even be set up raises. Every server started is
    stopped before this returns or raises (Ctrl-C included).
    """
    names = transport_names(transports)
    results = {name: Result(name, connections=settings.connections) for name in names}
    latencies: dict[str, list[int]] = {name: [] for name in names}
    sweeps: dict[tuple[str, int], list[int]] = {
        (n, size): [] for n in names for size in settings.payload_sizes
    }
    endpoints: dict[str, Endpoint] = {}
    singles: dict[str, Connection] = {}
    total, done = len(names) * settings.steps, 0

    def step(what: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done, total, what)
        done += 1

    try:
        for name in names:
            step(f"starting {name}")
            endpoints[name] = TRANSPORTS[name]()
            results[name].concurrency = endpoints[name].concurrency
            singles[name] = open_connection(name, endpoints[name], PAYLOAD)
            _measure(singles[name], settings.warmup_calls, 5.0)
        for number in range(settings.rounds):
            order = names[number % len(names) :] + names[: number % len(names)]
            where = f"round {number + 1}/{settings.rounds}"
            for name in order:
                step(f"{where}: {name}, one connection")
                try:
                    lat, seconds = _measure(
                        singles[name], settings.calls_per_round, settings.seconds_per_round
                    )
                    latencies[name].extend(lat)
                    results[name].calls += len(lat)
                    results[name].seconds += seconds
                except Exception as exc:
                    results[name].errors.append(f"{type(exc).__name__}: {exc}")
                    singles[name].close()
                    singles[name] = endpoints[name].connect(PAYLOAD)
            for name in order:
                step(f"{where}: {name}, {settings.connections} at once")
                try:
                    calls, seconds, errors = measure_concurrent(
                        endpoints[name],
                        settings.connections,
                        settings.concurrent_calls,
                        settings.concurrent_seconds,
                        name,
                    )
                except Exception as exc:
                    calls, seconds, errors = 0, 0.0, [f"{type(exc).__name__}: {exc}"]
                results[name].concurrent_calls += calls
                results[name].concurrent_seconds += seconds
                results[name].errors.extend(errors)
            for size in settings.payload_sizes:
                for name in order:
                    step(f"{where}: {name}, echo of {_format_size(size)}")
                    try:
                        lat, seconds = _sweep(name, endpoints[name], "x" * size, settings)
                        sweeps[name, size].extend(lat)
                        point = _point(results[name], size)
                        point.calls += len(lat)
                        point.seconds += seconds
                    except Exception as exc:
                        results[name].errors.append(
                            f"{_format_size(size)} payload: {type(exc).__name__}: {exc}"
                        )
    finally:
        for conn in singles.values():
            _quietly(conn.close)
        closing: list[BaseException] = []
        for endpoint in endpoints.values():
            try:
                endpoint.close()
            except BaseException as exc:  # stop the others all the same
                closing.append(exc)
        if closing and sys.exc_info()[1] is None:
            raise closing[0]
    for name, lat in latencies.items():
        if lat:
            ordered = sorted(lat)
            results[name].median_us = statistics.median(ordered) / 1000
            results[name].p99_us = _percentile(ordered, 0.99) / 1000
    for (name, size), lat in sweeps.items():
        point = _point(results[name], size)
        if lat:
            point.median_us = statistics.median(lat) / 1000
    return results


def _sweep(
    name: str, endpoint: Endpoint, payload: str, settings: Settings
) -> tuple[list[int], float]:
    """One round of echoes of ``payload`` on a new connection, after a few uncounted ones."""
    conn = open_connection(name, endpoint, payload)
    try:
        _measure(conn, SWEEP_WARMUP_CALLS, settings.payload_seconds)  # buffers grown, caches warm
        return _measure(conn, settings.payload_calls, settings.payload_seconds)
    finally:
        conn.close()


def _point(result: Result, size: int) -> PayloadPoint:
    """The result's PayloadPoint for ``size``, added (in the order sizes are measured) if it is not
    there yet."""
    for point in result.payload:
        if point.size == size:
            return point
    result.payload.append(PayloadPoint(size))
    return result.payload[-1]


def _quietly(close: Callable[[], object]) -> None:
    try:
        close()
    except Exception:
        pass


# =========================================================================== reading the results


@dataclass(frozen=True)
class Choice:
    """The transport that did best in one situation, by how much, and the measured figure behind
    it."""

    situation: str
    transport: str
    figure: str  # the winner's measured value, formatted
    runner_up: str | None = None
    margin: float | None = None  # how many times better than the runner-up (>= 1)

    @property
    def close_call(self) -> bool:
        """Within 10% of the runner-up: a rerun on a shared machine may well swap them."""
        return self.margin is not None and self.margin < 1.1

    def __str__(self) -> str:
        text = f"{self.situation}: {self.transport} ({self.figure}"
        if self.runner_up is not None and self.margin is not None:
            text += f"; {self.margin:.2f} x better than {self.runner_up}"
            if self.close_call:
                text += ", a near tie"
        return text + ")"


def choices(results: dict[str, Result], baseline: str = "raw") -> list[Choice]:
    """The best RPC transport (``baseline`` left out) in each situation the results cover, computed
    from them."""
    candidates = [r for name, r in results.items() if name != baseline]
    picks: list[Choice] = []

    def pick(
        situation: str,
        value: Callable[[Result], float | None],
        lower_is_better: bool,
        show: Callable[[float], str],
    ) -> None:
        scored = [
            (v, r.transport)
            for r in candidates
            if (v := value(r)) is not None and v > 0 and math.isfinite(v)
        ]
        if not scored:
            return
        scored.sort(reverse=not lower_is_better)
        (best, winner), rest = scored[0], scored[1:]
        margin = None
        if rest:
            margin = rest[0][0] / best if lower_is_better else best / rest[0][0]
        picks.append(Choice(situation, winner, show(best), rest[0][1] if rest else None, margin))

    pick(
        "lowest latency, one call at a time",
        lambda r: r.median_us,
        True,
        lambda v: f"median {v:,.0f} µs",
    )
    pick(
        "steadiest latency (lowest 99th percentile)",
        lambda r: r.p99_us,
        True,
        lambda v: f"p99 {v:,.0f} µs",
    )
    connections = max((r.connections for r in candidates), default=0)
    pick(
        f"most calls per second, {connections} at once",
        lambda r: r.concurrent_rate,
        False,
        lambda v: f"{v:,.0f} calls/s",
    )
    sizes = sorted({p.size for r in candidates for p in r.payload if p.calls})
    if sizes:
        largest = sizes[-1]
        pick(
            f"largest payloads ({_format_size(largest)} echoed)",
            lambda r: r.payload_us(largest),
            True,
            lambda v: f"{v / 1000:,.1f} ms per echo",
        )
    return picks


def _format_size(size: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def _format_us(us: float | None) -> str:
    if us is None:
        return "-"
    return f"{us:,.0f} µs" if us < 10_000 else f"{us / 1000:,.1f} ms"


def format_table(results: dict[str, Result]) -> str:
    """Plain-text tables: latency and rates per transport (against raw's), then the payload sweep if
    measured."""
    base = results["raw"].rate if "raw" in results and results["raw"].rate else None
    connections = max((r.connections for r in results.values()), default=0)
    head = (
        f"{'transport':<10} {'median µs':>10} {'p99 µs':>8} {'round trips/s':>14} {'x raw':>6} "
        f"{f'{connections} at once calls/s':>20}"
    )
    lines = [head, "-" * len(head)]
    for r in results.values():
        ratio = f"{r.rate / base:.2f}" if base else "-"
        lines.append(
            f"{r.transport:<10} {r.median_us:>10.1f} {r.p99_us:>8.1f} {r.rate:>14,.0f} {ratio:>6} "
            f"{r.concurrent_rate:>20,.0f}"
        )
    sizes = sorted({p.size for r in results.values() for p in r.payload})
    if sizes:
        head = f"{'echo of':<10} " + " ".join(f"{_format_size(s):>10}" for s in sizes)
        lines += ["", head + "   (median time per echo)", "-" * len(head)]
        for r in results.values():
            lines.append(
                f"{r.transport:<10} "
                + " ".join(f"{_format_us(r.payload_us(s)):>10}" for s in sizes)
            )
    for r in results.values():
        for error in r.errors[:3]:
            lines.append(f"  ! {r.transport}: {error}")
        if len(r.errors) > 3:
            lines.append(f"  ! {r.transport}: ... and {len(r.errors) - 3} more errors")
    return "\n".join(lines)


def format_choices(results: dict[str, Result]) -> str:
    """One line per situation: the fastest RPC transport measured, and by how much."""
    return "\n".join(f"- {choice}" for choice in choices(results))


def to_json(
    results: dict[str, Result], settings: Settings, seconds: float | None = None
) -> dict[str, Any]:
    """Results and the conditions they were measured in, ready for json.dump."""
    base = results["raw"].rate if "raw" in results and results["raw"].rate else None
    return {
        "rpclab_bench": 1,  # the version of this layout
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "one_process": "client and server share this one process and its GIL",
        },
        "settings": asdict(settings),
        "seconds": seconds,
        "results": {
            name: {
                **asdict(r),
                "rate": r.rate,
                "concurrent_rate": r.concurrent_rate,
                "vs_raw": (r.rate / base) if base else None,
                "payload": [{**asdict(p), "mib_per_second": p.mib_per_second} for p in r.payload],
                "limit": LIMITS.get(name, ""),
            }
            for name, r in results.items()
        },
        "choices": [asdict(choice) for choice in choices(results)],
    }


# =========================================================================== running it


class ProgressLine:
    """A progress bar on one line of a stream (stderr by default), rewritten in place; ``finish()``
    wipes it."""

    def __init__(self, stream: TextIO | None = None, width: int = 24):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.start = time.perf_counter()
        self._length = 0

    def __call__(self, done: int, total: int, what: str) -> None:
        filled = self.width * done // max(total, 1)
        text = (
            f"[{'#' * filled}{'-' * (self.width - filled)}] {done}/{total} {what}"
            f"  {time.perf_counter() - self.start:.0f} s"
        )
        self.stream.write("\r" + text.ljust(self._length))
        self.stream.flush()
        self._length = len(text)

    def finish(self) -> None:
        if self._length:
            self.stream.write("\r" + " " * self._length + "\r")
            self.stream.flush()
            self._length = 0


def benchmark(
    transports: str | Iterable[str] | None = None,
    *,
    quick: bool = False,
    json_file: str | None = None,
    settings: Settings | None = None,
    progress: bool | TextIO | None = None,
    out: TextIO | None = None,
) -> dict[str, Result]:
    """What ``rpclab bench`` does, as a function: measure, print the tables and choices, optionally
    write JSON.

    The command's options are its arguments: ``--transports a,b`` is
    ``transports="a,b"`` (or a list), ``--quick`` is ``quick=True``, ``--json
    FILE`` is ``json_file="FILE"``. ``settings`` overrides both presets.
    ``progress``: a progress bar on stderr (True), on the given stream, or none
    (False); by default, only when stderr is a terminal. Returns the results.
    """
    names = transport_names(transports)
    settings = settings if settings is not None else QUICK if quick else NORMAL
    out = out if out is not None else sys.stdout
    if progress is None:
        progress = sys.stderr.isatty()
    bar = ProgressLine(None if progress is True else progress) if progress else None
    kind = "quick" if settings == QUICK else "normal" if settings == NORMAL else "custom"
    print(
        f"Measuring {', '.join(names)}: {settings.rounds} alternating rounds ({kind} run); "
        f"client and server share this one process on {os.cpu_count()} CPUs.",
        file=out,
        flush=True,
    )
    started = time.perf_counter()
    try:
        results = run(names, settings, progress=bar)
    finally:
        if bar is not None:
            bar.finish()
    seconds = time.perf_counter() - started
    print(format_table(results), file=out)
    print(f"({seconds:.1f} s; latencies per call on one connection, one call at a time)", file=out)
    lines = format_choices(results)
    if lines:
        print("\nFastest RPC transport, as measured in this run:\n" + lines, file=out)
    if json_file:
        with open(json_file, "w", encoding="utf-8") as handle:
            json.dump(to_json(results, settings, seconds), handle, indent=2)
            handle.write("\n")
        print(f"wrote {json_file}", file=out)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rpclab bench`` (the parameters of :func:`benchmark`), as rpclab.cli also
    declares them."""
    parser.add_argument(
        "--quick", action="store_true", help="a small, bounded run (seconds, not minutes)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument(
        "--transports", metavar="A,B", help="measure only these, comma-separated (default: all)"
    )


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """``rpclab bench [--quick] [--json FILE] [--transports A,B]``: 0 if all went well, 1 on errors,
    2 on bad options."""
    if args is None or not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(
            prog="rpclab bench", description="Measure every transport, in this process."
        )
        add_arguments(parser)
        args = parser.parse_args(args)
    try:
        names = transport_names(getattr(args, "transports", None))
    except ValueError as exc:
        print(f"rpclab bench: {exc}", file=sys.stderr)
        return 2
    try:
        results = benchmark(
            names, quick=getattr(args, "quick", False), json_file=getattr(args, "json", None)
        )
    except KeyboardInterrupt:
        print("\nrpclab bench: interrupted; every server it started is stopped.", file=sys.stderr)
        return 130
    return 1 if any(r.errors for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
