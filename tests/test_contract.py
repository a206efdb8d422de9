"""One contract, two socket RPCs: notebook 04's design (rpclab.byhand.reference) and the finished
one (rpclab.byhand.socketrpc) answer the same wire and the same Python API.

Every test runs against both. Where the reference is naive on purpose, the test says so and
asserts the naive failure: the difference between the two is part of the contract.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from types import ModuleType

import pytest

from jsonrpc_spec import SPEC_EXAMPLES, SPEC_HANDLERS, without_data
from rpclab.byhand import framing, reference, socketrpc
from rpclab.runtime import process

# What each implementation does not protect against, on purpose (reference.py's docstring).
DEEP_NESTING = "deep nesting"  # json.loads recursion: RecursionError, the connection ends
HUGE_FRAMES = "huge frames"  # refused by raising, not by an error reply
STALLED_PEERS = "stalled peers"  # a half-sent frame holds its thread for as long as it likes


@dataclass(frozen=True)
class Implementation:
    name: str
    module: ModuleType
    serve_options: dict = field(default_factory=dict)
    naive: frozenset[str] = frozenset()

    def serve(self, handlers):
        return self.module.serve(
            handlers, host="127.0.0.1", port=0, name=f"contract-{self.name}", **self.serve_options
        )


IMPLEMENTATIONS = [
    Implementation("socketrpc", socketrpc, {"frame_timeout": 0.3}),
    Implementation(
        "reference", reference, naive=frozenset({DEEP_NESTING, HUGE_FRAMES, STALLED_PEERS})
    ),
]


@pytest.fixture(params=IMPLEMENTATIONS, ids=[i.name for i in IMPLEMENTATIONS])
def rpc(request) -> Implementation:
    return request.param


@pytest.fixture
def serve(rpc):
    """``serve(handlers)`` with the implementation under test; stopped after the test."""
    servers = []

    def start(handlers):
        servers.append(rpc.serve(handlers))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


class Gate:
    """A handler that blocks until released: a deliberately slow call, without sleeping."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self):
        self.entered.set()
        self.release.wait(10.0)
        return "released"


def divide(a, b):
    return a / b


class Calculator:
    def __init__(self):
        self.log = []

    def add(self, a, b):
        return a + b

    def note(self, text):
        self.log.append(text)

    def _secret(self):
        return "never served"


HANDLERS = {
    **SPEC_HANDLERS,
    "divide": divide,
    "echo": lambda value: value,
}


def raw(address) -> socket.socket:
    return socket.create_connection(address, timeout=2.0)


def exchange(sock: socket.socket, data: bytes):
    framing.send_frame(sock, data)
    return json.loads(framing.recv_frame(sock))


PROBE = b'{"jsonrpc": "2.0", "method": "get_data", "id": "probe"}'
PROBE_REPLY = {"jsonrpc": "2.0", "result": ["hello", 5], "id": "probe"}


