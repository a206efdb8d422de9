"""The PDUs (packets) of connection-oriented DCE/RPC, built and read by hand: bind, bind_ack,
bind_nak, request, response and fault.

Every PDU starts with the same 16-byte header (DCE 1.1 RPC, section 12.6; [MS-RPCE] 2.2.2)::

    rpc_vers 5 | rpc_vers_minor 0 | PTYPE | pfc_flags | drep (4 bytes) | frag_length (2)
    | auth_length (2) | call_id (4)

``drep``, the data representation label, says how the sender wrote its integers: ``10 00 00 00``
is little-endian ASCII with IEEE floats, what this module writes. A reader makes right:
:func:`parse_header` reads a big-endian packet as readily as a little-endian one.

Before any call, a client *binds*: it names the interface it wants (a UUID and a version) and
the transfer syntax it speaks (NDR 2.0), and the server accepts or refuses each proposal.
:func:`bind_fields` returns the bind PDU field by field, so :func:`explain` can print the bytes
with their meaning; :func:`build_bind` joins them. Used by rpclab.byhand.dcerpc.client;
printed in notebooks 01 and 06.
"""

from __future__ import annotations

import struct
import uuid
from enum import IntEnum
from typing import NamedTuple

from rpclab.byhand.dcerpc.ndr import DecodeError, Reader, uuid_bytes

__all__ = [
    "PType",
    "SyntaxId",
    "Field",
    "Header",
    "BindAck",
    "NDR",
    "EPM",
    "HEADER_SIZE",
    "MAX_FRAG",
    "PFC_FIRST_FRAG",
    "PFC_LAST_FRAG",
    "bind_fields",
    "build_bind",
    "request_fields",
    "build_request",
    "parse_header",
    "parse_bind_ack",
    "parse_bind_nak",
    "parse_response",
    "parse_fault",
    "explain",
    "FAULT_NAMES",
    "BIND_NAK_REASONS",
    "BIND_RESULTS",
]

HEADER_SIZE = 16
MAX_FRAG = 5840  # the largest fragment we send or accept, as we tell the server in the bind
PFC_FIRST_FRAG = 0x01
PFC_LAST_FRAG = 0x02
DREP_LITTLE_ENDIAN = b"\x10\x00\x00\x00"  # integers little-endian, characters ASCII, IEEE floats


class PType(IntEnum):
    """The packet types of connection-oriented DCE/RPC that this client meets."""

    REQUEST = 0
    RESPONSE = 2
    FAULT = 3
    BIND = 11
    BIND_ACK = 12
    BIND_NAK = 13
    ALTER_CONTEXT = 14
    ALTER_CONTEXT_RESP = 15
    SHUTDOWN = 17
    CO_CANCEL = 18
    ORPHANED = 19


class SyntaxId(NamedTuple):
    """An interface or a transfer syntax: a UUID and a version, major.minor."""

    uuid: uuid.UUID
    major: int
    minor: int = 0

    def __str__(self) -> str:
        return f"{self.uuid} v{self.major}.{self.minor}"


