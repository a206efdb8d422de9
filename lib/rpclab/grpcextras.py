"""Pieces for the gRPC streaming and reliability notebooks (08, 09): counters, faults and small servicers.

* :class:`CallCounter` -- a server interceptor per server that counts the calls
  each server receives (load balancing made visible).
* :class:`Flaky` -- a server interceptor that fails attempts with UNAVAILABLE
  (the first N attempts of every call, or a seeded fraction) and logs every
  attempt with the ``grpc-previous-rpc-attempts`` the server saw (retries made
  visible).
* :class:`Hop` -- a Greeter that works a while, then calls the next service,
  passing on the time left (deadline propagation made visible).
* :class:`CheckedGreeter` and :func:`error_details` -- rich errors: a
  google.rpc.BadRequest sent with the status, read back on the client.
* :class:`Firehose` -- a Greeter whose stream sends big replies as fast as
  gRPC takes them, counting them (flow control made visible).
* :func:`serve_call_proxy` -- a small L7 (per-call) round-robin gRPC proxy, to
  compare with the L4 one in rpclab.balancer.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple

import grpc
from google.protobuf import any_pb2, message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from rpclab import background
from rpclab.grpcservices.greeter import helloworld_pb2, helloworld_pb2_grpc

__all__ = [
    "ATTEMPTS_METADATA_KEY",
    "CallCounter",
    "CallRecord",
    "Attempt",
    "Flaky",
    "HopRecord",
    "Hop",
    "time_left",
    "CheckedGreeter",
    "error_details",
    "Firehose",
    "CallProxy",
    "serve_call_proxy",
]

ATTEMPTS_METADATA_KEY = "grpc-previous-rpc-attempts"  # sent by the client on a retry: attempts made before this one
MAX_LOG = 10_000  # entries a log keeps (the oldest are forgotten first)
MAX_NAME_LENGTH = 40  # CheckedGreeter's limit
NO_DEADLINE = 1e9  # seconds; grpcio's time_remaining() for a call without a deadline is far above this


# --------------------------------------------------------------------------- wrapping a method handler


def _before(handler: grpc.RpcMethodHandler | None,
            hook: Callable[[grpc.ServicerContext], None]) -> grpc.RpcMethodHandler | None:
    """The same handler, with ``hook(context)`` run in the call's thread before the method (it may abort)."""
    if handler is None:
        return None
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    )
    for attribute, make in kinds:
        method = getattr(handler, attribute)
        if method is not None:

            def behaviour(request: Any, context: grpc.ServicerContext, _method: Callable = method) -> Any:
                hook(context)
                return _method(request, context)

            return make(behaviour, request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer)
    return handler


def _previous_attempts(metadata: Iterable[tuple[str, Any]] | None) -> int:
    for key, value in metadata or ():
        if key == ATTEMPTS_METADATA_KEY:
            try:
                return max(int(value), 0)
            except (TypeError, ValueError):
                return 0
    return 0


# --------------------------------------------------------------------------- counting calls per server


class CallRecord(NamedTuple):
    """One call a server received."""

    server: str
    method: str


class CallCounter:
    """Counts the calls each server receives; give each server ``counter.interceptor(its name)``.

    ``background.serve_grpc("lb-1", add_greeter, interceptors=[counter.interceptor("lb-1")])``
    """

    def __init__(self, methods: Iterable[str] | None = None) -> None:
        self.methods = None if methods is None else frozenset(methods)  # count only these (None: all)
        self._log: deque[CallRecord] = deque(maxlen=MAX_LOG)
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def interceptor(self, server: str) -> grpc.ServerInterceptor:
        """A server interceptor that counts the calls of the server called ``server``."""
        counter = self
        with self._lock:
            self._counts.setdefault(server, 0)

        class _Counting(grpc.ServerInterceptor):
            def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
                if counter.methods is None or details.method in counter.methods:
                    with counter._lock:
                        counter._counts[server] += 1
                        counter._log.append(CallRecord(server, details.method))
                return continuation(details)

        return _Counting()

    def by_server(self) -> dict[str, int]:
        """Calls counted so far, per server (every server that has an interceptor, even at 0)."""
        with self._lock:
            return dict(self._counts)

    def order(self) -> list[str]:
        """The server of each call, in the order the calls arrived (the last MAX_LOG)."""
        with self._lock:
            return [record.server for record in self._log]

    def reset(self) -> None:
        """Count from zero again."""
        with self._lock:
            self._counts = Counter({name: 0 for name in self._counts})
            self._log.clear()


