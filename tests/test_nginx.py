"""A real nginx in front of three gRPC servers (rpclab.grpcstack.nginx, ``rpclab nginx``).

One channel, 30 unary calls: nginx's grpc_pass spreads them over the servers (a call each in
turn), the stream module's proxy_pass pins them to one (one channel, one connection). Started
and stopped like every background server, and from the command line until SIGTERM, leaving no
nginx process behind. Without nginx these tests skip, saying how to install it, unless
RPCLAB_REQUIRE_NGINX=1 (set by .ci/run), which makes that a failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from rpclab.grpcstack import callproxy, greeter, nginx, protos
from rpclab.runtime import background

CALLS = 30


def _need(mode: str) -> None:
    reason = nginx.missing_reason(mode)
    if reason is not None:
        if os.environ.get("RPCLAB_REQUIRE_NGINX") == "1":
            pytest.fail(f"RPCLAB_REQUIRE_NGINX=1 but {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def three():
    """Three Greeter servers, each counting the calls it receives."""
    counter = callproxy.CallCounter()
    servers = [
        background.serve_grpc(
            f"nginx-backend-{n}", greeter.add_greeter, interceptors=[counter.interceptor(f"s{n}")]
        )
        for n in range(3)
    ]
    yield servers, counter
    for server in servers:
        server.stop()


def _say_hello(port: int, calls: int = CALLS) -> None:
    pb2, pb2_grpc = protos.load("helloworld")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:  # one channel for every call
        stub = pb2_grpc.GreeterStub(channel)
        for n in range(calls):
            reply = stub.SayHello(pb2.HelloRequest(name=f"call {n}"), timeout=10)
            assert reply.message == f"Hello, call {n}!"


def _gone(pgid: int) -> bool:
    """No process of nginx's process group (its master leads it) is alive; a zombie, dead and
    waiting for init to collect it, does not count."""
    if not Path("/proc/self/stat").is_file():  # no /proc (macOS): any member, zombie or not
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            return False
    return True


def test_grpc_pass_spreads_the_calls_of_one_channel_over_the_three_servers(three):
    _need("grpc")
    servers, counter = three
    proxy = nginx.serve_nginx("nginx-l7", "grpc", servers)
    try:
        _say_hello(proxy.port)
    finally:
        proxy.stop()
    assert sorted(counter.by_server().values()) == [10, 10, 10], counter.by_server()


def test_the_stream_module_pins_the_calls_of_one_channel_to_one_server(three):
    _need("stream")
    servers, counter = three
    proxy = nginx.serve_nginx("nginx-l4", "stream", servers)
    try:
        _say_hello(proxy.port)
    finally:
        proxy.stop()
    assert sorted(counter.by_server().values()) == [0, 0, CALLS], counter.by_server()


def test_the_configurations_say_what_nginx_runs(three):
    _need("stream")
    servers, _ = three
    for mode, needle in (
        ("grpc", "grpc_pass grpc://backends;"),
        ("stream", "proxy_pass backends;"),
    ):
        proxy = nginx.serve_nginx(f"nginx-{mode}", mode, servers)
        try:
            assert needle in proxy.config
            assert proxy.config == Path(proxy.workdir, "nginx.conf").read_text()
            for server in servers:
                assert f"server 127.0.0.1:{server.port};" in proxy.config
            assert f"listen 127.0.0.1:{proxy.port}" in proxy.config
        finally:
            proxy.stop()


def test_a_rerun_replaces_the_nginx_and_stop_all_leaves_none(three):
    _need("grpc")
    servers, counter = three
    first = nginx.serve_nginx("nginx-rerun", "grpc", servers)
    second = nginx.serve_nginx("nginx-rerun", "grpc", servers)
    assert _gone(first.pid) and not first.running and not Path(first.workdir).exists()
    assert background.running()["nginx-rerun"] == second.address
    _say_hello(second.port, 3)
    background.stop("nginx-rerun")
    assert _gone(second.pid) and not Path(second.workdir).exists()
    third = nginx.serve_nginx("nginx-rerun", "grpc", servers)
    background.stop_all()  # as notebook 00 and atexit do; the backends stop here too
    assert _gone(third.pid)


def test_a_port_someone_takes_before_nginx_binds_it_is_replaced_by_another(three, monkeypatch):
    _need("grpc")
    servers, _ = three
    taken = servers[0].port  # what another program could have bound in that moment
    picks = iter([taken])
    real = nginx._free_port
    monkeypatch.setattr(nginx, "_free_port", lambda host: next(picks, None) or real(host))
    proxy = nginx.serve_nginx("nginx-taken", "grpc", servers[1:])
    try:
        assert proxy.port != taken
        _say_hello(proxy.port, 2)
    finally:
        proxy.stop()


def test_a_backend_that_would_break_out_of_the_configuration_is_refused():
    for bad in ["127.0.0.1;evil:80", "127.0.0.1:80;", "host name:80", "127.0.0.1:0", "x"]:
        with pytest.raises(ValueError):
            nginx.parse_backend(bad)


def test_where_nginx_is_missing_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setenv("RPCLAB_NGINX", "/nonexistent/nginx")
    with pytest.raises(nginx.NginxMissing) as caught:
        nginx.serve_nginx("nginx-missing", "grpc", ["127.0.0.1:50051"])
    message = str(caught.value)
    assert "apt-get install nginx" in message and "conda" in message and "brew" in message
    assert "nginx-missing" not in background.running()


def test_an_nginx_without_the_stream_module_says_which_package_has_it():
    build = nginx.NginxBuild("/usr/sbin/nginx", (1, 22, 1), "", None, True, True)
    with pytest.raises(nginx.NginxMissing, match="libnginx-mod-stream"):
        nginx._check_build(build, "stream")


def test_newer_nginx_turns_http2_on_with_its_own_directive(tmp_path):
    old = nginx.NginxBuild("nginx", (1, 22, 1), "dynamic", "/m/ngx_stream_module.so", True, True)
    new = old._replace(version=(1, 26, 0))
    kwargs = {"port": 8080, "workdir": tmp_path}
    assert "listen 127.0.0.1:8080 http2;" in nginx.configuration(
        "grpc", ["a:1"], build=old, **kwargs
    )
    text = nginx.configuration("grpc", ["a:1"], build=new, **kwargs)
    assert "listen 127.0.0.1:8080;" in text and "http2 on;" in text
    stream = nginx.configuration("stream", ["a:1"], build=old, **kwargs)
    assert stream.splitlines()[1] == "load_module /m/ngx_stream_module.so;"


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
def test_the_command_serves_until_sigterm_then_exits_0_leaving_no_nginx(three):
    _need("grpc")
    servers, counter = three
    backends = [arg for s in servers for arg in ("--backend", f"127.0.0.1:{s.port}")]
    cli = subprocess.Popen(
        [sys.executable, "-m", "rpclab.cli", "nginx", "grpc", *backends],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = cli.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line + cli.stderr.read()
        port = int(line.strip().rsplit(":", 1)[1])
        _say_hello(port, 6)
        assert sorted(counter.by_server().values()) == [2, 2, 2]
        (master,) = _children(cli.pid)
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(10) == 0, cli.stderr.read()
        assert _gone(master)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def test_the_command_with_a_bad_backend_says_so_in_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "rpclab.cli", "nginx", "grpc", "--backend", "nowhere"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "a backend is HOST:PORT" in done.stderr and "Traceback" not in done.stderr


def test_nginx_that_dies_is_reported_and_the_command_exits_1(three):
    _need("grpc")
    servers, _ = three
    cli = subprocess.Popen(
        [sys.executable, "-m", "rpclab.cli", "nginx", "grpc",
         "--backend", f"127.0.0.1:{servers[0].port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert cli.stdout.readline().startswith("listening on")
        (master,) = _children(cli.pid)
        os.kill(master, signal.SIGKILL)  # nginx dies under it
        assert cli.wait(10) == 1
        assert "nginx exited unexpectedly (killed by signal 9)" in cli.stderr.read()
        assert _gone(master)  # its worker, orphaned by the SIGKILL, was killed by the command
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
