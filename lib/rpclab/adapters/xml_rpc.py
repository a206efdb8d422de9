"""The key-value store over XML-RPC, the standard library's RPC of the late 1990s.

``serve(store)`` runs the standard library's SimpleXMLRPCServer (a thread per connection,
HTTP/1.1 kept alive) in the background; ``connect(address)`` is ``xmlrpc.client.ServerProxy``
with a timeout. The request handler here is the standard one with the bounds a server others
can reach needs: a strict ``Content-Length`` (digits only, at most ``MAX_REQUEST_SIZE``), a
bounded gzip body, ``request_timeout`` seconds per request and ``idle_timeout`` between
requests, and optionally a bearer token and connection limits (rpclab.runtime.guard).

A loopback call in notebook 01; compared in 07; taught in 12; measured in 13 (the echo of
rpclab.bench); served to a class by ``rpclab serve xmlrpc``.
"""

from __future__ import annotations

import http.client
import io
import re
import socket
import socketserver
import sys
import xmlrpc.client
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from rpclab.kv import KVStore
from rpclab.runtime import background
from rpclab.runtime.guard import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    ConnectionLimits,
    GuardedServerMixIn,
)
from rpclab.tokens import BearerTokens

__all__ = [
    "MAX_REQUEST_SIZE",
    "BoundedRequestHandler",
    "KVXMLRPCServer",
    "serve",
    "connect",
]

MAX_REQUEST_SIZE = 1024 * 1024
_DIGITS = re.compile(r"[0-9]{1,12}")


class _ArmingReader(io.RawIOBase):
    """The connection's raw reader: tells the handler when the bytes of a new request arrive."""

    def __init__(self, sock: socket.socket, on_bytes: Callable[[], None]) -> None:
        super().__init__()
        self._raw = sock.makefile("rb", buffering=0)
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        count = self._raw.readinto(buffer)
        if count:
            self._on_bytes()
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


