"""A class server survives a misbehaving learner: each of issue 12's attacks on the stacks of
gRPC, Thrift, XML-RPC and REST, reproduced in this process, and the fix that stops it.

The same attacks, all at once across network namespaces, are in tests/test_class_lab_netns.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time

import grpc
import pytest

from rpclab.runtime import background
from rpclab.runtime.background import BackgroundServerError

# --------------------------------------------------------------------------- item 6: gRPC stop


def _stuck_service(release: threading.Event, entered: threading.Event):
    def register(server):
        def stuck(request, context):
            entered.set()
            release.wait()  # a handler that never returns (until the test releases it)
            return request

        handler = grpc.method_handlers_generic_handler(
            "test.Stuck", {"Hold": grpc.unary_unary_rpc_method_handler(stuck)}
        )
        server.add_generic_rpc_handlers((handler,))

    return register


def test_grpc_stop_honours_its_timeout_with_a_handler_that_never_returns():
    release, entered = threading.Event(), threading.Event()
    handle = background.serve_grpc("stuck", _stuck_service(release, entered))
    channel = grpc.insecure_channel(f"127.0.0.1:{handle.port}")
    future = channel.unary_unary("/test.Stuck/Hold").future(b"x", timeout=30)
    try:
        assert entered.wait(10)
        started = time.monotonic()
        with pytest.raises(BackgroundServerError, match="still running"):
            handle.stop(timeout=2)
        took = time.monotonic() - started
        assert took < 4, f"stop(timeout=2) took {took:.1f} s"
    finally:
        release.set()
        future.cancel()
        channel.close()


def test_exit_does_not_wait_for_a_grpc_handler_that_never_returns():
    script = textwrap.dedent(
        """
        import threading, grpc
        from rpclab.runtime import background

        entered = threading.Event()

        def register(server):
            def stuck(request, context):
                entered.set()
                threading.Event().wait()  # never returns
            handler = grpc.method_handlers_generic_handler(
                "test.Stuck", {"Hold": grpc.unary_unary_rpc_method_handler(stuck)})
            server.add_generic_rpc_handlers((handler,))

        handle = background.serve_grpc("stuck", register)
        channel = grpc.insecure_channel(f"127.0.0.1:{handle.port}")
        call = channel.unary_unary("/test.Stuck/Hold").future(b"x", timeout=60)
        assert entered.wait(20)
        print("leaving", flush=True)
        # the interpreter exits here: background's atexit stop_all, then threading's own join
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the process did not exit within 40 s of its last line: {out!r} {err[-2000:]}")
    assert out == "leaving\n", err


# --------------------------------------------------------------------------- item 15: health Watch


def _health_watches(channel: grpc.Channel, count: int) -> list:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    watches = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=10) for _ in range(count)]
    for watch in watches:
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    return watches


