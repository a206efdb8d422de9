"""rpclab.byhand.socketrpc under bad input and load: every bad peer is answered or dropped, and
everyone else is still served."""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time

import pytest

from rpclab.byhand import framing, socketrpc

FRAME_TIMEOUT = 0.3  # seconds a peer may take to finish a frame, in these tests


@pytest.fixture(params=[0, 4], ids=["in-order", "workers"])
def server(request):
    gate = threading.Event()

    def wait_for_gate(value):
        gate.wait(5.0)  # a deliberately slow handler, released by the test
        return value

    handle = socketrpc.serve(
        {"echo": lambda x: x, "slow": wait_for_gate, "big": lambda n: "x" * n},
        name="test-robust",
        frame_timeout=FRAME_TIMEOUT,
        max_frame_size=64 * 1024,
        workers=request.param,
    )
    handle.gate = gate
    yield handle
    gate.set()
    handle.stop()


@pytest.fixture
def quiet(capfd):
    """Fails the test if anything (a traceback, a warning) was printed while it ran."""
    yield
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "Exception" not in err, err


def connect_raw(server) -> socket.socket:
    return socket.create_connection(server.address, timeout=3.0)


def reply_to(sock: socket.socket) -> dict:
    return json.loads(framing.recv_frame(sock))


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed its end (EOF or reset), waiting at most the socket's
    timeout."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def good_call_works(server) -> None:
    with socketrpc.connect(server.address, timeout=2.0) as c:
        assert c.echo("fine") == "fine"


# --------------------------------------------------------------------------- frame-level attacks


def test_an_oversized_declared_length_gets_an_error_then_a_close_without_reading_the_body(
    server, quiet
):
    with connect_raw(server) as sock:
        sock.sendall(struct.pack(">I", 4 * 1024**3 - 1))  # "4 GiB follow" -- and nothing does
        reply = reply_to(
            sock
        )  # answered at once: the server did not wait for (or allocate) the body
        assert reply["error"]["code"] == -32600 and reply["id"] is None
        assert "over the 65536-byte limit" in reply["error"]["data"]
        assert closed_by_peer(sock)
    good_call_works(server)


def test_an_oversized_frame_with_its_body_still_gets_the_error_before_the_close(server, quiet):
    with connect_raw(server) as sock:
        body = b"x" * (200 * 1024)
        sock.sendall(struct.pack(">I", len(body)) + body)
        assert reply_to(sock)["error"]["code"] == -32600
        assert closed_by_peer(sock)
    good_call_works(server)


def test_a_peer_that_stalls_mid_frame_is_dropped_while_others_are_served(server, quiet):
    with connect_raw(server) as idle, connect_raw(server) as stalled:
        stalled.sendall(
            b"\x00\x00\x00\x40" + b'{"jsonrpc"'
        )  # 64 bytes announced, 10 sent, then silence
        good_call_works(server)  # served while the stalled frame waits
        started = time.monotonic()
        assert closed_by_peer(stalled)
        assert time.monotonic() - started < 2.5  # dropped by the frame timeout, not by our socket's
        # A connection idle *between* frames may stay, even past the frame timeout.
        framing.send_frame(
            idle, b'{"jsonrpc": "2.0", "method": "echo", "params": ["idle"], "id": 1}'
        )
        assert reply_to(idle)["result"] == "idle"


def test_a_peer_that_drips_a_frame_too_slowly_is_dropped(server, quiet):
    with connect_raw(server) as sock:
        frame = framing.encode_frame(
            b'{"jsonrpc": "2.0", "method": "echo", "params": ["drip"], "id": 1}'
        )
        dropped = False
        for i in range(
            len(frame)
        ):  # one byte every 50 ms: each arrives in time, the frame does not
            try:
                sock.sendall(frame[i : i + 1])
            except OSError:
                dropped = True
                break
            time.sleep(0.05)  # a deliberate, injected delay
            if i * 0.05 > 10 * FRAME_TIMEOUT:
                break
        assert dropped or closed_by_peer(sock)
    good_call_works(server)


def test_an_abrupt_close_mid_frame_is_handled_quietly(server, quiet):
    for linger in (False, True):
        sock = connect_raw(server)
        sock.sendall(b"\x00\x00\x01\x00" + b"partial")
        if linger:  # close with a reset (RST) instead of a polite FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        good_call_works(server)


def test_a_client_that_vanishes_while_its_call_runs_is_handled_quietly(server, quiet):
    sock = connect_raw(server)
    framing.send_frame(sock, b'{"jsonrpc": "2.0", "method": "slow", "params": [1], "id": 1}')
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    server.gate.set()  # the reply now goes to a connection that is gone
    good_call_works(server)


