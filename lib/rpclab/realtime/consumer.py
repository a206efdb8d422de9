"""The consumer of notebook 14's real-time stream, and what it measured.

:func:`record` subscribes to the Feed (rpclab.realtime.feed) and *acts* on readings -- calls
``work(reading)``, the consumer's own processing -- under one of three policies:

* ``"every"``: act on every reading, in order (no reading is lost; under load, all are late);
* ``"deadline"``: a deadline per message: a reading older than ``budget_s`` when it arrives is
  dropped unprocessed, so the consumer spends its time only on readings still worth acting on;
* ``"latest"``: a bounded queue of one: a reader thread takes readings off the stream as they
  arrive and keeps only the newest; the consumer acts on whatever is newest when it is free,
  and the readings overwritten meanwhile are dropped (coalesced).

Every reading acted on is recorded with its age at that moment -- ``acted - due``, its
end-to-end latency, from when the producer took it to when the consumer acts -- in a
:class:`Recording`, which summarises p50, p99, max and the readings over budget::

    with grpc.insecure_channel(target) as channel:
        rec = consumer.record(channel, rate_hz=1000, count=2000, budget_s=0.002)
    print(rec.summary())

The consumer's work is any ``work(reading)``. Two are here: :func:`takes` keeps the consumer
waiting a set time on each reading (a slow consumer), and :func:`pause_at` runs ``gc.collect()``
once, in the middle of the stream (a GC pause). :func:`alongside` runs other work -- a bulk
transfer, say -- in a thread beside the stream, as load. Every wait here is bounded.

About 430 lines: the three policies, the pauses that disturb them and the table that
compares them are one measurement.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
import numpy as np

from rpclab import checks
from rpclab.realtime.feed import MAX_COUNT, MAX_RATE_HZ, feed_pb2, feed_pb2_grpc

__all__ = [
    "POLICIES",
    "Recording",
    "record",
    "takes",
    "pause_at",
    "PauseAt",
    "alongside",
    "Alongside",
    "format_table",
]

POLICIES = ("every", "deadline", "latest")
SLACK_S = 10.0  # a call's deadline: the time its readings take to be due, plus this
JOIN_S = 5.0  # how long to wait for a reader thread to end once its call is over
GRPC_PREFIX = 5  # bytes gRPC puts before every message: a flag and a 4-byte length

Work = Callable[[feed_pb2.Reading], object]


@dataclass
class Recording:
    """What one consumer saw: every reading it acted on, and how many it never acted on."""

    policy: str
    rate_hz: float
    count: int
    budget_s: float
    seq: np.ndarray = field(repr=False)
    due_ns: np.ndarray = field(repr=False)
    sent_ns: np.ndarray = field(repr=False)
    acted_ns: np.ndarray = field(repr=False)
    work_ns: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    received: int = 0  # readings that arrived from the stream
    skipped: int = 0  # readings the producer coalesced (never sent)
    dropped: int = 0  # readings that arrived but the consumer did not act on
    reading_bytes: int = 0  # one reading's size on the wire: the message and gRPC's 5 bytes

    @property
    def acted(self) -> int:
        return len(self.seq)

    @property
    def work_s(self) -> np.ndarray:
        """How long the consumer's work took on each reading it acted on, in seconds."""
        return self.work_ns / 1e9

    @property
    def handled_per_s(self) -> float:
        """Readings acted on per second, from the first act to the last: a consumer that is
        always behind acts as fast as it can, so this is then its capacity."""
        if self.acted < 2:
            return float("nan")
        return (self.acted - 1) / ((self.acted_ns[-1] - self.acted_ns[0]) / 1e9)

    @property
    def waiting_at_send(self) -> np.ndarray:
        """For each reading, how many readings had been sent but not yet acted on at the moment it
        was sent (itself included): the queue in the buffers between producer and consumer.
        Exact for the ``"every"`` policy, where every reading sent is acted on."""
        acted_sorted = np.sort(self.acted_ns)
        sent_before = np.searchsorted(np.sort(self.sent_ns), self.sent_ns, side="right")
        return sent_before - np.searchsorted(acted_sorted, self.sent_ns, side="right")

    @property
    def latency_s(self) -> np.ndarray:
        """Each acted-on reading's age when the consumer acted on it, in seconds."""
        return (self.acted_ns - self.due_ns) / 1e9

    @property
    def held_s(self) -> np.ndarray:
        """How late the producer sent each reading: time it was held back (by its own thread not
        running, or by flow control while the consumer's buffers were full)."""
        return (self.sent_ns - self.due_ns) / 1e9

    @property
    def in_transit_s(self) -> np.ndarray:
        """From sent to acted on: time on the way, in gRPC's and the kernel's buffers and queues."""
        return (self.acted_ns - self.sent_ns) / 1e9

    @property
    def longest_gap(self) -> float:
        """The longest time, in seconds, between two readings acted on: a stall shows here even
        when every reading acted on was fresh."""
        return float(np.diff(self.acted_ns).max() / 1e9) if len(self.acted_ns) > 1 else 0.0

    @property
    def due_s(self) -> np.ndarray:
        """When each acted-on reading was due, in seconds since the first reading was due."""
        if not len(self.due_ns):
            return np.zeros(0)
        first = self.due_ns[0] - self.seq[0] * 1e9 / self.rate_hz
        return (self.due_ns - first) / 1e9

    def percentile(self, q: float) -> float:
        lat = self.latency_s
        return float(np.percentile(lat, q)) if len(lat) else float("nan")

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def max(self) -> float:
        lat = self.latency_s
        return float(lat.max()) if len(lat) else float("nan")

    @property
    def over_budget(self) -> int:
        """Readings acted on later than ``budget_s`` after they were due."""
        return int((self.latency_s > self.budget_s).sum())

    def summary(self) -> str:
        return (
            f"policy {self.policy!r}: acted on {self.acted:,} of {self.count:,} readings "
            f"(producer skipped {self.skipped:,}, consumer dropped {self.dropped:,}); "
            f"latency p50 {self.p50 * 1e3:.2f} ms, p99 {self.p99 * 1e3:.2f} ms, "
            f"max {self.max * 1e3:.1f} ms; {self.over_budget:,} over the "
            f"{self.budget_s * 1e3:g} ms budget; longest gap {self.longest_gap * 1e3:.1f} ms"
        )


