"""The socket RPC of notebook 04, as one module to read top to bottom: dispatcher, server, stub.

Notebook 04 builds this in cells; here it is whole, with nothing added but a way to serve any
handlers (``serve(handlers)``, not the notebook's global registry). rpclab.byhand.socketrpc is
the same design finished: the same wire format, the same Python API, and the same contract
tests (tests/test_contract.py runs both)::

    server = serve({"subtract": lambda a, b: a - b})
    stub = connect(server.address, timeout=2.0)
    stub.subtract(42, 23)                       # 19
    stub.subtract(minuend=42, subtrahend=23)    # 19: keyword arguments travel as named params
    stub.close(); server.stop()

It is naive on purpose, and the contract tests say where (notebook 04 shows the first two):

* deep nesting: ``json.loads`` parses ``[[[[...]]]]`` by recursion, so 100,000 brackets raise
  RecursionError; the connection ends with no reply.
* huge frames: ``framing.recv_frame`` refuses a length over its limit, but the refusal is an
  exception here, not an error reply: the connection ends with no reply.
* stalled peers: a client that sends half a frame holds its server thread until it leaves.
* one caller at a time per stub, no retries, no at-most-once (notebook 05 adds those).
* each read has its own timeout, not the call: a server that keeps sending replies to other ids
  keeps a call waiting (notebook 05 gives the whole call one deadline).

A handler's own exception is an application error, code 1: JSON-RPC 2.0 reserves -32768 to
-32000 for the protocol and the server, so a client can tell "no such key" from "the server
broke". The stub skips a reply whose id is not its call's (a late reply to a call that timed out,
notebook 04's exercise), and refuses a call that mixes positional and keyword arguments.
"""

from __future__ import annotations

import inspect
import itertools
import json
import socket
import socketserver
from collections.abc import Callable, Mapping
from typing import Any

from rpclab.byhand import framing
from rpclab.runtime import background

__all__ = ["dispatcher", "serve", "RemoteError", "Stub", "connect", "params_of"]


# --------------------------------------------------------------------------- the server stub


class Fault(Exception):
    """A failure to report to the caller as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(code, message, data)
        self.code, self.message, self.data = code, message, data


def error_reply(id: Any, fault: Fault) -> dict:
    error = {"code": fault.code, "message": fault.message}
    if fault.data is not None:
        error["data"] = fault.data
    return {"jsonrpc": "2.0", "error": error, "id": id}


def dispatcher(methods: Mapping[str, Callable[..., Any]]) -> Callable[[bytes], bytes | None]:
    """``dispatch(data)`` for these methods: the reply bytes for one message, or None."""

    def run(method: str, params: Any) -> Any:
        """Call the procedure named ``method``; every failure becomes a Fault."""
        fn = methods.get(method)
        if fn is None:
            raise Fault(-32601, "Method not found", method)
        args, kwargs = (params, {}) if isinstance(params, list) else ((), params or {})
        try:
            inspect.signature(fn).bind(*args, **kwargs)  # do these params fit?
        except TypeError as problem:
            raise Fault(-32602, "Invalid params", str(problem)) from None
        try:
            return fn(*args, **kwargs)
        except Exception as problem:  # the procedure's own failure: the application's error
            raise Fault(1, "Application error", f"{type(problem).__name__}: {problem}") from None

    def respond(message: Any) -> dict | None:
        """The reply (a dict) to one decoded message; None for a notification."""
        if not (
            isinstance(message, dict)
            and message.get("jsonrpc") == "2.0"
            and isinstance(message.get("method"), str)
        ):
            return error_reply(None, Fault(-32600, "Invalid Request"))
        try:
            result = run(message["method"], message.get("params"))
            reply = {"jsonrpc": "2.0", "result": result, "id": message.get("id")}
        except Fault as fault:
            reply = error_reply(message.get("id"), fault)
        return reply if "id" in message else None  # a notification: nobody hears back

    def dispatch(data: bytes) -> bytes | None:
        """The reply bytes for one message's bytes; None when there is nothing to send."""
        try:
            message = json.loads(data)
        except ValueError as problem:
            return json.dumps(
                error_reply(None, Fault(-32700, "Parse error", str(problem)))
            ).encode()
        if isinstance(message, list) and message:  # a batch
            replies = [reply for m in message if (reply := respond(m)) is not None]
            return json.dumps(replies).encode() if replies else None
        reply = respond(message)
        return None if reply is None else json.dumps(reply).encode()

    return dispatch


