"""An ONC RPC client over TCP, and the KV program's client stub on top of it.

    from rpclab.byhand import oncrpc
    with oncrpc.connect(server.address) as kv:          # a KVClient
        kv.put("greeting", "hello")
        kv.get("greeting")                              # 'hello'
        kv.get("missing")                               # raises rpclab.kv.KeyNotFound

    rpc = oncrpc.Client(address, prog=0x20000101, vers=1)   # any program, raw XDR in and out
    rpc.call(0)                                             # b'' (KV_NULL has no result)
    rpc.call(0, vers=7)                                     # raises RPCError: PROG_MISMATCH ...

One call at a time per client (a lock serialises threads); every call has a
timeout. A call that times out or loses its connection closes it, so a late
reply can never be taken for the next call's, and the next call connects
again -- as it does when the server closed an idle connection in between.
The procedure may or may not have run when that happens: ONC RPC over TCP
promises no more than TCP does (RFC 5531 section 5).

Notebooks 06 and 12 call the store with it; rpclab.byhand.oncrpc.portmap
talks to the portmapper with it.
"""

from __future__ import annotations

import random
import select
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from rpclab import checks
from rpclab.byhand import framing
from rpclab.byhand.oncrpc import kvx
from rpclab.byhand.oncrpc.kvx import KVStatus
from rpclab.byhand.oncrpc.messages import (
    NULL_AUTH,
    Call,
    OpaqueAuth,
    Reply,
    decode_reply,
    encode_call,
)
from rpclab.byhand.oncrpc.xdr import Packer, Unpacker, XDRError, unpacked
from rpclab.kv import KeyNotFound

__all__ = [
    "Client",
    "KVClient",
    "RPCError",
    "ProtocolError",
    "InvalidArgument",
    "connect",
    "MAX_REPLY_SIZE",
]

T = TypeVar("T")

MAX_REPLY_SIZE = 16 * 1024 * 1024  # KV_KEYS of a large store can be big; a bound all the same


class RPCError(Exception):
    """The server did not run the procedure; ``reply`` says why, ``status`` in the RFC's words."""

    def __init__(self, reply: Reply):
        super().__init__(reply.status)
        self.reply = reply

    @property
    def status(self) -> str:
        return self.reply.status


class ProtocolError(ConnectionError):
    """The server's answer was not a well-formed reply to our call (the connection is closed)."""


class InvalidArgument(ValueError):
    """The server answered KV_INVALID: an empty key, or an increment it could not do."""


class Client:
    """Calls to one program and version of one server, over one TCP connection."""

    def __init__(
        self,
        address: tuple[str, int],
        prog: int,
        vers: int,
        *,
        timeout: float = 5.0,
        cred: OpaqueAuth = NULL_AUTH,
        max_reply_size: int = MAX_REPLY_SIZE,
    ):
        checks.seconds("timeout", timeout, above=0)
        self.address = (str(address[0]), int(address[1]))
        self.prog = prog
        self.vers = vers
        self.timeout = float(timeout)
        self.cred = cred
        self.max_reply_size = max_reply_size
        self._xid = random.getrandbits(32)  # xids only match replies to calls (RFC 5531 s. 9)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._connect()

    def call(
        self, proc: int, args: bytes = b"", *, prog: int | None = None, vers: int | None = None
    ) -> bytes:
        """Run procedure ``proc`` with ``args`` (already XDR) and return its results (XDR).

        ``prog``/``vers`` override the client's own for this one call. Raises
        RPCError when the reply is not SUCCESS, TimeoutError, ConnectionError,
        or ProtocolError when the answer is not a reply.
        """
        with self._lock:
            self._xid = (self._xid + 1) % 2**32
            call = Call(
                self._xid,
                self.prog if prog is None else prog,
                self.vers if vers is None else vers,
                proc,
                cred=self.cred,
            )
            reply = self._exchange(call.xid, encode_call(call, args))
        if not reply.ok:
            raise RPCError(reply)
        return reply.results

    def ping(self) -> None:
        """Call procedure 0, which by convention every program has and which does nothing
        (RFC 5531 section 12.1)."""
        self.call(0)

    def _exchange(self, xid: int, record: bytes) -> Reply:
        sock = self._connected()
        try:
            sock.settimeout(self.timeout)
            framing.send_record(sock, record)
            answer = framing.recv_record(sock, self.max_reply_size, timeout=self.timeout)
            reply = decode_reply(answer)
        except XDRError as exc:
            self._disconnect()
            raise ProtocolError(f"the server's answer is not an ONC RPC reply: {exc}") from None
        except framing.FrameTooLarge as exc:
            self._disconnect()
            raise ProtocolError(f"the reply is too large: {exc}") from None
        except (OSError, framing.FramingError):
            self._disconnect()
            raise
        if reply.xid != xid:
            self._disconnect()
            raise ProtocolError(f"a reply to xid {reply.xid}, not to our call {xid}")
        return reply

    # -- the connection ---------------------------------------------------------------

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        return sock

    def _connected(self) -> socket.socket:
        """The connection, made again if it was closed (by us, or by the server when idle)."""
        sock = self._sock
        if sock is not None:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return sock  # open, and nothing unasked-for waiting: the usual case
            # readable between calls: the server closed it (idle), or sent what we never asked for
            self._disconnect()
        return self._connect()

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        host, port = self.address
        return f"<oncrpc Client for program {self.prog:#x} v{self.vers} at {host}:{port}>"


