"""The protobuf wire format, by hand: varints, zigzag, tags, fields, and an annotated dump.

Built by hand in notebook 06; used again in 07. About 550 lines: the whole wire format,
encoding and bounded decoding, plus the annotated dump 06 prints, as one lesson.

A pure module (it never imports protobuf) for reading the bytes that
``SerializeToString()`` writes::

    from rpclab.byhand import protowire
    protowire.encode_varint(150)                    # b'\\x96\\x01'
    list(protowire.iter_fields(b"\\x08\\x96\\x01"))    # [Field(number=1,
    wire_type=<WireType.VARINT: 0>, value=150)]
    print(protowire.explain(message.SerializeToString(), type(message).DESCRIPTOR))

Every read is bounded: truncated input, an over-long varint or a length that
points past the end raise :class:`WireError` naming the offset, never a hang.
The optional ``descriptor`` of :func:`explain` is any protobuf message
Descriptor (read by duck typing): it names the fields and interprets values.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from enum import IntEnum
from typing import Any, NamedTuple

from rpclab import checks

__all__ = [
    "WireType",
    "WireError",
    "Field",
    "MAX_VARINT_BYTES",
    "MAX_FIELD_NUMBER",
    "MAX_DEPTH",
    "encode_varint",
    "decode_varint",
    "to_signed",
    "zigzag_encode",
    "zigzag_decode",
    "make_tag",
    "parse_tag",
    "encode_tag",
    "encode_field",
    "iter_fields",
    "unpack_varints",
    "explain",
]

MAX_VARINT_BYTES = 10  # 64 bits, 7 per byte
MAX_FIELD_NUMBER = 2**29 - 1  # a tag is a uint32 holding (field_number << 3) | wire_type
MAX_DEPTH = 100  # nested messages explain() follows, as protobuf's own default recursion limit

Buffer = bytes | bytearray | memoryview


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message (truncated, over-long, or out of range)."""


class WireType(IntEnum):
    """The 3 low bits of a tag: how the value that follows is laid out."""

    VARINT = 0  # int32, int64, uint32, uint64, sint32, sint64, bool, enum
    I64 = 1  # fixed64, sfixed64, double: 8 bytes, little-endian
    # string, bytes, nested messages, packed repeated fields: a varint length, then that many bytes
    LEN = 2
    # a group: a message between a start tag and an end tag of the same field number, no length.
    # proto2's groups (deprecated), and what Editions' DELIMITED message encoding writes today
    SGROUP = 3
    EGROUP = 4
    I32 = 5  # fixed32, sfixed32, float: 4 bytes, little-endian


class Field(NamedTuple):
    """One field as it sits on the wire: its number, its wire type and its raw value.

    ``value`` is an ``int`` for VARINT (the unsigned varint, before any
    zigzag or sign), and ``bytes`` for I64 and I32 (8 or 4 bytes), LEN (the payload) and
    SGROUP (the group's fields, between its start and end tags).
    """

    number: int
    wire_type: WireType
    value: int | bytes


def _as_bytes(data: object) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected bytes, not {type(data).__name__}")


def _check_int(name: str, value: object) -> int:
    return checks.integer(name, value)


# --------------------------------------------------------------------------- varints


def encode_varint(value: int) -> bytes:
    """Base-128 varint: 7 bits per byte, low bits first, the top bit of each byte set if more
    follow.

    ``value`` is 0 <= value < 2**64. A negative value (down to -2**63) is written
    as its 64-bit two's complement, as protobuf writes negative int32 and int64
    fields: always 10 bytes.
    """
    value = _check_int("value", value)
    if value < 0:
        if value < -(2**63):
            raise ValueError(f"{value} does not fit in 64 bits")
        value += 2**64
    elif value >= 2**64:
        raise ValueError(f"{value} does not fit in 64 bits (a varint holds at most 2**64 - 1)")
    out = bytearray()
    while True:
        low7 = value & 0x7F
        value >>= 7
        if value:
            out.append(low7 | 0x80)
        else:
            out.append(low7)
            return bytes(out)


def decode_varint(data: Buffer, pos: int = 0) -> tuple[int, int]:
    """Read the varint starting at ``data[pos]``: ``(value, position after it)``.

    Raises WireError if the input ends inside the varint, if it runs over 10
    bytes, or if its value does not fit in 64 bits.
    """
    data = _as_bytes(data)
    pos = _check_int("pos", pos)
    if not 0 <= pos < len(data):
        raise WireError(
            f"truncated input: expected a varint at offset {pos}, but the input has {len(data)} "
            "bytes"
        )
    value = 0
    for i in range(MAX_VARINT_BYTES):
        at = pos + i
        if at >= len(data):
            raise WireError(
                f"truncated varint at offset {pos}: the input ends after {i} bytes "
                f"with the continuation bit still set"
            )
        byte = data[at]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if value >= 2**64:
                raise WireError(f"varint at offset {pos} does not fit in 64 bits")
            return value, at + 1
    raise WireError(
        f"varint at offset {pos} is longer than {MAX_VARINT_BYTES} bytes (a 64-bit value needs at "
        "most 10)"
    )


