"""A lab class across machines: a teacher's class servers, an honest learner and a hostile one,
each in a network namespace of its own on one bridge (tests/netns_lab.py).

The teacher runs `rpclab serve grpc` (TLS and tokens), `thrift`, `xmlrpc` and `rest` (tokens)
bound to the teacher's address. From another address the hostile learner, who holds a token
of their own, makes every attack of issue 12 on those stacks at once (tests/class_learners.py:
reflection and health without a token, streams held, a call flood, a Thrift skip bomb, bad
Content-Lengths and a gzip bomb, lone surrogates, half-sent requests on more connections than
allowed). Meanwhile the honest learner's calls must all succeed, each within 2 s; then every
server must exit 0 within 10 s of SIGTERM, the attack still going.

Needs root and iproute2: skipped elsewhere, with the reason, unless RPCLAB_REQUIRE_NETNS=1
(.ci/run sets it), which makes that a failure.
"""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from classlab import EXIT_TIMEOUT, ClassServer, serve_command, start, write_tokens
from netns_lab import NetworkLab, remove_leftovers, require_netns

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux namespaces")

PREFIX = "h12g"  # every namespace, link and bridge of this suite starts with it
LEARNERS = Path(__file__).resolve().parent / "class_learners.py"
HONEST_SECONDS = 8.0  # how long the honest learner calls while the attack goes on
ATTACK_SECONDS = 90.0  # the hostile learner's own limit (it is stopped long before)
CALL_LIMIT = 2.0  # seconds an honest call may take
# what the hostile learner sees as the servers stop under it (gRPC cancels calls in progress)
AFTER_STOP = {
    "UNAVAILABLE",
    "CANCELLED",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "BrokenPipeError",
}


@pytest.fixture(scope="module")
def lab():
    require_netns()
    with NetworkLab(PREFIX, ["teacher", "honest", "hostile"]) as lab:
        yield lab


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return proc.stdout.readline()


def _config(servers: dict[str, ClassServer], tls: Path, token: str) -> dict:
    return {
        "grpc": {"target": servers["grpc"].target, "ca": str(tls / "ca.pem"), "token": token},
        "thrift": {"address": list(servers["thrift"].address)},
        "xmlrpc": {"address": list(servers["xmlrpc"].address), "token": token},
        "rest": {"address": list(servers["rest"].address), "token": token},
    }


def _only(outcomes: set[str], *prefixes: str) -> bool:
    """Whether every outcome starts with one of ``prefixes``."""
    return all(any(outcome.startswith(p) for p in prefixes) for outcome in outcomes)


def _stop_all(servers: dict[str, ClassServer]) -> dict[str, tuple[int | None, float, str]]:
    """SIGTERM every server at once; (status, seconds, stderr) of each."""
    started = time.monotonic()
    for server in servers.values():
        server.proc.send_signal(signal.SIGTERM)
    results = {}
    for kind, server in servers.items():
        try:
            _, err = server.proc.communicate(
                timeout=max(0.1, started + EXIT_TIMEOUT - time.monotonic())
            )
            results[kind] = (server.proc.returncode, time.monotonic() - started, err)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            _, err = server.proc.communicate()
            results[kind] = (None, time.monotonic() - started, err)
    return results


