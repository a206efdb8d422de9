"""The key-value store over Apache Thrift (protos/kv.thrift), with thriftpy2.

Taught in notebook 12; measured in 13; served by ``rpclab serve thrift``.

thriftpy2 reads the IDL at run time (``kv_thrift`` below is the module it
makes: the service, its argument structs and its exceptions) and does the
marshalling. Its own servers do not stop cleanly from another thread, so the
server here is a standard-library ``socketserver`` (one thread per connection)
that hands each message to thriftpy2's processor::

    handle = thrift.serve(store)                 # background server, 127.0.0.1, a free port
    with thrift.connect(handle.address) as client:
        client.put("greeting", "hello")
        client.get("missing")                    # raises thrift.NotFound
    handle.stop()

On the wire: Thrift's binary protocol in framed transport -- a 4-byte
big-endian length, then the message: rpclab.byhand.framing's format. Any Thrift
client that speaks binary + framed can call this server.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import sys
from types import ModuleType
from typing import Any

import thriftpy2
from thriftpy2.protocol import TBinaryProtocolFactory
from thriftpy2.protocol.binary import TBinaryProtocol as PurePythonBinaryProtocol
from thriftpy2.thrift import TApplicationException, TClient, TException, TProcessor
from thriftpy2.transport import TFramedTransportFactory, TSocket, TTransportException
from thriftpy2.transport.memory import TMemoryBuffer as PurePythonMemoryBuffer

from rpclab import checks
from rpclab.adapters.thrift_wire import MalformedMessage, check_message
from rpclab.byhand import framing
from rpclab.grpcstack import protos
from rpclab.kv import KeyNotFound, KVStore
from rpclab.runtime import background
from rpclab.runtime.guard import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    ConnectionLimits,
    GuardedServerMixIn,
)

__all__ = [
    "kv_thrift",
    "THRIFT_FILE",
    "NotFound",
    "InvalidArgument",
    "MAX_MESSAGE_SIZE",
    "KVHandler",
    "KVThriftServer",
    "ThriftClient",
    "serve",
    "connect",
]

THRIFT_FILE = protos.protos_dir() / "kv.thrift"
kv_thrift: ModuleType = thriftpy2.load(
    str(THRIFT_FILE), module_name="kv_thrift"
)  # thriftpy2 wants *_thrift

NotFound: type[TException] = kv_thrift.NotFound
InvalidArgument: type[TException] = kv_thrift.InvalidArgument

MAX_MESSAGE_SIZE = framing.MAX_FRAME_SIZE  # a larger frame is refused: the connection is closed
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class KVHandler:
    """The service's methods as kv.thrift declares them: each calls the store and raises the IDL's
    exceptions."""

    def __init__(self, store: KVStore):
        self.store = store

    def get(self, key: str) -> str:
        try:
            return self.store.get(key)
        except KeyNotFound as exc:
            raise NotFound(key=key, message=str(exc)) from None
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(message=str(exc)) from None

    def put(self, key: str, value: str) -> None:
        try:
            self.store.put(key, value)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(message=str(exc)) from None

    def remove(self, key: str) -> bool:
        try:
            return self.store.delete(key)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(message=str(exc)) from None

    def increment(self, key: str, amount: int | None) -> int:
        amount = 1 if amount is None else amount
        try:
            value = self.store.increment(key, amount)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(message=str(exc)) from None
        if not INT64_MIN <= value <= INT64_MAX:
            self.store.increment(key, -amount)  # undo: an i64 cannot carry the result
            raise InvalidArgument(
                message=f"{key!r} would become {value}, which does not fit in an i64"
            )
        return value

    def keys(self) -> list[str]:
        return self.store.keys()


class _ExactBuffer(PurePythonMemoryBuffer):
    """A received message to decode: a read past its end is an error, not a short read."""

    def read(self, sz: int) -> bytes:
        data = super().read(sz) if sz >= 0 else b""
        if len(data) != sz:
            raise TTransportException(
                TTransportException.END_OF_FILE, f"message ended {sz - len(data)} bytes early"
            )
        return data


# A message that is not well-formed Thrift raises one of these while it is decoded.
_MALFORMED = (TException, struct.error, UnicodeDecodeError, ValueError, TypeError, RecursionError)


class _ConnectionHandler(socketserver.BaseRequestHandler):
    """One client connection: read a frame, let thriftpy2 decode and dispatch it, send the reply
    frame; repeat."""

    server: KVThriftServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        server = self.server
        while server.wait_for_request(sock):  # False once idle for idle_timeout seconds
            with server.request_deadline(sock):  # from its first byte to its reply
                try:
                    frame = framing.recv_frame(sock, server.max_message_size)
                except (framing.FramingError, OSError):
                    return  # closed, too large (refused by closing, as Thrift servers do), late
                reply = server.process(frame)
                if reply is None:
                    return  # malformed: the stream can no longer be trusted
                if reply:
                    try:
                        framing.send_frame(sock, reply, max_size=sys.maxsize)
                    except OSError:
                        return


class KVThriftServer(GuardedServerMixIn, socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A threaded TCP server that answers Thrift calls (binary protocol, framed) on a KVStore.

    A request must arrive whole and be answered within ``request_timeout`` seconds of its
    first byte; a connection idle for ``idle_timeout`` seconds is closed; ``limits``
    (rpclab.runtime.guard.ConnectionLimits) bounds the connections per address and in all
    (one over is closed at once: Thrift has no way to say why before a request).
    """

    allow_reuse_address = True
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        store: KVStore,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        limits: ConnectionLimits | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ):
        checks.integer("max_message_size", max_message_size, low=1)
        super().__init__(address, _ConnectionHandler)
        self.guard(limits, idle_timeout=idle_timeout, request_timeout=request_timeout)
        self.store = store
        self.max_message_size = max_message_size
        self.processor = TProcessor(kv_thrift.KV, KVHandler(store))

    def process(self, message: bytes) -> bytes | None:
        """The reply to one Thrift message (b"" for none), or None if the message is not
        well-formed.

        Decoding uses thriftpy2's pure-Python protocol over a buffer that refuses
        to read past the message: a length field that lies about a string's size
        cannot make it allocate or read more than the frame holds. Before that,
        rpclab.adapters.thrift_wire checks every count against the bytes left, so that
        a lying container count cannot make thriftpy2 loop billions of times either.
        """
        try:
            check_message(message)
        except MalformedMessage:
            return None
        iprot = PurePythonBinaryProtocol(_ExactBuffer(message), strict_decode=True)
        out = PurePythonMemoryBuffer()
        oprot = PurePythonBinaryProtocol(out)
        try:
            api, seqid, result, call = self.processor.process_in(iprot)
        except _MALFORMED:
            return None
        if isinstance(result, TApplicationException):  # a method the service does not have
            self.processor.send_exception(oprot, api, result, seqid)
            return out.getvalue()
        assert call is not None
        try:
            result.success = call()
        except Exception as exc:
            if not self.processor.handle_exception(
                exc, result
            ):  # not one the IDL declares: a bug here
                self.processor.send_exception(
                    oprot,
                    api,
                    TApplicationException(
                        TApplicationException.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"
                    ),
                    seqid,
                )
                return out.getvalue()
        if result.oneway:
            return b""
        self.processor.send_result(oprot, api, result, seqid)
        return out.getvalue()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up is normal on a network: note nothing. Report the rest."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def serve(
    store: KVStore,
    *,
    name: str = "kv-thrift",
    host: str = "127.0.0.1",
    port: int = 0,
    max_message_size: int = MAX_MESSAGE_SIZE,
    limits: ConnectionLimits | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> background.ServerHandle:
    """Serve ``store`` over Thrift in the background under ``name``."""

    def make(address: tuple[str, int]) -> KVThriftServer:
        return KVThriftServer(
            address,
            store,
            max_message_size=max_message_size,
            limits=limits,
            idle_timeout=idle_timeout,
            request_timeout=request_timeout,
        )

    return background.serve(name, make, host=host, port=port)


class ThriftClient(TClient):
    """thriftpy2's client for the KV service, usable in a ``with`` block that closes its connection.

    One connection, one call at a time: share it between threads only behind a lock.
    """

    def __enter__(self) -> ThriftClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(address: tuple[str, int], *, timeout: float = 5.0) -> ThriftClient:
    """A connected client for the server at ``address``; connecting and every call give up after
    ``timeout`` s.

    Calls raise NotFound / InvalidArgument as kv.thrift declares, TimeoutError
    when the server is too slow (close the client then: a late reply would be
    taken for the next call's), and TTransportException when the connection fails.
    """
    checks.seconds("timeout", timeout, above=0)
    host, port = address
    ms = timeout * 1000
    transport = TFramedTransportFactory().get_transport(
        TSocket(host, port, socket_timeout=ms, connect_timeout=ms)
    )
    protocol = TBinaryProtocolFactory().get_protocol(transport)
    transport.open()
    return ThriftClient(kv_thrift.KV, protocol)