def takes(seconds: float) -> Work:
    """A consumer's work that takes ``seconds`` per reading, waiting on something else (a disk,
    a database) rather than computing: it sleeps, which lets the rest of the process -- here the
    producer too -- run meanwhile.

    On a busy machine a sleep ends late (a thread whose sleep is over waits for a free core: on 2
    busy cores ``takes(0.0012)`` has lasted 1.4 to 2.1 ms on average), so measure it:
    :attr:`Recording.work_s` holds each call's real length. A busy loop would keep to the time
    better, but a Python loop holds the GIL, and in one process it would stop the producer as
    well as the consumer.
    """
    if not 0 <= seconds <= 1:
        raise ValueError(f"seconds must be between 0 and 1, not {seconds!r}")

    def work(reading: feed_pb2.Reading) -> None:
        time.sleep(seconds)  # the simulated work itself, not a wait for something to be ready

    return work


@dataclass
class PauseAt:
    """Work that does nothing but once: on the first reading acted on whose ``seq`` is at least
    ``seq``, it runs ``action`` (a full garbage collection by default) and times it.

    "At least", not "equal": a policy may drop or skip the reading numbered ``seq`` itself, and
    the pause must still happen. ``at`` is the reading it ran on, ``took_s`` how long it took.
    """

    seq: int
    action: Callable[[], object] = gc.collect
    at: int | None = None
    took_s: float | None = None

    def __call__(self, reading: feed_pb2.Reading) -> None:
        if self.at is None and reading.seq >= self.seq:
            self.at = reading.seq
            started = time.perf_counter()
            self.action()
            self.took_s = time.perf_counter() - started

    def __str__(self) -> str:
        name = getattr(self.action, "__qualname__", "the pause")
        module = getattr(self.action, "__module__", None)
        if module and module not in ("builtins", "__main__"):
            name = f"{module}.{name}"  # gc.collect
        if self.at is None:
            return f"{name}() never ran: no reading from {self.seq} on was acted on"
        return f"{name}() ran at reading {self.at:,} and took {self.took_s * 1e3:,.0f} ms"