# --------------------------------------------------------------------------- a flaky server


class Attempt(NamedTuple):
    """One attempt the flaky server saw: which method, the how-manieth attempt of its call, and whether it failed."""

    method: str
    number: int  # 1 for a first attempt; grpc-previous-rpc-attempts + 1 for a retry
    failed: bool


class Flaky(grpc.ServerInterceptor):
    """A server interceptor that fails attempts with UNAVAILABLE, as a server that is restarting would.

    ``fail_first=N`` fails the first N attempts of every call (the server tells
    a retry by its ``grpc-previous-rpc-attempts`` metadata), so a call succeeds
    on attempt N+1 if the client retries that often. ``fail_fraction=p`` fails
    any other attempt with probability p, drawn from ``random.Random(seed)``.
    Every attempt is logged in ``attempts``.
    """

    def __init__(self, fail_first: int = 0, fail_fraction: float = 0.0, *, seed: int | None = 0,
                 code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE, methods: Iterable[str] | None = None) -> None:
        if isinstance(fail_first, bool) or not isinstance(fail_first, int) or fail_first < 0:
            raise ValueError(f"fail_first must be an int >= 0, not {fail_first!r}")
        if isinstance(fail_fraction, bool) or not isinstance(fail_fraction, (int, float)) or not 0 <= fail_fraction <= 1:
            raise ValueError(f"fail_fraction must be a probability between 0 and 1, not {fail_fraction!r}")
        if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
            raise ValueError(f"code must be a grpc.StatusCode other than OK, not {code!r}")
        self.fail_first = fail_first
        self.fail_fraction = float(fail_fraction)
        self.code = code
        self.methods = None if methods is None else frozenset(methods)  # fail only these (None: all)
        self._random = random.Random(seed)
        self._log: deque[Attempt] = deque(maxlen=MAX_LOG)
        self._lock = threading.Lock()

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if self.methods is not None and details.method not in self.methods:
            return handler
        number = _previous_attempts(details.invocation_metadata) + 1
        with self._lock:
            failed = number <= self.fail_first or (self.fail_fraction > 0 and self._random.random() < self.fail_fraction)
            self._log.append(Attempt(details.method, number, failed))
        if not failed:
            return handler

        def fail(context: grpc.ServicerContext) -> None:
            context.abort(self.code, f"flaky server: attempt {number} failed on purpose")

        return _before(handler, fail)

    @property
    def attempts(self) -> list[Attempt]:
        """Every attempt seen so far (the last MAX_LOG), oldest first."""
        with self._lock:
            return list(self._log)

    def reset(self, seed: int | None = 0) -> None:
        """Forget the attempts and restart the random sequence from ``seed``."""
        with self._lock:
            self._log.clear()
            self._random = random.Random(seed)


# --------------------------------------------------------------------------- deadline propagation


@dataclass
class HopRecord:
    """What one hop of a chain saw: its time left on arrival (None: no deadline) and how its call ended."""

    hop: str
    time_left: float | None
    arrived: float  # time.monotonic()
    ended: float | None = None  # time.monotonic(), once the hop has finished with the call
    outcome: str = "running"
    done: threading.Event = field(default_factory=threading.Event, repr=False)  # set when ``ended`` is


