"""rpclab.runtime.background: servers in threads of this process, replaced by name, stopped for
good."""

from __future__ import annotations

import socket
import socketserver
import threading
import xmlrpc.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xmlrpc.server import SimpleXMLRPCServer

import grpc
import pytest

from rpclab.runtime import background, process
from rpclab.runtime.background import BackgroundServerError


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True


def make_echo(address):
    return EchoServer(address, EchoHandler)


def echo_once(address, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(address, timeout=2) as conn:
        conn.sendall(payload)
        return conn.recv(len(payload))


def test_serve_binds_loopback_port_zero_and_answers():
    handle = background.serve("echo", make_echo)
    assert handle.host == "127.0.0.1"
    assert handle.port > 0
    assert echo_once(handle.address) == b"ping"
    assert background.running() == {"echo": handle.address}
    handle.stop()
    assert background.running() == {}
    assert not handle.running


def test_serve_works_with_xmlrpc_and_http_servers():
    def make_xmlrpc(address):
        server = SimpleXMLRPCServer(address, logRequests=False, allow_none=True)
        server.register_function(lambda a, b: a + b, "add")
        return server

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with (
        background.serve("xml", make_xmlrpc) as xml,
        background.serve("http", lambda a: ThreadingHTTPServer(a, Hello)) as http,
    ):
        with xmlrpc.client.ServerProxy(f"http://{xml.host}:{xml.port}") as proxy:
            assert proxy.add(2, 3) == 5
        with socket.create_connection(http.address, timeout=2) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = conn.makefile("rb").read()
        assert reply.endswith(b"hello")
    assert background.running() == {}


def test_replacing_by_name_thirty_times_leaks_no_thread_or_fd():
    background.serve("echo", make_echo)  # warm up: first use may open lasting descriptors
    background.stop("echo")
    threads, fds = threading.active_count(), process.open_fd_count()
    handle = None
    for _ in range(30):
        handle = background.serve("echo", make_echo)
        assert echo_once(handle.address) == b"ping"
    assert list(background.running()) == ["echo"]
    handle.stop()
    assert threading.active_count() <= threads
    assert process.open_fd_count() <= fds


def test_stop_closes_open_connections_and_ends_their_threads():
    before = set(threading.enumerate())
    handle = background.serve("echo", make_echo)
    client = socket.create_connection(handle.address, timeout=2)
    client.sendall(b"hi")
    assert client.recv(2) == b"hi"  # a handler thread is now blocked reading this connection
    handle.stop()
    assert client.recv(10) == b""  # the server closed it
    client.close()
    assert set(threading.enumerate()) <= before


def test_after_stop_the_same_port_can_be_bound_again():
    handle = background.serve("echo", make_echo)
    port = handle.port
    assert echo_once(handle.address) == b"ping"
    handle.stop()
    assert ("127.0.0.1", port) not in (process.listening_ports() or [])
    again = background.serve("echo", make_echo, port=port)
    assert again.port == port
    assert echo_once(again.address) == b"ping"
    again.stop()


def test_port_in_use_gives_a_clear_error():
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]
        with pytest.raises(
            BackgroundServerError, match=f"port {port} on 127.0.0.1 is already in use"
        ):
            background.serve("echo", lambda a: socketserver.TCPServer(a, EchoHandler), port=port)
    assert background.running() == {}


def test_a_factory_that_raises_is_explained():
    def broken(address):
        raise ValueError("no handler configured")

    with pytest.raises(
        BackgroundServerError, match="cannot start 'broken'.*ValueError: no handler configured"
    ):
        background.serve("broken", broken)


def test_a_factory_that_returns_something_else_is_refused():
    with pytest.raises(TypeError, match="lacks serve_forever"):
        background.serve("odd", lambda address: object())