def to_signed(value: int, bits: int = 64) -> int:
    """Read an unsigned ``bits``-bit number as two's complement (how int32/int64 fields come
    back)."""
    value = _check_int("value", value) & ((1 << bits) - 1)
    return value - (1 << bits) if value >> (bits - 1) else value


def zigzag_encode(value: int, bits: int = 64) -> int:
    """Zigzag, as sint32/sint64 use it: 0, -1, 1, -2, 2 ... become 0, 1, 2, 3, 4 ..., so small
    negatives stay short."""
    value = _check_int("value", value)
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise ValueError(f"{value} does not fit in a signed {bits}-bit integer")
    return value * 2 if value >= 0 else -value * 2 - 1


def zigzag_decode(value: int) -> int:
    """Undo :func:`zigzag_encode`: even numbers are the non-negatives, odd ones the negatives."""
    value = _check_int("value", value)
    if value < 0:
        raise ValueError("a zigzag-encoded number is never negative")
    return value >> 1 if not value & 1 else -(value >> 1) - 1


# --------------------------------------------------------------------------- tags and fields


def make_tag(field_number: int, wire_type: int) -> int:
    """The tag (the "key" before every field): ``(field_number << 3) | wire_type``."""
    field_number = _check_int("field_number", field_number)
    if not 1 <= field_number <= MAX_FIELD_NUMBER:
        raise ValueError(f"field numbers run from 1 to {MAX_FIELD_NUMBER}, not {field_number}")
    return (field_number << 3) | WireType(wire_type)


def parse_tag(tag: int) -> tuple[int, WireType]:
    """Split a tag into ``(field_number, wire_type)``; WireError for number 0 or wire types 6 and
    7."""
    tag = _check_int("tag", tag)
    if not 0 <= tag < 2**32:
        raise WireError(f"tag {tag} does not fit in 32 bits")
    number, kind = tag >> 3, tag & 0x7
    if number == 0:
        raise WireError(
            f"tag {tag:#x} has field number 0, which no field may use (corrupt data, or not "
            "protobuf)"
        )
    if kind > WireType.I32:
        raise WireError(f"tag {tag:#x} has wire type {kind}, which does not exist (0-5 do)")
    return number, WireType(kind)


def encode_tag(field_number: int, wire_type: int) -> bytes:
    """The tag of a field as the varint that goes on the wire."""
    return encode_varint(make_tag(field_number, wire_type))


def encode_field(field_number: int, wire_type: int, value: int | Buffer) -> bytes:
    """One whole field: tag, then the value laid out as ``wire_type`` says.

    VARINT takes an int (already zigzagged for sint fields); LEN takes bytes
    (a length is written first); I32 and I64 take exactly 4 or 8 bytes; SGROUP takes the
    group's fields as bytes (an end-group tag is written after them).
    """
    kind = WireType(wire_type)
    tag = encode_tag(field_number, kind)
    if kind is WireType.VARINT:
        return tag + encode_varint(_check_int("value", value))
    if kind is WireType.EGROUP:
        raise ValueError("an end-group tag is written by encode_field(number, SGROUP, fields)")
    payload = _as_bytes(value)
    if kind is WireType.SGROUP:
        return tag + payload + encode_tag(field_number, WireType.EGROUP)
    if kind is WireType.LEN:
        return tag + encode_varint(len(payload)) + payload
    size = 8 if kind is WireType.I64 else 4
    if len(payload) != size:
        raise ValueError(f"wire type {kind.name} takes exactly {size} bytes, not {len(payload)}")
    return tag + payload


class _Span(NamedTuple):
    """Where a field's parts sit: [start, value_start) is the tag (and length), [value_start, end)
    the value."""

    start: int
    tag_end: int
    value_start: int
    end: int
    field: Field


def _fixed_or_len(data: bytes, pos: int, number: int, kind: WireType, start: int) -> int:
    """The size of a LEN, I64 or I32 value at ``pos`` (after a LEN's length), checked; its end."""
    if kind is WireType.LEN:
        size, pos = decode_varint(data, pos)
    else:
        size = 8 if kind is WireType.I64 else 4
    if size > len(data) - pos:
        raise WireError(
            f"truncated input: field {number} at offset {start} says {size} bytes follow, "
            f"but only {len(data) - pos} remain"
        )
    return pos + size


