"""rpclab.faults: a proxy that delays, drops, duplicates and resets traffic, reproducibly, and stops
cleanly."""

from __future__ import annotations

import random
import socket
import socketserver
import threading
import time
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCServer

import pytest

from rpclab import faults
from rpclab.byhand import framing
from rpclab.faults import Faults
from rpclab.runtime import background

# ----------------------------------------------------------------- a framed echo server that counts


class EchoCounter:
    """A framed echo server that remembers every payload it received."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lock = threading.Lock()
        counter = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    while True:
                        payload = framing.recv_frame(self.request)
                        with counter.lock:
                            counter.received.append(payload)
                        framing.send_frame(self.request, payload)
                except (framing.FramingError, OSError):
                    pass

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.handle = background.serve("echo-counter", lambda address: Server(address, Handler))

    def count(self, payload: bytes) -> int:
        with self.lock:
            return self.received.count(payload)


@pytest.fixture
def echo():
    server = EchoCounter()
    yield server
    server.handle.stop()


def connect(proxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection(proxy.address, timeout=timeout)


def call(sock: socket.socket, payload: bytes) -> bytes:
    framing.send_frame(sock, payload)
    return framing.recv_frame(sock)


class Tap:
    """Collects the proxy's (direction, payload, fate) reports and waits for a number of them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes, str]] = []
        self.cond = threading.Condition()

    def __call__(self, direction: str, payload: bytes, when: float, fate: str) -> None:
        with self.cond:
            self.seen.append((direction, payload, fate))
            self.cond.notify_all()

    def wait_for(
        self, n: int, direction: str | None = None, timeout: float = 5.0
    ) -> list[tuple[str, bytes, str]]:
        """The reports so far, once ``n`` of them (going ``direction``, if given) have come."""

        def count() -> int:
            return sum(1 for d, _, _ in self.seen if direction in (None, d))

        with self.cond:
            assert self.cond.wait_for(lambda: count() >= n, timeout), (
                f"only {count()} of {n} frames seen"
            )
            return list(self.seen)


# --------------------------------------------------------------------------- faults


def test_no_faults_forwards_frames_both_ways(echo):
    with faults.serve_proxy("proxy", echo.handle) as proxy, connect(proxy) as sock:
        assert call(sock, b'{"hello": 1}') == b'{"hello": 1}'
        assert call(sock, b"") == b""  # an empty frame is still a frame
    assert echo.received == [b'{"hello": 1}', b""]


def test_delay_really_delays_each_direction(echo):
    with (
        faults.serve_proxy("proxy", echo.handle, Faults(delay=0.1)) as proxy,
        connect(proxy) as sock,
    ):
        start = time.monotonic()
        assert call(sock, b"slow") == b"slow"
        assert time.monotonic() - start >= 0.2  # 0.1 s on the way there, 0.1 s on the way back
        proxy.configure(direction="request")
        start = time.monotonic()
        assert call(sock, b"slow") == b"slow"
        assert time.monotonic() - start >= 0.1
        stats = proxy.stats
    assert stats.request.delayed == 2 and stats.reply.delayed == 1


def test_delay_keeps_order_and_does_not_hold_up_other_connections(echo):
    with faults.serve_proxy("proxy", echo.handle, Faults(delay=0.05, jitter=0.1, seed=3)) as proxy:
        with connect(proxy) as a:
            for i in range(10):  # jitter would reorder them if delays were independent
                framing.send_frame(a, b"%d" % i)
            assert [framing.recv_frame(a) for _ in range(10)] == [b"%d" % i for i in range(10)]
        proxy.configure(delay=5.0, jitter=0.0)
        with connect(proxy) as stuck, connect(proxy) as other:
            framing.send_frame(stuck, b"held back 5 s")
            proxy.configure(delay=0.0)
            assert (
                call(other, b"quick") == b"quick"
            )  # not queued behind the other connection's frame