def closed_without_reply(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` with nothing more to say."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# --------------------------------------------------------------------------- the wire


@pytest.mark.parametrize(
    "name, request_text, expected", SPEC_EXAMPLES, ids=[e[0] for e in SPEC_EXAMPLES]
)
def test_the_specification_examples_over_the_wire(rpc, serve, name, request_text, expected):
    server = serve(HANDLERS)
    with raw(server.address) as sock:
        framing.send_frame(sock, request_text.encode())
        if expected is None:  # no reply: the next frame back is the reply to a later request
            assert exchange(sock, PROBE) == PROBE_REPLY
        else:
            reply = json.loads(framing.recv_frame(sock))
            assert without_data(reply) == json.loads(expected)


# --------------------------------------------------------------------------- the Python API


def test_serve_connect_call_and_stop(rpc, serve):
    server = serve(HANDLERS)
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    client = rpc.module.connect(server.address, timeout=2.0)
    assert client.subtract(42, 23) == 19
    assert client.subtract(minuend=42, subtrahend=23) == 19
    assert client.echo(["a", 1, None, {"b": True}]) == ["a", 1, None, {"b": True}]
    client.close()
    server.stop()
    assert port not in [p for _, p in process.listening_ports() or []]


@pytest.mark.parametrize(
    "call, code, detail",
    [
        (lambda c: c.multiply(6, 7), -32601, "multiply"),
        (lambda c: c.subtract(1), -32602, "argument"),
        (lambda c: c.divide(1, 0), 1, "ZeroDivisionError"),
    ],
    ids=["no such method", "params that do not fit", "the handler raised"],
)
def test_a_remote_error_is_raised_with_its_code_message_and_data(rpc, serve, call, code, detail):
    server = serve(HANDLERS)
    client = rpc.module.connect(server.address, timeout=2.0)
    with pytest.raises(rpc.module.RemoteError) as caught:
        call(client)
    assert caught.value.code == code
    assert isinstance(caught.value.message, str) and caught.value.message
    assert detail in str(caught.value.data)
    assert client.subtract(2, 1) == 1  # the connection goes on
    client.close()


def test_the_handlers_own_error_is_outside_the_codes_json_rpc_reserves(rpc, serve):
    server = serve(HANDLERS)
    client = rpc.module.connect(server.address, timeout=2.0)
    codes = {}
    for name, call in [("app", lambda: client.divide(1, 0)), ("rpc", lambda: client.nope())]:
        with pytest.raises(rpc.module.RemoteError) as caught:
            call()
        codes[name] = caught.value.code
    client.close()
    assert not -32768 <= codes["app"] <= -32000  # "the procedure said no" ...
    assert -32768 <= codes["rpc"] <= -32000  # ... is told apart from "the call went wrong"


def test_a_late_reply_to_a_call_that_timed_out_never_answers_the_next_call(rpc, serve):
    gate = Gate()
    server = serve({**HANDLERS, "gate": gate})
    client = rpc.module.connect(server.address, timeout=0.2)
    with pytest.raises(TimeoutError):
        client.gate()
    gate.release.set()  # the late reply ("released") is on its way to a caller who left
    assert client.subtract(2, 1) == 1
    assert client.subtract(5, 1) == 4
    client.close()


def test_a_call_mixing_positional_and_keyword_arguments_is_refused_not_cut(rpc, serve):
    server = serve(HANDLERS)
    client = rpc.module.connect(server.address, timeout=2.0)
    with pytest.raises(TypeError, match="position or by name"):
        client.subtract(42, subtrahend=23)
    assert client.subtract(2, 1) == 1  # nothing was sent; the connection goes on
    client.close()


def test_an_object_offers_its_public_methods(rpc, serve):
    calculator = Calculator()
    server = serve(calculator)
    client = rpc.module.connect(server.address, timeout=2.0)
    assert client.add(2, 3) == 5
    client.close()
    with raw(server.address) as sock:
        private = b'{"jsonrpc": "2.0", "method": "_secret", "id": 1}'
        assert exchange(sock, private)["error"]["code"] == -32601


def test_a_notification_runs_and_gets_no_reply(rpc, serve):
    calculator = Calculator()
    server = serve(calculator)
    client = rpc.module.connect(server.address, timeout=2.0)
    assert client.notify("note", "hello") is None
    assert client.add(0, 0) == 0  # a later call is answered, so the notification has run
    assert calculator.log == ["hello"]
    client.close()


def test_a_call_that_takes_too_long_raises_a_timeout(rpc, serve):
    gate = Gate()
    server = serve({"slow": gate})
    client = rpc.module.connect(server.address, timeout=0.2)
    with pytest.raises(TimeoutError):
        client.slow()
    assert gate.entered.is_set()
    gate.release.set()
    client.close()


# --------------------------------------------------------------------------- the limits


def test_deep_nesting(rpc, serve):
    """socketrpc answers a parse error and goes on; the reference's json.loads recurses."""
    server = serve(HANDLERS)
    with raw(server.address) as sock:
        framing.send_frame(sock, b"[" * 100_000 + b"]" * 100_000)
        if DEEP_NESTING in rpc.naive:
            assert closed_without_reply(sock)  # RecursionError ended the connection
        else:
            assert json.loads(framing.recv_frame(sock))["error"]["code"] == -32700
            assert exchange(sock, PROBE) == PROBE_REPLY


def test_huge_frames(rpc, serve):
    """socketrpc refuses with an error reply, then closes; the reference just closes."""
    server = serve(HANDLERS)
    with raw(server.address) as sock, raw(server.address) as other:
        sock.sendall(framing.HEADER.pack(50_000_000) + b"x" * 1000)  # "50 MB follow"
        if HUGE_FRAMES in rpc.naive:
            assert closed_without_reply(sock)
        else:
            reply = json.loads(framing.recv_frame(sock))
            assert reply["error"]["code"] == -32600 and "limit" in reply["error"]["data"]
            assert closed_without_reply(sock)
        assert exchange(other, PROBE) == PROBE_REPLY  # everyone else is still served


def test_stalled_peers(rpc, serve):
    """socketrpc drops a peer that stops mid-frame; the reference waits for it as long as it
    likes."""
    server = serve(HANDLERS)
    with raw(server.address) as sock, raw(server.address) as other:
        sock.sendall(framing.HEADER.pack(100) + b"half")
        sock.settimeout(1.0)  # over three times socketrpc's frame_timeout here
        if STALLED_PEERS in rpc.naive:
            with pytest.raises(TimeoutError):
                sock.recv(1)  # still open, its server thread still waiting
        else:
            assert closed_without_reply(sock)
        assert exchange(other, PROBE) == PROBE_REPLY
