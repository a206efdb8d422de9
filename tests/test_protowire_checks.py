"""rpclab.byhand.protowire_checks: notebook 06's read-location check agrees with protobuf's own
parser on every case, passes the notebook's solution, says "not done" for the blank, and names
what is wrong in the usual mistakes."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from rpclab import exercises
from rpclab.byhand import protowire
from rpclab.byhand.protowire_checks import CASES, check_read_location
from rpclab.exercises import NotDone


def _location_class():
    """Notebook 06's Location, built in a descriptor pool of its own (no protoc, no clash)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="test_protowire_checks.proto", package="rpclab.test_location", syntax="proto3"
    )
    message = file.message_type.add(name="Location")
    for number, name in ((1, "latitude_e7"), (2, "longitude_e7")):
        message.field.add(
            name=name,
            number=number,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("rpclab.test_location.Location")
    )


@pytest.mark.parametrize("case", CASES, ids=[case.why.split(":")[0] for case in CASES])
def test_protobuf_reads_every_case_as_the_check_expects(case):
    location = _location_class().FromString(case.data)
    assert (location.latitude_e7, location.longitude_e7) == case.want


def solution(data):  # notebook 06's solution
    latitude = longitude = 0
    for field in protowire.iter_fields(data):
        if field.wire_type is not protowire.WireType.VARINT:
            continue
        if field.number == 1:
            latitude = protowire.to_signed(field.value, 32)
        elif field.number == 2:
            longitude = protowire.to_signed(field.value, 32)
    return latitude, longitude


def blank(data):
    raise NotDone("keep fields 1 and 2")


def by_position(data):  # the first field is the latitude, the second the longitude
    fields = list(protowire.iter_fields(data))
    return protowire.to_signed(fields[0].value, 32), protowire.to_signed(fields[1].value, 32)


def unsigned(data):  # forgets that an int32 may be negative
    found = {1: 0, 2: 0}
    for field in protowire.iter_fields(data):
        if field.number in found:
            found[field.number] = field.value
    return found[1], found[2]


def zigzag(data):  # reads int32 as if it were sint32
    found = {1: 0, 2: 0}
    for field in protowire.iter_fields(data):
        if field.number in found:
            found[field.number] = protowire.zigzag_decode(field.value)
    return found[1], found[2]


def first_one_wins(data):
    found = {}
    for field in protowire.iter_fields(data):
        if field.number in (1, 2):
            found.setdefault(field.number, protowire.to_signed(field.value, 32))
    return found.get(1, 0), found.get(2, 0)


def no_defaults(data):  # a field not sent comes back as None
    found = {}
    for field in protowire.iter_fields(data):
        if field.number in (1, 2):
            found[field.number] = protowire.to_signed(field.value, 32)
    return found.get(1), found.get(2)


def refuses_unknown_fields(data):
    found = {1: 0, 2: 0}
    for field in protowire.iter_fields(data):
        if field.number not in found:
            raise ValueError(f"no field {field.number} in a Location")
        found[field.number] = protowire.to_signed(field.value, 32)
    return found[1], found[2]


@pytest.mark.parametrize(
    "read_location, status, words",
    [
        (solution, "right", "8 Locations read as protobuf reads them"),
        (blank, "not done", "keep fields 1 and 2"),
        (by_position, "wrong", "fields go by number, not by position"),
        (unsigned, "wrong", "returned (407127753, 18446744072969491888)"),
        (zigzag, "wrong", "returned (236884500, 42708500)"),
        (first_one_wins, "wrong", "the last one wins"),
        (no_defaults, "wrong", "returned (None, 1234), not (0, 1234)"),
        (refuses_unknown_fields, "wrong", "raised ValueError: no field 3 in a Location"),
    ],
)
def test_read_location_check(read_location, status, words):
    found = exercises.check("read-location", lambda: check_read_location(read_location), show=False)
    assert (found.status, words in found.message) == (status, True), found


def test_the_check_asks_for_a_function():
    found = exercises.check("read-location", lambda: check_read_location(42), show=False)
    assert found.status == "wrong" and "pass your function itself" in found.message
