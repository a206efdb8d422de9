"""The measurement behind ``rpclab bench`` and notebook 13: every transport, measured the same way,
in rounds, so that the spread is shown with the figures.

About 650 lines, one measurement read in order: the settings, the transports, the timing
loops, the run. Notebook 05 times raw sockets against the socket RPC with it; notebook 13
teaches the method;
notebook 14's rpclab.bigdata.transfer applies the same idea (rounds in rotating order, every
round kept) to moving a table. What a run measured, and its summaries, are in results.py; the
tables, the JSON and the command in report.py; the transports in echo.py; pinning in
placement.py; the servers' own process in server_process.py.

The method, and why
-------------------

* **A baseline**, ``raw``: length-prefixed bytes echoed as they came, no encoding, no dispatch.
  Every figure of a transport is also given as a ratio to raw's in the same round (``time ÷
  raw``, ``CPU ÷ raw``: both are times, so above 1 means slower than raw).
* **Rounds, each on a new connection.** A connection's client and server threads stay where
  the scheduler first put them (on one CPU, or on two that must wake each other), and that can
  change a round trip's time several times over; a new connection each round draws again, and
  every round is kept, so the spread between rounds is shown with the median of the rounds.
* **Placement as a condition.** An *arrangement* is where the server runs -- ``"kernel"`` (this
  process, sharing its GIL with the client) or ``"process"`` (a child process of its own) --
  and how threads are placed: ``"one-cpu"``, ``"two-cpus"`` or ``"free"``
  (rpclab.bench.placement). Every arrangement of the settings is measured in every round.
* **Wall time and CPU time.** Each round records every call's latency, and the CPU time used
  per call: this process's (``time.process_time``) plus, with the server in a child, the
  child's; and the calling thread's own (``time.thread_time``).
* **Alternation and warm-up.** Within a round every transport takes its turn, and who goes
  first changes every round; each new connection makes ``warmup_calls`` calls that are not
  counted (payload connections too, within half of ``payload_seconds``).
* **Enough calls.** A round ends at its seconds, but never before ``min_calls`` calls: a short
  round that met one slow call early would otherwise be that one call.
* **Bounds.** Every loop stops at a number of calls or of seconds, every call has a timeout,
  and every server (and the child process) is stopped at the end, Ctrl-C included.

Using it (notebook 14 may reuse the same pieces)::

    results = bench.run(["raw", "socketrpc"], bench.QUICK)      # {name: Result}
    for s in bench.summaries(results):                          # one per transport and arrangement
        print(s.transport, s.where, s.placement, s.median_us, s.low_us, s.high_us,
              s.cpu_us, s.wall_vs_raw, s.cpu_vs_raw)
    results["raw"].rounds[0].latencies_ns                       # every call of a round
    bench.time_round_trips(call, max_calls, max_seconds)        # one timed loop: Calls

Open-loop load (latency against offered rate) is rpclab.bench.load.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from rpclab import checks
from rpclab.bench import echo, placement, server_process
from rpclab.bench.echo import (
    CALL_TIMEOUT,
    LIMITS,
    MAX_MESSAGE,
    MAX_PAYLOAD,
    PAYLOAD,
    Calls,
    Connection,
    Endpoint,
    time_round_trips,
)
from rpclab.bench.results import (
    ConcurrentRound,
    PayloadPoint,
    Result,
    Round,
    Summary,
    format_size,
    quantile,
    summaries,
    summary,
)
from rpclab.runtime import background

__all__ = [
    "PAYLOAD",
    "MAX_PAYLOAD",
    "MAX_MESSAGE",
    "Calls",
    "Connection",
    "Endpoint",
    "WHERE",
    "Settings",
    "QUICK",
    "NORMAL",
    "Round",
    "ConcurrentRound",
    "PayloadPoint",
    "Result",
    "Summary",
    "TRANSPORTS",
    "DESCRIPTIONS",
    "ON_REQUEST",
    "LIMITS",
    "register",
    "transport_names",
    "time_round_trips",
    "measure_round_trips",
    "open_connection",
    "measure_concurrent",
    "measure_rounds",
    "arrangements",
    "run",
    "summaries",
    "summary",
    "quantile",
]

WHERE = {
    "kernel": "server in this process",
    "process": "server in a process of its own",
}


@dataclass(frozen=True)
class Settings:
    """How to measure: rounds, the limits (calls and seconds) of each measurement, the payload
    sizes to sweep, and the arrangements (where the server runs, how threads are placed)."""

    rounds: int = 5
    calls_per_round: int = 50_000  # single-connection calls per round, at most
    seconds_per_round: float = 0.3
    connections: int = 8  # for the concurrent measurement; 0 for none
    concurrent_calls: int = 200_000  # calls per concurrent round (all connections), at most
    concurrent_seconds: float = 0.5
    warmup_calls: int = 200  # uncounted calls on each new connection
    min_calls: int = 5  # calls per round (and per payload size per round), at least
    payload_sizes: tuple[int, ...] = ()  # bytes echoed each way, every round; () for no sweep
    payload_calls: int = 5_000  # calls per size per round, at most
    payload_seconds: float = 0.2  # seconds per size per round, at most
    where: tuple[str, ...] = ("kernel", "process")
    placements: tuple[str, ...] = ("one-cpu", "two-cpus")
    # where several connections at once are measured: on one CPU, callers can only take turns
    concurrent_placements: tuple[str, ...] = ("two-cpus", "free")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("payload_sizes", "where", "placements", "concurrent_placements"):
                if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                    raise TypeError(f"{f.name} must be a sequence, not {checks.shown(value)}")
                value = tuple(value)
                if f.name == "payload_sizes":
                    for size in value:  # in bytes, 1 MiB at most
                        checks.integer("each payload size", size, low=1, high=MAX_PAYLOAD)
                else:
                    if not value and f.name != "concurrent_placements":
                        raise ValueError(f"{f.name} needs at least one value")
                    choices = WHERE if f.name == "where" else placement.PLACEMENTS
                    for item in value:
                        checks.one_of(f"each of {f.name}", item, choices)
                    value = tuple(dict.fromkeys(value))
                object.__setattr__(self, f.name, value)  # a list given becomes a tuple
            elif f.name == "connections":
                checks.integer(f.name, value, low=0, high=256)
            elif f.type == "int":
                checks.integer(f.name, value, low=1)
            else:
                checks.seconds(f.name, value, above=0, high=600)


SWEEP = (16, 1024, 64 * 1024, 1024 * 1024)  # 16 B, 1 KiB, 64 KiB, 1 MiB
QUICK = Settings(
    rounds=5,
    calls_per_round=5_000,
    seconds_per_round=0.04,
    concurrent_calls=20_000,
    concurrent_seconds=0.06,
    warmup_calls=20,
    payload_sizes=SWEEP,
    payload_calls=500,
    payload_seconds=0.02,
)
NORMAL = Settings(payload_sizes=SWEEP)


# =========================================================================== transports

TRANSPORTS: dict[str, Callable[[], Endpoint]] = {}
DESCRIPTIONS: dict[str, str] = {}
ON_REQUEST: set[str] = set()  # measured only when named
_SERVABLE = {**echo.TRANSPORTS, **echo.EXTRAS}  # what the bench's server process can run


def register(
    name: str, setup: Callable[[], Endpoint], description: str = "", *, by_default: bool = True
) -> None:
    """Add (or replace) a transport: ``setup()`` starts its server here and returns an Endpoint.
    With ``by_default=False`` it is measured only when named.

    Only rpclab.bench.echo's own transports can also run their server in another process; any
    other is measured in the kernel arrangements only.
    """
    if not isinstance(name, str) or not name or "," in name:
        raise ValueError(f"a transport's name must be a non-empty str without commas, not {name!r}")
    checks.function("setup", setup, "setup() -> Endpoint")
    TRANSPORTS[name] = setup
    DESCRIPTIONS[name] = description
    if by_default:
        ON_REQUEST.discard(name)
    else:
        ON_REQUEST.add(name)


def transport_names(transports: str | Iterable[str] | None = None) -> list[str]:
    """The transports to measure: for None, every registered one but those measured only on
    request; a list, or a comma-separated string, checked."""
    if transports is None:
        return [n for n in TRANSPORTS if n not in ON_REQUEST]
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


for _transport in _SERVABLE.values():
    register(
        _transport.name,
        lambda t=_transport: echo.in_kernel(t),  # type: ignore[misc]
        _transport.description,
        by_default=_transport.name in echo.TRANSPORTS,  # the EXTRAS only when named
    )


# =========================================================================== measuring


def measure_round_trips(
    call: Callable[[], object], max_calls: int, max_seconds: float
) -> tuple[list[int], float]:
    """Call ``call()`` until ``max_calls`` or ``max_seconds``; return each call's latency (ns) and
    the time taken. (:func:`time_round_trips` also returns the thread's CPU time.)"""
    timed = time_round_trips(call, max_calls, max_seconds)
    return timed.latencies, timed.seconds


def _measure_once(conn: Connection, max_calls: int, max_seconds: float) -> Calls:
    if conn.measure is not None:
        return conn.measure(max_calls, max_seconds)
    return time_round_trips(conn.call, max_calls, max_seconds)


def _measure(conn: Connection, max_calls: int, max_seconds: float, min_calls: int = 1) -> Calls:
    """Time calls until ``max_calls`` or ``max_seconds``, but at least ``min_calls`` of them
    (each call has its timeout, so this too is bounded)."""
    timed = _measure_once(conn, max_calls, max_seconds)
    want = min(min_calls, max_calls)
    while len(timed.latencies) < want:  # each pass adds at least one call
        more = _measure_once(conn, want - len(timed.latencies), 0)
        if not more.latencies:
            break
        timed = Calls(
            timed.latencies + more.latencies,
            timed.seconds + more.seconds,
            timed.thread_cpu_ns + more.thread_cpu_ns,
        )
    return timed


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


class _CPU:
    """CPU time used, here and (if given) in the server's process, between start() and stop()."""

    def __init__(self, server_cpu_ns: Callable[[], int] | None):
        self.server = server_cpu_ns
        self.here = self.there = 0

    def start(self) -> None:
        self.there = self.server() if self.server is not None else 0
        self.here = time.process_time_ns()

    def stop(self) -> tuple[int, int | None]:
        here = time.process_time_ns() - self.here
        there = self.server() - self.there if self.server is not None else None
        return here, there


def measure_concurrent(
    endpoint: Endpoint,
    connections: int,
    max_calls: int,
    max_seconds: float,
    name: str = "transport",
) -> tuple[int, float, list[str], int | None]:
    """Call from ``connections`` threads, one connection each, at once; return (calls, seconds,
    errors, CPU ns used by client and server together while they called)."""
    cpu = _CPU(endpoint.server_cpu_ns)
    if endpoint.concurrent is not None:
        cpu.start()
        calls, seconds, errors = endpoint.concurrent(connections, max_calls, max_seconds)
        here, there = cpu.stop()
        return calls, seconds, errors, here + (there or 0)
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
                if time.perf_counter() >= stop_at:
                    break
        except Exception as exc:  # reported, not raised: the other threads finish their run
            errors.append(f"{type(exc).__name__}: {exc}")
        counts[index] = done

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"rpclab-bench-{i}", daemon=True)
        for i in range(connections)
    ]
    used: int | None = None
    try:
        for thread in threads:
            thread.start()
        cpu.start()
        start = time.perf_counter()
        deadline[0] = start + max_seconds
        ready.wait()
        for thread in threads:
            thread.join(max_seconds + 3 * CALL_TIMEOUT)
        elapsed = time.perf_counter() - start
        here, there = cpu.stop()
        used = here + (there or 0)
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
    return sum(counts), elapsed, errors, used


