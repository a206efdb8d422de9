"""Build and run the C client of the ONC RPC store: rpcgen's stubs from protos/kv.x, compiled
with gcc against libtirpc, calling a server such as the kernel's own (rpclab.byhand.oncrpc).

    reason = c_client.missing_reason()     # None, or what is missing and how to install it
    c_client.run(server.address)           # ['KV_NULL -> (void)', 'KV_PUT c:greeting ...', ...]
    c_client.run(("127.0.0.1", 0))         # port 0: ask the portmapper (rpcbind) for the port

``rpcgen`` reads kv.x and writes C: kv.h (the types and numbers), kv_xdr.c
(one XDR routine per type) and kv_clnt.c (one stub per procedure);
clients/c/kv_client.c calls each stub once and prints a line per call. The
build is kept in a folder of the temp directory named after a hash of its
sources, so it runs once per change.

Notebook 12 runs it against the kernel's server; tests/test_oncrpc_peers.py too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from rpclab.grpcstack import protos

__all__ = [
    "CLIENT_SOURCE",
    "INSTALL_HINT",
    "CClientMissing",
    "CClientError",
    "missing_reason",
    "build",
    "run",
]

CLIENT_SOURCE = Path(__file__).resolve().parents[3] / "clients" / "c" / "kv_client.c"
INSTALL_HINT = "apt-get install rpcsvc-proto libtirpc-dev gcc (Debian, Ubuntu)"
TIRPC_HEADER = Path("/usr/include/tirpc/rpc/rpc.h")
BUILD_TIMEOUT = 120.0
MAX_OUTPUT_LINES = 100  # the client prints one line per call


class CClientMissing(RuntimeError):
    """rpcgen, a C compiler or libtirpc is not installed; the message says how to get them."""


class CClientError(RuntimeError):
    """Building or running the C client failed; ``stderr`` holds what the tools said."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


def _tirpc_flags() -> tuple[list[str], list[str]] | None:
    """(compile flags, link flags) for libtirpc, or None when its headers are not installed."""
    pkg_config = shutil.which("pkg-config")
    if pkg_config is not None:
        found = subprocess.run(
            [pkg_config, "--cflags", "--libs", "libtirpc"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if found.returncode == 0:
            flags = found.stdout.split()
            return [f for f in flags if not f.startswith("-l")], [
                f for f in flags if f.startswith("-l")
            ]
    if TIRPC_HEADER.is_file():
        return [f"-I{TIRPC_HEADER.parent.parent}"], ["-ltirpc"]
    return None


def missing_reason() -> str | None:
    """What is missing to build the C client, with how to install it; None if nothing is."""
    missing = [tool for tool in ("rpcgen", "gcc") if shutil.which(tool) is None]
    if _tirpc_flags() is None:
        missing.append("libtirpc's headers")
    if missing:
        return f"{', '.join(missing)} not installed. Install with: {INSTALL_HINT}"
    if not CLIENT_SOURCE.is_file():
        return f"the C client {CLIENT_SOURCE} is missing (is this a complete checkout of RPC Lab?)"
    return None


def _run_tool(command: list[str], cwd: Path, what: str) -> None:
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=BUILD_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise CClientError(f"{what} did not finish within {BUILD_TIMEOUT:g} s") from None
    if done.returncode != 0:
        raise CClientError(
            f"{what} failed (exit {done.returncode}): {done.stderr.strip()[:2000]}",
            returncode=done.returncode,
            stderr=done.stderr,
        )


def build() -> Path:
    """The compiled client, built now unless a build of the same sources is there already."""
    reason = missing_reason()
    if reason is not None:
        raise CClientMissing(reason)
    interface = protos.protos_dir() / "kv.x"
    digest = hashlib.sha256(interface.read_bytes() + CLIENT_SOURCE.read_bytes()).hexdigest()
    folder = Path(tempfile.gettempdir()) / f"rpclab-c-client-{digest[:16]}"
    program = folder / "kv_client"
    if program.is_file():
        return program
    flags = _tirpc_flags()
    assert flags is not None
    work = Path(tempfile.mkdtemp(prefix="rpclab-c-client-build-"))
    try:
        shutil.copy(interface, work / "kv.x")
        shutil.copy(CLIENT_SOURCE, work / "kv_client.c")
        for option, output in (("-h", "kv.h"), ("-l", "kv_clnt.c"), ("-c", "kv_xdr.c")):
            _run_tool(["rpcgen", option, "-o", output, "kv.x"], work, f"rpcgen {option}")
        compile_flags, link_flags = flags
        _run_tool(
            ["gcc", "-O1", *compile_flags, "-I.", "-o", "kv_client"]
            + ["kv_client.c", "kv_clnt.c", "kv_xdr.c", *link_flags],
            work,
            "gcc",
        )
        try:
            os.replace(work, folder)  # atomic: a concurrent build of the same sources is harmless
        except OSError:
            if not program.is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return program


def run(address: tuple[str, int], *, auth: str = "none", timeout: float = 30.0) -> list[str]:
    """Build (if needed) and run the C client against ``address``; the lines it printed.

    ``auth="sys"`` sends an AUTH_SYS credential instead of AUTH_NONE. Raises
    CClientError when a call fails (exit status 1, libtirpc's message in the
    error) or the client runs past ``timeout`` seconds, CClientMissing when the
    tools are not installed.
    """
    if auth not in ("none", "sys"):
        raise ValueError(f"auth must be 'none' or 'sys', not {auth!r}")
    program = build()
    host, port = address
    command = [str(program), str(host), str(int(port))] + (["sys"] if auth == "sys" else [])
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise CClientError(f"the C client did not finish within {timeout:g} s") from None
    lines = done.stdout.splitlines()[:MAX_OUTPUT_LINES]
    if done.returncode != 0:
        raise CClientError(
            f"the C client exited with status {done.returncode}: "
            f"{done.stderr.strip() or '(no message)'}",
            returncode=done.returncode,
            stderr=done.stderr,
        )
    return lines