def pause_at(seq: int, action: Callable[[], object] = gc.collect) -> PauseAt:
    """A work that pauses the consumer once, at reading ``seq`` or the first acted on after it,
    by running ``action`` (``gc.collect``: the whole process stops while it runs)."""
    checks.integer("seq", seq, low=0, high=MAX_COUNT - 1)
    if not callable(action):
        raise TypeError(f"action must be callable as action(), not {action!r}")
    return PauseAt(seq, action)


def _check(policy: str, rate_hz: float, count: int, budget_s: float) -> None:
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
    if not 0 < rate_hz <= MAX_RATE_HZ:
        raise ValueError(f"rate_hz must be above 0 and at most {MAX_RATE_HZ:,.0f}")
    checks.integer("count", count, low=1, high=MAX_COUNT)
    if not budget_s > 0:
        raise ValueError(f"budget_s must be above 0, not {budget_s!r}")


def record(
    channel: grpc.Channel,
    *,
    rate_hz: float = 1000.0,
    count: int = 2000,
    catch_up: bool = True,
    policy: str = "every",
    budget_s: float = 0.002,
    work: Work | None = None,
    payload_bytes: int = 0,
) -> Recording:
    """Subscribe to ``count`` readings at ``rate_hz``, act on them under ``policy``, and record.

    ``catch_up`` is the producer's choice when it is late (rpclab.realtime.feed); ``work`` the
    consumer's processing of each reading it acts on. The call's deadline is the time the
    readings take to be due, plus SLACK_S seconds.
    """
    _check(policy, rate_hz, count, budget_s)
    stub = feed_pb2_grpc.FeedStub(channel)
    request = feed_pb2.Subscription(
        rate_hz=rate_hz, count=count, catch_up=catch_up, payload_bytes=payload_bytes
    )
    call = stub.Subscribe(request, timeout=count / rate_hz + SLACK_S)
    seqs: list[int] = []
    dues: list[int] = []
    sents: list[int] = []
    acts: list[int] = []
    works: list[int] = []
    tally = {"received": 0, "skipped": 0, "dropped": 0}

    def act(reading: feed_pb2.Reading) -> None:
        now = time.monotonic_ns()
        seqs.append(reading.seq)
        dues.append(reading.due_ns)
        sents.append(reading.sent_ns)
        acts.append(now)
        if work is not None:
            work(reading)
        works.append(time.monotonic_ns() - now)
        if "reading_bytes" not in tally:
            tally["reading_bytes"] = reading.ByteSize() + GRPC_PREFIX

    try:
        if policy == "latest":
            _newest_first(call, act, tally)
        else:
            budget_ns = budget_s * 1e9
            for reading in call:
                tally["received"] += 1
                tally["skipped"] += reading.skipped
                if policy == "deadline" and time.monotonic_ns() - reading.due_ns > budget_ns:
                    tally["dropped"] += 1
                    continue
                act(reading)
    finally:
        call.cancel()  # a no-op once the stream has ended; ends it if work() raised
    return Recording(
        policy,
        rate_hz,
        count,
        budget_s,
        np.array(seqs, dtype=np.int64),
        np.array(dues, dtype=np.int64),
        np.array(sents, dtype=np.int64),
        np.array(acts, dtype=np.int64),
        np.array(works, dtype=np.int64),
        **tally,
    )