def arrangements(
    settings: Settings, names: Sequence[str] = ()
) -> tuple[list[tuple[str, str]], list[str]]:
    """The (where, placement) pairs ``settings`` asks for that this machine can measure, and a
    note for each one it cannot."""
    notes: list[str] = []
    usable = []
    for place in settings.placements:
        reason = placement.unavailable(place)
        if reason is None:
            usable.append(place)
        else:
            notes.append(f"not measured {placement.DESCRIPTIONS[place]}: {reason}")
    if not usable:
        usable = ["free"]
    custom = [n for n in names if n not in _SERVABLE]
    if "process" in settings.where and custom:
        how = (
            "measured with the server in this process only"
            if "kernel" in settings.where
            else ("not measured")
        )
        notes.append(
            f"{', '.join(custom)}: {how} (only rpclab.bench.echo's transports can run in the "
            "bench's server process)"
        )
    return [(w, p) for w in settings.where for p in usable], notes


def _one_round(
    name: str,
    endpoint: Endpoint,
    where: str,
    place: str,
    number: int,
    cpus: list[int],
    settings: Settings,
) -> Round:
    conn = open_connection(name, endpoint, PAYLOAD)  # a new connection: placement drawn again
    try:
        _measure(conn, settings.warmup_calls, settings.seconds_per_round / 2)
        cpu = _CPU(endpoint.server_cpu_ns)
        cpu.start()
        timed = _measure(
            conn, settings.calls_per_round, settings.seconds_per_round, settings.min_calls
        )
        here, there = cpu.stop()
    finally:
        conn.close()
    lat = timed.latencies
    n = len(lat)
    ordered = sorted(lat)
    return Round(
        transport=name,
        where=where,
        placement=place,
        number=number,
        calls=n,
        seconds=timed.seconds,
        median_us=statistics.median(ordered) / 1000,
        p99_us=quantile(ordered, 0.99) / 1000,
        mean_us=sum(lat) / n / 1000,
        cpu_us=(here + (there or 0)) / n / 1000,
        client_cpu_us=timed.thread_cpu_ns / n / 1000,
        server_cpu_us=there / n / 1000 if there is not None else None,
        cpus=cpus,
        latencies_ns=lat,
    )


