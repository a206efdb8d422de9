"""`rpclab serve socket`: prints where it listens, serves the KV store, and exits 0 on SIGTERM or
Ctrl-C."""

from __future__ import annotations

import re
import select
import signal
import subprocess
import sys

import pytest

from rpclab.byhand import socketrpc

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
