"""The producer of notebook 14's real-time stream: readings at a fixed rate over a gRPC stream.

A subscriber asks for ``count`` readings at ``rate_hz`` (1000: one every millisecond). Reading
``seq`` is *due* at ``start + seq / rate_hz``; the producer sends it then, stamped with its due
time, and the consumer measures its age from that stamp (producer and consumer share this
process's monotonic clock). A reading cannot be sent before it is due; it can be sent late --
when the producer's thread did not get to run, or when gRPC's flow control held it back
because the consumer had not read the earlier ones. What it does when it finds itself late is
the choice that ``catch_up`` makes:

* ``catch_up=True``: send every reading it missed, oldest first, as fast as it can (a buffer's
  behaviour: nothing lost, everything late);
* ``catch_up=False``: send only the newest reading that is due, with ``skipped`` saying how many
  it coalesced into it (a real-time feed's behaviour: the stale ones are worth nothing).

::

    server = feed.serve()                       # the Feed service, in the background
    stub = feed.feed_pb2_grpc.FeedStub(channel)
    for reading in stub.Subscribe(feed.feed_pb2.Subscription(rate_hz=1000, count=2000)): ...

The producer waits for each due time on an Event that the end of the call sets, so a
cancelled stream stops at once; every request field is bounded.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

import grpc

from rpclab.grpcstack import protos
from rpclab.runtime import background

__all__ = [
    "feed_pb2",
    "feed_pb2_grpc",
    "FeedServicer",
    "FeedServer",
    "serve",
    "MAX_RATE_HZ",
    "MAX_COUNT",
    "MAX_PAYLOAD",
]

feed_pb2, feed_pb2_grpc = protos.load("feed")

MAX_RATE_HZ = 100_000.0
MAX_COUNT = 1_000_000
MAX_PAYLOAD = 1024 * 1024  # bytes of padding in one reading
LEAD_NS = 2_000_000  # the first reading is due 2 ms after the call arrives


class FeedServicer(feed_pb2_grpc.FeedServicer):
    """Streams readings on schedule; counts the subscriptions it has served."""

    def __init__(self) -> None:
        self.subscriptions = 0
        self._lock = threading.Lock()

    def Subscribe(  # noqa: N802 (gRPC's method name)
        self, request: feed_pb2.Subscription, context: grpc.ServicerContext
    ) -> Iterator[feed_pb2.Reading]:
        rate, count, size = request.rate_hz, request.count, request.payload_bytes
        if not (math.isfinite(rate) and 0 < rate <= MAX_RATE_HZ):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"rate_hz must be above 0 and at most {MAX_RATE_HZ:,.0f}",
            )
        if count > MAX_COUNT or size > MAX_PAYLOAD:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"count is at most {MAX_COUNT:,} and payload_bytes at most {MAX_PAYLOAD:,}",
            )
        with self._lock:
            self.subscriptions += 1
        ended = threading.Event()
        context.add_callback(ended.set)  # the call finished or was cancelled: stop waiting
        payload = bytes(size)
        period_ns = 1e9 / rate
        start = time.monotonic_ns() + LEAD_NS
        seq = 0
        while seq < count and not ended.is_set():
            due = start + round(seq * period_ns)
            early = due - time.monotonic_ns()
            if early > 0:
                if ended.wait(early / 1e9):
                    return
                continue
            skipped = 0
            if not request.catch_up:  # jump to the newest reading that is due by now
                newest = min(count - 1, int((time.monotonic_ns() - start) // period_ns))
                skipped, seq = max(0, newest - seq), max(seq, newest)
                due = start + round(seq * period_ns)
            yield feed_pb2.Reading(
                seq=seq,
                due_ns=due,
                sent_ns=time.monotonic_ns(),
                value=math.sin(seq / 100),
                skipped=skipped,
                payload=payload,
            )
            seq += 1


class FeedServer(background.RunningServer):
    """The Feed running in the background: ``address``, ``servicer``, ``stop()``."""

    def __init__(self, handle: background.ServerHandle, servicer: FeedServicer) -> None:
        super().__init__(handle)
        self.servicer = servicer


def serve(
    name: str = "feed",
    *,
    host: str = background.DEFAULT_HOST,
    port: int = 0,
    max_workers: int = 8,
) -> FeedServer:
    """Serve the Feed in the background under ``name``."""
    servicer = FeedServicer()

    def register(server: grpc.Server) -> None:
        feed_pb2_grpc.add_FeedServicer_to_server(servicer, server)

    handle = background.serve_grpc(name, register, host=host, port=port, max_workers=max_workers)
    return FeedServer(handle, servicer)
