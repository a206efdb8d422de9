"""Deadline propagation made visible (notebooks 09 and 15): a chain of Greeters, each passing on
the time left.

:class:`Hop` works a while, then calls the next service with the time that is
left; :func:`time_left` reads a call's time to its deadline.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import grpc

from rpclab import checks
from rpclab.grpcstack.greeter import helloworld_pb2, helloworld_pb2_grpc

NO_DEADLINE = (
    1e9  # seconds; grpcio's time_remaining() for a call without a deadline is far above this
)


@dataclass
class HopRecord:
    """What one hop of a chain saw: its time left on arrival (None: no deadline) and how its call
    ended."""

    hop: str
    time_left: float | None
    arrived: float  # time.monotonic()
    ended: float | None = None  # time.monotonic(), once the hop has finished with the call
    outcome: str = "running"
    done: threading.Event = field(
        default_factory=threading.Event, repr=False
    )  # set when ``ended`` is


class Hop(helloworld_pb2_grpc.GreeterServicer):
    """A Greeter that is one service in a chain: it works ``work`` seconds, then calls
    ``downstream``.

    With ``propagate=True`` it passes on its own deadline, ``timeout=context.time_remaining()``,
    and stops working as soon as its own call ends. With ``propagate=False`` it
    calls ``downstream`` with no deadline and works on whatever happens.
    Every hop appends a HopRecord to ``log`` (share one list along a chain).
    The reply says how much time each hop had left.
    """

    def __init__(
        self,
        name: str,
        downstream: tuple[str, int] | None = None,
        *,
        work: float = 0.05,
        propagate: bool = True,
        log: list[HopRecord] | None = None,
    ) -> None:
        checks.seconds("work", work, low=0, high=30)
        self.name = name
        self.downstream = downstream
        self.work = float(work)
        self.propagate = propagate
        self.log: list[HopRecord] = [] if log is None else log
        self.arrived = (
            threading.Event()
        )  # set whenever a call arrives (clear it to wait for the next)
        self._channel: grpc.Channel | None = None
        self._lock = threading.Lock()

    def _stub(self) -> helloworld_pb2_grpc.GreeterStub:
        with self._lock:
            if self._channel is None:
                host, port = self.downstream  # type: ignore[misc]
                self._channel = grpc.insecure_channel(f"{host}:{port}")
            return helloworld_pb2_grpc.GreeterStub(self._channel)

    def SayHello(
        self, request: helloworld_pb2.HelloRequest, context: grpc.ServicerContext
    ) -> helloworld_pb2.HelloReply:
        left = time_left(context)
        record = HopRecord(self.name, left, time.monotonic())
        self.log.append(record)
        self.arrived.set()
        try:
            if self.propagate:
                ended = threading.Event()
                if context.add_callback(ended.set):
                    ended.wait(self.work)  # wakes early if the call ends
                if not context.is_active():
                    left_now = time_left(context)
                    record.outcome = (
                        "gave up: its deadline passed"
                        if left_now is not None and left_now <= 0
                        else "gave up: its call was cancelled"
                    )
                    context.abort(
                        grpc.StatusCode.CANCELLED,
                        f"{self.name}: the call ended before the work was done",
                    )
            else:
                time.sleep(self.work)  # the injected work, done whatever happens
            said = f"{self.name} had {_seconds(left)} left"
            if self.downstream is not None:
                timeout = time_left(context) if self.propagate else None
                try:
                    reply = self._stub().SayHello(request, timeout=timeout)
                except grpc.RpcError as error:
                    record.outcome = f"{error.code().name} from downstream"
                    context.abort(error.code(), f"{self.name} <- {error.details()}")
                said += " -> " + reply.message
            if record.outcome == "running":
                record.outcome = "done" if context.is_active() else "done, but its caller had gone"
            return helloworld_pb2.HelloReply(message=said)
        finally:
            record.ended = time.monotonic()
            record.done.set()

    def close(self) -> None:
        """Close the channel to ``downstream``."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None


def time_left(context: grpc.ServicerContext) -> float | None:
    """Seconds until the call's deadline, or None if it has none (grpcio then says about 9.2e18)."""
    left = context.time_remaining()
    return None if left is None or left > NO_DEADLINE else left


def _seconds(value: float | None) -> str:
    return "no deadline" if value is None else f"{value:.3f} s"
