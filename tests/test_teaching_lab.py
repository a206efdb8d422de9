"""TEACHING.md's lab section, run as written: its commands parse and run, and each learner's
code block calls real class servers (on 127.0.0.1, the documentation address 192.0.2.7 and the
token swapped for real ones)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from classlab import REPO, ClassServer, serve_command, start

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

TEACHING = REPO / "TEACHING.md"
DOC_HOST = "192.0.2.7"
DOC_TOKEN = "the token your teacher gave you"
DOC_PORTS = {"50051": "grpc", "9090": "thrift", "8000": "xmlrpc", "8080": "rest", "5000": "socket"}


def _section() -> str:
    text = TEACHING.read_text()
    start_at = text.index("\n## Lab classes")
    return text[start_at : text.index("\n## ", start_at + 1)]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(), flags=re.S)


def _commands() -> list[str]:
    return [line for block in _blocks("bash") for line in block.splitlines() if line.strip()]


def _learner_code(kind: str) -> str:
    (code,) = [b for b in _blocks("python") if b.startswith(f"# {kind}: a learner")]
    return code


def test_every_command_of_the_lab_section_parses():
    from rpclab import cli

    serve_lines = [c for c in _commands() if c.startswith("rpclab serve")]
    assert len(serve_lines) >= 9
    for line in serve_lines:
        if "|" in line:  # the synopsis
            continue
        args = cli.build_parser().parse_args(shlex.split(line)[1:])
        assert args.command == "serve"


def test_the_token_command_writes_a_token_file(tmp_path):
    from rpclab import tokens

    (line,) = [c for c in _commands() if "rpclab.tokens" in c]
    program, _, target = line.partition(">")
    argv = [sys.executable, *shlex.split(program)[1:]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    (tmp_path / target.strip()).write_text(done.stdout)
    assert set(tokens.read_token_file(tmp_path / target.strip()).values()) == {
        "ada",
        "grace",
        "alan",
    }


def _serve_as_documented(kind: str, tmp_path, stacks: list[str]) -> dict[str, ClassServer]:
    """Each stack served with the options the section gives for this kind of class, on
    127.0.0.1 and a free port."""
    lines = [c for c in _commands() if c.startswith("rpclab serve") and "|" not in c]
    servers = {}
    for stack in stacks:
        options = {
            "plain class": lambda line: "--token-file" not in line,
            "token class": lambda line: "--token-file" in line and "--tls" not in line,
            "TLS and token class": lambda line: "--tls" in line,
        }[kind]
        (line,) = [
            c for c in lines if shlex.split(c)[2] == stack and options(c)
        ]  # one documented command per stack and kind
        argv = shlex.split(line)[3:]
        for flag, value in (("--host", "127.0.0.1"), ("--port", "0")):
            argv[argv.index(flag) + 1] = value
        for flag in ("--token-file", "--tls"):
            if flag in argv:
                argv[argv.index(flag) + 1] = str(tmp_path / argv[argv.index(flag) + 1])
        servers[stack] = start(serve_command(stack, *argv))
    return servers


def _with_real_addresses(code: str, servers: dict[str, ClassServer], token: str) -> str:
    def target(match: re.Match) -> str:
        return f'"{servers[DOC_PORTS[match[1]]].target}"'

    def address(match: re.Match) -> str:
        return repr(servers[DOC_PORTS[match[1]]].address)

    code = re.sub(rf'"{re.escape(DOC_HOST)}:(\d+)"', target, code)
    code = re.sub(rf'\("{re.escape(DOC_HOST)}", (\d+)\)', address, code)
    assert DOC_HOST not in code
    return code.replace(DOC_TOKEN, token)


@pytest.mark.parametrize(
    ("kind", "stacks"),
    [
        ("plain class", ["grpc", "thrift", "xmlrpc", "rest", "socket"]),
        ("token class", ["grpc", "xmlrpc", "rest"]),
        ("TLS and token class", ["grpc"]),
    ],
)
def test_a_learner_s_code_works_as_written(kind, stacks, tmp_path, monkeypatch, capsys):
    from rpclab import tokens

    token = tokens.make_token()
    (tmp_path / "tokens.txt").write_text(f"ada {token}\n")
    servers = _serve_as_documented(kind, tmp_path, stacks)
    try:
        learner_dir = tmp_path / "learner"
        learner_dir.mkdir()
        if kind.startswith("TLS"):
            shutil.copy(tmp_path / "class-tls" / "ca.pem", learner_dir / "ca.pem")
        monkeypatch.chdir(learner_dir)
        code = _with_real_addresses(_learner_code(kind), servers, token)
        exec(compile(code, f"TEACHING.md ({kind})", "exec"), {"__name__": "learner"})
        if kind.startswith("TLS"):
            assert capsys.readouterr().out == "world\n"
        statuses = {stack: server.stop()[0] for stack, server in servers.items()}
    finally:
        for server in servers.values():
            server.kill()
    assert set(statuses.values()) == {0}


def test_after_the_idle_timeout_grpc_xmlrpc_rest_and_socket_clients_carry_on():
    """TEACHING.md: an idle connection is closed; these clients reconnect on their next call."""
    import grpc

    from rpclab.adapters import rest, xml_rpc
    from rpclab.byhand import socketrpc
    from rpclab.grpcstack import kv_service

    kv_pb2, kv_pb2_grpc = kv_service.kv_pb2, kv_service.kv_pb2_grpc
    stacks = ("grpc", "xmlrpc", "rest", "socket")
    servers = {s: start(serve_command(s, "--idle-timeout", "0.5")) for s in stacks}
    try:
        channel = grpc.insecure_channel(servers["grpc"].target)
        kv = kv_pb2_grpc.KVStub(channel)
        proxy = xml_rpc.connect(servers["xmlrpc"].address, timeout=5)
        client = rest.connect(servers["rest"].address, timeout=5)
        socket_client = socketrpc.connect(servers["socket"].address, timeout=5)  # retries=0
        for round_ in range(2):
            kv.Put(kv_pb2.PutRequest(key="k", value=str(round_)), timeout=5)
            proxy.put("k", str(round_))
            client.put("k", str(round_))
            socket_client.put("k", str(round_))
            if round_ == 0:
                time.sleep(1.5)  # longer than the idle timeout: the server closes all four
        assert kv.Get(kv_pb2.GetRequest(key="k"), timeout=5).value == "1"
        assert proxy.get("k") == "1" and client.get("k") == "1" and socket_client.get("k") == "1"
        channel.close()
        client.close()
        socket_client.close()
        assert {s: server.stop()[0] for s, server in servers.items()} == dict.fromkeys(servers, 0)
    finally:
        for server in servers.values():
            server.kill()