def test_a_hostile_learner_does_not_stop_an_honest_one_and_servers_still_exit(lab, tmp_path):
    tokens = write_tokens(tmp_path / "tokens.txt", ["bob", "mallory"])
    tls = tmp_path / "tls"
    token_file = ["--token-file", str(tmp_path / "tokens.txt")]
    stacks = {
        "grpc": [*token_file, "--tls", str(tls)],
        "thrift": [],
        "xmlrpc": token_file,
        "rest": token_file,
    }
    teacher = lab.address("teacher")
    servers: dict[str, ClassServer] = {}
    hostile = None
    try:
        for kind, options in stacks.items():
            command = serve_command(kind, "--host", teacher, "--port", "0", *options)
            servers[kind] = start(lab.command("teacher", command))
            assert servers[kind].host == teacher

        hostile = lab.popen(
            "hostile",
            [
                sys.executable,
                str(LEARNERS),
                "hostile",
                json.dumps(_config(servers, tls, tokens["mallory"])),
                "--seconds",
                str(ATTACK_SECONDS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert _read_line(hostile, 60) == "attacking\n"

        honest = lab.run(
            "honest",
            [
                sys.executable,
                str(LEARNERS),
                "honest",
                json.dumps(_config(servers, tls, tokens["bob"])),
                "--seconds",
                str(HONEST_SECONDS),
            ],
            timeout=HONEST_SECONDS + 60,
        )
        assert honest.returncode == 0, honest.stderr[-3000:]
        report = json.loads(honest.stdout.splitlines()[-1])
        print("honest learner:", report)
        assert report["failures"] == []
        assert set(report["calls"]) == set(stacks) and min(report["calls"].values()) >= 3
        assert max(report["slowest"].values()) < CALL_LIMIT, report["slowest"]

        stopped = _stop_all(servers)  # the attack still going
        for kind, (status, took, err) in stopped.items():
            assert status == 0, f"{kind} exited {status} after {took:.1f} s: {err[-2000:]}"
            assert "Traceback" not in err, f"{kind}: {err[-2000:]}"

        hostile.send_signal(signal.SIGTERM)
        out, err = hostile.communicate(timeout=30)
        assert hostile.returncode == 0, err[-3000:]
        seen = json.loads(out.splitlines()[-1])
    finally:
        if hostile is not None and hostile.poll() is None:
            hostile.kill()
            hostile.communicate(timeout=EXIT_TIMEOUT)
        for server in servers.values():
            server.kill()

    saw = {name: set(outcomes) - AFTER_STOP for name, outcomes in seen["seen"].items()}
    assert seen["errors"] == [] and seen["still running"] == [], seen
    assert saw["grpc:grpc_without_token"] == {"UNAUTHENTICATED"}, seen
    held = seen["seen"]["grpc:grpc_hold_streams"]
    assert held["Watch held"] == 4, seen  # the default: 4 streams per learner
    assert held["Watch RESOURCE_EXHAUSTED"] == 12, seen
    assert held["RecordRoute RESOURCE_EXHAUSTED"] == 16, seen
    assert saw["grpc:grpc_call_flood"] <= {"NOT_FOUND", "RESOURCE_EXHAUSTED"}, seen
    assert saw["thrift:thrift_skip_bomb"] == {"closed"}, seen
    assert _only(
        saw["xmlrpc:xmlrpc_bad_lengths"],
        "HTTP/1.1 400 Content-Length must be a number of bytes",
        "HTTP/1.1 400 not gzip, or over 1048576 bytes once decompress",
        f"HTTP/1.1 503 {lab.address('hostile')} already has 16 connections open",
    ), seen
    assert _only(
        saw["rest:rest_surrogates"],
        "HTTP/1.1 400 Bad Request",
        "HTTP/1.1 503 Service Unavailable",  # the half-sent requests hold its 16 connections
    ), seen
    for stack in ("thrift", "xmlrpc", "rest"):
        half = seen["seen"][f"{stack}:attack_it"]
        assert half["closed by the server"] > 0, seen


def test_the_lab_leaves_nothing_behind_even_when_its_test_fails():
    require_netns()
    import subprocess as sp

    def names() -> str:
        listed = sp.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
        links = sp.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10)
        return listed.stdout + links.stdout

    with pytest.raises(RuntimeError, match="a failing test"):
        with NetworkLab(PREFIX, ["teacher", "learner"]) as lab:
            assert lab.namespace("teacher") in names()
            raise RuntimeError("a failing test")
    assert lab.tag not in names()

    # what a killed run left behind is removed by the next one
    dead = next(n for n in range(99999, 0, -1) if not _process_ends_in(n))
    leftover = f"{PREFIX}-{dead}a-teacher"
    sp.run(["ip", "netns", "add", leftover], check=True, timeout=10)
    try:
        assert leftover in remove_leftovers(PREFIX)
        assert leftover not in names()
    finally:
        sp.run(["ip", "netns", "delete", leftover], capture_output=True, timeout=10)


def _process_ends_in(n: int) -> bool:
    import os

    return any(p.isdigit() and int(p) % 100000 == n for p in os.listdir("/proc"))