def test_garbage_bytes_get_an_error_reply(server, quiet):
    with connect_raw(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # "GET " read as a length: 1.2 GB
        assert reply_to(sock)["error"]["code"] == -32600
        assert closed_by_peer(sock)
    rng = random.Random(1984)
    with connect_raw(server) as sock:
        for _ in range(5):
            junk = bytes(rng.randrange(256) for _ in range(40))
            framing.send_frame(sock, junk)
            assert reply_to(sock)["error"]["code"] == -32700
    good_call_works(server)


# --------------------------------------------------- message-level attacks: the connection survives


@pytest.mark.parametrize(
    "payload, code, fragment",
    [
        (b"[" * 50_000, -32700, "deeper than 64"),
        (
            b'{"jsonrpc": "2.0", "method": "echo", "params": ['
            + b"[" * 100
            + b"]" * 100
            + b'], "id": 1}',
            -32700,
            "deeper",
        ),
        (
            b'{"jsonrpc": "2.0", "method": "echo", "params": [' + b"9" * 20_000 + b'], "id": 1}',
            -32700,
            "digit limit",
        ),
        (b'{"jsonrpc": "2.0", "method": "echo", "params": ["\xff\xfe"], "id": 1}', -32700, "UTF-8"),
        (
            json.dumps(
                [{"jsonrpc": "2.0", "method": "echo", "params": [i], "id": i} for i in range(101)]
            ).encode(),
            -32600,
            "101 requests",
        ),
        (
            b'{"jsonrpc": "2.0", "method": "echo", "params": "not a list", "id": 1}',
            -32600,
            "params",
        ),
    ],
)
def test_bad_messages_get_an_error_reply_and_the_connection_goes_on(
    server, quiet, payload, code, fragment
):
    with connect_raw(server) as sock:
        framing.send_frame(sock, payload)
        reply = reply_to(sock)
        assert reply["error"]["code"] == code
        assert fragment in reply["error"]["data"]
        framing.send_frame(
            sock, b'{"jsonrpc": "2.0", "method": "echo", "params": ["again"], "id": 2}'
        )
        assert reply_to(sock) == {"jsonrpc": "2.0", "result": "again", "id": 2}
    good_call_works(server)


def test_the_client_reports_a_request_the_server_could_not_read(server):
    with socketrpc.connect(server.address) as c:
        nested = []
        for _ in range(80):
            nested = [nested]
        with pytest.raises(
            socketrpc.ConnectionLost, match="could not read a request.*-32700.*deeper"
        ):
            c.echo(nested)
        assert c.echo("recovered") == "recovered"


def test_a_batch_over_the_server_limit_is_reported_and_the_client_goes_on(server):
    with socketrpc.connect(server.address) as c:
        batch = c.batch()
        for i in range(101):
            batch.echo(i)
        with pytest.raises(
            socketrpc.ConnectionLost, match="-32600.*101 requests is over the 100-request limit"
        ):
            batch.send()
        assert c.echo("next") == "next"


def test_the_client_refuses_a_reply_over_its_frame_limit(server):
    with socketrpc.connect(server.address, max_frame_size=1000) as c:
        assert c.echo("small") == "small"
        with pytest.raises(socketrpc.ConnectionLost, match="over the 1000-byte limit"):
            c.big(990)  # the request is small; the reply is not
        assert c.echo("small again") == "small again"


def test_the_client_refuses_to_send_a_frame_over_its_limit(server):
    with socketrpc.connect(server.address, max_frame_size=100) as c:
        with pytest.raises(framing.FrameTooLarge):
            c.echo("x" * 200)
        assert c.echo("ok") == "ok"


# --------------------------------------------------------------------------- slow handlers and load


def test_a_slow_handler_on_one_connection_does_not_delay_another_client(server):
    with socketrpc.connect(server.address, timeout=5.0) as slow_client:
        result = {}
        caller = threading.Thread(
            target=lambda: result.setdefault("slow", slow_client.slow("late"))
        )
        caller.start()
        try:
            with socketrpc.connect(server.address, timeout=2.0) as other:
                for i in range(20):
                    assert other.echo(i) == i
            assert (
                caller.is_alive()
            )  # the slow call is still running: the others did not wait for it
        finally:
            server.gate.set()
            caller.join(5)
        assert result == {"slow": "late"}


def test_load_sixteen_clients_three_hundred_calls_each(server, run_threads):
    failures: list[str] = []
    done = [0] * 16

    def client_thread(n: int) -> None:
        with socketrpc.connect(server.address, timeout=5.0) as c:
            for i in range(300):
                value = [n, i]
                got = c.echo(value)
                if got != value:
                    failures.append(f"client {n} call {i}: sent {value}, got {got}")
                done[n] += 1

    run_threads(client_thread, 16)
    assert failures == []
    assert done == [300] * 16


def test_load_many_threads_pipelining_on_one_connection(server, run_threads):
    failures: list[str] = []
    with socketrpc.connect(server.address, timeout=5.0) as c:

        def worker(n: int) -> None:
            for i in range(100):
                if c.echo(f"{n}:{i}") != f"{n}:{i}":
                    failures.append(f"{n}:{i}")

        run_threads(worker, 12)
    assert failures == []
