"""Where the time of one call goes: cProfile over many echo calls, summed by category, and the cost
of a thread hand-off.

Used in notebook 13 (where the time of one call goes).

::

    profile = callprofile.profile_calls("socketrpc", calls=2000)
    print(callprofile.format_profiles([profile]))
    callprofile.thread_handoff()        # HandOff(one_way=..., same_thread=...)

The transports are rpclab.bench's. Each function's *own* time (cProfile's
``tottime``) goes to one category: socket calls (system calls, and the
waiting that happens inside them), encoding and decoding (JSON, XML, Thrift's
binary protocol, protobuf, validation of what was decoded), locks and thread
hand-offs, and everything else (the Python code of stubs, dispatchers,
framing, HTTP).

Up to Python 3.11 every thread has its own profiler: the calls are profiled
in this thread (the client) and in the thread that serves the connection (the
server), and each gets its own breakdown. From Python 3.12 cProfile watches
every thread at once (it is built on sys.monitoring), so the breakdown is the
two threads' time added together. A profiler adds its own cost to every
Python function call, so a profiled call is slower than a real one; the
profile says how much (``seconds_per_call`` against ``unprofiled``).
"""

from __future__ import annotations

import cProfile
import os
import pstats
import queue
import re
import statistics
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from rpclab import bench, checks

__all__ = [
    "CATEGORIES",
    "PER_THREAD",
    "category",
    "function_name",
    "Breakdown",
    "CallProfile",
    "profile_calls",
    "format_profiles",
    "breakdown_rows",
    "HandOff",
    "thread_handoff",
]

SOCKET, CODEC, LOCKS, REST = (
    "socket calls",
    "encoding and decoding",
    "locks and hand-offs",
    "everything else",
)
CATEGORIES: tuple[str, ...] = (SOCKET, CODEC, LOCKS, REST)

# Whether this Python gives each thread a profiler of its own (cProfile on sys.monitoring, 3.12+,
# does not).
PER_THREAD: bool = sys.version_info < (3, 12)

FuncKey = tuple[str, int, str]  # pstats' (filename, line, function name)

_CODEC_BUILTINS = (
    "json",
    "pyexpat",
    "_upb",
    "pydantic_core",
    "Serialize",
    "FromString",
)  # _json, orjson, expat...
_CODEC_DIRS = ("/json/", "/thriftpy2/protocol/", "/google/protobuf/", "/pydantic/")
# rpclab.byhand.jsonrpc's codec and fast path: the functions that turn bytes into JSON and back.
_JSONRPC_CODEC = ("encode", "decode", "decode_plain", "plain_result", "_check_depth")
# xmlrpc.client holds the XML marshaller and the HTTP transport: only the first counts as encoding.
_XMLRPC_CODEC = ("dumps", "loads", "start", "data", "feed", "getparser", "escape", "_stringify")


def category(func: FuncKey) -> str:
    """The category of one function in a pstats table, from its file and name."""
    filename, _, name = func
    if filename == "~":  # built in, written in C
        if "_socket.socket" in name or "select." in name or "poll" in name:
            return SOCKET
        if any(word in name for word in _CODEC_BUILTINS):
            return CODEC
        if "_thread." in name or "lock" in name.lower():
            return LOCKS
        return REST
    path = PurePath(filename).as_posix()
    if (
        any(folder in path for folder in _CODEC_DIRS)
        or path.endswith("/fastapi/encoders.py")
        or (
            ("/rpclab/byhand/jsonrpc/" in path or path.endswith("/jsonrpc.py"))
            and name in _JSONRPC_CODEC
        )
        or (
            path.endswith("/xmlrpc/client.py")
            and (name.startswith(("dump", "end")) or name in _XMLRPC_CODEC)
        )
        or (path.endswith("/thriftpy2/thrift.py") and name in ("read", "write"))
    ):  # a struct, by its protocol
        return CODEC
    if path.endswith(("/threading.py", "/queue.py")):
        return LOCKS
    if path.endswith(("/socket.py", "/selectors.py")):
        return SOCKET
    return REST


def function_name(func: FuncKey) -> str:
    """A short, readable name for a pstats entry: ``_socket.socket.sendall``,
    ``reader._send``."""
    filename, _, name = func
    if filename == "~":
        method = re.fullmatch(r"<method '(\w+)' of '([\w.]+)' objects>", name)
        if method:
            return f"{method[2]}.{method[1]}"
        builtin = re.fullmatch(r"<built-in method ([\w.]+)>", name)
        return builtin[1] if builtin else name.strip("<>")
    return f"{PurePath(filename).stem}.{name}"


