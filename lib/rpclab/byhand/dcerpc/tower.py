"""Protocol towers: how DCE/RPC says where an interface can be reached, floor by floor.

A tower (DCE 1.1 RPC, appendix L; [MS-RPCE] 2.2.1.1) is a stack of floors, each a protocol
identifier with some data -- read bottom up, it is the whole path to a server::

    floor 1  0x0d UUID      the interface, e.g. 12345778-1234-abcd-ef00-0123456789ab v0.0 (LSA)
    floor 2  0x0d UUID      the transfer syntax, NDR 2.0
    floor 3  0x0b           connection-oriented RPC ("ncacn"); 0x0a datagram, 0x0c local
    floor 4  0x07 TCP port  49152        (0x0f: a named pipe \\PIPE\\lsarpc, 0x10: a local name)
    floor 5  0x09 IP        127.0.0.1    (0x11: a NetBIOS host name)

A floor is ``lhs_length (2) | lhs (protocol id + data) | rhs_length (2) | rhs``: the lengths are
little-endian whatever the packet's byte order, ports and IP addresses big-endian (network
order). :func:`decode_tower` reads one, bounded by the bytes there, and names it as a string
binding, ``ncacn_ip_tcp:127.0.0.1[49152]``. Used by rpclab.byhand.dcerpc.epmap (notebooks 01, 06).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

from rpclab.byhand.dcerpc.ndr import DecodeError, uuid_from
from rpclab.byhand.dcerpc.pdu import SyntaxId

__all__ = ["Floor", "Tower", "decode_tower", "printable", "MAX_FLOORS", "PROTOCOL_IDS"]

MAX_FLOORS = 16  # real towers have 4 or 5; anything far beyond is not a tower

PROTOCOL_IDS = {
    0x07: "TCP port",
    0x08: "UDP port",
    0x09: "IP address",
    0x0A: "RPC connectionless (ncadg)",
    0x0B: "RPC connection-oriented (ncacn)",
    0x0C: "RPC local (ncalrpc)",
    0x0D: "UUID",
    0x0F: "named pipe (SMB)",
    0x10: "local endpoint name",
    0x11: "NetBIOS host name",
    0x1F: "HTTP port",
}

# (floor 3 protocol, floor 4 protocol) -> protocol sequence, as string bindings name them
_PROTSEQS = {
    (0x0B, 0x07): "ncacn_ip_tcp",
    (0x0A, 0x08): "ncadg_ip_udp",
    (0x0B, 0x0F): "ncacn_np",
    (0x0C, 0x10): "ncalrpc",
    (0x0B, 0x1F): "ncacn_http",
}


class Floor(NamedTuple):
    """One floor: its protocol identifier, the rest of its left-hand side, its right-hand side."""

    protocol: int
    lhs: bytes
    rhs: bytes

    def __str__(self) -> str:
        name = PROTOCOL_IDS.get(self.protocol, "unknown")
        return f"0x{self.protocol:02x} {name}: {_floor_value(self)}"


class Tower(NamedTuple):
    """A decoded tower: its floors, and what they say."""

    floors: tuple[Floor, ...]
    interface: SyntaxId | None
    transfer: SyntaxId | None
    protseq: str  # "ncacn_ip_tcp", "ncacn_np", "ncalrpc", ... or "unknown(0x..,0x..)"
    endpoint: str  # a port number, a pipe name, a local name
    host: str  # an IP address or a NetBIOS name, or "" when the tower gives none

    @property
    def binding(self) -> str:
        """The string binding: ``protseq:host[endpoint]``."""
        return f"{self.protseq}:{self.host}[{self.endpoint}]"


def printable(text: str) -> str:
    """``text`` with every control character replaced by "?": what a peer sent is not trusted
    to drive the terminal."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _text(data: bytes) -> str:
    return printable(data.split(b"\x00", 1)[0].decode("ascii", "replace"))


def _floor_value(floor: Floor) -> str:
    p, rhs = floor.protocol, floor.rhs
    if p == 0x0D and len(floor.lhs) == 18 and len(rhs) == 2:
        syntax = _syntax(floor)
        return str(syntax)
    if p in (0x07, 0x08, 0x1F) and len(rhs) == 2:
        return str(struct.unpack(">H", rhs)[0])
    if p == 0x09 and len(rhs) == 4:
        return str(ipaddress.IPv4Address(rhs))
    if p in (0x0F, 0x10, 0x11):
        return _text(rhs)
    return rhs.hex(" ")


def _syntax(floor: Floor) -> SyntaxId:
    major = struct.unpack("<H", floor.lhs[16:18])[0]
    minor = struct.unpack("<H", floor.rhs)[0]
    return SyntaxId(uuid_from(floor.lhs[:16], "<"), major, minor)


def decode_tower(octets: bytes) -> Tower:
    """Decode a tower's octet string. DecodeError if a length points past the end."""
    pos = 0

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if n > len(octets) - pos:
            raise DecodeError(
                f"tower {what} at offset {pos}: needs {n} bytes, {len(octets) - pos} left"
            )
        chunk = octets[pos : pos + n]
        pos += n
        return chunk

    (count,) = struct.unpack("<H", take(2, "floor count"))
    if not 1 <= count <= MAX_FLOORS:
        raise DecodeError(f"a tower with {count} floors (expected 1 to {MAX_FLOORS})")
    floors = []
    for n in range(count):
        (lhs_len,) = struct.unpack("<H", take(2, f"floor {n + 1} lhs length"))
        if lhs_len < 1:
            raise DecodeError(f"floor {n + 1} has no protocol identifier")
        lhs = take(lhs_len, f"floor {n + 1} lhs")
        (rhs_len,) = struct.unpack("<H", take(2, f"floor {n + 1} rhs length"))
        rhs = take(rhs_len, f"floor {n + 1} rhs")
        floors.append(Floor(lhs[0], lhs[1:], rhs))

    def syntax_at(i: int) -> SyntaxId | None:
        if i < len(floors) and floors[i].protocol == 0x0D:
            f = floors[i]
            if len(f.lhs) == 18 and len(f.rhs) == 2:
                return _syntax(f)
        return None

    ids = tuple(f.protocol for f in floors[2:4])
    protseq = _PROTSEQS.get(ids) or "unknown(" + ",".join(f"0x{i:02x}" for i in ids) + ")"
    endpoint = _floor_value(floors[3]) if len(floors) > 3 else ""
    host = _floor_value(floors[4]) if len(floors) > 4 else ""
    return Tower(tuple(floors), syntax_at(0), syntax_at(1), protseq, endpoint, host)
