"""A connection-oriented DCE/RPC client over TCP ("ncacn_ip_tcp"), by hand: bind to an
interface, then call its operations by number.

::

    with Connection.open("127.0.0.1", 135, timeout=5.0) as conn:
        conn.bind(pdu.EPM)                      # bind, then read the bind_ack
        order, stub = conn.call(2, request_stub) # request, then the response's stub bytes

Nothing a peer sends is trusted: a header that is not DCE/RPC, a reply to another call, a
fault, a bind refused, a reply larger than :data:`MAX_REPLY` -- each is a :class:`DceRpcError`
with a one-line message. Every read waits at most until one deadline, ``timeout`` seconds
after the connection was opened, so a peer that stalls or drips bytes cannot hold us longer.
Used by rpclab.byhand.dcerpc.epmap (notebooks 01 and 06, ``rpclab epmap``).
"""

from __future__ import annotations

import socket
import time

from rpclab.byhand.dcerpc import pdu
from rpclab.byhand.dcerpc.ndr import DecodeError

__all__ = [
    "DceRpcError",
    "NotDceRpcError",
    "RemoteFault",
    "Connection",
    "MAX_REPLY",
    "MAX_FRAGMENTS",
]

MAX_REPLY = 1024 * 1024  # the most stub bytes one reply may carry, over all its fragments
MAX_FRAGMENTS = 1024  # the most fragments one reply may come in


class DceRpcError(Exception):
    """A DCE/RPC exchange failed; the message says why in one line."""


class NotDceRpcError(DceRpcError):
    """The peer does not speak DCE/RPC."""


class RemoteFault(DceRpcError):
    """The server answered the call with a fault PDU; ``status`` is its code."""

    def __init__(self, status: int, where: str) -> None:
        self.status = status
        name = pdu.FAULT_NAMES.get(status, "unknown status")
        super().__init__(f"{where} answered with a fault: 0x{status:08x}, {name}")