@dataclass
class Breakdown:
    """One thread's time per call by category (or, where threads cannot be told apart, all threads'
    time added)."""

    label: str  # "client thread", "server thread", "client and server threads"
    seconds: dict[str, float]  # category -> seconds per call; every category present
    top: list[tuple[str, float]] = field(
        default_factory=list
    )  # functions with the most own time, per call

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


@dataclass
class CallProfile:
    """A profile of many calls on one connection of one transport."""

    transport: str
    calls: int  # calls made under the profiler
    seconds_per_call: float  # wall-clock time per call under the profiler
    unprofiled: float  # median seconds per call on the same transport, no profiler running
    parts: list[Breakdown]

    @property
    def overhead(self) -> float:
        """How many times slower a call is under the profiler."""
        return self.seconds_per_call / self.unprofiled if self.unprofiled else float("nan")


def _summarise(label: str, stats: pstats.Stats, calls: int, top: int) -> Breakdown:
    seconds = dict.fromkeys(CATEGORIES, 0.0)
    own: list[tuple[float, FuncKey]] = []
    for func, (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        seconds[category(func)] += tottime / calls
        own.append((tottime, func))
    own.sort(reverse=True)
    return Breakdown(label, seconds, [(function_name(f), t / calls) for t, f in own[:top]])


def _merge(label: str, parts: Sequence[Breakdown]) -> Breakdown:
    seconds = {c: sum(p.seconds[c] for p in parts) for c in CATEGORIES}
    top: dict[str, float] = {}
    for part in parts:
        for name, t in part.top:
            top[name] = top.get(name, 0.0) + t
    return Breakdown(
        label, seconds, sorted(top.items(), key=lambda item: -item[1])[: len(parts[0].top)]
    )


def _calls(call: Any, max_calls: int, stop_at: float) -> int:
    done = 0
    while done < max_calls:
        call()
        done += 1
        if done % 64 == 0 and time.perf_counter() >= stop_at:
            break
    return done


def profile_calls(
    transport: str = "socketrpc",
    calls: int = 2000,
    max_seconds: float = 3.0,
    *,
    payload: str = bench.PAYLOAD,
    separate_threads: bool | None = None,
    top: int = 6,
) -> CallProfile:
    """Profile up to ``calls`` echo calls (at most ``max_seconds``) of one of rpclab.bench's
    transports.

    ``separate_threads``: a breakdown for the client thread and one for the
    server's thread (True; only up to Python 3.11), or one for both added
    together (False). By default, separate where Python allows it. The server
    is started for this and stopped before this returns.
    """
    checks.integer("calls", calls, low=1)
    checks.seconds("max_seconds", max_seconds, above=0, high=60)
    separate = PER_THREAD if separate_threads is None else separate_threads
    if separate and not PER_THREAD:
        raise ValueError(
            f"Python {sys.version_info[0]}.{sys.version_info[1]}'s cProfile cannot profile threads "
            "separately; use separate_threads=False"
        )
    name = bench.transport_names([transport])[0]
    endpoint = bench.TRANSPORTS[name]()
    thread_profilers: list[cProfile.Profile] = []
    client = cProfile.Profile()
    try:
        plain = bench.open_connection(name, endpoint, payload)
        try:
            latencies, _ = bench.measure_round_trips(plain.call, calls, max_seconds / 2)
        finally:
            plain.close()
        if PER_THREAD:

            def start_profiler(
                frame: Any, event: str, arg: Any
            ) -> None:  # runs once, in each thread started now
                sys.setprofile(None)
                profiler = cProfile.Profile()
                thread_profilers.append(profiler)
                profiler.enable()

            threading.setprofile(start_profiler)
            try:
                conn = bench.open_connection(
                    name, endpoint, payload
                )  # its server thread starts now, and is profiled
            finally:
                threading.setprofile(None)  # type: ignore[arg-type]
        else:
            conn = bench.open_connection(name, endpoint, payload)
        try:
            start = time.perf_counter()
            client.enable()  # from Python 3.12: every thread's calls
            try:
                made = _calls(conn.call, calls, start + max_seconds / 2)
            finally:
                client.disable()
            wall = time.perf_counter() - start
        finally:
            conn.close()
    finally:
        endpoint.close()  # the server's threads have ended: their profiles are complete
    if PER_THREAD:
        parts = [_summarise("client thread", pstats.Stats(client), made, top)]
        if thread_profilers:
            server = pstats.Stats(thread_profilers[0])
            for profiler in thread_profilers[1:]:
                server.add(profiler)
            parts.append(
                _summarise("server thread", server, made + 1, top)
            )  # + the call that opened it
        if not separate:
            parts = [_merge("client and server threads", parts)]
    else:
        parts = [_summarise("client and server threads", pstats.Stats(client), made, top)]
    return CallProfile(name, made, wall / made, statistics.median(latencies) / 1e9, parts)


def breakdown_rows(profiles: Iterable[CallProfile]) -> dict[str, dict[str, float]]:
    """``{"socketrpc, client thread": {category: seconds per call}, ...}``: the rows of a stacked
    bar chart."""
    return {
        f"{p.transport}, {part.label}": dict(part.seconds) for p in profiles for part in p.parts
    }


def format_profiles(profiles: Iterable[CallProfile]) -> str:
    """A table: one row per transport and thread, microseconds per call in each category."""
    profiles = list(profiles)
    width = max(len(k) for k in breakdown_rows(profiles)) if profiles else 10
    head = (
        f"{'µs per call':<{width}} "
        + " ".join(f"{c:>{max(len(c), 8)}}" for c in CATEGORIES)
        + f" {'total':>8}"
    )
    lines = [head, "-" * len(head)]
    for p in profiles:
        for part in p.parts:
            cells = " ".join(f"{part.seconds[c] * 1e6:>{max(len(c), 8)}.1f}" for c in CATEGORIES)
            lines.append(
                f"{p.transport + ', ' + part.label:<{width}} {cells} {part.total * 1e6:>8.1f}"
            )
    lines.append("")
    for p in profiles:
        lines.append(
            f"{p.transport}: {p.seconds_per_call * 1e6:,.0f} µs per call under the profiler, "
            f"{p.unprofiled * 1e6:,.0f} µs without ({p.overhead:.1f} x)"
        )
    return "\n".join(lines)


@dataclass
class HandOff:
    """What passing a message from one thread to another costs, measured with queue.Queue."""

    # median seconds for a message to reach a waiting thread and wake it (half a ping-pong)
    one_way: float
    same_thread: (
        float  # median seconds of one put and one get in the same thread: the queue's own work
    )
    round_trips: int


def thread_handoff(
    round_trips: int = 2000, max_seconds: float = 1.0, *, other_cpus: Iterable[int] | None = None
) -> HandOff:
    """Ping-pong a message between this thread and another through two queues; time it against no
    hand-off at all. ``other_cpus``: the CPUs the other thread is pinned to (Linux), else it runs
    where this one may."""
    checks.integer("round_trips", round_trips, low=1)
    requests: queue.Queue[int | None] = queue.Queue()
    replies: queue.Queue[int] = queue.Queue()
    pin = set(other_cpus) if other_cpus is not None else None

    def other_thread() -> None:
        while (item := requests.get(timeout=5.0)) is not None:  # 5 s with nothing to do: give up
            replies.put(item)

    worker = threading.Thread(target=other_thread, name="rpclab-handoff", daemon=True)
    worker.start()
    if pin is not None:
        try:
            os.sched_setaffinity(worker.native_id, pin)  # type: ignore[arg-type]
        except (OSError, ValueError, TypeError) as exc:
            requests.put(None)
            worker.join(5.0)
            raise ValueError(
                f"other_cpus must be CPUs this process may use, not {sorted(pin)}: {exc}"
            ) from None
    clock = time.perf_counter_ns
    pings: list[int] = []
    try:
        stop_at = clock() + int(max_seconds / 2 * 1e9)
        for i in range(round_trips):
            before = clock()
            requests.put(i)
            replies.get(timeout=5.0)
            after = clock()
            pings.append(after - before)
            if after >= stop_at:
                break
    finally:
        requests.put(None)
        worker.join(5.0)
    alone: queue.Queue[int] = queue.Queue()
    local: list[int] = []
    stop_at = clock() + int(max_seconds / 2 * 1e9)
    for i in range(round_trips):
        before = clock()
        alone.put(i)
        alone.get()
        after = clock()
        local.append(after - before)
        if after >= stop_at:
            break
    return HandOff(statistics.median(pings) / 2 / 1e9, statistics.median(local) / 1e9, len(pings))
