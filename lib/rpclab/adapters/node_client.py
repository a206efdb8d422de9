"""Run the Node.js gRPC client (clients/node/kv_client.js) from Python and read what it printed.

Used in notebook 12 (JavaScript calls the gRPC key-value service).

The client is JavaScript: it loads protos/kv.proto at run time and calls a
gRPC server, such as the kernel's own KV service::

    handle = background.serve_grpc("kv", lambda server: grpcservices.add_kv(server, store))
    node_client.run_node_client(handle.address, "put", "greeting", "hello")
    # [{'call': 'put', 'key': 'greeting', 'value': 'hello'}]
    node_client.run_node_client(handle.address, "get", "missing")   # raises NodeCallError
    (NOT_FOUND)

It needs Node.js and the client's packages (``npm ci`` in clients/node);
:func:`require_node` says how to get whichever is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from rpclab import checks

__all__ = [
    "CLIENT_DIR",
    "CLIENT_SCRIPT",
    "NodeMissing",
    "NodeClientError",
    "NodeCallError",
    "node_available",
    "missing_reason",
    "require_node",
    "run_node_client",
]

CLIENT_DIR = Path(__file__).resolve().parents[3] / "clients" / "node"
CLIENT_SCRIPT = CLIENT_DIR / "kv_client.js"
MAX_OUTPUT_LINES = 1000  # the client prints one line per call
MAX_REPEAT = 100  # calls one run may repeat (kv_client.js refuses more)


class NodeMissing(RuntimeError):
    """Node.js, or the client's npm packages, are not installed; the message says how to get
    them."""


class NodeClientError(RuntimeError):
    """The Node.js client failed without reporting a gRPC status (bad usage, a crash, a timeout)."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class NodeCallError(NodeClientError):
    """A call made by the Node.js client failed with a gRPC status: ``code`` ("NOT_FOUND"...) and
    ``details``."""

    def __init__(
        self,
        code: str,
        details: str,
        *,
        results: list[dict[str, Any]],
        returncode: int,
        stderr: str,
    ):
        super().__init__(f"{code}: {details}", returncode=returncode, stderr=stderr)
        self.code = code
        self.details = details
        self.results = results  # every line the client printed, the failed call's last


def node_available() -> str | None:
    """The path of the ``node`` program, or None if Node.js is not installed."""
    return shutil.which("node") or shutil.which("nodejs")


def missing_reason() -> str | None:
    """What is missing to run the client, with how to get it; None if nothing is."""
    if node_available() is None:
        return (
            "Node.js is not installed. Install it with `conda install -c conda-forge nodejs` "
            "(conda, Binder) or `apt-get install nodejs npm` (Debian, Ubuntu), "
            f"then run `npm ci` in {CLIENT_DIR}."
        )
    if not CLIENT_SCRIPT.is_file():
        return (
            f"the Node.js client {CLIENT_SCRIPT} is missing (is this a complete checkout of RPC "
            "Lab?)"
        )
    if not (CLIENT_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        return f"the Node.js client's packages are not installed: run `npm ci` in {CLIENT_DIR}."
    return None


def require_node() -> str:
    """The path of ``node``, once sure the client can run; NodeMissing (saying what to do)
    otherwise."""
    reason = missing_reason()
    if reason is not None:
        raise NodeMissing(reason)
    node = node_available()
    assert node is not None
    return node


def run_node_client(
    address: tuple[str, int] | str,
    *args: str,
    timeout: float = 30.0,
    deadline_ms: int | None = None,
    repeat: int = 1,
) -> list[dict[str, Any]]:
    """Run ``node kv_client.js HOST:PORT *args``; return the JSON lines it printed, one dict per
    call.

    ``args`` is a command: ``"get", KEY`` / ``"put", KEY, VALUE`` / ``"delete", KEY`` /
    ``"increment", KEY[, AMOUNT]`` / ``"demo"``. An int64 (increment's value)
    arrives as a str, as JavaScript gives it. Raises NodeCallError when a call
    fails with a gRPC status, NodeClientError when the client fails otherwise or
    runs past ``timeout`` seconds (it is then killed), NodeMissing when Node.js
    or the client's packages are not installed. ``deadline_ms`` is each call's
    gRPC deadline (the client's default is 5000), counted from when the call is made;
    ``repeat`` makes the same call that many times (1-100) on one channel, one line each.
    """
    checks.integer("repeat", repeat, low=1, high=MAX_REPEAT)
    node = require_node()
    target = address if isinstance(address, str) else _target(address)
    command = [node, str(CLIENT_SCRIPT)]
    if deadline_ms is not None:
        command += ["--deadline-ms", str(int(deadline_ms))]
    if repeat != 1:
        command += ["--repeat", str(repeat)]
    # after "--" every argument is a key or a value, even "-h" or "--deadline-ms"
    command += [target, str(args[0]), "--", *[str(a) for a in args[1:]]] if args else [target]
    env = {**os.environ, "NODE_NO_WARNINGS": "1"}
    try:
        done = subprocess.run(
            command,
            cwd=CLIENT_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed it
        raise NodeClientError(f"the Node.js client did not finish within {timeout:g} s") from exc
    results = _parse(done.stdout)
    stderr = done.stderr.strip()
    if done.returncode == 0:
        return results
    if results and "error" in results[-1]:
        error = results[-1]["error"]
        raise NodeCallError(
            str(error.get("code")),
            str(error.get("details")),
            results=results,
            returncode=done.returncode,
            stderr=stderr,
        )
    raise NodeClientError(
        f"the Node.js client exited with status {done.returncode}: {stderr or '(no message)'}",
        returncode=done.returncode,
        stderr=stderr,
    )


def _target(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse(stdout: str) -> list[dict[str, Any]]:
    results = []
    for line in stdout.splitlines()[:MAX_OUTPUT_LINES]:
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise NodeClientError(
                f"the Node.js client printed a line that is not JSON: {line[:200]!r}"
            ) from None
        if isinstance(value, dict):
            results.append(value)
    return results
