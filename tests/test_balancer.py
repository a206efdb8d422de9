"""rpclab.grpcstack.balancer: a round-robin TCP (L4) balancer that passes bytes through untouched
and stops cleanly."""

from __future__ import annotations

import socket
import socketserver
import threading

import pytest

from rpclab.grpcstack import balancer
from rpclab.runtime import background


def _recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def named_echo(name: str) -> background.ServerHandle:
    """A server that sends its name, then echoes everything until the client half-closes, then
    closes."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(name.encode() + b"\n")
            try:
                while data := self.request.recv(65536):
                    self.request.sendall(data)
            except OSError:
                pass

    return background.serve(name, lambda address: _Server(address, Handler))


@pytest.fixture
def upstreams():
    handles = [named_echo(f"up-{i}") for i in (1, 2, 3)]
    yield handles
    for h in handles:
        h.stop()


def greeting_of(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        assert chunk, "the connection closed before the upstream said its name"
        data += chunk
    return data.decode().strip()


def test_each_new_connection_goes_to_the_next_upstream(upstreams):
    with balancer.serve_balancer("lb-test", {h.name: h for h in upstreams}) as lb:
        seen = []
        for _ in range(6):
            with socket.create_connection(lb.address, timeout=2) as sock:
                seen.append(greeting_of(sock))
        assert seen == ["up-1", "up-2", "up-3", "up-1", "up-2", "up-3"]
        assert lb.connections == {"up-1": 2, "up-2": 2, "up-3": 2}


def test_everything_on_one_connection_reaches_one_upstream(upstreams):
    with balancer.serve_balancer("lb-test", upstreams) as lb:
        with socket.create_connection(lb.address, timeout=2) as sock:
            first = greeting_of(sock)
            for i in range(20):
                sock.sendall(b"message %d\n" % i)
                assert sock.recv(100) == b"message %d\n" % i
        assert first == "up-1"
        assert sorted(lb.connections.values()) == [0, 0, 1]


def test_a_megabyte_passes_through_intact_both_ways_with_half_close(upstreams):
    payload = bytes(range(256)) * 4096  # 1 MiB, more than the balancer buffers per direction
    with balancer.serve_balancer("lb-test", upstreams[:1]) as lb:
        with socket.create_connection(lb.address, timeout=5) as sock:
            assert greeting_of(sock) == "up-1"
            sender = threading.Thread(
                target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR))
            )
            sender.start()
            echoed = _recv_all(sock)  # the upstream closes after our half-close reaches it
            sender.join(5)
        assert echoed == payload


def test_a_down_upstream_is_skipped_and_all_down_closes_the_connection(upstreams):
    dead = socket.create_server(("127.0.0.1", 0))
    dead_address = dead.getsockname()
    dead.close()  # nothing listens here now
    with balancer.serve_balancer("lb-test", {"dead": dead_address, "alive": upstreams[0]}) as lb:
        with socket.create_connection(lb.address, timeout=2) as sock:
            assert greeting_of(sock) == "up-1"
        assert lb.connections == {"dead": 0, "alive": 1}
    with balancer.serve_balancer("lb-test", {"dead": dead_address}) as lb:
        with socket.create_connection(lb.address, timeout=2) as sock:
            assert sock.recv(10) == b""  # closed: no upstream answered


def test_connections_over_the_limit_are_closed(upstreams):
    with balancer.serve_balancer("lb-test", upstreams, max_connections=1) as lb:
        with socket.create_connection(lb.address, timeout=2) as first:
            assert greeting_of(first) == "up-1"
            with socket.create_connection(lb.address, timeout=2) as second:
                assert second.recv(10) == b""
            assert lb.refused == 1
            assert lb.open_connections == 1


def test_stop_closes_open_connections_and_ends_its_threads(upstreams):
    before = {t.name for t in threading.enumerate()}
    lb = balancer.serve_balancer("lb-test", upstreams)
    sock = socket.create_connection(lb.address, timeout=2)
    assert greeting_of(sock) == "up-1"
    lb.stop()
    assert _recv_all(sock) == b""
    sock.close()
    assert not lb.running
    assert "lb-test" not in background.running()
    for upstream in upstreams:  # their handler threads end once the balancer has closed its side
        upstream.stop()
    assert {t.name for t in threading.enumerate()} - before == set()


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match="at least one upstream"):
        balancer.serve_balancer("lb-test", [])
    with pytest.raises(ValueError, match="host, port"):
        balancer.serve_balancer("lb-test", ["localhost"])
    with pytest.raises(ValueError, match="max_connections"):
        balancer.serve_balancer("lb-test", [("127.0.0.1", 1)], max_connections=0)
