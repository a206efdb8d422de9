"""The measurement harness behind ``rpclab bench`` and notebook 13: every transport, measured the same way.

Each transport is registered by name with a setup function that starts a
server (through rpclab.background or rpclab.aio) and returns an
:class:`Endpoint`; ``endpoint.connect(payload)`` opens a client connection
whose ``call()`` makes one round trip, an **echo** of ``payload``::

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
import asyncio
import io
import json
import math
import os
import platform
import socket
import socketserver
import statistics
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Coroutine, Iterable, Sequence, TextIO, TypeVar
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from rpclab import background, framing

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

PAYLOAD = "x" * 32  # what each call echoes, unless a payload size says otherwise
MAX_PAYLOAD = 1024 * 1024  # the largest payload a sweep may echo: 1 MiB
MAX_MESSAGE = 2 * MAX_PAYLOAD  # the message limit every bench server and client gets: 1 MiB plus any envelope
CALL_TIMEOUT = 10.0  # seconds one call may take before it fails (a 1 MiB echo on a busy machine is slow)
GRPC_METHOD = "/rpclab.bench.Bench/Echo"  # the gRPC echo method the bench registers by hand

T = TypeVar("T")


@dataclass
class Connection:
    """One client connection: ``call()`` makes one round trip and returns the echo; ``close()`` ends the connection.

    ``measure(max_calls, max_seconds)``, when given, runs the timing loop itself
    (the asyncio transport times its calls on its own event loop) and returns
    what :func:`measure_round_trips` returns.
    """

    call: Callable[[], object]
    close: Callable[[], None]
    measure: Callable[[int, float], tuple[list[int], float]] | None = None


@dataclass
class Endpoint:
    """A running server: ``connect(payload)`` opens a Connection that echoes ``payload``; ``close()`` stops the server.

    ``concurrent(n, max_calls, max_seconds)``, when given, replaces the
    harness's n threads with the transport's own way of making n calls at once,
    and returns what :func:`measure_concurrent` returns. ``concurrency`` says in
    words how the calls were made at once.
    """

    connect: Callable[[str], Connection]
    close: Callable[[], None]
    concurrent: Callable[[int, int, float], tuple[int, float, list[str]]] | None = None
    concurrency: str = "connections, a thread each"


@dataclass(frozen=True)
class Settings:
    """How long to measure: rounds, the limits (calls and seconds) of each, and the payload sizes to sweep."""

    rounds: int = 5
    calls_per_round: int = 50_000  # single-connection calls per round, at most
    seconds_per_round: float = 0.5
    connections: int = 8  # for the concurrent measurement
    concurrent_calls: int = 200_000  # calls per concurrent round (all connections together), at most
    concurrent_seconds: float = 0.8
    warmup_calls: int = 300
    payload_sizes: tuple[int, ...] = ()  # bytes echoed each way, one measurement per size; () for no sweep
    payload_calls: int = 500  # calls per size, at most
    payload_seconds: float = 0.5  # seconds per size, at most

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "payload_sizes":
                if not isinstance(value, tuple) or any(isinstance(s, bool) or not isinstance(s, int) for s in value):
                    raise TypeError(f"payload_sizes must be a tuple of ints (bytes), not {value!r}")
                if any(not 1 <= s <= MAX_PAYLOAD for s in value):
                    raise ValueError(f"payload sizes must be between 1 byte and {MAX_PAYLOAD:,} bytes (1 MiB), not {value!r}")
            elif f.type == "int":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"{f.name} must be a positive int, not {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{f.name} must be a positive number of seconds, not {value!r}")

    @property
    def steps(self) -> int:
        """How many measurements one transport takes: set-up, 2 per round, 1 per payload size."""
        return 1 + 2 * self.rounds + len(self.payload_sizes)

    def budget(self, transports: int) -> float:
        """Seconds the measurements may take at most for ``transports`` transports (set-up and warm-up aside)."""
        per_size = self.payload_seconds + CALL_TIMEOUT  # the last call may start just before the limit
        return transports * (self.rounds * (self.seconds_per_round + self.concurrent_seconds)
                             + len(self.payload_sizes) * per_size)


SWEEP = (16, 1024, 64 * 1024, 1024 * 1024)  # 16 B, 1 KiB, 64 KiB, 1 MiB
QUICK = Settings(rounds=3, calls_per_round=10_000, seconds_per_round=0.15, concurrent_calls=40_000,
                 concurrent_seconds=0.2, warmup_calls=100, payload_sizes=SWEEP, payload_calls=100,
                 payload_seconds=0.1)
NORMAL = Settings(payload_sizes=SWEEP)


@dataclass
class PayloadPoint:
    """The echo of one payload size: calls made, time taken, and the median time per echo."""

    size: int  # bytes of payload, each way
    calls: int = 0
    seconds: float = 0.0
    median_us: float = 0.0

    @property
    def mib_per_second(self) -> float:
        """Payload carried per second, both directions counted (MiB/s), at the median time per echo."""
        return 2 * self.size / (self.median_us / 1e6) / 2**20 if self.median_us else 0.0


@dataclass
class Result:
    """What one transport achieved: on one connection, with several at once, and per payload size."""

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
        """The median microseconds per echo of ``size`` bytes, or None if that size was not measured."""
        for point in self.payload:
            if point.size == size and point.calls:
                return point.median_us
        return None


# =========================================================================== transports

TRANSPORTS: dict[str, Callable[[], Endpoint]] = {}
DESCRIPTIONS: dict[str, str] = {}

# Where a stack's own limit is below 1 MiB plus its envelope, the bench raises it (to MAX_MESSAGE).
LIMITS: dict[str, str] = {
    "raw": "rpclab.framing refuses frames over 1 MiB: raised to 2 MiB, both ends",
    "socketrpc": "max_frame_size 1 MiB by default: raised to 2 MiB, client and server",
    "xmlrpc": "rpclab.adapters.xml_rpc refuses requests over 1 MiB: the bench's echo server allows 2 MiB",
    "rest": "rpclab.adapters.rest refuses bodies over 128 KiB: the bench's echo app allows 2 MiB",
    "thrift": "rpclab.adapters.thrift refuses messages over 1 MiB: raised to 2 MiB",
    "grpc": "gRPC receives messages up to 4 MiB by default: unchanged",
    "grpc-aio": "gRPC receives messages up to 4 MiB by default: unchanged",
}


def register(name: str, setup: Callable[[], Endpoint], description: str = "") -> None:
    """Add (or replace) a transport: ``setup()`` starts its server and returns an Endpoint."""
    if not isinstance(name, str) or not name or "," in name:
        raise ValueError(f"a transport's name must be a non-empty str without commas, not {name!r}")
    if not callable(setup):
        raise TypeError(f"setup must be callable, not {setup!r}")
    TRANSPORTS[name] = setup
    DESCRIPTIONS[name] = description


def transport_names(transports: str | Iterable[str] | None = None) -> list[str]:
    """The transports to measure: all registered ones for None; a list, or a comma-separated string, checked."""
    if transports is None:
        return list(TRANSPORTS)
    names = [n.strip() for n in transports.split(",")] if isinstance(transports, str) else list(transports)
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise ValueError(f"name at least one transport; registered: {', '.join(TRANSPORTS)}")
    unknown = [n for n in names if n not in TRANSPORTS]
    if unknown:
        raise ValueError(f"unknown transport{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"registered: {', '.join(TRANSPORTS)}")
    return list(dict.fromkeys(names))  # each once, in the order given


def _echo(text: str) -> str:
    return text


def _set_timeouts(sock: socket.socket, seconds: float) -> None:
    """A blocking socket whose reads and writes fail after ``seconds`` (kernel timeouts: no extra system call per read)."""
    sock.settimeout(None)
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


# --------------------------------------------------------------------------- raw


RECV_SIZE = 64 * 1024


def _recv_raw_frame(sock: socket.socket) -> bytes | bytearray | None:
    """One whole frame (header included) in as few recv calls as the stream allows; None at end of stream."""
    data = sock.recv(RECV_SIZE)
    if not data:
        return None
    while len(data) < framing.HEADER.size:
        more = sock.recv(RECV_SIZE)
        if not more:
            return None
        data += more
    (size,) = framing.HEADER.unpack_from(data)
    if size > MAX_MESSAGE:
        raise framing.FrameTooLarge(size, MAX_MESSAGE)
    total = framing.HEADER.size + size
    if len(data) == total:
        return data
    if len(data) > total:  # a ping-pong never sends the next frame before the reply
        raise ConnectionError("received more than one frame at once")
    frame = bytearray(total)
    frame[: len(data)] = data
    view, got = memoryview(frame), len(data)
    while got < total:
        n = sock.recv_into(view[got:], total - got)
        if not n:
            return None
        got += n
    return frame


class _RawEcho(socketserver.BaseRequestHandler):
    """Send each frame back as it came: a ping-pong with no encoding and no dispatch."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while (frame := _recv_raw_frame(sock)) is not None:
                sock.sendall(frame)
        except (OSError, framing.FramingError):
            return  # closed, reset, or a frame over the limit: drop the connection