# NDR 2.0, the transfer syntax every DCE/RPC implementation speaks (DCE 1.1 RPC, appendix I).
NDR = SyntaxId(uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860"), 2, 0)
# The endpoint mapper's interface, "epm" v3.0 (DCE 1.1 RPC, appendix O; [MS-RPCE] 2.2.1.2).
EPM = SyntaxId(uuid.UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa"), 3, 0)

# A few fault statuses (DCE 1.1 RPC, appendix E; [MS-RPCE] 3.1.1.5.5; [MS-ERREF]).
FAULT_NAMES = {
    0x00000005: "access denied",
    0x000006F7: "rpc_x_bad_stub_data (the server could not decode the request)",
    0x1C010002: "nca_s_op_rng_error (no such operation number)",
    0x1C010003: "nca_s_unk_if (unknown interface)",
    0x1C01000B: "nca_s_proto_error (protocol error)",
    0x1C000009: "nca_s_fault_int_div_by_zero",
}
BIND_RESULTS = {0: "acceptance", 1: "user rejection", 2: "provider rejection", 3: "negotiate ack"}
BIND_NAK_REASONS = {
    0: "reason not specified",
    1: "temporary congestion",
    2: "local limit exceeded",
    4: "protocol version not supported",
    8: "authentication type not recognized",
    9: "invalid checksum",
}


class Field(NamedTuple):
    """One field of a PDU as built: its name, its bytes, and what they mean."""

    name: str
    raw: bytes
    meaning: str


class Header(NamedTuple):
    """The common header of a received PDU."""

    ptype: int
    flags: int
    order: str  # "<" or ">": the byte order the sender wrote in (its drep)
    frag_length: int
    auth_length: int
    call_id: int


class BindAck(NamedTuple):
    """What a server answered to a bind: its fragment sizes, the association and each result."""

    max_xmit_frag: int
    max_recv_frag: int
    assoc_group_id: int
    secondary_address: str  # the port the server says it is, e.g. "135"
    results: tuple[tuple[int, int, SyntaxId], ...]  # (result, reason, transfer syntax) per context


def _u16(value: int) -> bytes:
    return struct.pack("<H", value)


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _syntax_fields(what: str, role: str, syntax: SyntaxId) -> list[Field]:
    return [
        Field(
            f"{what}.uuid",
            uuid_bytes(syntax.uuid),
            f"{role} {syntax.uuid} (first three fields little-endian)",
        ),
        Field(
            f"{what}.version",
            _u16(syntax.major) + _u16(syntax.minor),
            f"version {syntax.major}.{syntax.minor} (major, minor)",
        ),
    ]


def _header_fields(ptype: PType, body_length: int, call_id: int) -> list[Field]:
    frag_length = HEADER_SIZE + body_length
    return [
        Field("rpc_vers", bytes([5]), "RPC protocol version 5"),
        Field("rpc_vers_minor", bytes([0]), "minor version 0"),
        Field("PTYPE", bytes([ptype]), f"packet type {int(ptype)}: {ptype.name.lower()}"),
        Field(
            "pfc_flags",
            bytes([PFC_FIRST_FRAG | PFC_LAST_FRAG]),
            "first and last fragment: the whole PDU is in this one",
        ),
        Field("drep", DREP_LITTLE_ENDIAN, "little-endian integers, ASCII, IEEE floats"),
        Field("frag_length", _u16(frag_length), f"this PDU is {frag_length} bytes"),
        Field("auth_length", _u16(0), "no authentication"),
        Field("call_id", _u32(call_id), f"call {call_id}: the reply carries the same number"),
    ]


def bind_fields(
    interface: SyntaxId = EPM,
    *,
    transfer: SyntaxId = NDR,
    call_id: int = 1,
    context_id: int = 0,
    max_frag: int = MAX_FRAG,
) -> list[Field]:
    """The bind PDU, field by field: one presentation context proposing ``interface`` over
    ``transfer``."""
    body = [
        Field("max_xmit_frag", _u16(max_frag), f"we send fragments of at most {max_frag} bytes"),
        Field("max_recv_frag", _u16(max_frag), f"we accept fragments of at most {max_frag} bytes"),
        Field("assoc_group_id", _u32(0), "0: start a new association group"),
        Field("n_context_elem", bytes([1]), "one presentation context proposed"),
        Field("reserved", b"\x00\x00\x00", "padding to 4 bytes"),
        Field("p_cont_id", _u16(context_id), f"context {context_id}: requests name it"),
        Field("n_transfer_syn", bytes([1]), "one transfer syntax offered"),
        Field("reserved", b"\x00", "padding"),
        *_syntax_fields("abstract_syntax", "interface", interface),
        *_syntax_fields(
            "transfer_syntax", "NDR" if transfer == NDR else "transfer syntax", transfer
        ),
    ]
    length = sum(len(f.raw) for f in body)
    return _header_fields(PType.BIND, length, call_id) + body


def build_bind(interface: SyntaxId = EPM, **kwargs: int | SyntaxId) -> bytes:
    """The bind PDU's bytes (see :func:`bind_fields`)."""
    return b"".join(f.raw for f in bind_fields(interface, **kwargs))  # type: ignore[arg-type]


def request_fields(
    opnum: int, stub: list[Field], *, call_id: int, context_id: int = 0
) -> list[Field]:
    """A request PDU, field by field: call operation ``opnum`` with ``stub`` (the NDR arguments).

    Requests are never fragmented here: the stub must fit one fragment.
    """
    stub_length = sum(len(f.raw) for f in stub)
    if HEADER_SIZE + 8 + stub_length > MAX_FRAG:
        raise ValueError(f"a {stub_length}-byte stub does not fit one {MAX_FRAG}-byte fragment")
    body = [
        Field("alloc_hint", _u32(stub_length), f"{stub_length} bytes of arguments follow"),
        Field("p_cont_id", _u16(context_id), f"in presentation context {context_id}"),
        Field("opnum", _u16(opnum), f"operation number {opnum}"),
        *stub,
    ]
    length = sum(len(f.raw) for f in body)
    return _header_fields(PType.REQUEST, length, call_id) + body


def build_request(opnum: int, stub: bytes, *, call_id: int, context_id: int = 0) -> bytes:
    """A request PDU's bytes."""
    fields = request_fields(
        opnum, [Field("stub", stub, "arguments")], call_id=call_id, context_id=context_id
    )
    return b"".join(f.raw for f in fields)


def parse_header(data: bytes) -> Header:
    """The common header of a PDU (its first 16 bytes). DecodeError if it is not DCE/RPC."""
    if len(data) < HEADER_SIZE:
        raise DecodeError(f"a DCE/RPC header is {HEADER_SIZE} bytes, got {len(data)}")
    vers, minor, ptype, flags = data[0], data[1], data[2], data[3]
    if vers != 5 or minor not in (0, 1):
        raise DecodeError(f"not DCE/RPC: protocol version {vers}.{minor}, expected 5.0 or 5.1")
    drep = data[4]
    if drep & 0x0F:
        raise DecodeError("the sender writes EBCDIC characters; only ASCII is read here")
    if drep >> 4 not in (0, 1):
        raise DecodeError(f"unknown integer representation {drep >> 4} in drep")
    order = "<" if drep >> 4 == 1 else ">"
    frag_length, auth_length, call_id = struct.unpack(order + "HHI", data[8:16])
    if frag_length < HEADER_SIZE:
        raise DecodeError(f"frag_length {frag_length} is shorter than the header itself")
    if auth_length > frag_length - HEADER_SIZE:
        raise DecodeError(f"auth_length {auth_length} is longer than the PDU's body")
    return Header(ptype, flags, order, frag_length, auth_length, call_id)


def _syntax(r: Reader) -> SyntaxId:
    u = r.uuid("syntax UUID")
    major = r.u16("syntax major version")
    minor = r.u16("syntax minor version")
    return SyntaxId(u, major, minor)


def parse_bind_ack(header: Header, pdu: bytes) -> BindAck:
    """A bind_ack PDU's body."""
    r = Reader(pdu[HEADER_SIZE : header.frag_length], header.order, base=HEADER_SIZE)
    max_xmit, max_recv = r.u16("max_xmit_frag"), r.u16("max_recv_frag")
    assoc = r.u32("assoc_group_id")
    addr_len = r.u16("sec_addr length")
    address = r.take(addr_len, "sec_addr").rstrip(b"\x00").decode("ascii", "replace")
    r.align(4)
    n_results = r.u8("n_results")
    r.take(3, "reserved")
    results = []
    for _ in range(n_results):  # at most 255: n_results is one byte
        result = r.u16("result")
        reason = r.u16("reason")
        results.append((result, reason, _syntax(r)))
    return BindAck(max_xmit, max_recv, assoc, address, tuple(results))


def parse_bind_nak(header: Header, pdu: bytes) -> int:
    """A bind_nak PDU's reason code."""
    r = Reader(pdu[HEADER_SIZE : header.frag_length], header.order, base=HEADER_SIZE)
    return r.u16("provider_reject_reason")


def parse_response(header: Header, pdu: bytes) -> tuple[int, bytes]:
    """A response fragment: (presentation context, its stub bytes)."""
    if header.auth_length:
        raise DecodeError("an authenticated response, to a call that asked for none")
    r = Reader(pdu[HEADER_SIZE : header.frag_length], header.order, base=HEADER_SIZE)
    r.u32("alloc_hint")
    context_id = r.u16("p_cont_id")
    r.take(2, "cancel_count and reserved")
    return context_id, r.take(r.remaining, "stub")


def parse_fault(header: Header, pdu: bytes) -> int:
    """A fault PDU's status code."""
    r = Reader(pdu[HEADER_SIZE : header.frag_length], header.order, base=HEADER_SIZE)
    r.u32("alloc_hint")
    r.u16("p_cont_id")
    r.take(2, "cancel_count and reserved")
    return r.u32("status")


def explain(fields: list[Field]) -> str:
    """The fields as an annotated dump: offset, bytes in hex, name and meaning, one field a line
    (a field longer than 8 bytes goes on over the next lines)."""
    lines = []
    offset = 0
    for field in fields:
        rows = [field.raw[i : i + 8] for i in range(0, len(field.raw), 8)] or [b""]
        for n, row in enumerate(rows):
            label = f"{field.name:<24} {field.meaning}" if n == 0 else ""
            lines.append(f"{offset + 8 * n:4d}  {row.hex(' '):<23}  {label}".rstrip())
        offset += len(field.raw)
    return "\n".join(lines)
