"""The check behind notebook 06's exercise: a Location read off the wire by hand.

notebook 06's ``Location`` is ``{ int32 latitude_e7 = 1; int32 longitude_e7 = 2; }``. The
learner writes ``read_location(data: bytes) -> tuple[int, int]`` with
rpclab.byhand.protowire alone (no generated class), and :func:`check_read_location` raises
AssertionError, in plain words, unless it reads the bytes as protobuf's own parser does:

* by field NUMBER, in any order (a writer may put field 2 first);
* an ``int32`` is a varint, and a negative one is its 64-bit two's complement (ten bytes);
* a field that is not there is at its default, 0;
* a field it does not know (another number) is skipped, whatever its wire type;
* a field that comes twice keeps its LAST value ("last one wins").

Each case is built with protowire's encoders, so the expected answers are written down here and
do not depend on protobuf; tests/test_protowire_checks.py proves that protobuf's parser reads
every case the same way, that the check passes the notebook's solution, and that it names what
is wrong in the usual mistakes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from rpclab.byhand.protowire import WireType, encode_field

__all__ = ["Case", "CASES", "check_read_location"]

VARINT, LEN, I32 = WireType.VARINT, WireType.LEN, WireType.I32


def _int32(number: int, value: int) -> bytes:
    """One int32 field as protobuf writes it (a negative one as 64-bit two's complement)."""
    return encode_field(number, VARINT, value % (1 << 64))


class Case(NamedTuple):
    """Bytes of a Location, the (latitude_e7, longitude_e7) they hold, and what they test."""

    data: bytes
    want: tuple[int, int]
    why: str


CASES = [
    Case(
        _int32(1, 473_769_000) + _int32(2, 85_417_000),
        (473_769_000, 85_417_000),
        "Zurich: field 1, then field 2",
    ),
    Case(
        _int32(1, 407_127_753) + _int32(2, -740_059_728),
        (407_127_753, -740_059_728),
        "New York: a negative int32 is its 64-bit two's complement, ten bytes "
        "(protowire.to_signed turns it back)",
    ),
    Case(
        _int32(2, -1_000) + _int32(1, 515_072_000),
        (515_072_000, -1_000),
        "field 2 written before field 1: fields go by number, not by position",
    ),
    Case(
        _int32(2, 1_234),
        (0, 1_234),
        "no field 1 at all: a field that is not sent is at its default, 0",
    ),
    Case(b"", (0, 0), "no bytes at all: every field at its default, 0"),
    Case(
        encode_field(3, VARINT, 7)
        + _int32(1, 10)
        + encode_field(4, LEN, b"a note")
        + encode_field(5, I32, b"\x01\x02\x03\x04")
        + _int32(2, 20),
        (10, 20),
        "fields 3, 4 and 5, which a Location does not have, among 1 and 2: skip them",
    ),
    Case(
        _int32(1, 10) + _int32(2, 20) + _int32(1, 30),
        (30, 20),
        "field 1 twice (two messages in a row, say): the last one wins",
    ),
    Case(
        _int32(1, -(2**31)) + _int32(2, 2**31 - 1),
        (-(2**31), 2**31 - 1),
        "the smallest and largest int32",
    ),
]


def check_read_location(read_location: Callable[[bytes], object]) -> str:
    """Call ``read_location`` on every case; AssertionError naming the first one it gets wrong."""
    if not callable(read_location):
        raise AssertionError("pass your function itself: check_read_location(read_location)")
    for case in CASES:
        got = read_location(case.data)
        if isinstance(got, list):
            got = tuple(got)
        if got != case.want:
            shown = f"bytes.fromhex('{case.data.hex(' ')}')" if case.data else 'b""'
            raise AssertionError(
                f"read_location({shown}) returned {got!r}, not {case.want!r}: {case.why}"
            )
    return f"{len(CASES)} Locations read as protobuf reads them"