def test_drop_everything_makes_a_call_time_out(echo):
    with (
        faults.serve_proxy("proxy", echo.handle, Faults(drop=1.0)) as proxy,
        connect(proxy, timeout=0.3) as sock,
    ):
        with pytest.raises(socket.timeout):
            call(sock, b"lost")
        assert proxy.stats.request.dropped == 1
    assert echo.received == []


def test_dropped_replies_reach_the_server_but_not_the_client(echo):
    with faults.serve_proxy("proxy", echo.handle, Faults(drop=1.0, direction="reply")) as proxy:
        with connect(proxy, timeout=0.3) as sock, pytest.raises(socket.timeout):
            call(sock, b"done, but you will never know")
        assert proxy.stats.reply.dropped == 1
    assert echo.received == [b"done, but you will never know"]


def fates_of_twenty_frames(echo, seed: int) -> list[str]:
    tap = Tap()
    with faults.serve_proxy(
        "proxy", echo.handle, Faults(drop=0.5, seed=seed, direction="request"), on_frame=tap
    ) as proxy:
        with connect(proxy) as sock:
            for i in range(20):
                framing.send_frame(sock, b"%d" % i)
            seen = tap.wait_for(20, "request")
    requests = sorted(
        (int(payload), fate) for direction, payload, fate in seen if direction == "request"
    )
    return [fate for _, fate in requests]


def test_a_seeded_run_drops_the_same_frames_again(echo):
    first = fates_of_twenty_frames(echo, seed=7)
    again = fates_of_twenty_frames(echo, seed=7)
    other = fates_of_twenty_frames(echo, seed=8)
    assert first == again
    assert 0 < first.count("dropped") < 20
    assert first != other


def test_the_decision_rule_draws_four_numbers_per_frame_whatever_the_settings():
    plain, faulty = random.Random(1), random.Random(1)
    for _ in range(5):
        faults.decide(Faults(), "request", plain)
        faults.decide(Faults(drop=0.5, jitter=0.1), "request", faulty)
    assert plain.random() == faulty.random()  # so a setting change never shifts later fates
    assert faults.decide(Faults(drop=1.0, direction="reply"), "request", plain).fate == "forwarded"
    assert faults.decide(Faults(duplicate=1.0), "reply", plain) == faults.Decision(
        "duplicated", 2, 0.0
    )
    assert faults.decide(Faults(reset=1.0, drop=1.0), "reply", plain).fate == "reset"


def test_duplicate_delivers_the_request_twice(echo):
    with faults.serve_proxy(
        "proxy", echo.handle, Faults(duplicate=1.0, direction="request")
    ) as proxy:
        with connect(proxy) as sock:
            assert call(sock, b"once") == b"once"
            assert framing.recv_frame(sock) == b"once"  # the server answered both copies
        stats = proxy.stats
    assert echo.count(b"once") == 2
    assert (stats.request.forwarded, stats.request.duplicated, stats.request.bytes) == (1, 1, 8)
    assert (stats.reply.forwarded, stats.reply.duplicated) == (2, 0)


def test_reset_closes_both_sides_abruptly(echo):
    with faults.serve_proxy("proxy", echo.handle, Faults(reset=1.0)) as proxy:
        with connect(proxy) as sock:
            framing.send_frame(sock, b"boom")
            with pytest.raises(ConnectionResetError):  # an RST, not a polite FIN
                framing.recv_frame(sock)
        assert proxy.stats.request.resets == 1
        proxy.configure(reset=0.0)
        with connect(proxy) as sock:  # the proxy itself goes on serving
            assert call(sock, b"fine") == b"fine"
    assert echo.received == [b"fine"]


def test_a_frame_over_the_limit_closes_that_connection_only(echo):
    with faults.serve_proxy("proxy", echo.handle, max_frame_size=16) as proxy:
        with connect(proxy) as good, connect(proxy) as bad:
            bad.sendall(framing.HEADER.pack(1 << 30))
            with pytest.raises(ConnectionError):
                framing.recv_frame(bad)
            assert call(good, b"still here") == b"still here"
        assert proxy.stats.errors == 1