def test_health_watches_through_an_interceptor_hold_no_worker_thread():
    """grpc_health's Watch is non-blocking (it holds no thread while open) only when the server
    sees its ``experimental_non_blocking`` flag: an interceptor must keep it."""
    from rpclab.grpcstack import services
    from rpclab.grpcstack.interceptors import CallLog

    calls = CallLog()
    handle = background.serve_grpc(
        "health-watch", services.register_all, max_workers=2, interceptors=[calls]
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            watches = _health_watches(channel, 4)  # twice the workers
            greeter = services.greeter
            reply = greeter.helloworld_pb2_grpc.GreeterStub(channel).SayHello(
                greeter.helloworld_pb2.HelloRequest(name="next"), timeout=3
            )
            assert reply.message == "Hello, next!"
            for watch in watches:
                watch.cancel()
    finally:
        handle.stop()
    watched = [r for r in calls.records if r.method.endswith("/Watch")]
    assert [r.code for r in watched] == ["CANCELLED"] * 4


# --------------------------------------------------------------------------- item 1: tokens

TOKEN = "s3cr3t-ada"


def _kv_stubs():
    from rpclab.grpcstack import kv_service

    return kv_service.kv_pb2, kv_service.kv_pb2_grpc


def test_without_a_token_reflection_and_health_are_refused_and_hold_no_worker():
    """Issue 12, item 1: 8 reflection streams opened without a token held all 8 workers of a
    TokenAuth server, and a token holder's Put timed out."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from rpclab.grpcstack import services
    from rpclab.grpcstack.interceptors import TokenAuth

    kv_pb2, kv_pb2_grpc = _kv_stubs()
    handle = background.serve_grpc(
        "token-kv", services.register_all, max_workers=8, interceptors=[TokenAuth([TOKEN])]
    )
    target = f"127.0.0.1:{handle.port}"
    try:
        with grpc.insecure_channel(target) as intruder, grpc.insecure_channel(target) as learner:
            streams = []
            for _ in range(8):
                requests = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                stream = reflection_pb2_grpc.ServerReflectionStub(intruder).ServerReflectionInfo(
                    requests, timeout=10
                )
                streams.append(stream)
            for stream in streams:
                with pytest.raises(grpc.RpcError) as refused:
                    next(stream)
                assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as health:
                health_pb2_grpc.HealthStub(intruder).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            assert health.value.code() is grpc.StatusCode.UNAUTHENTICATED

            auth = [("authorization", f"Bearer {TOKEN}")]
            kv_pb2_grpc.KVStub(learner).Put(
                kv_pb2.PutRequest(key="k", value="v"), metadata=auth, timeout=2
            )
            reply = health_pb2_grpc.HealthStub(learner).Check(
                health_pb2.HealthCheckRequest(), metadata=auth, timeout=2
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        handle.stop()


# --------------------------------------------------------------------------- item 2: limits

HOSTILE, HONEST = "s3cr3t-mallory", "s3cr3t-bob"


def _open_watches(stub, kv_pb2, metadata, count: int) -> tuple[list, list]:
    """Open ``count`` Watch streams; return those that opened and those that ended at once."""
    opened, refused = [], []
    for _ in range(count):
        watch = stub.Watch(kv_pb2.WatchRequest(), metadata=metadata, timeout=20)
        # the servicer sends its version once the watch is in place; a refused call sends none
        if any(key == "rpclab-version" for key, _ in watch.initial_metadata()):
            opened.append(watch)
        else:
            refused.append(watch)
    return opened, refused


def _points_until(done: threading.Event):
    """A client stream that sends nothing until ``done`` (or 20 s), then ends."""
    done.wait(20)
    return
    yield


def test_one_learner_cannot_hold_every_worker_of_a_grpc_server():
    """Issue 12, item 2: 16 Watch streams from one client held a 16-worker server."""
    from rpclab.grpcstack import services
    from rpclab.grpcstack.interceptors import TokenAuth
    from rpclab.grpcstack.limits import LearnerLimits

    kv_pb2, kv_pb2_grpc = _kv_stubs()
    auth = TokenAuth({HOSTILE: "mallory", HONEST: "bob"})
    limits = LearnerLimits(calls=8, streams=4, tokens=auth)
    handle = background.serve_grpc(
        "limited-kv", services.register_all, max_workers=16, interceptors=[auth, limits]
    )
    target = f"127.0.0.1:{handle.port}"
    mallory = [("authorization", f"Bearer {HOSTILE}")]
    bob = [("authorization", f"Bearer {HONEST}")]
    done = threading.Event()
    try:
        with grpc.insecure_channel(target) as hostile, grpc.insecure_channel(target) as honest:
            stub = kv_pb2_grpc.KVStub(hostile)
            opened, refused = _open_watches(stub, kv_pb2, mallory, 16)
            assert len(opened) == 4 and len(refused) == 12
            assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert "mallory already has 4 streams open" in refused[0].details()
            # unfinished client streams count as streams too
            route_guide = services.route_guide
            record = route_guide.route_guide_pb2_grpc.RouteGuideStub(hostile).RecordRoute
            never_ending = record.future(_points_until(done), metadata=mallory, timeout=20)
            with pytest.raises(grpc.RpcError) as extra:
                never_ending.result(timeout=10)
            assert extra.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert limits.in_progress() == {"mallory": (4, 4)}

            # everyone else is served as before, streams included
            kv = kv_pb2_grpc.KVStub(honest)
            kv.Put(kv_pb2.PutRequest(key="k", value="v"), metadata=bob, timeout=2)
            mine, none_refused = _open_watches(kv, kv_pb2, bob, 4)
            assert len(mine) == 4 and not none_refused
            for watch in opened + mine:
                watch.cancel()
        assert limits.refused == {"mallory": 13}
    finally:
        done.set()
        handle.stop()
    assert limits.in_progress() == {}


def test_a_learner_is_the_token_holder_else_the_address_without_its_port():
    from rpclab.grpcstack.interceptors import TokenAuth
    from rpclab.grpcstack.limits import LearnerLimits

    class Context:
        def __init__(self, peer: str) -> None:
            self._peer = peer

        def peer(self) -> str:
            return self._peer

    limits = LearnerLimits(tokens=TokenAuth({HONEST: "bob"}))
    bob = [("authorization", f"Bearer {HONEST}")]
    assert limits.learner(bob, Context("ipv4:10.0.0.7:5123")) == "bob"
    assert limits.learner([], Context("ipv4:10.0.0.7:5123")) == "10.0.0.7"
    assert limits.learner(None, Context("ipv6:[fd00::7]:5123")) == "fd00::7"
    with pytest.raises(ValueError, match="streams"):
        LearnerLimits(calls=2, streams=3)
    with pytest.raises(ValueError, match="calls"):
        LearnerLimits(calls=0)


# --------------------------------------------------------------------------- item 8: Thrift


def _thrift_call(name: bytes, fields: bytes) -> bytes:
    """A strict binary-protocol CALL message: header, name, sequence id 1, then ``fields``."""
    import struct

    return struct.pack(">IiI", 0x80010001, len(name), 0)[:8] + name + struct.pack(">i", 1) + fields


def _skip_bombs() -> dict[str, bytes]:
    import struct

    list_of = struct.pack(">bhb", 15, 99, 1) + struct.pack(">i", 2**31 - 1)  # field 99: list<VOID>
    unknown = struct.pack(">bhb", 15, 99, 0x7F) + struct.pack(">i", 2**31 - 1)  # list<type 127>
    map_of = struct.pack(">bhbb", 13, 99, 1, 1) + struct.pack(">i", 2**31 - 1)  # map<VOID, VOID>
    return {
        "list of VOID": _thrift_call(b"get", list_of),
        "list of type 127": _thrift_call(b"get", unknown),
        "map of VOID": _thrift_call(b"get", map_of),
    }


@pytest.mark.parametrize("name", sorted(_skip_bombs()))
def test_a_small_thrift_message_cannot_keep_a_cpu_busy(name):
    """Issue 12, item 8: thriftpy2 skipped a list of 2**31 - 1 VOID elements one by one."""
    import socket

    from rpclab.adapters import thrift
    from rpclab.byhand import framing
    from rpclab.kv import KVStore

    bomb = framing.encode_frame(_skip_bombs()[name])
    assert len(bomb) <= 28
    with thrift.serve(KVStore()) as handle:
        started = time.process_time()
        with socket.create_connection(handle.address, timeout=5) as conn:
            conn.sendall(bomb)
            assert conn.recv(1) == b""  # refused: the connection is closed at once
        assert time.process_time() - started < 1.0  # CPU seconds of this whole process
        with thrift.connect(handle.address, timeout=2) as client:
            client.put("still", "serving")
            assert client.get("still") == "serving"


def test_the_thrift_check_passes_real_messages_and_refuses_lies():
    import struct

    from thriftpy2.protocol.binary import TBinaryProtocol
    from thriftpy2.transport.memory import TMemoryBuffer

    from rpclab.adapters import thrift
    from rpclab.adapters.thrift_wire import MalformedMessage, check_message

    out = TMemoryBuffer()
    client = thrift.ThriftClient(thrift.kv_thrift.KV, TBinaryProtocol(out))
    client._send("put", key="k", value="v" * 100)  # what thriftpy2's client sends for put()
    message = out.getvalue()
    check_message(message)
    for cut in (1, 5, 20, len(message) - 1):
        with pytest.raises(MalformedMessage):
            check_message(message[:cut])
    with pytest.raises(MalformedMessage, match="follow"):
        check_message(message + b"\x00")
    nested = _thrift_call(b"get", (struct.pack(">bh", 12, 1) * 70) + b"\x00" * 71)
    with pytest.raises(MalformedMessage, match="nest"):
        check_message(nested)
    ints = struct.pack(">bhb", 15, 99, 8) + struct.pack(">i", 3) + b"\x00" * 12 + b"\x00"
    check_message(_thrift_call(b"get", ints))
    with pytest.raises(MalformedMessage, match="3 elements"):
        check_message(_thrift_call(b"get", ints[:-5] + b"\x00"))


# --------------------------------------------------------------------------- item 9: XML-RPC


def _http_exchange(address, request: bytes, timeout: float = 5.0) -> bytes:
    """Send ``request`` (without closing our side) and read until the server closes or 5 s."""
    import socket

    with socket.create_connection(address, timeout=timeout) as conn:
        conn.sendall(request)
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
            if (
                b"\r\n\r\n" in received
                and received.startswith(b"HTTP/1.")
                and (b"Connection: close" in received)
            ):
                break
        return received


_CALL = b"<?xml version='1.0'?><methodCall><methodName>keys</methodName></methodCall>"


def _xmlrpc_servers():
    from rpclab.adapters import xml_rpc
    from rpclab.bench import echo
    from rpclab.kv import KVStore

    def kv():
        handle = xml_rpc.serve(KVStore())
        return handle.address, handle.stop

    def bench():
        endpoint = echo.setup_xmlrpc()
        return background.running()["bench-xmlrpc"], endpoint.close

    return {"kv": kv, "bench echo": bench}


@pytest.mark.parametrize("server", ["kv", "bench echo"])
@pytest.mark.parametrize(
    ("length", "status"),
    [(b"-1", b"400"), (b"abc", b"400"), (b"+5", b"400"), (b"99999999999", b"413")],
)
def test_xmlrpc_refuses_a_content_length_that_is_not_a_size(server, length, status, capfd):
    """Issue 12, item 9: -1 passed the size check and the handler read until EOF; abc printed a
    traceback."""
    address, stop = _xmlrpc_servers()[server]()
    try:
        request = b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n"
        reply = _http_exchange(address, request + _CALL)
        assert reply.split(b" ", 2)[1] == status, reply
        assert b"Content-Length must be a number of bytes" in reply or status == b"413"
        no_length = _http_exchange(address, b"POST /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert no_length.split(b" ", 2)[1] == b"411"
    finally:
        stop()
    assert "Traceback" not in capfd.readouterr().err


def test_xmlrpc_bounds_a_gzip_body_once_decompressed():
    import gzip

    from rpclab.adapters import xml_rpc
    from rpclab.kv import KVStore

    bomb = gzip.compress(b"<" + b" " * (2 * xml_rpc.MAX_REQUEST_SIZE))
    with xml_rpc.serve(KVStore()) as handle:
        head = (
            b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: " + str(len(bomb)).encode() + b"\r\n\r\n"
        )
        reply = _http_exchange(handle.address, head + bomb)
    assert reply.split(b" ", 2)[1] == b"400"
    assert b"once decompressed" in reply


# --------------------------------------------------------------------------- item 11: timeouts


def _thrift_half_request() -> bytes:
    return b"\x00\x00\x00\x64" + _thrift_call(b"get", b"")[:6]  # says 100 bytes, sends 10


def _serve_guarded(kind: str, **timeouts):
    from rpclab.adapters import rest, thrift, xml_rpc
    from rpclab.kv import KVStore

    serve = {"thrift": thrift.serve, "xmlrpc": xml_rpc.serve, "rest": rest.serve}[kind]
    return serve(KVStore(), **timeouts)


_HALF_REQUESTS = {
    "thrift": _thrift_half_request(),
    "xmlrpc": b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<?xml",
    "rest": b"PUT /keys/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b'Content-Length: 100\r\n\r\n{"val',
}


def _closed_within(conn, seconds: float) -> float:
    """Seconds until the server closes ``conn`` (reading whatever it sends first)."""
    started = time.monotonic()
    conn.settimeout(seconds)
    try:
        while conn.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {seconds} s")
    return time.monotonic() - started


@pytest.mark.parametrize("kind", ["thrift", "xmlrpc", "rest"])
def test_a_half_sent_request_times_out(kind):
    """Issue 12, item 11: Thrift, XML-RPC and REST servers held a half-sent request forever."""
    import socket

    with _serve_guarded(kind, request_timeout=1.0, idle_timeout=30.0) as handle:
        with socket.create_connection(handle.address, timeout=5) as conn:
            conn.sendall(_HALF_REQUESTS[kind])
            assert _closed_within(conn, 6.0) < 4.0


@pytest.mark.parametrize("kind", ["thrift", "xmlrpc", "rest"])
def test_a_request_sent_a_byte_at_a_time_times_out_as_a_whole(kind):
    import socket

    request = _HALF_REQUESTS[kind]
    with _serve_guarded(kind, request_timeout=1.0, idle_timeout=30.0) as handle:
        with socket.create_connection(handle.address, timeout=5) as conn:
            started = time.monotonic()
            try:
                for byte in request:  # one byte every 0.2 s: each read is quick, the whole is not
                    conn.sendall(bytes([byte]))
                    time.sleep(0.2)
                    if time.monotonic() - started > 8:
                        break
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert _closed_within(conn, 6.0) + (time.monotonic() - started) < 5.0


@pytest.mark.parametrize("kind", ["thrift", "xmlrpc", "rest"])
def test_an_idle_connection_is_closed_and_a_busy_one_is_not(kind):
    import socket

    with _serve_guarded(kind, request_timeout=5.0, idle_timeout=1.0) as handle:
        with socket.create_connection(handle.address, timeout=5) as conn:
            assert _closed_within(conn, 6.0) < 4.0
        # an honest client's calls, each within the idle time of the last, keep working
        if kind == "thrift":
            from rpclab.adapters import thrift

            with thrift.connect(handle.address, timeout=2) as client:
                for n in range(3):
                    client.put("k", str(n))
                    time.sleep(0.5)
                assert client.get("k") == "2"


# --------------------------------------------------------------------------- item 13: REST


@pytest.mark.parametrize(
    "body",
    [b'{"value": "\\ud800"}', b'{"value": "ok\\udfff"}', b'{"amount": "\\ud800"}'],
    ids=["value", "trailing low surrogate", "amount"],
)
def test_rest_answers_a_lone_surrogate_with_400_not_500(body, capfd):
    """Issue 12, item 13: FastAPI echoed the invalid input back, could not encode it: 500."""
    from rpclab.adapters import rest
    from rpclab.kv import KVStore

    with rest.serve(KVStore()) as handle, rest.connect(handle.address, timeout=5) as client:
        method, path = ("POST", "/keys/n/increment") if b"amount" in body else ("PUT", "/keys/k")
        status, reply = client.request(method, path, json.loads(body))
        assert status == 400, reply
        assert "not valid Unicode text" in reply["detail"]
        client.put("k", "still serving")
        assert client.keys() == ["k"]
    assert "Traceback" not in capfd.readouterr().err


def test_rest_stop_does_not_wait_for_a_stalled_client(capfd):
    """Issue 12, item 13: a client that sent half a body made stop() wait its full grace and
    print CancelledError."""
    import socket

    from rpclab.adapters import rest
    from rpclab.kv import KVStore

    handle = rest.serve(KVStore())
    with socket.create_connection(handle.address, timeout=5) as stalled:
        stalled.sendall(_HALF_REQUESTS["rest"])
        with rest.connect(handle.address) as client:
            client.put("k", "v")  # the server has read the stalled request's head by now
        started = time.monotonic()
        handle.stop()
        assert time.monotonic() - started < rest.SHUTDOWN_GRACE / 2
    err = capfd.readouterr().err
    assert "CancelledError" not in err and "Traceback" not in err


# --------------------------------------------------------------------------- connection limits


@pytest.mark.parametrize("kind", ["thrift", "xmlrpc", "rest"])
def test_connections_over_the_per_address_limit_are_refused_and_counted_back(kind):
    import socket

    from rpclab.runtime.guard import ConnectionLimits

    limits = ConnectionLimits(per_address=2, total=10)
    with _serve_guarded(kind, limits=limits) as handle:
        held = [socket.create_connection(handle.address, timeout=5) for _ in range(2)]
        try:
            deadline = time.monotonic() + 5
            while limits.open() != {"127.0.0.1": 2} and time.monotonic() < deadline:
                time.sleep(0.01)  # the accept loop admits them in its own thread
            assert limits.open() == {"127.0.0.1": 2}
            with socket.create_connection(handle.address, timeout=5) as third:
                answer = b""
                try:
                    while chunk := third.recv(4096):
                        answer += chunk
                except ConnectionResetError:
                    pass
            if kind != "thrift":  # the HTTP stacks say why before closing
                assert answer.startswith(b"HTTP/1.1 503 ")
                assert b"127.0.0.1 already has 2 connections open" in answer
            else:
                assert answer == b""
        finally:
            for conn in held:
                conn.close()
        deadline = time.monotonic() + 5
        while limits.open() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert limits.open() == {}
        with socket.create_connection(handle.address, timeout=5):
            pass  # admitted again


def test_connection_limits_count_per_address_and_in_all():
    from rpclab.runtime.guard import ConnectionLimits

    limits = ConnectionLimits(per_address=2, total=3)
    assert limits.admit("a") is None and limits.admit("a") is None
    assert "a already has 2" in limits.admit("a")
    assert limits.admit("b") is None
    assert "3 connections open, its limit" in limits.admit("c")
    limits.release("a")
    limits.release("nobody")  # harmless
    assert limits.admit("c") is None
    assert limits.open() == {"a": 1, "b": 1, "c": 1}
    with pytest.raises(ValueError, match="per_address"):
        ConnectionLimits(per_address=0)


# --------------------------------------------------------------------------- tokens over HTTP


def test_xmlrpc_and_rest_need_the_bearer_token_when_given_tokens():
    import xmlrpc.client

    from rpclab.adapters import rest, xml_rpc
    from rpclab.kv import KVStore

    tokens = {HONEST: "bob"}
    store = KVStore()
    with xml_rpc.serve(store, tokens=tokens) as x, rest.serve(store, tokens=tokens) as r:
        with pytest.raises(xmlrpc.client.ProtocolError) as refused:
            xml_rpc.connect(x.address).keys()
        assert refused.value.errcode == 401 and "needs a token" in refused.value.errmsg
        with pytest.raises(xmlrpc.client.ProtocolError) as wrong:
            xml_rpc.connect(x.address, token=HOSTILE).keys()
        assert wrong.value.errcode == 401 and "not valid" in wrong.value.errmsg
        xml_rpc.connect(x.address, token=HONEST).put("k", "v")
        with rest.connect(r.address) as anonymous:
            with pytest.raises(rest.RESTError) as no_token:
                anonymous.keys()
            assert no_token.value.status == 401
        with rest.connect(r.address, token=HONEST) as client:
            assert client.get("k") == "v"


def test_a_token_file_is_read_strictly(tmp_path):
    from rpclab import tokens

    good = tmp_path / "tokens.txt"
    ada, bob = tokens.make_token(), tokens.make_token()
    good.write_text(f"# class of 2\nada {ada}\n\nbob   {bob}\n")
    assert tokens.read_token_file(good) == {ada: "ada", bob: "bob"}
    for text, reason in [
        (f"ada {ada} extra\n", "expected 'NAME TOKEN'"),
        ("ada short\n", "token must be"),
        (f"ada {ada}\nada {bob}\n", "ada has a token already"),
        (f"ada {ada}\nbob {ada}\n", "also ada's"),
        (f"-x {ada}\n", "a name is"),
        ("# nobody\n", "holds no"),
    ]:
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(tokens.TokenFileError, match=reason):
            tokens.read_token_file(bad)
    with pytest.raises(tokens.TokenFileError, match="cannot read"):
        tokens.read_token_file(tmp_path / "missing.txt")
