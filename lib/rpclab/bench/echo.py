"""Echo servers and their clients, one per transport, as rpclab.bench measures them.

Measured in notebook 13 and by ``rpclab bench`` (through harness.py). About 900 lines because
it holds seven transports side by side, each a server and a client of 20-60 lines, so that
they can be compared; and, in EXTRAS, the ``queue`` server of notebook 13's load experiments
and ``json-floor``, the least work any JSON-RPC in Python must do (a floor for the socket RPC).

Each :class:`Transport` has two halves, so that its server can run in this process or in
another one (rpclab.bench.server_process) while the client stays here:

* ``transport.serve()`` starts an echo server in *this* process (through
  rpclab.runtime.background, or an event loop thread of its own for gRPC aio) and returns a
  :class:`Served`: its address and how to stop it;
* ``transport.client(address)`` returns a :class:`Client` for a server at ``address``, wherever
  it runs; ``client.connect(payload)`` opens a :class:`Connection` whose ``call()`` makes one
  round trip carrying ``payload`` both ways, and returns what came back.

:func:`in_kernel` puts both halves in this process as one :class:`Endpoint`, which is what
``setup_<transport>()`` returns::

    endpoint = echo.setup_grpc()
    conn = endpoint.connect("hello")
    conn.call()                      # 'hello', by way of a gRPC server in this process
    conn.close(); endpoint.close()

Where a stack's own message limit is below 1 MiB plus its envelope, the
server and client here allow :data:`MAX_MESSAGE` (2 MiB); :data:`LIMITS` says
which were raised. Every call gives up after :data:`CALL_TIMEOUT` seconds.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar
from xmlrpc.server import SimpleXMLRPCServer

import orjson

from rpclab.adapters import xml_rpc
from rpclab.byhand import framing
from rpclab.runtime import background

__all__ = [
    "PAYLOAD",
    "MAX_PAYLOAD",
    "MAX_MESSAGE",
    "CALL_TIMEOUT",
    "NOT_RPC",
    "GRPC_METHOD",
    "LIMITS",
    "Calls",
    "Connection",
    "Served",
    "Client",
    "Endpoint",
    "Transport",
    "TRANSPORTS",
    "EXTRAS",
    "QUEUE_SERVICE_S",
    "in_kernel",
    "time_round_trips",
    "setup_raw",
    "setup_socketrpc",
    "setup_xmlrpc",
    "setup_rest",
    "setup_thrift",
    "setup_grpc",
    "setup_grpc_aio",
]

PAYLOAD = "x" * 32  # what each call echoes, unless a payload size says otherwise
MAX_PAYLOAD = 1024 * 1024  # the largest payload a sweep may echo: 1 MiB
MAX_MESSAGE = 2 * MAX_PAYLOAD  # the message limit every bench server and client gets
NOT_RPC = frozenset({"raw", "json-floor"})  # measuring sticks: never chosen as the best RPC
CALL_TIMEOUT = 10.0  # seconds one call may take before it fails (a 1 MiB echo on a busy machine)
GRPC_METHOD = "/rpclab.bench.Bench/Echo"  # registered by hand (no .proto of its own)

T = TypeVar("T")


class Calls(NamedTuple):
    """One timing loop: each call's latency (ns), the loop's wall time (s), and the CPU time the
    thread that ran the loop used (ns)."""

    latencies: list[int]
    seconds: float
    thread_cpu_ns: int


def time_round_trips(call: Callable[[], object], max_calls: int, max_seconds: float) -> Calls:
    """Call ``call()`` until ``max_calls`` or ``max_seconds``; time each call, and the loop's
    wall and CPU time."""
    clock = time.perf_counter_ns
    latencies: list[int] = []
    record = latencies.append
    cpu_before = time.thread_time_ns()
    start = clock()
    stop_at = start + int(max_seconds * 1e9)
    for _ in range(max_calls):
        before = clock()
        call()
        after = clock()
        record(after - before)
        if after >= stop_at:
            break
    seconds = (clock() - start) / 1e9
    return Calls(latencies, seconds, time.thread_time_ns() - cpu_before)


@dataclass
class Connection:
    """One client connection: ``call()`` makes one round trip and returns the echo; ``close()``
    ends the connection.

    ``measure(max_calls, max_seconds)``, when given, runs the timing loop itself (the asyncio
    transport times its calls on its own event loop) and returns :class:`Calls`.
    """

    call: Callable[[], object]
    close: Callable[[], None]
    measure: Callable[[int, float], Calls] | None = None


@dataclass
class Served:
    """An echo server running in this process: where it listens, and ``stop()``."""

    address: tuple[str, int]
    stop: Callable[[], None]


def _no_threads() -> list[int]:
    return []


@dataclass
class Client:
    """The client half of a transport, for one server address.

    ``concurrent(n, max_calls, max_seconds)``, when given, replaces the bench's n threads with
    the transport's own way of making n calls at once (returns calls, seconds, errors);
    ``concurrency`` says how, in words. ``threads()`` are the native ids of threads the client
    runs its calls on (an event loop's), which rpclab.bench.placement pins with the caller.
    """

    connect: Callable[[str], Connection]
    close: Callable[[], None] = lambda: None
    concurrent: Callable[[int, int, float], tuple[int, float, list[str]]] | None = None
    concurrency: str = "connections, a thread each"
    threads: Callable[[], list[int]] = _no_threads


@dataclass
class Endpoint:
    """A running server and a client for it: ``connect(payload)`` opens a Connection that echoes
    ``payload``; ``close()`` stops both.

    ``concurrent`` and ``concurrency`` are the client's (see :class:`Client`). ``server_pid`` is
    the process the server runs in when it is not this one, and ``server_cpu_ns()`` the CPU time
    that process has used so far (ns); both are None for a server in this process.
    """

    connect: Callable[[str], Connection]
    close: Callable[[], None]
    concurrent: Callable[[int, int, float], tuple[int, float, list[str]]] | None = None
    concurrency: str = "connections, a thread each"
    server_pid: int | None = None
    server_cpu_ns: Callable[[], int] | None = None
    client_threads: Callable[[], list[int]] = field(default=_no_threads)


@dataclass(frozen=True)
class Transport:
    """One way to make the echo call: its server half, its client half, and what it is."""

    name: str
    description: str
    serve: Callable[[], Served]
    client: Callable[[tuple[str, int]], Client]


def in_kernel(transport: Transport) -> Endpoint:
    """Start ``transport``'s server in this process and a client for it: one Endpoint."""
    served = transport.serve()
    try:
        client = transport.client(served.address)
    except BaseException:
        served.stop()
        raise

    def close() -> None:
        try:
            client.close()
        finally:
            served.stop()

    return Endpoint(
        client.connect,
        close,
        client.concurrent,
        client.concurrency,
        client_threads=client.threads,
    )


# Each transport's message limit, and whether it was raised here (to MAX_MESSAGE) to carry a 1 MiB
# payload.
LIMITS: dict[str, str] = {
    "raw": "rpclab.byhand.framing refuses frames over 1 MiB: raised to 2 MiB, both ends",
    "socketrpc": "max_frame_size 1 MiB by default: raised to 2 MiB, client and server",
    "xmlrpc": "rpclab.adapters.xml_rpc refuses requests over 1 MiB: the bench's echo server allows "
    "2 MiB",
    "rest": "rpclab.adapters.rest refuses bodies over 128 KiB: the bench's echo app allows 2 MiB",
    "thrift": "rpclab.adapters.thrift refuses messages over 1 MiB: raised to 2 MiB",
    "grpc": "gRPC receives messages up to 4 MiB by default: unchanged",
    "grpc-aio": "gRPC receives messages up to 4 MiB by default: unchanged",
}


def _echo(text: str) -> str:
    return text


def _set_timeouts(sock: socket.socket, seconds: float) -> None:
    """A blocking socket whose reads and writes fail after ``seconds`` (kernel timeouts: no extra
    system call per read)."""
    sock.settimeout(None)
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def _handle(name: str, make_server: Callable[[tuple[str, int]], Any]) -> Served:
    handle = background.serve(name, make_server)
    return Served(handle.address, handle.stop)


# --------------------------------------------------------------------------- raw


RECV_SIZE = 64 * 1024


def _recv_raw_frame(sock: socket.socket) -> bytes | bytearray | None:
    """One whole frame (header included) in as few recv calls as the stream allows; None at end of
    stream."""
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


def serve_raw() -> Served:
    """A raw ping-pong: frames sent back as they came, on a thread per connection ('bench-raw')."""
    return _handle("bench-raw", lambda address: _RawServer(address, _RawEcho))


def client_raw(address: tuple[str, int]) -> Client:
    def connect(payload: str) -> Connection:
        message = framing.encode_frame(payload.encode(), MAX_MESSAGE)
        sock = socket.create_connection(address, timeout=CALL_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _set_timeouts(sock, CALL_TIMEOUT)  # blocking: the cheapest read there is, and still bounded

        def call() -> object:
            sock.sendall(message)
            reply = _recv_raw_frame(sock)
            if reply is None:
                raise ConnectionError("the raw echo server closed the connection")
            return memoryview(reply)[framing.HEADER.size :]

        return Connection(call, sock.close)

    return Client(connect)


# --------------------------------------------------------------------------- json-floor


_FLOOR_METHODS = {"echo": _echo}


def _json_floor_reply(frame: bytes | bytearray) -> bytes:
    request = orjson.loads(memoryview(frame)[framing.HEADER.size :])
    result = _FLOOR_METHODS[request["method"]](*request["params"])
    reply = orjson.dumps({"jsonrpc": "2.0", "result": result, "id": request["id"]})
    return framing.HEADER.pack(len(reply)) + reply


class _JSONFloorEcho(socketserver.BaseRequestHandler):
    """Decode the request, look its method up, call it, encode the reply: the least a JSON-RPC
    server must do, with no checks at all (a bad request just ends the connection)."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while (frame := _recv_raw_frame(sock)) is not None:
                sock.sendall(_json_floor_reply(frame))
        except (OSError, framing.FramingError, ValueError, LookupError, TypeError):
            return  # closed, or not the request this floor knows: drop the connection


def serve_json_floor() -> Served:
    """The least JSON-RPC work in Python on raw's framing ('bench-json-floor'): a floor, not an
    RPC anyone should use."""
    return _handle("bench-json-floor", lambda address: _RawServer(address, _JSONFloorEcho))


def client_json_floor(address: tuple[str, int]) -> Client:
    def connect(payload: str) -> Connection:
        sock = socket.create_connection(address, timeout=CALL_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _set_timeouts(sock, CALL_TIMEOUT)
        numbers = itertools.count(1)

        def call() -> object:
            request_id = next(numbers)
            data = orjson.dumps(
                {"jsonrpc": "2.0", "method": "echo", "params": [payload], "id": request_id}
            )
            sock.sendall(framing.HEADER.pack(len(data)) + data)
            frame = _recv_raw_frame(sock)
            if frame is None:
                raise ConnectionError("the json-floor echo server closed the connection")
            reply = orjson.loads(memoryview(frame)[framing.HEADER.size :])
            if reply["id"] != request_id:
                raise ConnectionError(f"a reply to call {reply['id']!r}, not {request_id}")
            return reply["result"]

        return Connection(call, sock.close)

    return Client(connect)


# --------------------------------------------------------------------------- socketrpc


def serve_socketrpc() -> Served:
    """RPC Lab's socket RPC (notebook 04) with one method, ``echo`` ('bench-socketrpc')."""
    from rpclab.byhand import socketrpc

    server = socketrpc.serve({"echo": _echo}, name="bench-socketrpc", max_frame_size=MAX_MESSAGE)
    return Served(server.address, server.stop)


def client_socketrpc(address: tuple[str, int]) -> Client:
    from rpclab.byhand import socketrpc

    def connect(payload: str) -> Connection:
        client = socketrpc.connect(address, timeout=CALL_TIMEOUT, max_frame_size=MAX_MESSAGE)
        echo = client.echo
        return Connection(lambda: echo(payload), client.close)

    return Client(connect)


# --------------------------------------------------------------------------- XML-RPC


class _XMLRPCEchoHandler(xml_rpc.BoundedRequestHandler):
    """rpclab.adapters.xml_rpc's handler (HTTP/1.1 kept alive, a strict Content-Length, no
    logging), with requests bounded to MAX_MESSAGE bytes."""

    rpc_paths = ("/RPC2",)
    max_request_size = MAX_MESSAGE


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


def serve_xmlrpc() -> Served:
    """The standard library's XML-RPC server (a thread per connection) ('bench-xmlrpc')."""
    return _handle("bench-xmlrpc", _XMLRPCEchoServer)


def client_xmlrpc(address: tuple[str, int]) -> Client:
    def connect(payload: str) -> Connection:
        proxy = xml_rpc.connect(address, timeout=CALL_TIMEOUT)
        echo = proxy.echo
        return Connection(lambda: echo(payload), proxy("close"))

    return Client(connect)


# --------------------------------------------------------------------------- REST


def serve_rest() -> Served:
    """FastAPI on uvicorn: POST /echo with a JSON body {"value": ...}, answered with the same body
    ('bench-rest')."""
    from fastapi import FastAPI
    from pydantic import BaseModel, StrictStr

    from rpclab.adapters import rest

    class Echo(BaseModel):
        value: StrictStr

    app = FastAPI(
        title="RPC Lab bench",
        max_body_size=MAX_MESSAGE,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    async def echo(body):  # type: ignore[no-untyped-def]
        return body

    # Classes, not strings (this module's annotations are strings, and Echo is local): FastAPI reads
    # them.
    echo.__annotations__ = {"body": Echo, "return": Echo}
    app.post("/echo", response_model=Echo)(echo)
    return _handle("bench-rest", lambda address: rest.UvicornServer(app, address))


def client_rest(address: tuple[str, int]) -> Client:
    from rpclab.adapters import rest

    def connect(payload: str) -> Connection:
        client = rest.connect(address, timeout=CALL_TIMEOUT)
        body = {"value": payload}

        def call() -> object:
            status, data = client.request("POST", "/echo", body)
            if status != 200:
                raise rest.RESTError(status, data)
            return data["value"]

        return Connection(call, client.close)

    return Client(connect)


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


def serve_thrift() -> Served:
    """A Thrift service ``Bench.echo`` (binary protocol, framed) on rpclab.adapters.thrift's server
    ('bench-thrift')."""
    from thriftpy2.thrift import TProcessor

    from rpclab.adapters import thrift
    from rpclab.kv import KVStore

    module = _thrift_module()

    def make_server(address: tuple[str, int]) -> thrift.KVThriftServer:
        # The adapter's server (framed binary protocol, bounded decoding), answering the Bench
        # service instead.
        server = thrift.KVThriftServer(address, KVStore(), max_message_size=MAX_MESSAGE)
        server.processor = TProcessor(module.Bench, _ThriftEcho())
        return server

    return _handle("bench-thrift", make_server)


def client_thrift(address: tuple[str, int]) -> Client:
    from thriftpy2.protocol import TBinaryProtocolFactory
    from thriftpy2.thrift import TClient
    from thriftpy2.transport import TFramedTransportFactory, TSocket

    module = _thrift_module()

    def connect(payload: str) -> Connection:
        ms = CALL_TIMEOUT * 1000
        transport = TFramedTransportFactory().get_transport(
            TSocket(address[0], address[1], socket_timeout=ms, connect_timeout=ms)
        )
        transport.open()
        client = TClient(module.Bench, TBinaryProtocolFactory().get_protocol(transport))
        echo = client.echo
        return Connection(lambda: echo(payload), client.close)

    return Client(connect)


# --------------------------------------------------------------------------- gRPC


def _grpc_echo(behaviour: Callable[..., Any]) -> Callable[[Any], None]:
    """``register(server)`` adding an Echo method that returns its request (kv.proto's GetReply: one
    string field)."""
    import grpc

    from rpclab.grpcstack import protos

    kv_pb2, _ = protos.load("kv")
    message = kv_pb2.GetReply
    handler = grpc.method_handlers_generic_handler(
        GRPC_METHOD.split("/")[1],
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=message.FromString,
                response_serializer=message.SerializeToString,
            )
        },
    )
    return lambda server: server.add_generic_rpc_handlers((handler,))


def _grpc_message(payload: str) -> Any:
    from rpclab.grpcstack import protos

    kv_pb2, _ = protos.load("kv")
    return kv_pb2.GetReply(value=payload)


# Each channel gets its own TCP connection (by default, channels to one address may share one).
_GRPC_CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)