def test_an_unreachable_target_closes_the_client_connection():
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        dead = placeholder.getsockname()
    with faults.serve_proxy("proxy", dead) as proxy:
        with pytest.raises(ConnectionError):  # the reset may come while connecting or while reading
            with connect(proxy) as sock:
                call(sock, b"anyone?")
        assert proxy.stats.upstream_errors == 1


def test_stats_count_every_frame_and_can_be_reset(echo):
    with faults.serve_proxy("proxy", echo.handle) as proxy, connect(proxy) as sock:
        for _ in range(3):
            call(sock, b"abc")
        stats = proxy.stats
        assert (stats.request.forwarded, stats.reply.forwarded, stats.connections) == (3, 3, 1)
        assert stats.request.bytes == 9
        assert "3 forwarded" in str(stats)
        assert stats.as_dict()["reply"]["forwarded"] == 3
        proxy.reset_stats()
        assert proxy.stats.request.forwarded == 0


def test_the_tap_sees_every_frame_with_its_fate(echo):
    tap = Tap()
    with faults.serve_proxy(
        "proxy", echo.handle, Faults(duplicate=1.0, direction="reply"), on_frame=tap
    ) as proxy:
        with connect(proxy) as sock:
            call(sock, b"x")
            framing.recv_frame(sock)
            seen = tap.wait_for(3)
        proxy.on_frame = None
    assert seen == [
        ("request", b"x", "forwarded"),
        ("reply", b"x", "forwarded"),
        ("reply", b"x", "duplicated"),
    ]


def test_a_tap_that_raises_does_not_break_the_traffic(echo):
    def broken(*args):
        raise RuntimeError("tap bug")

    with faults.serve_proxy("proxy", echo.handle, on_frame=broken) as proxy, connect(proxy) as sock:
        assert call(sock, b"ok") == b"ok"


# --------------------------------------------------------------------------- bytes mode


def make_xmlrpc(address):
    server = SimpleXMLRPCServer(address, logRequests=False)
    server.register_function(lambda a, b: a + b, "add")
    return server


def test_bytes_mode_carries_http_with_a_delay():
    with background.serve("xmlrpc", make_xmlrpc) as server:
        with faults.serve_proxy("proxy", server, Faults(delay=0.1), mode="bytes") as proxy:
            with xmlrpc.client.ServerProxy(f"http://{proxy.host}:{proxy.port}") as client:
                start = time.monotonic()
                assert client.add(2, 3) == 5
                assert time.monotonic() - start >= 0.2
            assert proxy.stats.request.delayed >= 1 and proxy.stats.reply.delayed >= 1


def test_bytes_mode_refuses_drop_and_duplicate():
    with background.serve("xmlrpc", make_xmlrpc) as server:
        with pytest.raises(ValueError, match="need mode='frames'"):
            faults.serve_proxy("proxy", server, Faults(drop=0.1), mode="bytes")
        assert "proxy" not in background.running()
        with faults.serve_proxy("proxy", server, mode="bytes") as proxy:
            with pytest.raises(ValueError, match="need mode='frames'"):
                proxy.configure(duplicate=0.5)
            assert proxy.faults == Faults()
            proxy.configure(reset=1.0)
            with xmlrpc.client.ServerProxy(f"http://{proxy.host}:{proxy.port}") as client:
                with pytest.raises((ConnectionError, xmlrpc.client.ProtocolError)):
                    client.add(1, 1)


# --------------------------------------------------------------------------- lifecycle


def test_stop_ends_every_thread_and_closes_every_connection(echo):
    before = {t.name for t in threading.enumerate()}
    proxy = faults.serve_proxy("proxy", echo.handle, Faults(delay=0.0))
    idle = connect(proxy)
    assert call(idle, b"hi") == b"hi"  # its pumps now wait in recv
    busy = connect(proxy)
    proxy.configure(delay=10.0)
    framing.send_frame(busy, b"held back")  # its writer now waits out the delay
    assert any(
        name.startswith("rpclab-proxy:proxy#") for name in (t.name for t in threading.enumerate())
    )
    proxy.stop()
    echo.handle.stop()
    assert {t.name for t in threading.enumerate()} <= before
    for sock in (idle, busy):
        with sock:
            try:
                left = sock.recv(10)
            except (
                ConnectionResetError
            ):  # the proxy may close before it has read all the client sent
                left = b""
            assert left == b""  # closed by the proxy, and nothing delivered
    assert b"held back" not in echo.received
    assert not proxy.running


