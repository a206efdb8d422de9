"""`rpclab serve socket`: prints where it listens, serves the KV store, and exits 0 on SIGTERM or
Ctrl-C; as a class server (issue 12): at-most-once with each learner's ids apart, and the class
limits, each refused with a JSON-RPC error and a close while everyone else is served."""

from __future__ import annotations

import json
import re
import select
import signal
import socket
import subprocess
import sys

import pytest

from classlab import serve_command, start, write_tokens
from rpclab.byhand import framing, socketrpc

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rpclab.cli", "serve", "socket"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready, _, _ = select.select(
        [proc.stdout], [], [], 20.0
    )  # startup imports can be slow on a busy machine
    if not ready:
        proc.kill()
        proc.communicate(timeout=5)
        pytest.fail("`rpclab serve socket` printed nothing within 20 s")
    return proc, proc.stdout.readline()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_socket_prints_its_address_serves_kv_and_exits_cleanly(sig):
    proc, line = start_server()
    try:
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, f"unexpected first line: {line!r}"
        port = int(match.group(1))
        with socketrpc.connect(("127.0.0.1", port), timeout=5.0) as client:
            client.put("greeting", "hello")
            assert client.get("greeting") == "hello"
            assert client.increment("visits") == 1
            with pytest.raises(socketrpc.RemoteError) as info:
                client.get("missing")
            assert info.value.data["type"] == "KeyNotFound"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    assert out == ""  # nothing after the one line
    assert "Traceback" not in err


# --------------------------------------------------------------------------- a class server


def _frame_call(sock: socket.socket, message: dict) -> dict:
    framing.send_frame(sock, json.dumps(message).encode())
    return json.loads(framing.recv_frame(sock))


def _connect(address, source: str | None = None) -> socket.socket:
    return socket.create_connection(
        address, timeout=5, source_address=(source, 0) if source else None
    )


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="127.0.0.2 is this machine on Linux only"
)


@linux_only
def test_at_most_once_keeps_each_learner_s_ids_apart_and_replays_a_retry():
    server = start(serve_command("socket", "--at-most-once"))
    try:
        increment = {"jsonrpc": "2.0", "method": "increment", "params": ["n"], "id": 1}
        put = {"jsonrpc": "2.0", "method": "put", "params": ["k", "v"], "id": 1}
        with _connect(server.address) as ada, _connect(server.address, "127.0.0.2") as bob:
            assert _frame_call(ada, increment)["result"] == 1
            assert _frame_call(bob, put)["result"] is None  # bob's own call, not ada's reply
            assert _frame_call(ada, increment)["result"] == 1  # ada's retry: replayed
        with socketrpc.connect(server.address, timeout=5.0) as client:
            assert client.get("k") == "v" and client.get("n") == "1"
        status, _, out, err = server.stop()
    finally:
        server.kill()
    assert (status, out) == (0, ""), err


@linux_only
def test_the_class_limits_each_refuse_with_a_json_rpc_error_then_close_and_others_are_served():
    server = start(
        serve_command(
            "socket",
            "--max-connections-per-address",
            "2",
            "--max-calls-per-learner",
            "2",
            "--idle-timeout",
            "2",
        )
    )
    try:
        held = [_connect(server.address) for _ in range(2)]
        with _connect(server.address) as third:
            reply = json.loads(framing.recv_frame(third))
            assert reply["error"]["code"] == -32005, reply
            assert "127.0.0.1 already has 2 connections open" in reply["error"]["data"]
            assert third.recv(100) == b""
        with _connect(server.address, "127.0.0.2") as other:
            put = {"jsonrpc": "2.0", "method": "put", "params": ["k", "v"], "id": 1}
            assert _frame_call(other, put)["result"] is None
        for sock in held:  # idle for two seconds: the server closes them
            assert sock.recv(100) == b""
            sock.close()
        with socketrpc.connect(server.address, timeout=5.0) as client:
            assert client.get("k") == "v"
            with pytest.raises(socketrpc.RemoteError) as info:
                client.changes_since(10**9, None)  # it would wait: not served
            assert info.value.code == -32601
        status, _, out, err = server.stop()
    finally:
        server.kill()
    assert (status, out) == (0, ""), err
    assert "refused a connection from 127.0.0.1: 127.0.0.1 already has 2 connections" in err


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--token-file", "tokens.txt"], "not available for socket"),
        (["--tls", "tls"], "--tls is for grpc only"),
    ],
)
def test_serve_socket_refuses_tokens_and_tls_and_says_why(tmp_path, options, says):
    write_tokens(tmp_path / "tokens.txt", ["ada"])
    done = subprocess.run(
        serve_command("socket", *options), capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert says in done.stderr


def test_at_most_once_is_for_socket_only():
    done = subprocess.run(
        serve_command("xmlrpc", "--at-most-once"), capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert "--at-most-once is for socket only" in done.stderr