class _RawServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False


def _setup_raw() -> Endpoint:
    handle = background.serve("bench-raw", lambda address: _RawServer(address, _RawEcho))

    def connect(payload: str) -> Connection:
        message = framing.encode_frame(payload.encode(), MAX_MESSAGE)
        sock = socket.create_connection(handle.address, timeout=CALL_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _set_timeouts(sock, CALL_TIMEOUT)  # blocking: the cheapest read there is, and still bounded

        def call() -> object:
            sock.sendall(message)
            reply = _recv_raw_frame(sock)
            if reply is None:
                raise ConnectionError("the raw echo server closed the connection")
            return memoryview(reply)[framing.HEADER.size:]

        return Connection(call, sock.close)

    return Endpoint(connect, handle.stop)


# --------------------------------------------------------------------------- socketrpc


def _setup_socketrpc() -> Endpoint:
    from rpclab import socketrpc

    server = socketrpc.serve({"echo": _echo}, name="bench-socketrpc", max_frame_size=MAX_MESSAGE)

    def connect(payload: str) -> Connection:
        client = socketrpc.connect(server.address, timeout=CALL_TIMEOUT, max_frame_size=MAX_MESSAGE)
        echo = client.echo
        return Connection(lambda: echo(payload), client.close)

    return Endpoint(connect, server.stop)


# --------------------------------------------------------------------------- XML-RPC


class _XMLRPCEchoHandler(SimpleXMLRPCRequestHandler):
    """HTTP/1.1 (the connection stays open between calls), requests bounded to MAX_MESSAGE bytes, no logging."""

    rpc_paths = ("/RPC2",)
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            self.send_error(400, "bad Content-Length")
            return
        if length > MAX_MESSAGE:
            self.send_error(413, "request too large")
            return
        super().do_POST()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _XMLRPCEchoServer(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    """The standard library's XML-RPC server, a thread per connection, offering ``echo``."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int]):
        super().__init__(address, requestHandler=_XMLRPCEchoHandler, logRequests=False)
        self.register_function(_echo, "echo")

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _setup_xmlrpc() -> Endpoint:
    from rpclab.adapters import xml_rpc

    handle = background.serve("bench-xmlrpc", _XMLRPCEchoServer)

    def connect(payload: str) -> Connection:
        proxy = xml_rpc.connect(handle.address, timeout=CALL_TIMEOUT)
        echo = proxy.echo
        return Connection(lambda: echo(payload), proxy("close"))

    return Endpoint(connect, handle.stop)


# --------------------------------------------------------------------------- REST


def _setup_rest() -> Endpoint:
    from fastapi import FastAPI
    from pydantic import BaseModel, StrictStr

    from rpclab.adapters import rest

    class Echo(BaseModel):
        value: StrictStr

    app = FastAPI(title="RPC Lab bench", max_body_size=MAX_MESSAGE, docs_url=None, redoc_url=None, openapi_url=None)

    async def echo(body):  # type: ignore[no-untyped-def]
        return body

    # Classes, not strings (this module's annotations are strings, and Echo is local): FastAPI reads them.
    echo.__annotations__ = {"body": Echo, "return": Echo}
    app.post("/echo", response_model=Echo)(echo)

    handle = background.serve("bench-rest", lambda address: rest.UvicornServer(app, address))

    def connect(payload: str) -> Connection:
        client = rest.connect(handle.address, timeout=CALL_TIMEOUT)
        body = {"value": payload}

        def call() -> object:
            status, data = client.request("POST", "/echo", body)
            if status != 200:
                raise rest.RESTError(status, data)
            return data["value"]

        return Connection(call, client.close)

    return Endpoint(connect, handle.stop)


# --------------------------------------------------------------------------- Thrift

_BENCH_THRIFT = """\
service Bench {
  string echo(1: string value),
}
"""
_bench_thrift: Any = None


def _thrift_module() -> Any:
    """The Bench service's thriftpy2 module, read from the IDL above (once)."""
    global _bench_thrift
    if _bench_thrift is None:
        import thriftpy2

        _bench_thrift = thriftpy2.load_fp(io.StringIO(_BENCH_THRIFT), module_name="bench_thrift")
    return _bench_thrift


class _ThriftEcho:
    def echo(self, value: str) -> str:
        return value


def _setup_thrift() -> Endpoint:
    from thriftpy2.protocol import TBinaryProtocolFactory
    from thriftpy2.thrift import TClient, TProcessor
    from thriftpy2.transport import TFramedTransportFactory, TSocket

    from rpclab.adapters import thrift
    from rpclab.kv import KVStore

    module = _thrift_module()

    def make_server(address: tuple[str, int]) -> thrift.KVThriftServer:
        # The adapter's server (framed binary protocol, bounded decoding), answering the Bench service instead.
        server = thrift.KVThriftServer(address, KVStore(), max_message_size=MAX_MESSAGE)
        server.processor = TProcessor(module.Bench, _ThriftEcho())
        return server

    handle = background.serve("bench-thrift", make_server)

    def connect(payload: str) -> Connection:
        ms = CALL_TIMEOUT * 1000
        transport = TFramedTransportFactory().get_transport(
            TSocket(handle.host, handle.port, socket_timeout=ms, connect_timeout=ms))
        transport.open()
        client = TClient(module.Bench, TBinaryProtocolFactory().get_protocol(transport))
        echo = client.echo
        return Connection(lambda: echo(payload), client.close)

    return Endpoint(connect, handle.stop)


# --------------------------------------------------------------------------- gRPC


def _grpc_echo(register_behaviour: Callable[..., Any]) -> Callable[[Any], None]:
    """``register(server)`` adding an Echo method that returns its request (kv.proto's GetReply: one string field)."""
    import grpc

    from rpclab import protos

    kv_pb2, _ = protos.load("kv")
    message = kv_pb2.GetReply
    handler = grpc.method_handlers_generic_handler(GRPC_METHOD.split("/")[1], {
        "Echo": grpc.unary_unary_rpc_method_handler(register_behaviour, request_deserializer=message.FromString,
                                                    response_serializer=message.SerializeToString)})
    return lambda server: server.add_generic_rpc_handlers((handler,))


def _grpc_message(payload: str) -> Any:
    from rpclab import protos

    kv_pb2, _ = protos.load("kv")
    return kv_pb2.GetReply(value=payload)


# Each channel gets its own TCP connection (by default, channels to one address may share one).
_GRPC_CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)


def _setup_grpc() -> Endpoint:
    import grpc

    handle = background.serve_grpc("bench-grpc", _grpc_echo(lambda request, context: request), max_workers=16)
    message = type(_grpc_message(""))

    def connect(payload: str) -> Connection:
        channel = grpc.insecure_channel(f"{handle.host}:{handle.port}", options=_GRPC_CHANNEL_OPTIONS)
        echo = channel.unary_unary(GRPC_METHOD, request_serializer=message.SerializeToString,
                                   response_deserializer=message.FromString)
        request = _grpc_message(payload)
        return Connection(lambda: echo(request, timeout=CALL_TIMEOUT).value, channel.close)

    return Endpoint(connect, handle.stop)


class _LoopThread:
    """A private asyncio event loop running in a thread of its own, stopped and closed by ``close()``."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coroutine`` on the loop and wait for it, at most ``timeout`` seconds (then it is cancelled)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()  # a timeout, or Ctrl-C: do not leave it running
            raise

    def close(self, timeout: float = 10.0) -> None:
        """Cancel what still runs on the loop, stop it, end its thread and close it."""
        if self.loop.is_closed():
            return

        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            if self.thread.is_alive():
                self.run(cancel_the_rest(), timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
            if not self.thread.is_alive():
                self.loop.close()


def _setup_grpc_aio() -> Endpoint:
    import grpc

    from rpclab import aio

    async def echo(request: Any, context: Any) -> Any:
        return request

    message = type(_grpc_message(""))
    worker = _LoopThread("rpclab-bench-aio-loop")
    channels: set[Any] = set()
    try:
        handle = worker.run(aio.serve_aio("bench-grpc-aio", _grpc_echo(echo)), CALL_TIMEOUT)
    except BaseException:
        worker.close()
        raise
    target = f"{handle.host}:{handle.port}"

    async def open_channel() -> tuple[Any, Any]:
        channel = grpc.aio.insecure_channel(target, options=_GRPC_CHANNEL_OPTIONS)
        channels.add(channel)
        return channel, channel.unary_unary(GRPC_METHOD, request_serializer=message.SerializeToString,
                                            response_deserializer=message.FromString)

    async def close_channel(channel: Any) -> None:
        channels.discard(channel)
        await channel.close()

    def connect(payload: str) -> Connection:
        channel, stub = worker.run(open_channel(), CALL_TIMEOUT)
        request = _grpc_message(payload)

        async def one() -> str:
            return (await stub(request, timeout=CALL_TIMEOUT)).value

        async def timed(max_calls: int, max_seconds: float) -> tuple[list[int], float]:
            clock = time.perf_counter_ns
            latencies: list[int] = []
            start = clock()
            stop_at = start + int(max_seconds * 1e9)
            for _ in range(max_calls):
                before = clock()
                await stub(request, timeout=CALL_TIMEOUT)
                after = clock()
                latencies.append(after - before)
                if after >= stop_at:
                    break
            return latencies, (clock() - start) / 1e9

        return Connection(
            call=lambda: worker.run(one(), CALL_TIMEOUT + 1),
            close=lambda: worker.run(close_channel(channel), CALL_TIMEOUT),
            measure=lambda max_calls, max_seconds: worker.run(timed(max_calls, max_seconds),
                                                              max_seconds + CALL_TIMEOUT + 1),
        )

    async def at_once(n: int, max_calls: int, max_seconds: float) -> tuple[int, float, list[str]]:
        channel, stub = await open_channel()
        request = _grpc_message(PAYLOAD)
        errors: list[str] = []
        try:
            await stub(request, timeout=CALL_TIMEOUT)  # connected before the clock starts
            per_task = max(1, max_calls // n)
            start = time.perf_counter()
            stop_at = start + max_seconds

            async def calls() -> int:
                done = 0
                try:
                    while done < per_task:
                        await stub(request, timeout=CALL_TIMEOUT)
                        done += 1
                        if done % 16 == 0 and time.perf_counter() >= stop_at:
                            break
                except grpc.RpcError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                return done

            counts = await asyncio.gather(*(calls() for _ in range(n)))
            return sum(counts), time.perf_counter() - start, errors
        finally:
            await close_channel(channel)

    def concurrent(n: int, max_calls: int, max_seconds: float) -> tuple[int, float, list[str]]:
        return worker.run(at_once(n, max_calls, max_seconds), max_seconds + 2 * CALL_TIMEOUT)

    def close() -> None:
        async def shut_down() -> None:
            for channel in list(channels):
                await close_channel(channel)
            await handle.stop(grace=0)

        try:
            worker.run(shut_down(), CALL_TIMEOUT)
        finally:
            worker.close()

    return Endpoint(connect, close, concurrent, concurrency="calls in flight at once on one channel, one event loop")


register("raw", _setup_raw, "length-prefixed bytes over TCP, echoed as they came: the limit")
register("socketrpc", _setup_socketrpc, "RPC Lab's JSON-RPC over TCP (notebook 04), a thread per connection")
register("xmlrpc", _setup_xmlrpc, "XML in HTTP/1.1 POSTs, the standard library's client and server")
register("rest", _setup_rest, "JSON in HTTP/1.1 POSTs, FastAPI on uvicorn (one event loop thread)")
register("thrift", _setup_thrift, "Thrift binary protocol, framed, thriftpy2 (a thread per connection)")
register("grpc", _setup_grpc, "protobuf over HTTP/2, gRPC's synchronous API (a thread pool serves calls)")
register("grpc-aio", _setup_grpc_aio, "protobuf over HTTP/2, grpc.aio: client and server on one event loop")


# =========================================================================== measuring


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


def _measure(conn: Connection, max_calls: int, max_seconds: float) -> tuple[list[int], float]:
    if conn.measure is not None:
        return conn.measure(max_calls, max_seconds)
    return measure_round_trips(conn.call, max_calls, max_seconds)


def _as_text(reply: object) -> object:
    if isinstance(reply, (bytes, bytearray, memoryview)):
        return bytes(reply).decode("utf-8", "replace")
    return reply


def _open(name: str, endpoint: Endpoint, payload: str) -> Connection:
    """Connect, and check with one call (which also sets the connection up) that the echo comes back whole."""
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


def measure_concurrent(endpoint: Endpoint, connections: int, max_calls: int, max_seconds: float,
                       name: str = "transport") -> tuple[int, float, list[str]]:
    """Call from ``connections`` threads, one connection each, at once; return (calls, seconds, errors)."""
    if endpoint.concurrent is not None:
        return endpoint.concurrent(connections, max_calls, max_seconds)
    conns: list[Connection] = []
    try:
        for _ in range(connections):
            conns.append(_open(name, endpoint, PAYLOAD))
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

    threads = [threading.Thread(target=worker, args=(i,), name=f"rpclab-bench-{i}", daemon=True)
               for i in range(connections)]
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


def run(transports: str | Iterable[str] | None = None, settings: Settings = QUICK,
        progress: Callable[[int, int, str], None] | None = None) -> dict[str, Result]:
    """Measure each transport (all registered ones by default), alternating between them round by round.

    ``progress(done, total, what)`` is called before each measurement. A
    transport that fails during the rounds is reported in its Result's
    ``errors``; one that cannot even be set up raises. Every server started is
    stopped before this returns or raises (Ctrl-C included).
    """
    names = transport_names(transports)
    results = {name: Result(name, connections=settings.connections) for name in names}
    latencies: dict[str, list[int]] = {name: [] for name in names}
    endpoints: dict[str, Endpoint] = {}
    singles: dict[str, Connection] = {}
    total, done = len(names) * settings.steps, 0

    def step(what: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done, total, what)
        done += 1

    def rotated(offset: int) -> list[str]:  # who goes first changes every round
        offset %= len(names)
        return names[offset:] + names[:offset]

    try:
        for name in names:
            step(f"starting {name}")
            endpoints[name] = TRANSPORTS[name]()
            results[name].concurrency = endpoints[name].concurrency
            singles[name] = _open(name, endpoints[name], PAYLOAD)
            _measure(singles[name], settings.warmup_calls, 5.0)
        for round_number in range(settings.rounds):
            order = rotated(round_number)
            for name in order:
                step(f"round {round_number + 1}/{settings.rounds}: {name}, one connection")
                result = results[name]
                try:
                    lat, seconds = _measure(singles[name], settings.calls_per_round, settings.seconds_per_round)
                    latencies[name].extend(lat)
                    result.calls += len(lat)
                    result.seconds += seconds
                except Exception as exc:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                    singles[name].close()
                    singles[name] = endpoints[name].connect(PAYLOAD)
            for name in order:
                step(f"round {round_number + 1}/{settings.rounds}: {name}, {settings.connections} at once")
                try:
                    calls, seconds, errors = measure_concurrent(endpoints[name], settings.connections,
                                                                settings.concurrent_calls, settings.concurrent_seconds, name)
                except Exception as exc:
                    calls, seconds, errors = 0, 0.0, [f"{type(exc).__name__}: {exc}"]
                results[name].concurrent_calls += calls
                results[name].concurrent_seconds += seconds
                results[name].errors.extend(errors)
        for index, size in enumerate(settings.payload_sizes):
            payload = "x" * size
            for name in rotated(index):
                step(f"payload {_format_size(size)}: {name}")
                point = PayloadPoint(size)
                try:
                    conn = _open(name, endpoints[name], payload)
                    try:
                        lat, point.seconds = _measure(conn, settings.payload_calls, settings.payload_seconds)
                    finally:
                        conn.close()
                    point.calls = len(lat)
                    point.median_us = statistics.median(lat) / 1000
                except Exception as exc:
                    results[name].errors.append(f"{_format_size(size)} payload: {type(exc).__name__}: {exc}")
                results[name].payload.append(point)
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
    return results


def _quietly(close: Callable[[], object]) -> None:
    try:
        close()
    except Exception:
        pass


# =========================================================================== reading the results


@dataclass(frozen=True)
class Choice:
    """The transport that did best in one situation, by how much, and the measured figure behind it."""

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
    """The best RPC transport (``baseline`` left out) in each situation the results cover, computed from them."""
    candidates = [r for name, r in results.items() if name != baseline]
    picks: list[Choice] = []

    def pick(situation: str, value: Callable[[Result], float | None], lower_is_better: bool,
             show: Callable[[float], str]) -> None:
        scored = [(v, r.transport) for r in candidates if (v := value(r)) is not None and v > 0 and math.isfinite(v)]
        if not scored:
            return
        scored.sort(reverse=not lower_is_better)
        (best, winner), rest = scored[0], scored[1:]
        margin = None
        if rest:
            margin = rest[0][0] / best if lower_is_better else best / rest[0][0]
        picks.append(Choice(situation, winner, show(best), rest[0][1] if rest else None, margin))

    pick("lowest latency, one call at a time", lambda r: r.median_us, True, lambda v: f"median {v:,.0f} µs")
    pick("steadiest latency (lowest 99th percentile)", lambda r: r.p99_us, True, lambda v: f"p99 {v:,.0f} µs")
    connections = max((r.connections for r in candidates), default=0)
    pick(f"most calls per second, {connections} at once", lambda r: r.concurrent_rate, False,
         lambda v: f"{v:,.0f} calls/s")
    sizes = sorted({p.size for r in candidates for p in r.payload if p.calls})
    if sizes:
        largest = sizes[-1]
        pick(f"largest payloads ({_format_size(largest)} echoed)", lambda r: r.payload_us(largest), True,
             lambda v: f"{v / 1000:,.1f} ms per echo")
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
    """Plain-text tables: latency and rates per transport (against raw's), then the payload sweep if measured."""
    base = results["raw"].rate if "raw" in results and results["raw"].rate else None
    connections = max((r.connections for r in results.values()), default=0)
    head = (f"{'transport':<10} {'median µs':>10} {'p99 µs':>8} {'round trips/s':>14} {'x raw':>6} "
            f"{f'{connections} at once calls/s':>20}")
    lines = [head, "-" * len(head)]
    for r in results.values():
        ratio = f"{r.rate / base:.2f}" if base else "-"
        lines.append(f"{r.transport:<10} {r.median_us:>10.1f} {r.p99_us:>8.1f} {r.rate:>14,.0f} {ratio:>6} "
                     f"{r.concurrent_rate:>20,.0f}")
    sizes = sorted({p.size for r in results.values() for p in r.payload})
    if sizes:
        head = f"{'echo of':<10} " + " ".join(f"{_format_size(s):>10}" for s in sizes)
        lines += ["", head + "   (median time per echo)", "-" * len(head)]
        for r in results.values():
            lines.append(f"{r.transport:<10} " + " ".join(f"{_format_us(r.payload_us(s)):>10}" for s in sizes))
    for r in results.values():
        for error in r.errors[:3]:
            lines.append(f"  ! {r.transport}: {error}")
        if len(r.errors) > 3:
            lines.append(f"  ! {r.transport}: ... and {len(r.errors) - 3} more errors")
    return "\n".join(lines)


def format_choices(results: dict[str, Result]) -> str:
    """One line per situation: the fastest RPC transport measured, and by how much."""
    return "\n".join(f"- {choice}" for choice in choices(results))


def to_json(results: dict[str, Result], settings: Settings, seconds: float | None = None) -> dict[str, Any]:
    """Results and the conditions they were measured in, ready for json.dump."""
    base = results["raw"].rate if "raw" in results and results["raw"].rate else None
    return {
        "rpclab_bench": 1,  # the version of this layout
        "machine": {"python": platform.python_version(), "implementation": platform.python_implementation(),
                    "platform": platform.platform(), "cpus": os.cpu_count(),
                    "one_process": "client and server share this one process and its GIL"},
        "settings": asdict(settings),
        "seconds": seconds,
        "results": {
            name: {**asdict(r), "rate": r.rate, "concurrent_rate": r.concurrent_rate,
                   "vs_raw": (r.rate / base) if base else None,
                   "payload": [{**asdict(p), "mib_per_second": p.mib_per_second} for p in r.payload],
                   "limit": LIMITS.get(name, "")}
            for name, r in results.items()
        },
        "choices": [asdict(choice) for choice in choices(results)],
    }


# =========================================================================== running it


class ProgressLine:
    """A progress bar on one line of a stream (stderr by default), rewritten in place; ``finish()`` wipes it."""

    def __init__(self, stream: TextIO | None = None, width: int = 24):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.start = time.perf_counter()
        self._length = 0

    def __call__(self, done: int, total: int, what: str) -> None:
        filled = self.width * done // max(total, 1)
        text = (f"[{'#' * filled}{'-' * (self.width - filled)}] {done}/{total} {what}"
                f"  {time.perf_counter() - self.start:.0f} s")
        self.stream.write("\r" + text.ljust(self._length))
        self.stream.flush()
        self._length = len(text)

    def finish(self) -> None:
        if self._length:
            self.stream.write("\r" + " " * self._length + "\r")
            self.stream.flush()
            self._length = 0


def benchmark(transports: str | Iterable[str] | None = None, *, quick: bool = False, json_file: str | None = None,
              settings: Settings | None = None, progress: bool | TextIO | None = None,
              out: TextIO | None = None) -> dict[str, Result]:
    """What ``rpclab bench`` does, as a function: measure, print the tables and choices, optionally write JSON.

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
    print(f"Measuring {', '.join(names)}: {settings.rounds} alternating rounds ({kind} run); "
          f"client and server share this one process on {os.cpu_count()} CPUs.", file=out, flush=True)
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
    """The options of ``rpclab bench`` (the parameters of :func:`benchmark`)."""
    parser.add_argument("--quick", action="store_true", help="a small, bounded run (seconds, not minutes)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--transports", metavar="A,B", default=None,
                        help=f"measure only these (comma-separated); default all: {','.join(TRANSPORTS)}")


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """``rpclab bench [--quick] [--json FILE] [--transports A,B]``: 0 if all went well, 1 on errors, 2 on bad options."""
    if args is None or not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="rpclab bench", description="Measure every transport, in this process.")
        add_arguments(parser)
        args = parser.parse_args(args)
    try:
        names = transport_names(getattr(args, "transports", None))
    except ValueError as exc:
        print(f"rpclab bench: {exc}", file=sys.stderr)
        return 2
    try:
        results = benchmark(names, quick=getattr(args, "quick", False), json_file=getattr(args, "json", None))
    except KeyboardInterrupt:
        print("\nrpclab bench: interrupted; every server it started is stopped.", file=sys.stderr)
        return 130
    return 1 if any(r.errors for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