def measure_rounds(
    name: str,
    endpoint: Endpoint,
    *,
    rounds: int = 5,
    place: str = "free",
    settings: Settings = QUICK,
) -> list[Round]:
    """``rounds`` rounds of one transport alone, each on a new connection, with its threads
    placed as ``place`` says (the server's process too, if ``endpoint`` has one)."""
    checks.integer("rounds", rounds, low=1, high=1000)
    where = "process" if endpoint.server_pid is not None else "kernel"
    measured = []
    with placement.placed(
        place, server_pid=endpoint.server_pid, client_threads=endpoint.client_threads()
    ) as cpus:
        for number in range(1, rounds + 1):
            measured.append(_one_round(name, endpoint, where, place, number, cpus, settings))
    return measured


def run(
    transports: str | Iterable[str] | None = None,
    settings: Settings = QUICK,
    progress: Callable[[int, int, str], None] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Result]:
    """Measure each transport (all registered ones by default) in every arrangement, round by round.

    In each round and arrangement, every transport is measured on a new connection one call at
    a time, then (if ``settings.connections``) with several connections at once; in the first
    arrangement each payload size is echoed too. Who goes first changes every round.
    ``progress(done, total, what)`` is called before each measurement; ``notes``, if given, gets
    a line for each arrangement that could not be measured here. A transport that fails during
    the rounds is reported in its Result's ``errors``; one that cannot even be set up raises.
    Every server started (and the server process) is stopped before this returns or raises.
    """
    names = transport_names(transports)
    arranged, said = arrangements(settings, names)
    if notes is not None:
        notes.extend(said)
    headline = arranged[0]
    results = {
        name: Result(name, connections=settings.connections, headline=headline) for name in names
    }
    endpoints: dict[tuple[str, str], Endpoint] = {}  # (where, name)
    child: server_process.ServerProcess | None = None
    apart = [n for n in names if n in _SERVABLE] if "process" in settings.where else []
    measurements = sum(
        len([n for n in names if w == "kernel" or n in apart])
        * (2 if settings.connections and p in settings.concurrent_placements else 1)
        for w, p in arranged
    ) * settings.rounds + settings.rounds * len(settings.payload_sizes) * len(
        [n for n in names if headline[0] == "kernel" or n in apart]
    )
    total = len(names) + (1 if apart else 0) + measurements
    done = 0

    def step(what: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done, total, what)
        done += 1

    starting: list[Any] = []  # the server process, or what stopped it from starting
    launcher = threading.Thread(  # it imports its stacks while this process starts its own
        target=lambda: _start_child(apart, starting), name="rpclab-bench-start", daemon=True
    )
    try:
        if apart:
            launcher.start()
        for name in names:
            step(f"starting {name}")
            if "kernel" in settings.where:
                endpoints["kernel", name] = TRANSPORTS[name]()
                results[name].concurrency = endpoints["kernel", name].concurrency
                open_connection(name, endpoints["kernel", name], PAYLOAD).close()
        if apart:
            step(f"starting {', '.join(apart)} in a process of their own")
            launcher.join(server_process.START_TIMEOUT + server_process.STOP_TIMEOUT)
            if not starting or isinstance(starting[0], BaseException):
                raise RuntimeError("the bench's server process did not start") from (
                    starting[0] if starting else None
                )
            child = starting[0]
            for name in apart:
                endpoints["process", name] = child.endpoint(name)
                results[name].concurrency = endpoints["process", name].concurrency
        for number in range(1, settings.rounds + 1):
            order = names[(number - 1) % len(names) :] + names[: (number - 1) % len(names)]
            where_round = f"round {number}/{settings.rounds}"
            for where, place in arranged:
                here = [n for n in order if (where, n) in endpoints]
                if not here:
                    continue
                client_threads = [tid for n in here for tid in endpoints[where, n].client_threads()]
                server_pid = child.pid if where == "process" and child is not None else None
                with placement.placed(
                    place, server_pid=server_pid, client_threads=client_threads
                ) as cpus:
                    label = f"{where_round}, {where}, {place}"
                    for name in here:
                        step(f"{label}: {name}, one connection")
                        try:
                            results[name].rounds.append(
                                _one_round(
                                    name,
                                    endpoints[where, name],
                                    where,
                                    place,
                                    number,
                                    cpus,
                                    settings,
                                )
                            )
                        except Exception as exc:
                            results[name].errors.append(f"{type(exc).__name__}: {exc}")
                    if settings.connections and place in settings.concurrent_placements:
                        for name in here:
                            step(f"{label}: {name}, {settings.connections} at once")
                            _concurrent_round(
                                results[name],
                                endpoints[where, name],
                                where,
                                place,
                                number,
                                settings,
                            )
                    if (where, place) == headline:
                        for size in settings.payload_sizes:
                            for name in here:
                                step(f"{label}: {name}, echo of {format_size(size)}")
                                _payload_round(
                                    results[name], endpoints[where, name], size, settings
                                )
    finally:
        if launcher.is_alive():  # interrupted while the child was starting
            launcher.join(server_process.START_TIMEOUT + server_process.STOP_TIMEOUT)
        if child is None and starting and not isinstance(starting[0], BaseException):
            child = starting[0]
        closing: list[BaseException] = []
        for endpoint in endpoints.values():
            try:
                endpoint.close()
            except BaseException as exc:  # stop the others all the same
                closing.append(exc)
        if child is not None:
            background.stop("bench-servers")  # the child's stopper: no process left behind
        if closing and sys.exc_info()[1] is None:
            raise closing[0]
    for result in results.values():
        for point in result.payload:
            if point.round_medians_us:
                point.median_us = statistics.median(point.round_medians_us)
    return results