class Connection:
    """One TCP connection to a DCE/RPC server, bound to one interface after :meth:`bind`."""

    def __init__(self, sock: socket.socket, where: str, deadline: float) -> None:
        self.sock = sock
        self.where = where  # "host:port", for messages
        self.deadline = deadline  # time.monotonic() after which every wait gives up
        self.call_id = 0
        self.bound: pdu.BindAck | None = None

    @classmethod
    def open(cls, host: str, port: int, *, timeout: float = 5.0) -> Connection:
        """Connect to ``host:port``; every later read must end within ``timeout`` seconds."""
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        deadline = time.monotonic() + timeout
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except ConnectionRefusedError:
            raise DceRpcError(f"nothing listens on {where} (connection refused)") from None
        except TimeoutError:
            raise DceRpcError(f"no answer from {where} within {timeout:g} s") from None
        except OSError as exc:
            raise DceRpcError(f"cannot connect to {where}: {exc.strerror or exc}") from None
        return cls(sock, where, deadline)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ bytes on the wire

    def _send(self, data: bytes) -> None:
        self.sock.settimeout(self._left())
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise DceRpcError(f"{self.where} stopped reading what we send") from None
        except OSError as exc:
            raise DceRpcError(
                f"{self.where} closed the connection: {exc.strerror or exc}"
            ) from None

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DceRpcError(f"{self.where} did not answer in time (it stalls)")
        return left

    def _recv_exactly(self, n: int, got: bytes = b"") -> bytes:
        """``n`` bytes, however they arrive, before the deadline."""
        buf = bytearray(got)
        while len(buf) < n:
            self.sock.settimeout(self._left())
            try:
                chunk = self.sock.recv(n - len(buf))
            except TimeoutError:
                raise DceRpcError(
                    f"{self.where} did not answer in time (it stalls after {len(buf)} bytes)"
                ) from None
            except OSError as exc:
                raise DceRpcError(
                    f"{self.where} reset the connection: {exc.strerror or exc}"
                ) from None
            if not chunk:
                if not buf:
                    raise NotDceRpcError(
                        f"{self.where} closed the connection without answering: "
                        "not a DCE/RPC server?"
                    )
                raise NotDceRpcError(
                    f"{self.where} closed the connection after {len(buf)} bytes: "
                    f"{bytes(buf[:16])!r}"
                )
            buf += chunk
        return bytes(buf)

    def read_pdu(self) -> tuple[pdu.Header, bytes]:
        """One PDU: its header, read first, says how many more bytes to read (at most 65535,
        the most two bytes can say)."""
        first = self._recv_exactly(pdu.HEADER_SIZE)
        try:
            header = pdu.parse_header(first)
        except DecodeError as exc:
            raise NotDceRpcError(
                f"{self.where} is not a DCE/RPC server: it answered {first!r} ({exc})"
            ) from None
        return header, self._recv_exactly(header.frag_length, first)

    # ------------------------------------------------------------------ bind and call

    def bind(self, interface: pdu.SyntaxId) -> pdu.BindAck:
        """Propose ``interface`` over NDR; return the server's bind_ack if it accepts."""
        self.call_id += 1
        self._send(pdu.build_bind(interface, call_id=self.call_id))
        header, data = self.read_pdu()
        try:
            if header.ptype == pdu.PType.BIND_NAK:
                reason = pdu.parse_bind_nak(header, data)
                text = pdu.BIND_NAK_REASONS.get(reason, "unknown reason")
                raise DceRpcError(f"{self.where} refused the bind: {reason}, {text}")
            if header.ptype != pdu.PType.BIND_ACK:
                raise NotDceRpcError(
                    f"{self.where} answered the bind with packet type {header.ptype}, "
                    "not a bind_ack"
                )
            ack = pdu.parse_bind_ack(header, data)
        except DecodeError as exc:
            raise DceRpcError(f"{self.where} sent a malformed bind reply: {exc}") from None
        if header.call_id != self.call_id:
            raise DceRpcError(f"{self.where} answered call {header.call_id}, not {self.call_id}")
        if len(ack.results) != 1:
            raise DceRpcError(f"{self.where} answered {len(ack.results)} contexts, we proposed 1")
        result, reason, _syntax = ack.results[0]
        if result != 0:
            text = pdu.BIND_RESULTS.get(result, "unknown result")
            raise DceRpcError(
                f"{self.where} does not serve {interface} over NDR ({text}, reason {reason})"
            )
        self.bound = ack
        return ack

    def call(self, opnum: int, stub: bytes) -> tuple[str, bytes]:
        """Call operation ``opnum`` with ``stub`` (NDR, little-endian) and return the reply's
        (byte order, stub), its fragments joined."""
        if self.bound is None:
            raise DceRpcError("bind to an interface before calling it")
        self.call_id += 1
        self._send(pdu.build_request(opnum, stub, call_id=self.call_id))
        parts: list[bytes] = []
        size = 0
        order = ""
        while True:
            header, data = self.read_pdu()
            if header.call_id != self.call_id:
                raise DceRpcError(
                    f"{self.where} answered call {header.call_id}, not {self.call_id}"
                )
            try:
                if header.ptype == pdu.PType.FAULT:
                    raise RemoteFault(pdu.parse_fault(header, data), self.where)
                if header.ptype != pdu.PType.RESPONSE:
                    raise DceRpcError(
                        f"{self.where} answered a request with packet type {header.ptype}"
                    )
                _context, part = pdu.parse_response(header, data)
            except DecodeError as exc:
                raise DceRpcError(f"{self.where} sent a malformed response: {exc}") from None
            if not parts and not header.flags & pdu.PFC_FIRST_FRAG:
                raise DceRpcError(f"{self.where}'s response does not start with a first fragment")
            if order and header.order != order:
                raise DceRpcError(f"{self.where} changed byte order between fragments")
            order = header.order
            size += len(part)
            if size > MAX_REPLY:
                raise DceRpcError(f"{self.where}'s response is over {MAX_REPLY} bytes; not read")
            parts.append(part)
            if len(parts) > MAX_FRAGMENTS:
                raise DceRpcError(f"{self.where}'s response is over {MAX_FRAGMENTS} fragments")
            if header.flags & pdu.PFC_LAST_FRAG:
                return order, b"".join(parts)