class Hop(helloworld_pb2_grpc.GreeterServicer):
    """A Greeter that is one service in a chain: it works ``work`` seconds, then calls ``downstream``.

    With ``propagate=True`` it passes on its own deadline, ``timeout=context.time_remaining()``,
    and stops working as soon as its own call ends. With ``propagate=False`` it
    calls ``downstream`` with no deadline and works on whatever happens.
    Every hop appends a HopRecord to ``log`` (share one list along a chain).
    The reply says how much time each hop had left.
    """

    def __init__(self, name: str, downstream: tuple[str, int] | None = None, *, work: float = 0.05,
                 propagate: bool = True, log: list[HopRecord] | None = None) -> None:
        if isinstance(work, bool) or not isinstance(work, (int, float)) or not 0 <= work <= 30:
            raise ValueError(f"work must be between 0 and 30 seconds, not {work!r}")
        self.name = name
        self.downstream = downstream
        self.work = float(work)
        self.propagate = propagate
        self.log: list[HopRecord] = [] if log is None else log
        self.arrived = threading.Event()  # set whenever a call arrives (clear it to wait for the next)
        self._channel: grpc.Channel | None = None
        self._lock = threading.Lock()

    def _stub(self) -> helloworld_pb2_grpc.GreeterStub:
        with self._lock:
            if self._channel is None:
                host, port = self.downstream  # type: ignore[misc]
                self._channel = grpc.insecure_channel(f"{host}:{port}")
            return helloworld_pb2_grpc.GreeterStub(self._channel)

    def SayHello(self, request: helloworld_pb2.HelloRequest, context: grpc.ServicerContext) -> helloworld_pb2.HelloReply:
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
                    record.outcome = ("gave up: its deadline passed" if left_now is not None and left_now <= 0
                                      else "gave up: its call was cancelled")
                    context.abort(grpc.StatusCode.CANCELLED, f"{self.name}: the call ended before the work was done")
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


# --------------------------------------------------------------------------- rich errors


class CheckedGreeter(helloworld_pb2_grpc.GreeterServicer):
    """A Greeter that checks the name and reports every problem at once, as a google.rpc.BadRequest.

    The status is INVALID_ARGUMENT; its details carry one field violation per
    problem, so a client (or a form in a browser) can show each next to its field.
    """

    def SayHello(self, request: helloworld_pb2.HelloRequest, context: grpc.ServicerContext) -> helloworld_pb2.HelloReply:
        problems = []
        name = request.name
        if not name.strip():
            problems.append("must not be empty")
        if len(name) > MAX_NAME_LENGTH:
            problems.append(f"must be at most {MAX_NAME_LENGTH} characters, not {len(name)}")
        if any(ch.isdigit() for ch in name):
            problems.append("must not contain digits")
        if problems:
            bad = error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field="name", description=p) for p in problems])
            detail = any_pb2.Any()
            detail.Pack(bad)
            status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT,
                                       message=f"the request has {len(problems)} problem(s)", details=[detail])
            context.abort_with_status(rpc_status.to_status(status))
        return helloworld_pb2.HelloReply(message=f"Hello, {name}!")


_DETAIL_TYPES: dict[str, type[message.Message]] = {
    descriptor.full_name: getattr(error_details_pb2, name)
    for name, descriptor in error_details_pb2.DESCRIPTOR.message_types_by_name.items()
}


def error_details(error: grpc.RpcError) -> list[message.Message]:
    """The rich error details of a failed call, unpacked (google.rpc.BadRequest, RetryInfo, ...).

    Returns [] when the server sent none. A detail of a type that is not one
    of google.rpc's standard ones stays a packed google.protobuf.Any.
    """
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return []
    found: list[message.Message] = []
    for packed in status.details:
        kind = _DETAIL_TYPES.get(packed.TypeName())
        if kind is None:
            found.append(packed)
            continue
        unpacked = kind()
        packed.Unpack(unpacked)
        found.append(unpacked)
    return found


# --------------------------------------------------------------------------- a fast stream


class Firehose(helloworld_pb2_grpc.GreeterServicer):
    """A Greeter whose SayHelloStreamReply sends ``count`` replies of ``size`` characters as fast as gRPC takes them.

    ``produced`` counts the replies the server has handed to gRPC so far: gRPC
    asks for the next one only when it has sent the previous one, so a client
    that reads slowly holds the server back once the flow-control windows are full.
    """

    def __init__(self, size: int = 16_000, count: int = 200) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 4_000_000:
            raise ValueError(f"size must be an int between 0 and 4,000,000, not {size!r}")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= 1_000_000:
            raise ValueError(f"count must be an int between 1 and 1,000,000, not {count!r}")
        self.size = size
        self.count = count
        self.produced = 0
        self.finished = threading.Event()

    def SayHelloStreamReply(self, request: helloworld_pb2.HelloRequest,
                            context: grpc.ServicerContext) -> Iterator[helloworld_pb2.HelloReply]:
        self.produced = 0
        self.finished.clear()
        payload = "x" * self.size
        try:
            for _ in range(self.count):
                if not context.is_active():
                    return
                self.produced += 1
                yield helloworld_pb2.HelloReply(message=payload)
        finally:
            self.finished.set()