class KVClient:
    """The client stub of protos/kv.x: one Python method per procedure, errors as exceptions.

    KV_NOT_FOUND raises rpclab.kv.KeyNotFound (as the local store does),
    KV_INVALID raises InvalidArgument; a key or value over kv.x's bounds is
    refused here, before anything is sent (XDRError, a ValueError).
    """

    def __init__(
        self, address: tuple[str, int], *, timeout: float = 5.0, cred: OpaqueAuth = NULL_AUTH
    ):
        self.rpc = Client(address, kvx.KV_PROG, kvx.KV_V1, timeout=timeout, cred=cred)

    def _call(
        self,
        proc: kvx.KVProc,
        pack: Callable[[Packer], None] | None,
        unpack: Callable[[Unpacker], T],
    ) -> T:
        packer = Packer()
        if pack is not None:
            pack(packer)
        results = self.rpc.call(proc, packer.get_buffer())
        try:
            return unpacked(results, unpack)
        except XDRError as exc:
            raise ProtocolError(f"{proc.name}: results that do not decode: {exc}") from None

    def null(self) -> None:
        """KV_NULL: a call that does nothing, to see that the server answers."""
        self._call(kvx.KVProc.KV_NULL, None, lambda reader: None)

    def get(self, key: str) -> str:
        status, value = self._call(
            kvx.KVProc.KV_GET, lambda p: kvx.pack_kv_key(p, key), kvx.unpack_get_result
        )
        if status is KVStatus.KV_NOT_FOUND:
            raise KeyNotFound(key)
        _check(status, f"KV_GET {key!r}")
        assert value is not None
        return value

    def put(self, key: str, value: str) -> None:
        status = self._call(
            kvx.KVProc.KV_PUT, lambda p: kvx.pack_put_args(p, key, value), kvx.unpack_kv_status
        )
        _check(status, f"KV_PUT {key!r}")

    def delete(self, key: str) -> bool:
        """Whether the key was there."""
        return self._call(
            kvx.KVProc.KV_DELETE, lambda p: kvx.pack_kv_key(p, key), Unpacker.unpack_bool
        )

    def increment(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to the integer at ``key`` (NOT idempotent); the new value."""
        status, value = self._call(
            kvx.KVProc.KV_INCREMENT,
            lambda p: kvx.pack_incr_args(p, key, amount),
            kvx.unpack_incr_result,
        )
        _check(status, f"KV_INCREMENT {key!r} by {amount}")
        assert value is not None
        return value

    def keys(self) -> list[str]:
        return self._call(kvx.KVProc.KV_KEYS, None, kvx.unpack_kv_keys)

    def close(self) -> None:
        self.rpc.close()

    def __enter__(self) -> KVClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        host, port = self.rpc.address
        return f"<oncrpc KVClient for {host}:{port}>"


def _check(status: KVStatus, what: str) -> None:
    if status is KVStatus.KV_INVALID:
        raise InvalidArgument(f"{what}: the server answered KV_INVALID")
    if status is not KVStatus.KV_OK:
        raise ProtocolError(f"{what}: unexpected status {status.name}")


def connect(
    address: tuple[str, int], *, timeout: float = 5.0, cred: OpaqueAuth = NULL_AUTH
) -> KVClient:
    """A KVClient connected to the ONC RPC server at ``address``."""
    return KVClient(address, timeout=timeout, cred=cred)