def _group_end(data: bytes, pos: int, number: int, start: int, depth: int) -> tuple[int, int]:
    """The group of field ``number`` whose fields begin at ``pos``: (where its end-group tag
    starts, where it ends). Groups nest at most MAX_DEPTH deep."""
    if depth > MAX_DEPTH:
        raise WireError(f"at offset {start}: groups nested deeper than {MAX_DEPTH} levels")
    while pos < len(data):
        tag_start = pos
        tag, pos = decode_varint(data, pos)
        try:
            inner, kind = parse_tag(tag)
        except WireError as exc:
            raise WireError(f"at offset {tag_start}: {exc}") from None
        if kind is WireType.EGROUP:
            if inner != number:
                raise WireError(
                    f"at offset {tag_start}: the group of field {number} (offset {start}) is "
                    f"closed by an end-group tag for field {inner}"
                )
            return tag_start, pos
        if kind is WireType.VARINT:
            _, pos = decode_varint(data, pos)
        elif kind is WireType.SGROUP:
            pos = _group_end(data, pos, inner, tag_start, depth + 1)[1]
        else:
            pos = _fixed_or_len(data, pos, inner, kind, tag_start)
    raise WireError(
        f"truncated input: the group of field {number} at offset {start} has no end-group tag"
    )


def _spans(data: bytes) -> Iterator[_Span]:
    pos = 0
    while pos < len(data):
        start = pos
        tag, pos = decode_varint(data, pos)
        try:
            number, kind = parse_tag(tag)
        except WireError as exc:
            raise WireError(f"at offset {start}: {exc}") from None
        tag_end = pos
        if kind is WireType.VARINT:
            value, pos = decode_varint(data, pos)
            yield _Span(start, tag_end, tag_end, pos, Field(number, kind, value))
            continue
        if kind is WireType.EGROUP:
            raise WireError(
                f"at offset {start}: an end-group tag for field {number} with no start-group "
                "tag before it"
            )
        if kind is WireType.SGROUP:  # the group's fields, up to the matching end-group tag
            inner_end, pos = _group_end(data, pos, number, start, 1)
            yield _Span(start, tag_end, tag_end, pos, Field(number, kind, data[tag_end:inner_end]))
            continue
        value_start = tag_end
        if kind is WireType.LEN:
            _, value_start = decode_varint(data, tag_end)
        pos = _fixed_or_len(data, tag_end, number, kind, start)
        yield _Span(start, tag_end, value_start, pos, Field(number, kind, data[value_start:pos]))


def iter_fields(data: Buffer) -> Iterator[Field]:
    """The fields of one message, in the order they are on the wire (not nested: a LEN value is raw
    bytes).

    Raises WireError, naming the offset, at the first thing that is not well formed.
    """
    for span in _spans(_as_bytes(data)):
        yield span.field


def unpack_varints(payload: Buffer) -> list[int]:
    """The varints of a packed repeated field's payload (one LEN field holding them back to
    back)."""
    payload = _as_bytes(payload)
    values, pos = [], 0
    while pos < len(payload):
        value, pos = decode_varint(payload, pos)
        values.append(value)
    return values


# --------------------------------------------------------------------------- explain

# descriptor.proto's FieldDescriptorProto.Type numbers (stable since proto2)
_TYPE_NAMES = {
    1: "double",
    2: "float",
    3: "int64",
    4: "uint64",
    5: "int32",
    6: "fixed64",
    7: "fixed32",
    8: "bool",
    9: "string",
    10: "group",
    11: "message",
    12: "bytes",
    13: "uint32",
    14: "enum",
    15: "sfixed32",
    16: "sfixed64",
    17: "sint32",
    18: "sint64",
}
_WIRE_OF_TYPE = {
    **dict.fromkeys((3, 4, 5, 8, 13, 14, 17, 18), WireType.VARINT),
    **dict.fromkeys((1, 6, 16), WireType.I64),
    **dict.fromkeys((2, 7, 15), WireType.I32),
    **dict.fromkeys((9, 11, 12), WireType.LEN),
    10: WireType.SGROUP,
}
_FIXED_FORMAT = {1: "<d", 2: "<f", 6: "<Q", 7: "<I", 15: "<i", 16: "<q"}
_TEXT_LIMIT = 40  # characters of a string or bytes value shown
_HEX_LIMIT = 10  # bytes of one group shown in hex
_PACKED_LIMIT = 12  # elements of a packed field shown one per line