class BoundedRequestHandler(SimpleXMLRPCRequestHandler):
    """SimpleXMLRPCRequestHandler with every size and wait bounded, and an optional token check.

    ``max_request_size`` bounds the body, before and after gzip. A request must arrive and be
    answered within the server's ``request_timeout`` seconds of its first byte; a connection
    idle for ``idle_timeout`` seconds is closed (both from rpclab.runtime.guard's mix-in,
    when the server has it). With a server attribute ``tokens`` (a BearerTokens), every
    request needs ``Authorization: Bearer <token>``, else 401.
    """

    rpc_paths = ("/RPC2", "/")
    protocol_version = "HTTP/1.1"  # keep the connection open between calls: one round trip per call
    max_request_size = MAX_REQUEST_SIZE
    learner: str | None = None  # who holds the token of the request being served

    def setup(self) -> None:
        super().setup()
        if isinstance(self.server, GuardedServerMixIn):
            self.rfile.close()
            self.rfile = io.BufferedReader(_ArmingReader(self.connection, self._request_arrives))
        self._between_requests = True

    def handle_one_request(self) -> None:
        server = self.server
        if not isinstance(server, GuardedServerMixIn):
            super().handle_one_request()
            return
        self._between_requests = True
        server.watchdog.arm(self.connection, server.idle_timeout)
        try:
            super().handle_one_request()
        finally:
            server.watchdog.disarm(self.connection)

    def _request_arrives(self) -> None:
        if self._between_requests:  # the first bytes of a request: its clock starts
            self._between_requests = False
            server = self.server
            assert isinstance(server, GuardedServerMixIn)
            server.watchdog.arm(self.connection, server.request_timeout)

    def do_POST(self) -> None:
        tokens: BearerTokens | None = getattr(self.server, "tokens", None)
        if tokens is not None:
            try:
                self.learner = tokens.check(self.headers.get("authorization"))
            except PermissionError as exc:
                self._refuse(HTTPStatus.UNAUTHORIZED, str(exc), {"WWW-Authenticate": "Bearer"})
                return
        lengths = self.headers.get_all("content-length") or []
        if len(lengths) != 1:
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "one Content-Length header is required")
            return
        if not _DIGITS.fullmatch(lengths[0].strip()):
            self._refuse(HTTPStatus.BAD_REQUEST, "Content-Length must be a number of bytes")
            return
        if int(lengths[0]) > self.max_request_size:  # bound what we read off the wire
            self._refuse(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"a request is at most {self.max_request_size} bytes",
            )
            return
        super().do_POST()

    def decode_request_content(self, data: bytes) -> bytes | None:
        """The body, gunzipped if it says so: at most ``max_request_size`` bytes either way."""
        encoding = self.headers.get("content-encoding", "identity").lower()
        if encoding == "identity":
            return data
        if encoding == "gzip":
            try:
                return xmlrpc.client.gzip_decode(data, max_decode=self.max_request_size)
            except ValueError:
                self._refuse(
                    HTTPStatus.BAD_REQUEST,
                    f"not gzip, or over {self.max_request_size} bytes once decompressed",
                )
                return None
        self._refuse(HTTPStatus.NOT_IMPLEMENTED, f"encoding {encoding!r} not supported")
        return None

    def _refuse(
        self, status: HTTPStatus, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer ``status`` with ``message`` as its text, and close the connection (the rest
        of a refused request's body is never read)."""
        body = (message + "\n").encode()
        self.send_response(status, message)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep notebook output clean


class KVXMLRPCServer(GuardedServerMixIn, socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    """A threaded XML-RPC server whose methods are the store's public methods.

    ``limits`` (rpclab.runtime.guard.ConnectionLimits) bounds the connections per address and
    in all, a refused connection getting ``503`` with the reason; ``tokens`` (token -> name)
    makes every call need ``Authorization: Bearer <token>``.
    """

    allow_reuse_address = True
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        store: KVStore,
        *,
        limits: ConnectionLimits | None = None,
        tokens: Mapping[str, str] | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ):
        super().__init__(
            address, requestHandler=BoundedRequestHandler, logRequests=False, allow_none=True
        )
        self.guard(limits, idle_timeout=idle_timeout, request_timeout=request_timeout)
        self.tokens = BearerTokens(tokens) if tokens else None
        self.store = store
        for name in ("get", "put", "delete", "increment", "keys"):
            self.register_function(getattr(store, name), name)
        self.register_introspection_functions()

    def refuse(self, request: socket.socket, reason: str) -> None:
        body = (reason + "\n").encode()
        request.sendall(
            f"HTTP/1.1 503 {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-request is normal on a network: note nothing. Report the
        rest."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def serve(
    store: KVStore,
    *,
    name: str = "kv-xmlrpc",
    host: str = "127.0.0.1",
    port: int = 0,
    limits: ConnectionLimits | None = None,
    tokens: Mapping[str, str] | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> background.ServerHandle:
    """Serve ``store`` over XML-RPC in the background under ``name``."""

    def make(address: tuple[str, int]) -> KVXMLRPCServer:
        return KVXMLRPCServer(
            address,
            store,
            limits=limits,
            tokens=tokens,
            idle_timeout=idle_timeout,
            request_timeout=request_timeout,
        )

    return background.serve(name, make, host=host, port=port)


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float, headers: list[tuple[str, str]]):
        super().__init__(headers=headers)
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


def connect(
    address: tuple[str, int], *, timeout: float = 5.0, token: str | None = None
) -> xmlrpc.client.ServerProxy:
    """An XML-RPC proxy to the server at ``address``; every call gives up after ``timeout``
    seconds, and carries ``Authorization: Bearer <token>`` if ``token`` is given."""
    host, port = address
    headers = [("Authorization", f"Bearer {token}")] if token is not None else []
    return xmlrpc.client.ServerProxy(
        f"http://{host}:{port}/RPC2",
        transport=_TimeoutTransport(timeout, headers),
        allow_none=True,
    )