def serve_grpc() -> Served:
    """gRPC's synchronous API: an Echo method served from a thread pool ('bench-grpc')."""
    handle = background.serve_grpc(
        "bench-grpc", _grpc_echo(lambda request, context: request), max_workers=16
    )
    return Served(handle.address, handle.stop)


def client_grpc(address: tuple[str, int]) -> Client:
    """Each connection is a channel of its own."""
    import grpc

    message = type(_grpc_message(""))

    def connect(payload: str) -> Connection:
        channel = grpc.insecure_channel(f"{address[0]}:{address[1]}", options=_GRPC_CHANNEL_OPTIONS)
        echo = channel.unary_unary(
            GRPC_METHOD,
            request_serializer=message.SerializeToString,
            response_deserializer=message.FromString,
        )
        request = _grpc_message(payload)
        return Connection(lambda: echo(request, timeout=CALL_TIMEOUT).value, channel.close)

    return Client(connect)


class _LoopThread:
    """A private asyncio event loop running in a thread of its own, stopped and closed by
    ``close()``."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coroutine`` on the loop and wait for it, at most ``timeout`` seconds (then it is
        cancelled)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()  # a timeout, or Ctrl-C: do not leave it running
            raise

    def native_ids(self) -> list[int]:
        return [self.thread.native_id] if self.thread.native_id is not None else []

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


def serve_grpc_aio() -> Served:
    """grpc.aio: an async Echo method on an event loop in a thread of its own
    ('bench-grpc-aio')."""
    from rpclab.runtime import aio

    async def echo(request: Any, context: Any) -> Any:
        return request

    worker = _LoopThread("rpclab-bench-aio-server")
    try:
        handle = worker.run(aio.serve_aio("bench-grpc-aio", _grpc_echo(echo)), CALL_TIMEOUT)
    except BaseException:
        worker.close()
        raise

    def stop() -> None:
        try:
            worker.run(handle.stop(grace=0), CALL_TIMEOUT)
        finally:
            worker.close()

    return Served(handle.address, stop)


def client_grpc_aio(address: tuple[str, int]) -> Client:
    """grpc.aio channels on an event loop in a thread of its own: calls are timed on that loop."""
    import grpc

    message = type(_grpc_message(""))
    worker = _LoopThread("rpclab-bench-aio-client")
    channels: set[Any] = set()
    target = f"{address[0]}:{address[1]}"

    async def open_channel() -> tuple[Any, Any]:
        channel = grpc.aio.insecure_channel(target, options=_GRPC_CHANNEL_OPTIONS)
        channels.add(channel)
        return channel, channel.unary_unary(
            GRPC_METHOD,
            request_serializer=message.SerializeToString,
            response_deserializer=message.FromString,
        )

    async def close_channel(channel: Any) -> None:
        channels.discard(channel)
        await channel.close()

    def connect(payload: str) -> Connection:
        channel, stub = worker.run(open_channel(), CALL_TIMEOUT)
        request = _grpc_message(payload)

        async def one() -> str:
            return (await stub(request, timeout=CALL_TIMEOUT)).value

        async def timed(max_calls: int, max_seconds: float) -> Calls:
            clock = time.perf_counter_ns
            latencies: list[int] = []
            cpu_before = time.thread_time_ns()
            start = clock()
            stop_at = start + int(max_seconds * 1e9)
            for _ in range(max_calls):
                before = clock()
                await stub(request, timeout=CALL_TIMEOUT)
                after = clock()
                latencies.append(after - before)
                if after >= stop_at:
                    break
            seconds = (clock() - start) / 1e9
            return Calls(latencies, seconds, time.thread_time_ns() - cpu_before)

        return Connection(
            call=lambda: worker.run(one(), CALL_TIMEOUT + 1),
            close=lambda: worker.run(close_channel(channel), CALL_TIMEOUT),
            measure=lambda max_calls, max_seconds: worker.run(
                timed(max_calls, max_seconds), max_seconds + CALL_TIMEOUT + 1
            ),
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
                        if time.perf_counter() >= stop_at:
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
        async def close_all() -> None:
            for channel in list(channels):
                await close_channel(channel)

        try:
            worker.run(close_all(), CALL_TIMEOUT)
        finally:
            worker.close()

    return Client(
        connect,
        close,
        concurrent,
        concurrency="calls in flight at once on one channel, one event loop",
        threads=worker.native_ids,
    )


# --------------------------------------------------------------------------- the registry

TRANSPORTS: dict[str, Transport] = {
    t.name: t
    for t in (
        Transport(
            "raw",
            "length-prefixed bytes over TCP, echoed as they came: the limit",
            serve_raw,
            client_raw,
        ),
        Transport(
            "socketrpc",
            "RPC Lab's JSON-RPC over TCP (notebook 04), a thread per connection",
            serve_socketrpc,
            client_socketrpc,
        ),
        Transport(
            "xmlrpc",
            "XML in HTTP/1.1 POSTs, the standard library's client and server",
            serve_xmlrpc,
            client_xmlrpc,
        ),
        Transport(
            "rest",
            "JSON in HTTP/1.1 POSTs, FastAPI on uvicorn (one event loop thread)",
            serve_rest,
            client_rest,
        ),
        Transport(
            "thrift",
            "Thrift binary protocol, framed, thriftpy2 (a thread per connection)",
            serve_thrift,
            client_thrift,
        ),
        Transport(
            "grpc",
            "protobuf over HTTP/2, gRPC's synchronous API (a thread pool serves calls)",
            serve_grpc,
            client_grpc,
        ),
        Transport(
            "grpc-aio",
            "protobuf over HTTP/2, grpc.aio: server and client each on an event loop thread",
            serve_grpc_aio,
            client_grpc_aio,
        ),
    )
}


# --------------------------------------------------------------------------- a queue, for load

QUEUE_SERVICE_S = 0.002  # how long the queue server holds each call
_queue_lock = threading.Lock()  # one call at a time, across every connection of the server


def _held_echo(text: str) -> str:
    with _queue_lock:
        time.sleep(QUEUE_SERVICE_S)  # the service: a fixed time, standing in for real work
    return text


def serve_queue() -> Served:
    """The socket RPC's echo, one call at a time, each holding the server ``QUEUE_SERVICE_S``
    seconds: a single server with a known service time, for load experiments ('bench-queue')."""
    from rpclab.byhand import socketrpc

    server = socketrpc.serve({"echo": _held_echo}, name="bench-queue", max_frame_size=MAX_MESSAGE)
    return Served(server.address, server.stop)


# Servers the bench's server process can also run, which rpclab.bench measures only when named
# (``rpclab bench --transports raw,json-floor,socketrpc``).
EXTRAS: dict[str, Transport] = {
    "json-floor": Transport(
        "json-floor",
        "the least JSON-RPC work in Python: raw's framing, orjson both ways, no checks (a floor "
        "for the socket RPC, not an RPC to use)",
        serve_json_floor,
        client_json_floor,
    ),
    "queue": Transport(
        "queue",
        f"the socket RPC's echo, one call at a time, each taking {QUEUE_SERVICE_S * 1000:g} ms",
        serve_queue,
        client_socketrpc,
    ),
}


def setup_raw() -> Endpoint:
    """The raw ping-pong, server and client in this process."""
    return in_kernel(TRANSPORTS["raw"])


def setup_socketrpc() -> Endpoint:
    """The socket RPC, server and client in this process."""
    return in_kernel(TRANSPORTS["socketrpc"])


def setup_xmlrpc() -> Endpoint:
    """XML-RPC, server and client in this process."""
    return in_kernel(TRANSPORTS["xmlrpc"])


def setup_rest() -> Endpoint:
    """REST (FastAPI on uvicorn), server and client in this process."""
    return in_kernel(TRANSPORTS["rest"])


def setup_thrift() -> Endpoint:
    """Thrift, server and client in this process."""
    return in_kernel(TRANSPORTS["thrift"])


def setup_grpc() -> Endpoint:
    """gRPC's synchronous API, server and client in this process."""
    return in_kernel(TRANSPORTS["grpc"])


def setup_grpc_aio() -> Endpoint:
    """grpc.aio, server and client in this process (an event loop thread each)."""
    return in_kernel(TRANSPORTS["grpc-aio"])
