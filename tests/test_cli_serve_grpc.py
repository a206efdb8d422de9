"""`rpclab serve grpc` in a subprocess: one line, real clients, a clean exit on SIGTERM and
SIGINT."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from rpclab.grpcstack.protos import load

START_TIMEOUT = (
    60.0  # a cold start imports grpc and may compile the protos: generous, never reached normally
)
EXIT_TIMEOUT = 10.0
REPO = Path(__file__).resolve().parents[1]


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """One line of the server's stdout, failing the test (not hanging it) if none comes in time."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output within {timeout:.0f}s")
    return proc.stdout.readline()


@pytest.fixture
def served():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rpclab.cli", "serve", "grpc"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(EXIT_TIMEOUT)
        proc.stdout.close()
        proc.stderr.close()


def call_everything(address: str) -> None:
    """Clients generated from protos/ call each of the three services."""
    helloworld_pb2, helloworld_pb2_grpc = load("helloworld")
    route_guide_pb2, route_guide_pb2_grpc = load("route_guide")
    kv_pb2, kv_pb2_grpc = load("kv")
    with grpc.insecure_channel(address) as channel:
        greeting = helloworld_pb2_grpc.GreeterStub(channel).SayHello(
            helloworld_pb2.HelloRequest(name="CLI"), timeout=5
        )
        assert greeting.message == "Hello, CLI!"
        kv = kv_pb2_grpc.KVStub(channel)
        kv.Put(kv_pb2.PutRequest(key="from", value="cli"), timeout=5)
        assert kv.Get(kv_pb2.GetRequest(key="from"), timeout=5).value == "cli"
        feature = route_guide_pb2_grpc.RouteGuideStub(channel).GetFeature(
            route_guide_pb2.Point(), timeout=5
        )
        assert feature.name == ""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_grpc_answers_and_exits_cleanly(served, signum):
    line = read_line(served, START_TIMEOUT)
    match = re.fullmatch(r"listening on (127\.0\.0\.1):(\d+)\n", line)
    assert match, f"unexpected first line {line!r}"
    call_everything(f"{match[1]}:{match[2]}")
    # a Watch left open must not keep the server from stopping
    kv_pb2, kv_pb2_grpc = load("kv")
    with grpc.insecure_channel(f"{match[1]}:{match[2]}") as channel:
        watch = kv_pb2_grpc.KVStub(channel).Watch(kv_pb2.WatchRequest(), timeout=30)
        watch.initial_metadata()
        served.send_signal(signum)
        assert served.wait(EXIT_TIMEOUT) == 0
        with pytest.raises(grpc.RpcError):
            next(watch)
    assert served.stdout.read() == ""  # nothing but the one line
    assert served.stderr.read() == ""
