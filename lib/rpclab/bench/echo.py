"""Echo servers and their clients, one per transport, as rpclab.bench measures them.

Measured in notebook 13 and by ``rpclab bench`` (through harness.py). About 600 lines because
it holds seven transports, one ``setup_<transport>`` of 30-70 lines each, side by side so that
they can be compared.

Each ``setup_<transport>()`` starts a server that sends back whatever string it
is sent (through rpclab.runtime.background, or rpclab.runtime.aio on a private event loop for
gRPC aio) and returns an :class:`Endpoint`; ``endpoint.connect(payload)``
opens a client :class:`Connection` whose ``call()`` makes one round trip
carrying ``payload`` both ways, and returns what came back::

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
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from xmlrpc.server import SimpleXMLRPCServer

from rpclab.adapters import xml_rpc
from rpclab.byhand import framing
from rpclab.runtime import background

__all__ = [
    "PAYLOAD",
    "MAX_PAYLOAD",
    "MAX_MESSAGE",
    "CALL_TIMEOUT",
    "GRPC_METHOD",
    "LIMITS",
    "Connection",
    "Endpoint",
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
MAX_MESSAGE = (
    2 * MAX_PAYLOAD
)  # the message limit every bench server and client gets: 1 MiB plus any envelope
CALL_TIMEOUT = (
    10.0  # seconds one call may take before it fails (a 1 MiB echo on a busy machine is slow)
)
GRPC_METHOD = (
    "/rpclab.bench.Bench/Echo"  # the gRPC echo method, registered by hand (no .proto of its own)
)

T = TypeVar("T")


@dataclass
class Connection:
    """One client connection: ``call()`` makes one round trip and returns the echo; ``close()``
    ends the connection.

    ``measure(max_calls, max_seconds)``, when given, runs the timing loop itself
    (the asyncio transport times its calls on its own event loop) and returns what
    rpclab.bench.measure_round_trips returns.
    """

    call: Callable[[], object]
    close: Callable[[], None]
    measure: Callable[[int, float], tuple[list[int], float]] | None = None


@dataclass
class Endpoint:
    """A running server: ``connect(payload)`` opens a Connection that echoes ``payload``;
    ``close()`` stops the server.

    ``concurrent(n, max_calls, max_seconds)``, when given, replaces the
    bench's n threads with the transport's own way of making n calls at once,
    and returns what rpclab.bench.measure_concurrent returns. ``concurrency`` says in
    words how the calls were made at once.
    """

    connect: Callable[[str], Connection]
    close: Callable[[], None]
    concurrent: Callable[[int, int, float], tuple[int, float, list[str]]] | None = None
    concurrency: str = "connections, a thread each"


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


def setup_raw() -> Endpoint:
    """A raw ping-pong: frames sent back as they came, on a thread per connection (background name
    'bench-raw')."""
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
            return memoryview(reply)[framing.HEADER.size :]

        return Connection(call, sock.close)

    return Endpoint(connect, handle.stop)


# --------------------------------------------------------------------------- socketrpc


def setup_socketrpc() -> Endpoint:
    """RPC Lab's socket RPC (notebook 04) with one method, ``echo`` ('bench-socketrpc')."""
    from rpclab.byhand import socketrpc

    server = socketrpc.serve({"echo": _echo}, name="bench-socketrpc", max_frame_size=MAX_MESSAGE)

    def connect(payload: str) -> Connection:
        client = socketrpc.connect(server.address, timeout=CALL_TIMEOUT, max_frame_size=MAX_MESSAGE)
        echo = client.echo
        return Connection(lambda: echo(payload), client.close)

    return Endpoint(connect, server.stop)


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


def setup_xmlrpc() -> Endpoint:
    """The standard library's XML-RPC server (a thread per connection) and client, HTTP/1.1 kept
    alive ('bench-xmlrpc')."""
    handle = background.serve("bench-xmlrpc", _XMLRPCEchoServer)

    def connect(payload: str) -> Connection:
        proxy = xml_rpc.connect(handle.address, timeout=CALL_TIMEOUT)
        echo = proxy.echo
        return Connection(lambda: echo(payload), proxy("close"))

    return Endpoint(connect, handle.stop)


# --------------------------------------------------------------------------- REST


def setup_rest() -> Endpoint:
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


def setup_thrift() -> Endpoint:
    """A Thrift service ``Bench.echo`` (binary protocol, framed) on rpclab.adapters.thrift's server
    ('bench-thrift')."""
    from thriftpy2.protocol import TBinaryProtocolFactory
    from thriftpy2.thrift import TClient, TProcessor
    from thriftpy2.transport import TFramedTransportFactory, TSocket

    from rpclab.adapters import thrift
    from rpclab.kv import KVStore

    module = _thrift_module()

    def make_server(address: tuple[str, int]) -> thrift.KVThriftServer:
        # The adapter's server (framed binary protocol, bounded decoding), answering the Bench
        # service instead.
        server = thrift.KVThriftServer(address, KVStore(), max_message_size=MAX_MESSAGE)
        server.processor = TProcessor(module.Bench, _ThriftEcho())
        return server

    handle = background.serve("bench-thrift", make_server)

    def connect(payload: str) -> Connection:
        ms = CALL_TIMEOUT * 1000
        transport = TFramedTransportFactory().get_transport(
            TSocket(handle.host, handle.port, socket_timeout=ms, connect_timeout=ms)
        )
        transport.open()
        client = TClient(module.Bench, TBinaryProtocolFactory().get_protocol(transport))
        echo = client.echo
        return Connection(lambda: echo(payload), client.close)

    return Endpoint(connect, handle.stop)


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


def setup_grpc() -> Endpoint:
    """gRPC's synchronous API: an Echo method served from a thread pool; each connection is its own
    channel ('bench-grpc')."""
    import grpc

    handle = background.serve_grpc(
        "bench-grpc", _grpc_echo(lambda request, context: request), max_workers=16
    )
    message = type(_grpc_message(""))

    def connect(payload: str) -> Connection:
        channel = grpc.insecure_channel(
            f"{handle.host}:{handle.port}", options=_GRPC_CHANNEL_OPTIONS
        )
        echo = channel.unary_unary(
            GRPC_METHOD,
            request_serializer=message.SerializeToString,
            response_deserializer=message.FromString,
        )
        request = _grpc_message(payload)
        return Connection(lambda: echo(request, timeout=CALL_TIMEOUT).value, channel.close)

    return Endpoint(connect, handle.stop)


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


def setup_grpc_aio() -> Endpoint:
    """grpc.aio: an async Echo method, server and clients on a private event loop in a thread
    ('bench-grpc-aio')."""
    import grpc

    from rpclab.runtime import aio

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

    return Endpoint(
        connect,
        close,
        concurrent,
        concurrency="calls in flight at once on one channel, one event loop",
    )
