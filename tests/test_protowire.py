"""rpclab.byhand.protowire: the protobuf wire format by hand, checked against protobuf's own
serialisation."""

from __future__ import annotations

import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpclab.byhand import protowire
from rpclab.byhand.protowire import Field, WireError, WireType
from rpclab.grpcstack import protos

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
UINT64 = st.integers(0, 2**64 - 1)

# Field numbers of the test message, one per kind of field.
CHECK_PROTO = """\
syntax = "proto3";
package rpclab.test.protowire;

message Inner { int32 a = 1; string b = 2; }

message Check {
  enum Colour { COLOUR_UNSPECIFIED = 0; RED = 1; GREEN = 2; }
  int32 i32 = 1;
  int64 i64 = 2;
  uint64 u64 = 3;
  sint32 s32 = 4;
  sint64 s64 = 5;
  fixed32 f32 = 6;
  sfixed64 sf64 = 7;
  double d = 8;
  string text = 9;
  bytes blob = 10;
  bool flag = 11;
  Colour colour = 12;
  Inner inner = 13;
  repeated sint64 many = 14;
  repeated int32 loose = 15 [packed = false];
  float f = 16;
  uint32 u32 = 2000;
}
"""


@pytest.fixture(scope="module")
def pb2(tmp_path_factory):
    path = tmp_path_factory.mktemp("protowire") / "protowire_check.proto"
    path.write_text(CHECK_PROTO)
    module, _ = protos.load(path)
    return module


# --------------------------------------------------------------------------- varints


@pytest.mark.parametrize(
    "value, encoded",
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (150, b"\x96\x01"),
        (300, b"\xac\x02"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2**64 - 1, b"\xff" * 9 + b"\x01"),
        (-1, b"\xff" * 9 + b"\x01"),
        (-(2**63), b"\x80" * 9 + b"\x01"),
    ],
)
def test_varints_encode_and_decode_as_the_protobuf_documentation_shows(value, encoded):
    assert protowire.encode_varint(value) == encoded
    unsigned = value % 2**64
    assert protowire.decode_varint(encoded) == (unsigned, len(encoded))


def test_decode_varint_starts_at_pos_and_returns_the_position_after_it():
    data = b"\x08\x96\x01\x10"
    assert protowire.decode_varint(data, 1) == (150, 3)
    assert protowire.decode_varint(bytearray(data), 3) == (16, 4)
    assert protowire.decode_varint(memoryview(data), 0) == (8, 1)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1])
def test_encode_varint_refuses_values_beyond_64_bits(value):
    with pytest.raises(ValueError, match="64 bits"):
        protowire.encode_varint(value)


@pytest.mark.parametrize("value", [True, 1.5, "1", None])
def test_encode_varint_refuses_what_is_not_an_int(value):
    with pytest.raises(TypeError):
        protowire.encode_varint(value)


@pytest.mark.parametrize(
    "data, pos, message",
    [
        (b"", 0, "truncated input"),
        (b"\x01", 1, "truncated input"),
        (b"\x80", 0, "truncated varint at offset 0"),
        (b"\x01\xff\xff", 1, "truncated varint at offset 1: the input ends after 2 bytes"),
        (b"\x80" * 10 + b"\x01", 0, "longer than 10 bytes"),
        (b"\xff" * 20, 0, "longer than 10 bytes"),
        (b"\xff" * 9 + b"\x02", 0, "does not fit in 64 bits"),
    ],
)
def test_decode_varint_says_what_is_wrong_with_bad_input(data, pos, message):
    with pytest.raises(WireError, match=message):
        protowire.decode_varint(data, pos)


def test_decode_varint_refuses_text():
    with pytest.raises(TypeError, match="expected bytes"):
        protowire.decode_varint("\x01")


# --------------------------------------------------------------------------- signed numbers


@pytest.mark.parametrize(
    "value, encoded",
    [
        (0, 0),
        (-1, 1),
        (1, 2),
        (-2, 3),
        (2, 4),
        (2**31 - 1, 2**32 - 2),
        (-(2**31), 2**32 - 1),
    ],
)
def test_zigzag_maps_small_magnitudes_to_small_numbers(value, encoded):
    assert protowire.zigzag_encode(value, 32) == encoded
    assert protowire.zigzag_decode(encoded) == value


def test_zigzag_refuses_values_out_of_range():
    with pytest.raises(ValueError, match="32-bit"):
        protowire.zigzag_encode(2**31, 32)
    with pytest.raises(ValueError, match="64-bit"):
        protowire.zigzag_encode(-(2**63) - 1)
    with pytest.raises(ValueError, match="never negative"):
        protowire.zigzag_decode(-1)


@given(INT64)
def test_zigzag_round_trips_every_int64(value):
    assert protowire.zigzag_decode(protowire.zigzag_encode(value)) == value


