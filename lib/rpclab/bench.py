"""The measurement harness behind ``rpclab bench`` and notebook 13: round trips per transport.

Each transport is registered by name with a setup function that starts a
server (through rpclab.background) and returns an :class:`Endpoint`; the
endpoint opens client connections, and each :class:`Connection` has a
``call()`` that makes one round trip (an ``echo`` of a short string)::

    results = bench.run(["raw", "socketrpc"], bench.QUICK)
    print(bench.format_table(results))

``raw`` is a length-prefixed ping-pong over a plain socket: no encoding, no
dispatch -- the physical limit of a round trip here. Every other transport is
measured against it. Rounds alternate between transports so that a machine
getting busier or quieter during the run affects them all alike. Client and
server run in this one process, so they share the GIL: that is part of what is
measured. Every loop is bounded in calls and in time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import socketserver
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

from rpclab import background, framing

__all__ = [
    "PAYLOAD",
    "Connection",
    "Endpoint",
    "Settings",
    "QUICK",
    "NORMAL",
    "Result",
    "TRANSPORTS",
    "register",
    "measure_round_trips",
    "measure_concurrent",
    "run",
    "format_table",
    "to_json",
    "main",
]

PAYLOAD = "x" * 32  # what each echo call sends and gets back


@dataclass
class Connection:
    """One client connection: ``call()`` makes one round trip; ``close()`` ends the connection."""

    call: Callable[[], object]
    close: Callable[[], None]


@dataclass
class Endpoint:
    """A running server of one transport: ``connect()`` opens a Connection; ``close()`` stops the server."""

    connect: Callable[[], Connection]
    close: Callable[[], None]


@dataclass(frozen=True)
class Settings:
    """How long to measure: rounds, and the limits (calls and seconds) of each."""

    rounds: int = 5
    calls_per_round: int = 50_000  # single-connection calls per round, at most
    seconds_per_round: float = 0.5
    connections: int = 8  # for the concurrent measurement
    concurrent_calls: int = 200_000  # calls per concurrent round (all connections together), at most
    concurrent_seconds: float = 0.8
    warmup_calls: int = 300


QUICK = Settings(rounds=3, calls_per_round=10_000, seconds_per_round=0.25, concurrent_calls=40_000,
                 concurrent_seconds=0.3, warmup_calls=200)
NORMAL = Settings()


@dataclass
class Result:
    """What one transport achieved: on one connection, and with several at once."""

    transport: str
    calls: int = 0  # single-connection round trips made
    seconds: float = 0.0
    median_us: float = 0.0
    p99_us: float = 0.0
    concurrent_calls: int = 0
    concurrent_seconds: float = 0.0
    connections: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Round trips per second on one connection."""
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def concurrent_rate(self) -> float:
        """Calls per second with ``connections`` connections calling at once."""
        return self.concurrent_calls / self.concurrent_seconds if self.concurrent_seconds else 0.0


# --------------------------------------------------------------------------- transports

TRANSPORTS: dict[str, Callable[[], Endpoint]] = {}


def register(name: str, setup: Callable[[], Endpoint]) -> None:
    """Add (or replace) a transport: ``setup()`` starts its server and returns an Endpoint."""
    if not callable(setup):
        raise TypeError(f"setup must be callable, not {setup!r}")
    TRANSPORTS[name] = setup


