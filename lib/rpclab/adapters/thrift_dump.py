"""A key to the bytes of a Thrift binary-protocol message: every byte, with what it means.

Used in notebook 12 (the Thrift call on the wire, byte by byte).

    for part in thrift_dump.annotate(frame.payload, kv_thrift.KV):
        print(part)
    #   0  80 01 00 01              version 1, message type 1 (CALL)
    #   4  00 00 00 09              method name: 9 bytes
    #   8  69 6e 63 72 65 6d 65 6e 74  "increment"
    #  ...

The binary protocol writes a message header (a version word whose low byte is the message
type, the method's name, a sequence id), then a struct: the call's arguments, or the reply's
result (field 0 is the return value, the other ids the declared exceptions). A struct is a
run of fields, each a type byte, a 2-byte field id and the value, ended by a STOP byte (0).
Names never travel: ``service`` (a thriftpy2 service, such as rpclab.adapters.thrift's
``kv_thrift.KV``) lets the key name the fields the ids stand for. The message is checked with
rpclab.adapters.thrift_wire first, so a malformed one raises MalformedMessage.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from thriftpy2.thrift import TMessageType, TType

from rpclab.adapters.thrift_wire import check_message

__all__ = ["Part", "annotate", "render"]

_TYPE_NAMES = {  # type 11 is STRING: thriftpy2 also calls it UTF7, an old alias
    TType.BOOL: "BOOL",
    TType.BYTE: "BYTE",
    TType.DOUBLE: "DOUBLE",
    TType.I16: "I16",
    TType.I32: "I32",
    TType.I64: "I64",
    TType.STRING: "STRING",
    TType.STRUCT: "STRUCT",
    TType.MAP: "MAP",
    TType.SET: "SET",
    TType.LIST: "LIST",
}
_MESSAGE_TYPES = {value: name for name, value in vars(TMessageType).items() if name.isupper()}
_FIXED = {TType.BOOL: ">?", TType.BYTE: ">b", TType.I16: ">h", TType.I32: ">i", TType.I64: ">q"}
_FIXED[TType.DOUBLE] = ">d"


@dataclass(frozen=True)
class Part:
    """Some consecutive bytes of the message and what they mean."""

    offset: int
    data: bytes
    meaning: str
    depth: int = 0  # how deep in nested structs

    def __str__(self) -> str:
        hexed = " ".join(f"{b:02x}" for b in self.data[:12]) + (
            " .." if len(self.data) > 12 else ""
        )
        return f"{self.offset:4}  {hexed:<38} {'  ' * self.depth}{self.meaning}"


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0
        self.parts: list[Part] = []

    def take(self, size: int, meaning: str, depth: int) -> bytes:
        chunk = self.data[self.at : self.at + size]
        self.parts.append(Part(self.at, chunk, meaning, depth))
        self.at += size
        return chunk

    def peek(self, fmt: str, size: int) -> Any:
        return struct.unpack_from(fmt, self.data, self.at)[0]


def _spec_of(service: Any, method: str, message_type: int) -> dict[int, tuple] | None:
    if service is None:
        return None
    suffix = "_args" if message_type in (TMessageType.CALL, TMessageType.ONEWAY) else "_result"
    holder = getattr(service, method + suffix, None)
    return getattr(holder, "thrift_spec", None)


def _value(r: _Reader, ttype: int, depth: int, spec: tuple | None) -> None:
    if ttype in _FIXED:
        fmt = _FIXED[ttype]
        size = struct.calcsize(fmt)
        r.take(size, repr(r.peek(fmt, size)), depth)
    elif ttype == TType.STRING:
        length = r.peek(">i", 4)
        r.take(4, f"{length} byte{'' if length == 1 else 's'}", depth)
        text = r.data[r.at : r.at + length].decode("utf-8", "replace")
        r.take(length, repr(text) if length <= 40 else f"{text[:37]!r}...", depth)
    elif ttype == TType.STRUCT:
        inner = spec[2] if spec is not None and len(spec) > 2 else None
        _struct(r, depth, getattr(inner, "thrift_spec", None))
    elif ttype in (TType.LIST, TType.SET):
        element = r.data[r.at]
        count = struct.unpack_from(">i", r.data, r.at + 1)[0]
        r.take(5, f"{count} elements of type {element} ({_TYPE_NAMES.get(element, '?')})", depth)
        for _ in range(count):
            _value(r, element, depth + 1, None)
    elif ttype == TType.MAP:
        key, value = r.data[r.at], r.data[r.at + 1]
        count = struct.unpack_from(">i", r.data, r.at + 2)[0]
        r.take(6, f"{count} entries, {_TYPE_NAMES.get(key)} -> {_TYPE_NAMES.get(value)}", depth)
        for _ in range(count):
            _value(r, key, depth + 1, None)
            _value(r, value, depth + 1, None)


def _struct(r: _Reader, depth: int, spec: dict[int, tuple] | None) -> None:
    while True:
        ttype = r.data[r.at]
        if ttype == TType.STOP:
            r.take(1, "STOP: end of the struct", depth)
            return
        field_id = struct.unpack_from(">h", r.data, r.at + 1)[0]
        field = (spec or {}).get(field_id)
        name = f" ({field[1]})" if field is not None else ""
        type_name = _TYPE_NAMES.get(ttype, "?")
        r.take(3, f"field {field_id}{name}: type {ttype} ({type_name})", depth)
        _value(r, ttype, depth + 1, field)


def annotate(message: bytes, service: Any = None) -> list[Part]:
    """The parts of one Thrift binary message (strict, version 1), in order, each explained."""
    check_message(message)
    r = _Reader(bytes(message))
    message_type = r.data[3]
    kind = _MESSAGE_TYPES.get(message_type, "?")
    r.take(4, f"version 1, message type {message_type} ({kind})", 0)
    length = r.peek(">i", 4)
    r.take(4, f"method name: {length} bytes", 0)
    method = r.data[r.at : r.at + length].decode("utf-8", "replace")
    r.take(length, repr(method), 0)
    r.take(4, f"sequence id {r.peek('>i', 4)}", 0)
    _struct(r, 0, _spec_of(service, method, message_type))
    return r.parts


def render(message: bytes, service: Any = None) -> str:
    """The key as text: offset, bytes in hex, meaning; one part per line."""
    return "\n".join(str(part) for part in annotate(message, service))