def test_to_signed_reads_twos_complement():
    assert protowire.to_signed(2**64 - 1) == -1
    assert (
        protowire.to_signed(2**64 - 2, 32) == -2
    )  # an int32 on the wire is sign-extended to 64 bits
    assert protowire.to_signed(2**31 - 1, 32) == 2**31 - 1
    assert protowire.to_signed(2**31, 32) == -(2**31)


# --------------------------------------------------------------------------- tags and fields


def test_tags_pack_the_field_number_and_the_wire_type():
    assert protowire.make_tag(1, WireType.VARINT) == 0x08
    assert protowire.make_tag(2, WireType.LEN) == 0x12
    assert protowire.encode_tag(16, WireType.VARINT) == b"\x80\x01"  # 16 and above: a 2-byte tag
    assert protowire.parse_tag(0x12) == (2, WireType.LEN)
    assert protowire.parse_tag(0x35) == (6, WireType.I32)


@pytest.mark.parametrize(
    "tag, message",
    [(0x00, "field number 0"), (0x0E, "wire type 6"), (0x0F, "wire type 7"), (2**32, "32 bits")],
)
def test_parse_tag_refuses_what_no_message_can_hold(tag, message):
    with pytest.raises(WireError, match=message):
        protowire.parse_tag(tag)


@pytest.mark.parametrize("number", [0, -1, 2**29])
def test_make_tag_refuses_field_numbers_out_of_range(number):
    with pytest.raises(ValueError, match="field numbers run from 1"):
        protowire.make_tag(number, WireType.VARINT)


def test_encode_field_lays_out_each_wire_type():
    assert protowire.encode_field(1, WireType.VARINT, 150) == b"\x08\x96\x01"
    assert protowire.encode_field(2, WireType.LEN, b"testing") == b"\x12\x07testing"
    assert protowire.encode_field(6, WireType.I32, b"\x01\x00\x00\x00") == b"\x35\x01\x00\x00\x00"
    with pytest.raises(ValueError, match="exactly 8 bytes"):
        protowire.encode_field(1, WireType.I64, b"\x00")
    assert protowire.encode_field(2, WireType.SGROUP, b"\x08\x01") == b"\x13\x08\x01\x14"
    with pytest.raises(ValueError, match="end-group tag is written by"):
        protowire.encode_field(1, WireType.EGROUP, b"")


def test_iter_fields_reads_each_wire_type_in_order():
    data = b"\x08\x96\x01" + b"\x12\x02hi" + b"\x19" + bytes(8) + b"\x25\x01\x02\x03\x04"
    assert list(protowire.iter_fields(data)) == [
        Field(1, WireType.VARINT, 150),
        Field(2, WireType.LEN, b"hi"),
        Field(3, WireType.I64, bytes(8)),
        Field(4, WireType.I32, b"\x01\x02\x03\x04"),
    ]
    assert list(protowire.iter_fields(b"")) == []


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x12\x05hi", "field 2 at offset 0 says 5 bytes follow, but only 2 remain"),
        (b"\x08\x01\x19\x00", "field 3 at offset 2 says 8 bytes follow, but only 1 remain"),
        (b"\x08", "truncated input: expected a varint at offset 1"),
        (b"\x08\x01\x00", "at offset 2: tag 0x0 has field number 0"),
        (b"\x0b", "the group of field 1 at offset 0 has no end-group tag"),
        (b"\x0c", "at offset 0: an end-group tag for field 1 with no start-group tag"),
        (
            b"\x0b\x08\x01\x14",
            "the group of field 1 .offset 0. is closed by an end-group tag for field 2",
        ),
        (b"\x0b" * 200, "groups nested deeper than 100 levels"),
        (b"\x12\xff\xff\xff\xff\x0f", "says 4294967295 bytes follow"),
    ],
)
def test_iter_fields_names_the_offset_of_malformed_input(data, message):
    with pytest.raises(WireError, match=message):
        list(protowire.iter_fields(data))


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_any_bytes_parse_or_fail_cleanly_and_explain_never_raises(data):
    try:
        fields = list(protowire.iter_fields(data))
    except WireError:
        fields = None
    text = protowire.explain(data)
    assert isinstance(text, str)
    if fields is not None and data:
        assert "error:" not in text
        assert text.count("tag: field") == len(fields)


# -------------------------------------------------------------------------- against protobuf itself


@given(INT64)
def test_int64_fields_are_plain_varints_and_negatives_take_ten_bytes(pb2, value):
    data = pb2.Check(i64=value).SerializeToString()
    assert data == (protowire.encode_field(2, WireType.VARINT, value) if value else b"")
    if value:
        (field,) = protowire.iter_fields(data)
        assert protowire.to_signed(field.value) == value
        assert (len(data) == 11) == (value < 0)