class _RawEcho(socketserver.BaseRequestHandler):
    """Echo each frame back: a ping-pong with no encoding and no dispatch."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                frame = _recv_raw_frame(sock)
                if frame is None:
                    return
                sock.sendall(frame)
        except OSError:
            return


def _recv_raw_frame(sock: socket.socket) -> bytes | None:
    """One whole frame (header included), in as few recv() calls as the stream allows; None at EOF."""
    data = sock.recv(65536)
    while data:
        if len(data) >= framing.HEADER.size:
            (size,) = framing.HEADER.unpack_from(data)
            if size > framing.MAX_FRAME_SIZE:
                raise framing.FrameTooLarge(size, framing.MAX_FRAME_SIZE)
            if len(data) >= framing.HEADER.size + size:
                return data
        more = sock.recv(65536)
        if not more:
            return None
        data += more
    return None


class _RawServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False


def _setup_raw() -> Endpoint:
    handle = background.serve("bench-raw", lambda address: _RawServer(address, _RawEcho))
    message = framing.encode_frame(PAYLOAD.encode())

    def connect() -> Connection:
        sock = socket.create_connection(handle.address, timeout=5.0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)  # a blocking socket: the cheapest read there is

        def call() -> object:
            sock.sendall(message)
            reply = _recv_raw_frame(sock)
            if reply is None:
                raise ConnectionError("the raw echo server closed the connection")
            return reply

        return Connection(call, sock.close)

    return Endpoint(connect, handle.stop)


def _setup_socketrpc() -> Endpoint:
    from rpclab import socketrpc

    server = socketrpc.serve({"echo": _echo}, name="bench-socketrpc")

    def connect() -> Connection:
        client = socketrpc.connect(server.address, timeout=5.0)
        echo = client.echo
        return Connection(lambda: echo(PAYLOAD), client.close)

    return Endpoint(connect, server.stop)


def _echo(text: str) -> str:
    return text


register("raw", _setup_raw)
register("socketrpc", _setup_socketrpc)


# --------------------------------------------------------------------------- measuring


def measure_round_trips(call: Callable[[], object], max_calls: int, max_seconds: float) -> tuple[list[int], float]:
    """Call ``call()`` until ``max_calls`` or ``max_seconds``; return each call's latency (ns) and the time taken."""
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


