"""Run the Node.js Thrift client (clients/node/kv_thrift_client.js) from Python: Apache Thrift's
own library and compiler, calling the thriftpy2 server of rpclab.adapters.thrift.

Used in notebook 12 (a Thrift client of another implementation, in another language).

    reason = thrift_node_client.missing_reason()    # None, or what is missing and how to get it
    thrift_node_client.generate()                    # thrift --gen js:node,es6 protos/kv.thrift
    thrift_node_client.run(handle.address, "get", "greeting")
    # [{'call': 'get', 'key': 'greeting', 'value': 'hello'}]

The client needs three things: Node.js, its npm packages (``npm ci`` in clients/node: the
``thrift`` package is the Apache Thrift project's Node.js library), and Apache Thrift's
compiler, which turns protos/kv.thrift into JavaScript (KV.js, kv_types.js). :func:`generate`
runs the compiler into a folder of the temp directory named after a hash of the IDL and the
compiler's version, so it runs once per change; nothing generated is committed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from rpclab.adapters import node_client
from rpclab.adapters.node_client import NodeClientError, NodeMissing
from rpclab.grpcstack import protos

__all__ = [
    "CLIENT_SCRIPT",
    "COMPILER_HINT",
    "GENERATOR",
    "ThriftCallError",
    "NodeClientError",
    "NodeMissing",
    "missing_reason",
    "compiler_version",
    "generate",
    "run",
]

CLIENT_DIR = node_client.CLIENT_DIR
CLIENT_SCRIPT = CLIENT_DIR / "kv_thrift_client.js"
GENERATOR = "js:node,es6"  # Node.js modules, ES6 classes and Promises
COMPILER_HINT = (
    "apt-get install thrift-compiler (Debian, Ubuntu) or "
    "conda install -c conda-forge thrift-compiler"
)
TOOL_TIMEOUT = 60.0


class ThriftCallError(NodeClientError):
    """A call made by the Node.js Thrift client failed: ``exception`` is the IDL's exception
    ("NotFound", "InvalidArgument") or "TransportError", ``message`` what it said."""

    def __init__(
        self,
        exception: str,
        message: str,
        *,
        results: list[dict[str, Any]],
        returncode: int,
        stderr: str,
    ):
        super().__init__(f"{exception}: {message}", returncode=returncode, stderr=stderr)
        self.exception = exception
        self.message = message
        self.results = results  # every line the client printed, the failed call's last


def missing_reason() -> str | None:
    """What is missing to run the client, with how to get it; None if nothing is."""
    reason = node_client.missing_reason()
    if reason is not None:
        return reason
    if not CLIENT_SCRIPT.is_file():
        return f"the client {CLIENT_SCRIPT} is missing (is this a complete checkout of RPC Lab?)"
    if not (CLIENT_DIR / "node_modules" / "thrift").is_dir():
        return f"the Node.js client's packages are not installed: run `npm ci` in {CLIENT_DIR}."
    if shutil.which("thrift") is None:
        return (
            f"Apache Thrift's compiler (thrift) is not installed. Install it with: {COMPILER_HINT}"
        )
    return None


def compiler_version() -> str:
    """What ``thrift --version`` says, e.g. "Thrift version 0.17.0"."""
    return _tool(["thrift", "--version"], Path.cwd(), "thrift --version").strip()


def generate() -> Path:
    """The folder holding the compiler's JavaScript for kv.thrift, generated now unless there."""
    reason = missing_reason()
    if reason is not None:
        raise NodeMissing(reason)
    idl = protos.protos_dir() / "kv.thrift"
    version = compiler_version()
    digest = hashlib.sha256(idl.read_bytes() + version.encode() + GENERATOR.encode()).hexdigest()
    folder = Path(tempfile.gettempdir()) / f"rpclab-thrift-js-{digest[:16]}"
    if (folder / "KV.js").is_file() and (folder / "kv_types.js").is_file():
        return folder
    work = Path(tempfile.mkdtemp(prefix="rpclab-thrift-js-build-"))
    try:
        _tool(["thrift", "--gen", GENERATOR, "-out", str(work), str(idl)], work, "thrift")
        if not (work / "KV.js").is_file():
            raise NodeClientError(f"the Thrift compiler wrote no KV.js into {work}")
        try:
            os.replace(work, folder)  # atomic: a concurrent generation of the same IDL is harmless
        except OSError:
            if not (folder / "KV.js").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def run(
    address: tuple[str, int] | str,
    *args: str,
    timeout: float = 30.0,
    call_timeout_ms: int | None = None,
) -> list[dict[str, Any]]:
    """Run ``node kv_thrift_client.js HOST:PORT *args``; the JSON lines it printed, as dicts.

    ``args`` is a command: ``"get", KEY`` / ``"put", KEY, VALUE`` / ``"remove", KEY`` /
    ``"increment", KEY[, AMOUNT]`` / ``"keys"`` / ``"demo"``. An i64 arrives as a str.
    Raises ThriftCallError when a call fails (a declared exception, or the connection),
    NodeClientError when the client fails otherwise or runs past ``timeout`` seconds (it is
    then killed), NodeMissing when Node.js, its packages or the compiler are missing.
    ``call_timeout_ms`` is each call's limit inside the client (its default is 5000).
    """
    node = node_client.require_node()
    generated = generate()
    target = address if isinstance(address, str) else node_client._target(address)
    command = [node, str(CLIENT_SCRIPT), "--gen", str(generated)]
    if call_timeout_ms is not None:
        command += ["--timeout-ms", str(int(call_timeout_ms))]
    command += [target, str(args[0]), "--", *[str(a) for a in args[1:]]] if args else [target]
    # The generated code lives outside clients/node: NODE_PATH lets it find the thrift package.
    env = {
        **os.environ,
        "NODE_NO_WARNINGS": "1",
        "NODE_PATH": str(CLIENT_DIR / "node_modules"),
    }
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
    results = node_client._parse(done.stdout)
    stderr = done.stderr.strip()
    if done.returncode == 0:
        return results
    if results and "error" in results[-1]:
        error = results[-1]["error"]
        raise ThriftCallError(
            str(error.get("exception")),
            str(error.get("message")),
            results=results,
            returncode=done.returncode,
            stderr=stderr,
        )
    raise NodeClientError(
        f"the Node.js client exited with status {done.returncode}: {stderr or '(no message)'}",
        returncode=done.returncode,
        stderr=stderr,
    )


def _tool(command: list[str], cwd: Path, what: str) -> str:
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise NodeClientError(f"{what} did not finish within {TOOL_TIMEOUT:g} s") from None
    if done.returncode != 0:
        raise NodeClientError(
            f"{what} failed (exit {done.returncode}): {done.stderr.strip()[:2000]}",
            returncode=done.returncode,
            stderr=done.stderr,
        )
    return done.stdout