def test_starting_the_same_name_replaces_the_proxy(echo):
    first = faults.serve_proxy("proxy", echo.handle)
    second = faults.serve_proxy("proxy", echo.handle, Faults(delay=0.01))
    assert not first.running and second.running
    assert background.running()["proxy"] == second.address
    with connect(second) as sock:
        assert call(sock, b"new") == b"new"
    second.stop()


def test_target_may_be_a_handle_or_an_address(echo):
    with faults.serve_proxy("proxy", echo.handle.address) as proxy:
        assert proxy.target == echo.handle.address
        assert "no faults" in repr(proxy)
    with pytest.raises(ValueError, match="target must be a"):
        faults.serve_proxy("proxy", "localhost:80")
    with pytest.raises(ValueError, match="mode must be"):
        faults.serve_proxy("proxy", echo.handle, mode="packets")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"drop": 1.5}, "drop is a probability and must be between 0 and 1"),
        ({"duplicate": -0.1}, "duplicate is a probability"),
        ({"reset": float("nan")}, "reset must be a finite number"),
        ({"delay": -1}, "delay is in seconds and must be between 0 and 30"),
        ({"jitter": 31}, "jitter is in seconds"),
        ({"delay": "0.1"}, "delay must be a number"),
        ({"drop": True}, "drop must be a number"),
        ({"seed": 1.5}, "seed must be an int"),
        ({"direction": "sideways"}, "direction must be one of 'both', 'request', 'reply'"),
    ],
)
def test_invalid_faults_are_refused_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Faults(**kwargs)


def test_the_proxy_refuses_faults_only_a_server_can_act_on(echo):
    with pytest.raises(ValueError, match=r"cannot act on fail, fail_first: .*Flaky"):
        faults.serve_proxy("proxy", echo.handle, Faults(fail=0.5, fail_first=1))
    with faults.serve_proxy("proxy", echo.handle) as proxy:
        with pytest.raises(ValueError, match="cannot act on fail"):
            proxy.configure(fail=0.1)
        assert proxy.faults == Faults()


def test_a_servers_decision_draws_one_number_per_attempt_whatever_the_faults():
    """The seed rule, for Flaky as for the proxy: a stream per method, a fixed count of draws per
    decision, so one fault's setting never shifts the fates another one draws."""
    first, second = faults.stream(7, "/m"), faults.stream(7, "/m")
    calm = [faults.fails(Faults(fail=0.5), n, first) for n in (1, 2, 3, 1, 2, 3)]
    eager = [faults.fails(Faults(fail=0.5, fail_first=1), n, second) for n in (1, 2, 3, 1, 2, 3)]
    assert eager[0] and eager[3]  # every first attempt fails...
    assert [calm[i] for i in (1, 2, 4, 5)] == [eager[i] for i in (1, 2, 4, 5)]  # ...the rest agree
    assert faults.stream(7, "/m").random() != faults.stream(8, "/m").random()


def test_configure_checks_and_keeps_the_old_faults_on_error(echo):
    with faults.serve_proxy("proxy", echo.handle, Faults(delay=0.01)) as proxy:
        with pytest.raises(ValueError, match="drop is a probability"):
            proxy.configure(drop=2)
        with pytest.raises(TypeError, match="unknown fault setting lag"):
            proxy.configure(lag=1)
        assert proxy.faults == Faults(delay=0.01)
        assert proxy.configure(drop=0.25) == Faults(delay=0.01, drop=0.25)
        assert str(proxy.faults) == "delay 10 ms, drop 25% (both ways, seed 0)"