@given(INT32)
def test_int32_fields_are_sign_extended_to_64_bits(pb2, value):
    data = pb2.Check(i32=value).SerializeToString()
    assert data == (protowire.encode_field(1, WireType.VARINT, value) if value else b"")
    assert pb2.Check.FromString(protowire.encode_field(1, WireType.VARINT, value)).i32 == value


@given(UINT64)
def test_uint64_fields_round_trip_through_a_real_message(pb2, value):
    data = pb2.Check(u64=value).SerializeToString()
    decoded = {f.number: f.value for f in protowire.iter_fields(data)}
    assert decoded.get(3, 0) == value
    assert pb2.Check.FromString(protowire.encode_field(3, WireType.VARINT, value)).u64 == value


@given(st.integers(-(2**31), 2**31 - 1), INT64)
def test_sint_fields_are_zigzag_varints(pb2, small, big):
    data = pb2.Check(s32=small, s64=big).SerializeToString()
    expected = b""
    if small:
        expected += protowire.encode_field(4, WireType.VARINT, protowire.zigzag_encode(small, 32))
    if big:
        expected += protowire.encode_field(5, WireType.VARINT, protowire.zigzag_encode(big))
    assert data == expected
    parsed = pb2.Check.FromString(expected)
    assert (parsed.s32, parsed.s64) == (small, big)


@given(st.integers(0, 2**32 - 1), INT64, st.floats(allow_nan=False))
def test_fixed_width_fields_are_little_endian(pb2, f32, sf64, d):
    data = pb2.Check(f32=f32, sf64=sf64, d=d).SerializeToString()
    fields = {f.number: f for f in protowire.iter_fields(data)}
    if f32:
        assert fields[6] == Field(6, WireType.I32, struct.pack("<I", f32))
    if sf64:
        assert struct.unpack("<q", fields[7].value)[0] == sf64
    if struct.pack("<d", d) != bytes(8):  # +0.0 is the default and is not sent (-0.0 is)
        assert fields[8].wire_type is WireType.I64 and struct.unpack("<d", fields[8].value)[0] == d


@given(st.text(max_size=60), st.binary(max_size=60))
def test_strings_and_bytes_are_length_delimited(pb2, text, blob):
    data = pb2.Check(text=text, blob=blob).SerializeToString()
    expected = b""
    if text:
        expected += protowire.encode_field(9, WireType.LEN, text.encode("utf-8"))
    if blob:
        expected += protowire.encode_field(10, WireType.LEN, blob)
    assert data == expected


@given(st.lists(INT64, max_size=40))
def test_repeated_scalars_are_packed_into_one_length_delimited_field(pb2, values):
    data = pb2.Check(many=values).SerializeToString()
    if not values:
        assert data == b""
        return
    (field,) = protowire.iter_fields(data)
    assert (field.number, field.wire_type) == (14, WireType.LEN)
    assert [protowire.zigzag_decode(v) for v in protowire.unpack_varints(field.value)] == values


@given(st.lists(INT32, min_size=1, max_size=10))
def test_packed_false_repeats_the_tag_for_every_element(pb2, values):
    data = pb2.Check(loose=values).SerializeToString()
    fields = list(protowire.iter_fields(data))
    assert [(f.number, f.wire_type) for f in fields] == [(15, WireType.VARINT)] * len(values)
    assert [protowire.to_signed(f.value, 32) for f in fields] == values


@given(INT32, st.text(max_size=20))
def test_nested_messages_are_length_delimited_messages(pb2, a, b):
    inner = pb2.Inner(a=a, b=b)
    data = pb2.Check(inner=inner).SerializeToString()
    (field,) = protowire.iter_fields(data)
    assert (field.number, field.wire_type) == (13, WireType.LEN)
    assert field.value == inner.SerializeToString()


def test_field_numbers_from_16_take_a_two_byte_tag(pb2):
    assert pb2.Check(f=1.5).SerializeToString() == protowire.encode_tag(
        16, WireType.I32
    ) + struct.pack("<f", 1.5)
    assert pb2.Check(u32=1).SerializeToString() == b"\x80\x7d\x01"  # 2000 << 3 = 16000 = 0x80 0x7d


# --------------------------------------------------------------------------- explain


def test_explain_without_a_schema_shows_only_what_the_wire_says():
    text = protowire.explain(b"\x08\x96\x01\x12\x03Ada")
    assert text.splitlines() == [
        "0  08        tag: field 1, wire type 0 VARINT",
        "1  96 01     varint 150",
        "3  12        tag: field 2, wire type 2 LEN",
        "4  03        length: 3 bytes",
        "5  41 64 61  3 bytes, as text 'Ada'",
    ]


