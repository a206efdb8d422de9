"""The key-value store over XML-RPC, the standard library's RPC of the late 1990s.

A loopback call in notebook 01; compared in 07; taught in 12; measured in 13.
"""

from __future__ import annotations

import http.client
import socketserver
import sys
import xmlrpc.client
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from rpclab.kv import KVStore
from rpclab.runtime import background

__all__ = ["KVXMLRPCServer", "serve", "connect"]

MAX_REQUEST_SIZE = 1024 * 1024


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2", "/")
    protocol_version = "HTTP/1.1"  # keep the connection open between calls: one round trip per call

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_REQUEST_SIZE:  # bound what we read off the wire
            self.send_error(413, "request too large")
            return
        super().do_POST()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep notebook output clean


class KVXMLRPCServer(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    """A threaded XML-RPC server whose methods are the store's public methods."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], store: KVStore):
        super().__init__(address, requestHandler=_Handler, logRequests=False, allow_none=True)
        self.store = store
        for name in ("get", "put", "delete", "increment", "keys"):
            self.register_function(getattr(store, name), name)
        self.register_introspection_functions()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-request is normal on a network: note nothing. Report the
        rest."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def serve(
    store: KVStore, *, name: str = "kv-xmlrpc", host: str = "127.0.0.1", port: int = 0
) -> background.ServerHandle:
    """Serve ``store`` over XML-RPC in the background under ``name``."""
    return background.serve(
        name, lambda address: KVXMLRPCServer(address, store), host=host, port=port
    )


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float):
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


def connect(address: tuple[str, int], *, timeout: float = 5.0) -> xmlrpc.client.ServerProxy:
    """An XML-RPC proxy to the server at ``address``; every call gives up after ``timeout``
    seconds."""
    host, port = address
    return xmlrpc.client.ServerProxy(
        f"http://{host}:{port}/RPC2", transport=_TimeoutTransport(timeout), allow_none=True
    )