# --------------------------------------------------------------------------- an L7 proxy


class CallProxy(background.RunningServer):
    """A running per-call (L7) gRPC proxy: ``address``, ``calls`` per upstream, ``stop()``."""

    def __init__(self, handle: background.ServerHandle, channels: Mapping[str, grpc.Channel], counts: Counter[str],
                 lock: threading.Lock) -> None:
        super().__init__(handle)
        self._channels = dict(channels)
        self._counts = counts
        self._lock = lock

    @property
    def calls(self) -> dict[str, int]:
        """How many calls each upstream has been given so far."""
        with self._lock:
            return dict(self._counts)

    def stop(self, timeout: float = background.STOP_TIMEOUT) -> None:
        """Stop the proxy's server and close its channels to the upstreams."""
        try:
            self._handle.stop(timeout)
        finally:
            for channel in self._channels.values():
                channel.close()


_HOP_BY_HOP = ("grpc-", ":")  # metadata gRPC itself sets on each hop; not forwarded
_NOT_FORWARDED = ("user-agent", "te", "content-type")


def serve_call_proxy(name: str, upstreams: Mapping[str, Any] | Iterable[Any], *, host: str = background.DEFAULT_HOST,
                     port: int = 0, max_workers: int = 16) -> CallProxy:
    """Start a gRPC proxy that sends each unary call to the next upstream in turn, as Envoy or Nginx grpc_pass do.

    It decodes HTTP/2 and gRPC framing but not the messages: any method of any
    service is forwarded as bytes, with its metadata and the time left before its
    deadline. Not knowing the .proto, it treats every call as unary (one request,
    one reply), so streaming methods do not work through it.
    ``upstreams``: (host, port) pairs or server handles, or a mapping name -> one of those.
    """
    items = list(upstreams.items()) if isinstance(upstreams, Mapping) else [(None, u) for u in upstreams]
    named: dict[str, tuple[str, int]] = {}
    for key, value in items:
        address = getattr(value, "address", value)
        if not (isinstance(address, (tuple, list)) and len(address) == 2 and isinstance(address[0], str)
                and isinstance(address[1], int)):
            raise ValueError(f"each upstream must be a (host, port) pair or a server handle, not {value!r}")
        named[str(key) if key is not None else f"{address[0]}:{address[1]}"] = (address[0], address[1])
    if not named:
        raise ValueError("serve_call_proxy needs at least one upstream")
    counts: Counter[str] = Counter({n: 0 for n in named})
    lock = threading.Lock()
    turn = [0]
    channels = {n: grpc.insecure_channel(f"{h}:{p}") for n, (h, p) in named.items()}
    names = list(named)

    def forward(method: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def call(request: bytes, context: grpc.ServicerContext) -> bytes:
            with lock:
                upstream = names[turn[0] % len(names)]
                turn[0] += 1
                counts[upstream] += 1
            metadata = [(k, v) for k, v in context.invocation_metadata()
                        if not k.startswith(_HOP_BY_HOP) and k not in _NOT_FORWARDED]
            try:
                return channels[upstream].unary_unary(method)(request, timeout=context.time_remaining(),
                                                              metadata=metadata)
            except grpc.RpcError as error:
                context.abort(error.code(), error.details() or "")
                raise  # not reached: abort() raises

        return call

    class _Forwarding(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(forward(details.method))

    try:
        handle = background.serve_grpc(name, lambda server: server.add_generic_rpc_handlers((_Forwarding(),)),
                                       host=host, port=port, max_workers=max_workers)
    except Exception:
        for channel in channels.values():
            channel.close()
        raise
    return CallProxy(handle, channels, counts, lock)