@pytest.mark.parametrize("name", [None, 42, b"echo", ""])
def test_a_name_must_be_a_non_empty_string(name):
    with pytest.raises((TypeError, ValueError), match="name"):
        background.serve(name, make_echo)
    with pytest.raises((TypeError, ValueError), match="name"):
        background.serve_grpc(name, lambda server: None)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"port": -1}, "between 0 and 65,?535"),
        ({"port": 70000}, "between 0 and 65,?535"),
        ({"port": "80"}, "port must be an int"),
        ({"host": ""}, "host must be"),
    ],
)
def test_bad_host_or_port_is_refused(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        background.serve("echo", make_echo, **kwargs)


def test_make_server_must_be_callable():
    with pytest.raises(TypeError, match="make_server must be callable"):
        background.serve("echo", "not a factory")


def test_stop_twice_and_stop_unknown_name_are_harmless():
    handle = background.serve("echo", make_echo)
    handle.stop()
    handle.stop()
    assert background.stop("echo") is False
    assert background.stop_all() == []


def test_stop_all_stops_everything():
    background.serve("a", make_echo)
    background.serve("b", make_echo)
    assert sorted(background.stop_all()) == ["a", "b"]
    assert background.running() == {}


# --------------------------------------------------------------------------- gRPC


def _generic_echo(server: grpc.Server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Echo", {"Say": handler})]
    )


def grpc_echo(address, payload: bytes = b"hi") -> bytes:
    with grpc.insecure_channel(f"{address[0]}:{address[1]}") as channel:
        return channel.unary_unary("/test.Echo/Say")(payload, timeout=5)


def test_serve_grpc_answers_and_stops_its_threads():
    before = set(threading.enumerate())
    handle = background.serve_grpc("echo", _generic_echo)
    assert handle.host == "127.0.0.1" and handle.port > 0
    assert grpc_echo(handle.address) == b"hi"
    handle.stop()
    assert set(threading.enumerate()) <= before
    assert ("127.0.0.1", handle.port) not in (process.listening_ports() or [])


def test_grpc_server_cannot_share_a_port_with_another():
    first = background.serve_grpc("first", _generic_echo)
    with pytest.raises(BackgroundServerError, match="could not bind"):
        background.serve_grpc("second", _generic_echo, port=first.port)
    assert list(background.running()) == ["first"]
    assert grpc_echo(first.address) == b"hi"
    first.stop()


def test_replacing_a_grpc_server_thirty_times_leaks_no_thread_or_fd():
    background.serve_grpc("echo", _generic_echo)
    background.stop("echo")
    threads, fds = threading.active_count(), process.open_fd_count()
    for _ in range(30):
        handle = background.serve_grpc("echo", _generic_echo)
    assert grpc_echo(handle.address) == b"hi"
    handle.stop()
    assert threading.active_count() <= threads
    assert process.open_fd_count() <= fds


def test_grpc_register_that_raises_is_explained():
    def broken(server):
        raise RuntimeError("servicer missing")

    with pytest.raises(
        BackgroundServerError, match="register\\(server\\) raised RuntimeError: servicer missing"
    ):
        background.serve_grpc("broken", broken)
    assert background.running() == {}


def test_grpc_bad_max_workers():
    with pytest.raises(ValueError, match="max_workers"):
        background.serve_grpc("echo", _generic_echo, max_workers=0)


def test_a_child_process_server_is_kept_by_name_replaced_and_stopped_by_stop_all():
    stopped: list[int] = []

    def starter(n: int):
        def start():
            return ("127.0.0.1", 40000 + n), lambda timeout: stopped.append(n)

        return start

    first = background.serve_process("child", starter(1), kind="nginx")
    assert first.kind == "nginx" and background.running() == {"child": ("127.0.0.1", 40001)}
    background.serve_process("child", starter(2))  # a re-run stops the first one first
    assert stopped == [1] and not first.running
    assert background.stop_all() == ["child"] and stopped == [1, 2]
    assert background.running() == {}


def test_a_child_process_server_that_fails_to_start_is_not_kept():
    def start():
        raise RuntimeError("nginx exited with status 1")

    with pytest.raises(RuntimeError, match="status 1"):
        background.serve_process("child", start)
    assert background.running() == {}
