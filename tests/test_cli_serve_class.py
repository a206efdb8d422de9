"""`rpclab serve grpc|thrift|xmlrpc|rest` as a class server, in a subprocess: tokens, TLS, limits,
and a clean exit on SIGTERM or Ctrl-C whatever clients are doing (issue 12)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import stat
import sys
import threading
import time

import grpc
import pytest

from classlab import serve_command, start, write_tokens

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _kv():
    from rpclab.grpcstack import kv_service

    return kv_service.kv_pb2, kv_service.kv_pb2_grpc


def _call_store(kind: str, address: tuple[str, int], token: str | None = None) -> None:
    """Put, get and increment through the stack's own client."""
    if kind == "thrift":
        from rpclab.adapters import thrift

        with thrift.connect(address, timeout=5) as client:
            client.put("greeting", "hello")
            assert client.get("greeting") == "hello"
            assert client.increment("visits", 1) == 1
    elif kind == "xmlrpc":
        from rpclab.adapters import xml_rpc

        proxy = xml_rpc.connect(address, timeout=5, token=token)
        proxy.put("greeting", "hello")
        assert proxy.get("greeting") == "hello"
        assert proxy.increment("visits") == 1
    else:
        from rpclab.adapters import rest

        with rest.connect(address, timeout=5, token=token) as client:
            client.put("greeting", "hello")
            assert client.get("greeting") == "hello"
            assert client.increment("visits") == 1


_HALF = {
    "thrift": b"\x00\x00\x00\x64\x80\x01\x00\x01",
    "xmlrpc": b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<?xml",
    "rest": b"PUT /keys/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
}


@pytest.mark.parametrize("kind", ["thrift", "xmlrpc", "rest"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_each_stack_serves_the_store_and_exits_0_on_a_signal_whatever_clients_do(kind, signum):
    server = start(serve_command(kind))
    try:
        assert server.host == "127.0.0.1"
        _call_store(kind, server.address)
        stalled = socket.create_connection(server.address, timeout=5)  # half a request, held
        stalled.sendall(_HALF[kind])
        idle = socket.create_connection(server.address, timeout=5)  # nothing at all
        status, took, out, err = server.stop(signum)
        stalled.close()
        idle.close()
    finally:
        server.kill()
    assert (status, out) == (0, ""), err
    assert "Traceback" not in err and "CancelledError" not in err


def test_grpc_with_tokens_and_tls_refuses_plaintext_and_every_call_without_a_token(tmp_path):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    kv_pb2, kv_pb2_grpc = _kv()
    tokens = write_tokens(tmp_path / "tokens.txt", ["ada", "grace"])
    folder = tmp_path / "tls"
    options = ["--token-file", str(tmp_path / "tokens.txt"), "--tls", str(folder)]
    server = start(serve_command("grpc", *options))
    try:
        ca_pem = (folder / "ca.pem").read_bytes()
        assert stat.S_IMODE((folder / "ca-key.pem").stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / "server-key.pem").stat().st_mode) == 0o600
        with grpc.insecure_channel(server.target) as plain:
            with pytest.raises(grpc.RpcError) as plaintext:
                kv_pb2_grpc.KVStub(plain).Get(kv_pb2.GetRequest(key="k"), timeout=3)
        assert plaintext.value.code() is grpc.StatusCode.UNAVAILABLE

        trusted = grpc.ssl_channel_credentials(root_certificates=ca_pem)
        with grpc.secure_channel(server.target, trusted) as channel:
            refused = []
            for call in (
                lambda: kv_pb2_grpc.KVStub(channel).Get(kv_pb2.GetRequest(key="k"), timeout=3),
                lambda: health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=3
                ),
                lambda: next(
                    reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                        iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                        timeout=3,
                    )
                ),
            ):
                with pytest.raises(grpc.RpcError) as error:
                    call()
                refused.append(error.value.code())
            assert refused == [grpc.StatusCode.UNAUTHENTICATED] * 3

        as_ada = grpc.composite_channel_credentials(
            trusted, grpc.access_token_call_credentials(tokens["ada"])
        )
        with grpc.secure_channel(server.target, as_ada) as channel:
            kv_pb2_grpc.KVStub(channel).Put(kv_pb2.PutRequest(key="k", value="v"), timeout=3)
            assert kv_pb2_grpc.KVStub(channel).Get(kv_pb2.GetRequest(key="k"), timeout=3).value
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=3
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        status, _, out, err = server.stop()
    finally:
        server.kill()
    assert (status, out) == (0, ""), err
    assert "UNAUTHENTICATED" in err  # the refusals, in the server's log
    assert "learners trust" in err and "127.0.0.1" in err

    again = start(serve_command("grpc", *options))  # the next class: same CA, same ca.pem
    try:
        assert (folder / "ca.pem").read_bytes() == ca_pem
        with grpc.secure_channel(again.target, as_ada) as channel:
            kv_pb2_grpc.KVStub(channel).Put(kv_pb2.PutRequest(key="k", value="v"), timeout=3)
        assert again.stop()[0] == 0
    finally:
        again.kill()