def _hex(data: bytes) -> str:
    shown = " ".join(f"{b:02x}" for b in data[:_HEX_LIMIT])
    return shown + (" …" if len(data) > _HEX_LIMIT else "")


def _short(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT] + "…"


def _payload_text(payload: bytes) -> str:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(payload)} bytes: {_short(repr(payload))}"
    if text.isprintable():
        return f"{len(payload)} bytes, as text {_short(repr(text))}"
    return f"{len(payload)} bytes: {_short(repr(payload))}"


def _scalar(type_number: int, raw: int | bytes, field: Any) -> str:
    """The value of a scalar field of descriptor type ``type_number``, read from its raw wire
    value."""
    if isinstance(raw, bytes):
        fmt = _FIXED_FORMAT[type_number]
        return repr(struct.unpack(fmt, raw)[0])
    if type_number == 5:
        return str(
            to_signed(raw, 32)
        )  # int32: sign-extended to 64 bits on the wire; read back as 32
    if type_number == 3:
        return str(to_signed(raw, 64))
    if type_number == 13:
        return str(raw & 0xFFFFFFFF)
    if type_number == 4:
        return str(raw)
    if type_number == 8:
        return str(raw != 0)
    if type_number in (17, 18):
        return f"{zigzag_decode(raw)} (zigzag)"
    if type_number == 14:
        number = to_signed(raw, 32)
        enum_type = getattr(field, "enum_type", None)
        value = (
            getattr(enum_type, "values_by_number", {}).get(number)
            if enum_type is not None
            else None
        )
        return f"{value.name} ({number})" if value is not None else str(number)
    return str(raw)


def _is_repeated(field: Any) -> bool:
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return getattr(field, "label", None) == 3  # LABEL_REPEATED, for protobuf before is_repeated


class _Writer:
    def __init__(self) -> None:
        self.rows: list[tuple[int, int, str, str]] = []  # (offset, depth, hex, meaning)

    def add(self, offset: int, depth: int, raw: bytes, meaning: str) -> None:
        self.rows.append((offset, depth, _hex(raw), meaning))

    def render(self) -> str:
        if not self.rows:
            return "(no bytes: an empty message; every field has its default value)"
        off_w = max(len(str(r[0])) for r in self.rows)
        hex_w = max(2 * r[1] + len(r[2]) for r in self.rows)
        lines = []
        for offset, depth, hexed, meaning in self.rows:
            cell = "  " * depth + hexed
            lines.append(f"{offset:>{off_w}}  {cell:<{hex_w}}  {meaning}".rstrip())
        return "\n".join(lines)


def _explain_into(out: _Writer, data: bytes, base: int, descriptor: Any, depth: int) -> None:
    by_number = getattr(descriptor, "fields_by_number", {}) if descriptor is not None else {}
    for span in _spans(data):
        field = span.field
        known = by_number.get(field.number)
        start = base + span.start
        tag_meaning = f"tag: field {field.number}"
        if known is not None:
            type_number = known.type
            type_name = _TYPE_NAMES.get(type_number, str(type_number))
            if type_number in (10, 11) and known.message_type is not None:
                type_name = known.message_type.name + (", delimited" if type_number == 10 else "")
            tag_meaning += (
                f" {known.name} ({'repeated ' if _is_repeated(known) else ''}{type_name})"
            )
        elif descriptor is not None:
            tag_meaning += " (not in this schema: an unknown field)"
        tag_meaning += f", wire type {int(field.wire_type)} {field.wire_type.name}"
        expected = _WIRE_OF_TYPE.get(known.type) if known is not None else None
        packed = (
            known is not None
            and _is_repeated(known)
            and field.wire_type is WireType.LEN
            and expected in (WireType.VARINT, WireType.I32, WireType.I64)
        )
        mismatch = known is not None and expected is not field.wire_type and not packed
        if mismatch:
            tag_meaning += f" (the schema says {expected.name}: kept as an unknown field)"
            known = None
        out.add(start, depth, data[span.start : span.tag_end], tag_meaning)
        value_at = base + span.value_start
        raw_value = data[span.value_start : span.end]
        if field.wire_type is WireType.SGROUP:
            _explain_group(out, data, base, span, known, depth)
            continue
        if field.wire_type is WireType.LEN:
            out.add(
                base + span.tag_end,
                depth,
                data[span.tag_end : span.value_start],
                f"length: {len(raw_value)} byte{'' if len(raw_value) == 1 else 's'}",
            )
            if known is None:
                if raw_value:
                    out.add(value_at, depth, raw_value, _payload_text(raw_value))
            elif packed:
                _explain_packed(out, raw_value, value_at, depth + 1, known)
            elif known.type == 11:
                if depth + 1 > MAX_DEPTH:
                    raise WireError(
                        f"at offset {value_at}: messages nested deeper than {MAX_DEPTH} levels"
                    )
                try:
                    _explain_into(out, raw_value, value_at, known.message_type, depth + 1)
                except WireError as exc:
                    raise WireError(f"inside field {field.number} ({known.name}): {exc}") from None
            elif known.type == 9:
                try:
                    meaning = f"string {_short(repr(raw_value.decode('utf-8')))}"
                except UnicodeDecodeError:
                    meaning = f"NOT valid UTF-8 (a string must be): {_short(repr(raw_value))}"
                if raw_value:
                    out.add(value_at, depth, raw_value, meaning)
            elif raw_value:
                out.add(value_at, depth, raw_value, f"bytes {_short(repr(raw_value))}")
            continue
        out.add(value_at, depth, raw_value, _value_meaning(field, known))