def _start_child(names: list[str], into: list[Any]) -> None:
    try:
        into.append(server_process.start(names))
    except BaseException as exc:  # reported by run(), in its own thread
        into.append(exc)


def _concurrent_round(
    result: Result, endpoint: Endpoint, where: str, place: str, number: int, settings: Settings
) -> None:
    try:
        calls, seconds, errors, cpu_ns = measure_concurrent(
            endpoint,
            settings.connections,
            settings.concurrent_calls,
            settings.concurrent_seconds,
            result.transport,
        )
    except Exception as exc:
        result.errors.append(f"{settings.connections} at once: {type(exc).__name__}: {exc}")
        return
    result.errors.extend(errors)
    result.concurrent.append(
        ConcurrentRound(
            result.transport,
            where,
            place,
            number,
            settings.connections,
            calls,
            seconds,
            cpu_ns / calls / 1000 if calls and cpu_ns is not None else None,
        )
    )


def _payload_round(result: Result, endpoint: Endpoint, size: int, settings: Settings) -> None:
    """One round of echoes of ``size`` bytes on a new connection, after uncounted calls: the one
    that checks it (which also grows the buffers), then ``warmup_calls`` within half of
    ``payload_seconds``."""
    try:
        conn = open_connection(result.transport, endpoint, "x" * size)
        try:
            _measure(conn, settings.warmup_calls, settings.payload_seconds / 2)
            timed = _measure(
                conn, settings.payload_calls, settings.payload_seconds, settings.min_calls
            )
        finally:
            conn.close()
    except Exception as exc:
        result.errors.append(f"{format_size(size)} payload: {type(exc).__name__}: {exc}")
        return
    point = next((p for p in result.payload if p.size == size), None)
    if point is None:
        point = PayloadPoint(size)
        result.payload.append(point)
    point.calls += len(timed.latencies)
    point.seconds += timed.seconds
    point.round_medians_us.append(statistics.median(timed.latencies) / 1000)
