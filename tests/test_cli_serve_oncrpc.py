"""`rpclab serve oncrpc`: prints where it listens, serves the store over ONC RPC, and exits 0
within 10 s of SIGTERM or Ctrl-C, whatever its clients are doing. (`--register`, which needs a
portmapper, is tested against rpcbind in tests/test_oncrpc_peers.py.)"""

from __future__ import annotations

import re
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from rpclab.byhand import oncrpc

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def start_server(*options: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rpclab.cli", "serve", "oncrpc", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 20.0)  # imports are slow on a busy machine
    if not ready:
        proc.kill()
        proc.communicate(timeout=5)
        pytest.fail("`rpclab serve oncrpc` printed nothing within 20 s")
    line = proc.stdout.readline()
    match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
    if not match:
        proc.kill()
        _, err = proc.communicate(timeout=5)
        pytest.fail(f"unexpected first line {line!r}; stderr: {err}")
    return proc, int(match.group(1))


def stop(proc: subprocess.Popen, sig: int) -> tuple[str, str, float]:
    start = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    return out, err, time.monotonic() - start


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_oncrpc_prints_its_address_serves_the_store_and_exits_cleanly(sig):
    proc, port = start_server()
    try:
        with oncrpc.connect(("127.0.0.1", port), timeout=5) as kv:
            kv.put("greeting", "hello")
            assert kv.get("greeting") == "hello"
            assert kv.increment("visits") == 1
            assert kv.keys() == ["greeting", "visits"]
    finally:
        out, err, _ = stop(proc, sig)
    assert proc.returncode == 0, err
    assert out == ""  # nothing after the one line
    assert "Traceback" not in err


def test_serve_oncrpc_exits_within_10_s_while_clients_hold_connections():
    proc, port = start_server()
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    stalled = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        with oncrpc.connect(("127.0.0.1", port), timeout=5) as kv:
            kv.null()  # the server is answering
        stalled.sendall((0x8000_0000 | 1000).to_bytes(4, "big") + b"half a record")
        out, err, took = stop(proc, signal.SIGTERM)
    finally:
        idle.close()
        stalled.close()
    assert proc.returncode == 0, err
    assert took < 10
    assert "Traceback" not in err


def test_register_is_refused_for_the_other_servers():
    done = subprocess.run(
        [sys.executable, "-m", "rpclab.cli", "serve", "socket", "--register"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "--register is for oncrpc only" in done.stderr
    assert done.stdout == ""