def _explain_group(out: _Writer, data: bytes, base: int, span: _Span, known: Any, depth: int):
    """A group's fields, one level in, then its end-group tag."""
    field = span.field
    inner_at = base + span.value_start
    inner_type = getattr(known, "message_type", None) if known is not None else None
    if depth + 1 > MAX_DEPTH:
        raise WireError(f"at offset {inner_at}: groups nested deeper than {MAX_DEPTH} levels")
    try:
        _explain_into(out, field.value, inner_at, inner_type, depth + 1)
    except WireError as exc:
        raise WireError(f"inside group {field.number}: {exc}") from None
    end_at = span.value_start + len(field.value)
    out.add(base + end_at, depth, data[end_at : span.end], f"end-group tag: field {field.number}")


def _value_meaning(field: Field, known: Any) -> str:
    """What a VARINT, I64 or I32 value means: raw, then as its declared type when the schema is
    known."""
    raw = field.value
    if isinstance(raw, int):
        if known is None:
            return f"varint {raw}"
        value = _scalar(known.type, raw, known)
        if value == str(raw):
            return f"varint {raw}"
        if known.type in (3, 5) and value.startswith("-"):
            value += " (two's complement)"
        return f"varint {raw} -> {value}"
    if known is None:
        unsigned = struct.unpack("<Q" if len(raw) == 8 else "<I", raw)[0]
        return f"{len(raw)} bytes, little-endian: {unsigned} as unsigned"
    return (
        f"{_TYPE_NAMES[known.type]} {_scalar(known.type, raw, known)} ({len(raw)} bytes, "
        "little-endian)"
    )


def _explain_packed(out: _Writer, payload: bytes, base: int, depth: int, field: Any) -> None:
    expected = _WIRE_OF_TYPE[field.type]
    pos, shown = 0, 0
    while pos < len(payload):
        start = pos
        if expected is WireType.VARINT:
            raw: int | bytes
            try:
                raw, pos = decode_varint(payload, pos)
            except WireError as exc:
                raise WireError(
                    f"inside packed field {field.number} ({field.name}) at offset {base}: {exc}"
                ) from None
        else:
            size = 8 if expected is WireType.I64 else 4
            if len(payload) - pos < size:
                raise WireError(
                    f"packed field {field.number} ({field.name}) at offset {base}: "
                    f"{len(payload)} bytes is not a whole number of {size}-byte values"
                )
            raw, pos = payload[pos : pos + size], pos + size
        if shown < _PACKED_LIMIT:
            meaning = _value_meaning(Field(field.number, expected, raw), field)
            out.add(base + start, depth, payload[start:pos], f"element {shown}: {meaning}")
        shown += 1
    if shown > _PACKED_LIMIT:
        out.add(base + len(payload), depth, b"", f"… {shown - _PACKED_LIMIT} more elements")


def explain(data: Buffer, descriptor: Any = None) -> str:
    """An annotated dump of a serialised message: one line per group of bytes, with its offset and
    meaning.

    Without ``descriptor`` it shows what the wire alone says (field numbers,
    wire types, raw values). With a message Descriptor (``MyMessage.DESCRIPTOR``)
    it also names fields, reads values as their declared types (signed, zigzag,
    float, enum...), follows nested messages and unpacks packed repeated fields.
    Malformed input: the lines that could be read, then a last line ``error: ...``.
    """
    data = _as_bytes(data)
    out = _Writer()
    try:
        _explain_into(out, data, 0, descriptor, 0)
    except WireError as exc:
        text = out.render() if out.rows else ""
        return (text + "\n" if text else "") + f"error: {exc}"
    return out.render()