def measure_concurrent(endpoint: Endpoint, connections: int, max_calls: int, max_seconds: float) -> tuple[int, float, list[str]]:
    """Call from ``connections`` threads, one connection each, at once; return (calls, seconds, errors)."""
    conns = [endpoint.connect() for _ in range(connections)]
    counts = [0] * connections
    errors: list[str] = []
    ready = threading.Barrier(connections + 1, timeout=10.0)
    per_thread = max(1, max_calls // connections)
    deadline = [0.0]

    def worker(index: int) -> None:
        call = conns[index].call
        ready.wait()
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

    threads = [threading.Thread(target=worker, args=(i,), name=f"rpclab-bench-{i}", daemon=True)
               for i in range(connections)]
    try:
        for thread in threads:
            thread.start()
        start = time.perf_counter()
        deadline[0] = start + max_seconds
        ready.wait()
        for thread in threads:
            thread.join(max_seconds + 30.0)
        elapsed = time.perf_counter() - start
    finally:
        for conn in conns:
            conn.close()
    if any(thread.is_alive() for thread in threads):
        errors.append("a benchmark thread did not finish in time")
    return sum(counts), elapsed, errors


def run(transports: Iterable[str] | None = None, settings: Settings = QUICK,
        progress: Callable[[str], None] | None = None) -> dict[str, Result]:
    """Measure each transport (all registered ones by default), alternating between them round by round."""
    names = list(TRANSPORTS) if transports is None else list(transports)
    unknown = [n for n in names if n not in TRANSPORTS]
    if unknown:
        raise ValueError(f"unknown transports {unknown}; registered: {sorted(TRANSPORTS)}")
    results = {name: Result(name, connections=settings.connections) for name in names}
    latencies: dict[str, list[int]] = {name: [] for name in names}
    endpoints: dict[str, Endpoint] = {}
    singles: dict[str, Connection] = {}
    try:
        for name in names:
            endpoints[name] = TRANSPORTS[name]()
            singles[name] = endpoints[name].connect()
            measure_round_trips(singles[name].call, settings.warmup_calls, 5.0)
        for round_number in range(settings.rounds):
            order = names[round_number % len(names):] + names[:round_number % len(names)]  # rotate who goes first
            if progress:
                progress(f"round {round_number + 1}/{settings.rounds}")
            for name in order:
                result = results[name]
                try:
                    lat, seconds = measure_round_trips(singles[name].call, settings.calls_per_round,
                                                       settings.seconds_per_round)
                    latencies[name].extend(lat)
                    result.calls += len(lat)
                    result.seconds += seconds
                except Exception as exc:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                    singles[name].close()
                    singles[name] = endpoints[name].connect()
            for name in order:
                calls, seconds, errors = measure_concurrent(endpoints[name], settings.connections,
                                                            settings.concurrent_calls, settings.concurrent_seconds)
                results[name].concurrent_calls += calls
                results[name].concurrent_seconds += seconds
                results[name].errors.extend(errors)
    finally:
        for conn in singles.values():
            conn.close()
        for endpoint in endpoints.values():
            endpoint.close()
    for name, lat in latencies.items():
        if lat:
            ordered = sorted(lat)
            results[name].median_us = statistics.median(ordered) / 1000
            results[name].p99_us = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000
    return results


# --------------------------------------------------------------------------- reporting


def format_table(results: dict[str, Result]) -> str:
    """A plain-text table: one row per transport, rates compared with raw's."""
    base = results["raw"].rate if "raw" in results and results["raw"].rate else None
    connections = max((r.connections for r in results.values()), default=0)
    head = f"{'transport':<12} {'round trips/s':>14} {'x raw':>6} {'median µs':>10} {'p99 µs':>8} {f'{connections} conns calls/s':>18}"
    lines = [head, "-" * len(head)]
    for r in results.values():
        ratio = f"{r.rate / base:.2f}" if base else "-"
        lines.append(f"{r.transport:<12} {r.rate:>14,.0f} {ratio:>6} {r.median_us:>10.1f} {r.p99_us:>8.1f} "
                     f"{r.concurrent_rate:>18,.0f}")
        for error in r.errors[:3]:
            lines.append(f"  ! {r.transport}: {error}")
    return "\n".join(lines)


def to_json(results: dict[str, Result], settings: Settings) -> dict[str, Any]:
    """Results and the conditions they were measured in, ready for json.dump."""
    base = results["raw"].rate if "raw" in results and results["raw"].rate else None
    return {
        "machine": {"python": platform.python_version(), "implementation": platform.python_implementation(),
                    "platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": asdict(settings),
        "results": {
            name: {**asdict(r), "rate": r.rate, "concurrent_rate": r.concurrent_rate,
                   "vs_raw": (r.rate / base) if base else None,
                   "median_vs_raw": (results["raw"].median_us / r.median_us) if base and r.median_us else None}
            for name, r in results.items()
        },
    }


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """``rpclab bench [--quick] [--json FILE]``: measure, print a table, optionally write JSON."""
    if args is None or not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="rpclab bench")
        parser.add_argument("--quick", action="store_true")
        parser.add_argument("--json", metavar="FILE")
        args = parser.parse_args(args)
    settings = QUICK if getattr(args, "quick", False) else NORMAL
    print(f"Measuring {', '.join(TRANSPORTS)}: {settings.rounds} alternating rounds "
          f"({'quick' if settings is QUICK else 'normal'} run), client and server in this one process "
          f"on {os.cpu_count()} CPUs.", flush=True)
    started = time.perf_counter()
    results = run(settings=settings)
    print(format_table(results))
    raw = results.get("raw")
    for r in results.values():
        if raw is not None and r is not raw and raw.rate and r.median_us:
            print(f"{r.transport}: {r.rate / raw.rate:.2f}x raw in round trips/s, "
                  f"{raw.median_us / r.median_us:.2f}x by median latency ({r.median_us:.1f} µs against {raw.median_us:.1f} µs)")
    print(f"({time.perf_counter() - started:.1f} s; latencies are per call on one connection)")
    path = getattr(args, "json", None)
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(to_json(results, settings), out, indent=2)
            out.write("\n")
        print(f"wrote {path}")
    failed = any(r.errors for r in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