def test_explain_with_a_descriptor_names_fields_and_reads_their_types(pb2):
    message = pb2.Check(
        i32=-2,
        s64=-2,
        d=21.5,
        text="Zürich",
        colour=pb2.Check.GREEN,
        inner=pb2.Inner(a=7, b="x"),
        many=[1, -1],
        flag=True,
    )
    text = protowire.explain(message.SerializeToString(), pb2.Check.DESCRIPTOR)
    assert "tag: field 1 i32 (int32), wire type 0 VARINT" in text
    assert "varint 18446744073709551614 -> -2 (two's complement)" in text
    assert "varint 3 -> -2 (zigzag)" in text
    assert "double 21.5 (8 bytes, little-endian)" in text
    assert "string 'Zürich'" in text
    assert "varint 2 -> GREEN (2)" in text
    assert "tag: field 13 inner (Inner), wire type 2 LEN" in text
    assert re.search(
        r"^37    08 +tag: field 1 a \(int32\)", text, re.M
    )  # nested lines are indented
    assert "length: 1 byte\n" in text
    assert (
        "element 0: varint 2 -> 1 (zigzag)" in text and "element 1: varint 1 -> -1 (zigzag)" in text
    )
    assert "varint 1 -> True" in text
    assert "error" not in text


def test_explain_marks_unknown_fields_and_fields_of_the_wrong_wire_type(pb2):
    data = protowire.encode_field(99, WireType.VARINT, 5) + protowire.encode_field(
        1, WireType.LEN, b"oops"
    )
    text = protowire.explain(data, pb2.Check.DESCRIPTOR)
    assert "tag: field 99 (not in this schema: an unknown field), wire type 0 VARINT" in text
    assert "the schema says VARINT: kept as an unknown field" in text
    assert "4 bytes, as text 'oops'" in text


def test_explain_shows_what_it_could_read_then_the_error():
    text = protowire.explain(b"\x08\x01\x12\x05hi")
    lines = text.splitlines()
    assert lines[0].endswith("tag: field 1, wire type 0 VARINT")
    assert (
        lines[-1]
        == "error: truncated input: field 2 at offset 2 says 5 bytes follow, but only 2 remain"
    )


def test_explain_reports_a_broken_nested_message_and_an_empty_one(pb2):
    broken = protowire.encode_field(13, WireType.LEN, b"\x08")  # inner: a tag with no value
    assert "error: inside field 13 (inner): truncated input" in protowire.explain(
        broken, pb2.Check.DESCRIPTOR
    )
    assert "empty message" in protowire.explain(b"", pb2.Check.DESCRIPTOR)


def test_explain_refuses_nesting_deeper_than_the_limit():
    class Node:  # a duck-typed descriptor of `message Node { Node child = 1; }`
        type, name, is_repeated = 11, "child", False

    field = Node()
    descriptor = type("D", (), {"fields_by_number": {1: field}, "name": "Node"})()
    field.message_type = descriptor
    data = b""
    for _ in range(protowire.MAX_DEPTH + 2):
        data = protowire.encode_field(1, WireType.LEN, data)
    assert "nested deeper than 100 levels" in protowire.explain(data, descriptor)


DELIMITED_PROTO = """\
edition = "2023";
package rpclab.test.delimited;
message Point { int32 x = 1; int32 y = 2; }
message Path {
  Point start = 1;
  Point end = 2 [features.message_encoding = DELIMITED];
}
"""


def test_editions_delimited_fields_are_groups_on_the_wire_and_are_read_as_such(tmp_path):
    proto = tmp_path / "protowire_delimited.proto"
    proto.write_text(DELIMITED_PROTO)
    pb2, _ = protos.load(proto)
    point = pb2.Point(x=1, y=-2)
    data = pb2.Path(start=point, end=point).SerializeToString()
    start, end = protowire.iter_fields(data)
    assert start == Field(1, WireType.LEN, point.SerializeToString())
    assert end == Field(2, WireType.SGROUP, point.SerializeToString())
    first = protowire.encode_field(1, WireType.LEN, point.SerializeToString())
    assert first + protowire.encode_field(2, WireType.SGROUP, point.SerializeToString()) == data
    text = protowire.explain(data, pb2.Path.DESCRIPTOR)
    assert "tag: field 2 end (Point, delimited), wire type 3 SGROUP" in text
    assert "-2 (two's complement)" in text
    assert text.splitlines()[-1].endswith("end-group tag: field 2")


def test_groups_nest_and_explain_follows_them_without_a_schema():
    inner = protowire.encode_field(3, WireType.SGROUP, protowire.encode_field(1, 0, 7))
    data = protowire.encode_field(2, WireType.SGROUP, inner) + protowire.encode_field(4, 0, 1)
    assert [f.number for f in protowire.iter_fields(data)] == [2, 4]
    lines = protowire.explain(data).splitlines()
    assert [line.split("  ")[-1] for line in lines if "end-group" in line] == [
        "end-group tag: field 3",
        "end-group tag: field 2",
    ]