class _Newest:
    """A bounded queue of one: ``put`` overwrites, ``take`` waits for a value or the end."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._value: feed_pb2.Reading | None = None
        self._closed = False
        self.overwritten = 0
        self.error: BaseException | None = None

    def put(self, value: feed_pb2.Reading) -> None:
        with self._ready:
            if self._value is not None:
                self.overwritten += 1
            self._value = value
            self._ready.notify()

    def close(self, error: BaseException | None = None) -> None:
        with self._ready:
            self._closed, self.error = True, error
            self._ready.notify()

    def take(self, timeout: float) -> feed_pb2.Reading | None:
        """The newest value (and empty the slot); None once closed and empty."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._value is not None or self._closed, timeout):
                raise TimeoutError(f"no reading and no end of stream within {timeout:.0f}s")
            value, self._value = self._value, None
            return value


def _newest_first(call: Iterator, act: Callable[[feed_pb2.Reading], None], tally: dict) -> None:
    slot = _Newest()

    def read() -> None:
        try:
            for reading in call:
                tally["received"] += 1
                tally["skipped"] += reading.skipped
                slot.put(reading)
        except grpc.RpcError as exc:
            slot.close(None if exc.code() == grpc.StatusCode.CANCELLED else exc)
        except BaseException as exc:  # handed to the consumer's thread, which raises it
            slot.close(exc)
        else:
            slot.close()

    reader = threading.Thread(target=read, name="rpclab-realtime-reader", daemon=True)
    reader.start()
    try:
        while (reading := slot.take(timeout=call.time_remaining() or JOIN_S)) is not None:
            act(reading)
    finally:
        call.cancel()
        reader.join(JOIN_S)
        tally["dropped"] += slot.overwritten
    if reader.is_alive():
        raise RuntimeError(f"the stream's reader thread did not end within {JOIN_S:.0f}s")
    if slot.error is not None:
        raise slot.error


@dataclass
class Alongside:
    """Work that ran beside a measurement: how many times it completed."""

    calls: int = 0


@contextlib.contextmanager
def alongside(work: Callable[[], object], *, join_s: float = 60.0) -> Iterator[Alongside]:
    """Inside the ``with`` block, ``work()`` runs again and again in a thread of its own: load
    beside the measured stream (notebook 14 runs a bulk transfer this way).

    ``work`` runs at least once; when the block ends, the thread finishes the call it is in and
    stops; an error ``work``
    raised is raised here. ``join_s`` bounds the wait for that last call.
    """
    if not callable(work):
        raise TypeError(f"work must be callable as work(), not {work!r}")
    stats = Alongside()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            while True:  # at least once, then until the block has ended
                work()
                stats.calls += 1
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the caller's thread below
            errors.append(exc)

    thread = threading.Thread(target=run, name="rpclab-realtime-alongside", daemon=True)
    thread.start()
    try:
        yield stats
    finally:
        stop.set()
        thread.join(join_s)
    if thread.is_alive():
        raise RuntimeError(f"the work alongside did not finish its call within {join_s:.0f}s")
    if errors:
        raise errors[0]


def format_table(recordings: dict[str, Recording]) -> str:
    """One line per recording: what it acted on, dropped, and its latency p50 / p99 / max."""
    lines = [
        f"{'run':<34}{'acted on':>9}{'dropped':>8}{'skipped':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'max ms':>8}{'over budget':>12}{'longest gap ms':>15}"
    ]
    for label, r in recordings.items():
        lines.append(
            f"{label:<34}{r.acted:>9,}{r.dropped:>8,}{r.skipped:>8,}{r.p50 * 1e3:>8.2f}"
            f"{r.p99 * 1e3:>8.2f}{r.max * 1e3:>8.1f}{r.over_budget:>12,}"
            f"{r.longest_gap * 1e3:>15.1f}"
        )
    return "\n".join(lines)