# --------------------------------------------------------------------------- the server


class RPCHandler(socketserver.BaseRequestHandler):
    """One client connection: frame in, dispatch, frame out, until the client leaves."""

    server: RPCServer

    def handle(self) -> None:
        while True:
            try:
                data = framing.recv_frame(self.request)
            except ConnectionError:  # the client closed (or the server is stopping)
                return
            reply = self.server.dispatch(data)
            if reply is not None:
                framing.send_frame(self.request, reply)


class RPCServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], dispatch: Callable[[bytes], bytes | None]):
        self.dispatch = dispatch
        super().__init__(address, RPCHandler)


def serve(
    handlers: Mapping[str, Callable[..., Any]] | object,
    host: str = background.DEFAULT_HOST,
    port: int = 0,
    *,
    name: str = "reference",
) -> background.ServerHandle:
    """Serve ``handlers`` in a background thread; ``.address``, ``.stop()``.

    ``handlers`` is a mapping name -> function, or an object whose public methods are served.
    """
    if not isinstance(handlers, Mapping):
        public = [name for name in dir(handlers) if not name.startswith("_")]
        handlers = {name: getattr(handlers, name) for name in public}
    dispatch = dispatcher(handlers)
    return background.serve(
        name, lambda address: RPCServer(address, dispatch), host=host, port=port
    )


# --------------------------------------------------------------------------- the client stub


class RemoteError(Exception):
    """The server answered with an error: its code, message and data."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(f"[{code}] {message}" + ("" if data is None else f": {data}"))
        self.code, self.message, self.data = code, message, data


def unwrap(reply: dict) -> Any:
    """The result in a response, or raise the error in it."""
    if "error" in reply:
        raise RemoteError(**reply["error"])
    return reply["result"]


def params_of(args: tuple, kwargs: dict) -> list | dict:
    """A call's JSON-RPC params: an array (by position) or an object (by name), never both."""
    if args and kwargs:  # ``list(args) or kwargs`` would silently drop the keyword arguments
        raise TypeError("a JSON-RPC call passes its params by position or by name, not both")
    return kwargs if kwargs else list(args)


class Stub:
    """A stand-in for the server: ``stub.add(1, 2)`` is a call over the network."""

    def __init__(self, address: tuple[str, int], trace: bool = False, timeout: float = 2.0):
        self.sock = socket.create_connection(address, timeout=timeout)
        self.ids = itertools.count(1)
        self.trace = trace  # print every frame's bytes

    def __getattr__(self, name: str) -> Callable[..., Any]:  # runs only for names a Stub lacks
        if name.startswith("_"):  # Python and Jupyter probe _private names
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, params_of(args, kwargs))

    def call(self, method: str, params: Any) -> Any:
        request_id = next(self.ids)
        self.send({"jsonrpc": "2.0", "method": method, "params": params, "id": request_id})
        while True:
            reply = self.receive()
            if reply.get("id") in (request_id, None):  # None: the server could not read our id
                return unwrap(reply)
            # a late reply to an earlier call that timed out: nobody waits for it any more

    def notify(self, method: str, *args: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": list(args)})

    def send(self, message: Any) -> None:
        data = json.dumps(message).encode()
        if self.trace:
            print("→", data.decode())
        framing.send_frame(self.sock, data)

    def receive(self) -> Any:
        data = framing.recv_frame(self.sock)
        if self.trace:
            print("←", data.decode())
        return json.loads(data)

    def close(self) -> None:
        self.sock.close()


def connect(address: tuple[str, int], timeout: float = 2.0) -> Stub:
    """A Stub connected to the server at ``address``; each call waits at most ``timeout`` s."""
    return Stub(address, timeout=timeout)
