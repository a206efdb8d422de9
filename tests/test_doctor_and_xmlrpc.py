"""rpclab doctor, and the key-value store over XML-RPC."""

from __future__ import annotations

import socket
import subprocess
import sys
import xmlrpc.client

import pytest

from rpclab import doctor
from rpclab.adapters import xml_rpc
from rpclab.kv import KVStore


def test_doctor_passes_on_this_installation():
    results = doctor.check()
    assert {r.name for r in results} >= {
        "Python",
        "grpc import",
        "protoc in process",
        "Arrow Flight",
        "loopback",
        "widgets extension",
    }
    assert all(r.ok for r in results), [r for r in results if not r.ok]


def test_doctor_reports_a_failure_with_what_to_do(monkeypatch):
    def broken():
        raise ImportError("No module named 'grpc'")

    monkeypatch.setattr(doctor, "CHECKS", [doctor._python, broken])
    lines = []
    assert doctor.report(out=lines.append) is False
    text = "\n".join(lines)
    assert "BAD" in text and "No module named 'grpc'" in text and "make install" in text


def test_doctor_turns_down_a_python_below_requires_python_and_names_the_range():
    major, minor = map(int, doctor.supported_pythons().removeprefix(">=").split("."))
    assert doctor._python((major, minor, 0)).ok
    assert doctor._python((major, minor + 3, 1)).ok
    old = doctor._python((major, minor - 1, 13))
    assert not old.ok
    assert (
        old.detail == f"{major}.{minor - 1}.13, but RPC Lab needs Python {major}.{minor} or newer"
    )
    assert "PYTHON=" in old.fix


def test_doctor_says_how_to_get_arrow_flight_when_pyarrow_lacks_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow.flight", None)  # import now raises ImportError
    result = doctor._arrow_flight()
    assert not result.ok and result.name == "Arrow Flight"
    assert "pyarrow" in result.fix and "pyarrow-core" in result.fix


def test_doctor_command_exits_zero_when_all_is_well():
    done = subprocess.run(
        [sys.executable, "-m", "rpclab.cli", "doctor"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All good" in done.stdout


def test_kv_over_xmlrpc():
    store = KVStore()
    handle = xml_rpc.serve(store)
    try:
        with xml_rpc.connect(handle.address, timeout=2) as proxy:
            assert proxy.put("a", "1") is None
            assert proxy.get("a") == "1"
            assert proxy.increment("n", 3) == 3
            assert proxy.delete("a") is True
            with pytest.raises(xmlrpc.client.Fault, match="no such key"):
                proxy.get("a")
            assert "increment" in proxy.system.listMethods()
        assert store.get("n") == "3"
    finally:
        handle.stop()


def test_xmlrpc_refuses_an_oversized_request_and_keeps_serving():
    handle = xml_rpc.serve(KVStore())
    try:
        with socket.create_connection(handle.address, timeout=2) as conn:
            conn.sendall(b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
            assert b"413" in conn.recv(200)
        with xml_rpc.connect(handle.address, timeout=2) as proxy:
            assert proxy.increment("n") == 1
    finally:
        handle.stop()


def test_xmlrpc_client_times_out():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        with xml_rpc.connect(silent.getsockname(), timeout=0.2) as proxy:
            with pytest.raises(TimeoutError):
                proxy.get("a")