def test_grpc_default_limits_keep_one_learner_from_starving_the_class(tmp_path):
    """16 Watch streams from one learner held all 16 workers of `rpclab serve grpc` (issue 12,
    item 2); now the fifth is refused and everyone else is served; SIGTERM still ends it."""
    kv_pb2, kv_pb2_grpc = _kv()
    tokens = write_tokens(tmp_path / "tokens.txt", ["mallory", "bob"])
    server = start(serve_command("grpc", "--token-file", str(tmp_path / "tokens.txt")))
    mallory = [("authorization", f"Bearer {tokens['mallory']}")]
    bob = [("authorization", f"Bearer {tokens['bob']}")]
    try:
        with grpc.insecure_channel(server.target) as hostile:
            stub = kv_pb2_grpc.KVStub(hostile)
            watches = [
                stub.Watch(kv_pb2.WatchRequest(), metadata=mallory, timeout=30) for _ in range(16)
            ]
            opened = [
                w for w in watches if any(k == "rpclab-version" for k, _ in w.initial_metadata())
            ]
            assert len(opened) == 4
            refused = [w for w in watches if w not in opened]
            assert {w.code() for w in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert "mallory already has 4 streams open" in refused[0].details()
            with grpc.insecure_channel(server.target) as honest:
                kv = kv_pb2_grpc.KVStub(honest)
                started = time.monotonic()
                for n in range(20):
                    kv.Put(kv_pb2.PutRequest(key="n", value=str(n)), metadata=bob, timeout=2)
                assert time.monotonic() - started < 10
            status, took, out, err = server.stop()  # four Watch streams still open
    finally:
        server.kill()
    assert (status, out) == (0, ""), err
    assert "RESOURCE_EXHAUSTED" in err and "mallory" in err
    assert err.count("RESOURCE_EXHAUSTED") == 1  # twelve refusals, one line (throttled)


@pytest.mark.parametrize(
    ("kind", "options", "says"),
    [
        ("thrift", ["--token-file", "{tokens}"], "not available for thrift"),
        ("xmlrpc", ["--tls", "{tmp}"], "--tls is for grpc only"),
        ("grpc", ["--token-file", "{tmp}/missing"], "cannot read the token file"),
        ("grpc", ["--max-calls-per-learner", "2"], "streams (4) cannot be more than calls (2)"),
    ],
)
def test_serve_refuses_what_it_cannot_do_and_says_why(tmp_path, kind, options, says):
    import subprocess

    write_tokens(tmp_path / "tokens.txt", ["ada"])
    filled = [o.format(tokens=tmp_path / "tokens.txt", tmp=tmp_path) for o in options]
    done = subprocess.run(serve_command(kind, *filled), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    assert says in done.stderr


@pytest.mark.parametrize(
    ("with_tokens", "warning"),
    [(False, "it has no authentication"), (True, "travel in plain text")],
)
def test_a_server_other_machines_can_reach_says_what_it_exposes(tmp_path, with_tokens, warning):
    options = ["--host", "127.0.0.2"]  # loopback too (Linux), but not 127.0.0.1: it warns
    if with_tokens:
        write_tokens(tmp_path / "tokens.txt", ["ada"])
        options += ["--token-file", str(tmp_path / "tokens.txt")]
    server = start(serve_command("xmlrpc", *options))
    try:
        status, _, _, err = server.stop()
    finally:
        server.kill()
    assert status == 0
    assert "warning: serving on 127.0.0.2" in err and warning in err


# --------------------------------------------------------------------------- item 15: Ctrl-C


class _SlowToStop:
    """A server whose stop() takes 30 s, as a stuck one would."""

    address = ("127.0.0.1", 1)

    def __init__(self) -> None:
        self.started, self.stopping = threading.Event(), threading.Event()
        self.release = threading.Event()

    def __call__(self, *options) -> _SlowToStop:
        self.started.set()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.release.wait(30)


def test_a_second_ctrl_c_while_stopping_leaves_at_once(monkeypatch, capsys):
    """Issue 12, item 15: during a slow stop, the signal handler still only set an event, so a
    second Ctrl-C did nothing."""
    from rpclab import cli

    slow = _SlowToStop()
    monkeypatch.setitem(cli.SERVERS, "grpc", slow)
    args = cli.build_parser().parse_args(["serve", "grpc"])

    def press_ctrl_c_twice() -> None:
        assert slow.started.wait(30)
        os.kill(os.getpid(), signal.SIGINT)
        assert slow.stopping.wait(30)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c_twice)
    presser.start()
    started = time.monotonic()
    status = cli._serve(args)
    took = time.monotonic() - started
    presser.join(30)
    slow.release.set()  # let the abandoned stop end, so that no thread outlives the test
    for thread in threading.enumerate():
        if thread.name == "rpclab-serve-stop":
            thread.join(10)
    assert status == 128 + signal.SIGINT
    assert took < 10
    assert "a second signal" in capsys.readouterr().err
    assert isinstance(args, argparse.Namespace)


def test_the_class_tls_folder_keeps_its_ca_and_renews_only_what_it_must(tmp_path):
    from rpclab import classserver
    from rpclab.grpcstack import tls

    folder = tmp_path / "tls"
    first, names = classserver.tls_folder(folder, ["10.0.0.5", "lab-pc"])
    assert names == ["10.0.0.5", "lab-pc"]
    ca_pem = (folder / "ca.pem").read_bytes()
    assert set(tls.describe(first).hostnames) == {"10.0.0.5", "lab-pc"}
    same, _ = classserver.tls_folder(folder, ["lab-pc"])  # covered already: reused
    assert same.cert_pem == first.cert_pem
    wider, _ = classserver.tls_folder(folder, ["10.0.0.5", "lab-pc", "lab-pc.example.edu"])
    assert wider.cert_pem != first.cert_pem and (folder / "ca.pem").read_bytes() == ca_pem
    (folder / "ca-key.pem").write_bytes(tls.make_ca("another CA").key_pem)  # not ca.pem's key
    classserver.tls_folder(folder, ["lab-pc"])
    assert (folder / "ca.pem").read_bytes() != ca_pem  # a new CA, and so a new ca.pem


def test_the_machine_s_names_include_the_host_and_loopback_but_no_wildcard():
    from rpclab import classserver

    names = classserver.machine_names("10.0.0.5")
    assert names[0] == "10.0.0.5" and {"localhost", "127.0.0.1"} <= set(names)
    assert "0.0.0.0" not in classserver.machine_names("0.0.0.0")
