"""Check that a Thrift binary-protocol message holds what it claims, before decoding it, so
that the work of decoding is bounded by the message's size.

thriftpy2 believes every count it reads. To pass over a field it does not know, it loops
over the elements a container header announces -- and a list of 2**31 - 1 elements of a
type that takes no bytes (VOID, or a type number it does not know) is a two-billion-step
loop that reads nothing: 28 bytes kept a CPU busy for minutes, and no timeout or ``stop()``
could end it. :func:`check_message` walks the message once and refuses it unless

* every type byte names a real Thrift type (VOID, STOP and unknown numbers are refused
  inside a value),
* every length and count is non-negative, and every container's elements, at their
  smallest, fit in the bytes that are left (so each element costs at least one byte),
* structs and containers nest at most ``max_depth`` deep,
* nothing follows the message.

Then a message of N bytes costs at most about N steps, here and in thriftpy2 after it.

Used by rpclab.adapters.thrift's server (notebook 12, ``rpclab serve thrift``, and the
Thrift echo of rpclab.bench, notebook 13).
"""

from __future__ import annotations

import struct

from thriftpy2.thrift import TType

__all__ = ["MalformedMessage", "check_message", "MAX_DEPTH"]

MAX_DEPTH = 64  # thriftpy2's own default nesting limit
VERSION_MASK = 0xFFFF0000
VERSION_1 = 0x80010000

# Types whose values have a fixed size on the wire, in bytes.
_FIXED = {
    TType.BOOL: 1,
    TType.BYTE: 1,
    TType.I16: 2,
    TType.I32: 4,
    TType.I64: 8,
    TType.DOUBLE: 8,
}
_BYTES = (TType.STRING, TType.UTF8, TType.UTF16, TType.BINARY)  # a 4-byte length, then bytes
_CONTAINERS = (TType.LIST, TType.SET, TType.MAP)
# The fewest bytes a value of each type can take.
_SMALLEST = {
    **_FIXED,
    **dict.fromkeys(_BYTES, 4),
    TType.STRUCT: 1,  # a lone STOP
    TType.LIST: 5,  # element type, count
    TType.SET: 5,
    TType.MAP: 6,  # key type, value type, count
}

_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I16 = struct.Struct(">h")


class MalformedMessage(ValueError):
    """The bytes are not one well-formed Thrift binary message; the message says where not."""


class _Walker:
    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.at = 0
        self.max_depth = max_depth

    @property
    def left(self) -> int:
        return len(self.data) - self.at

    def take(self, size: int, what: str) -> int:
        """Step over ``size`` bytes; return where they start."""
        if size > self.left:
            raise MalformedMessage(
                f"{what} needs {size} bytes at offset {self.at}; the message has {self.left} left"
            )
        start = self.at
        self.at += size
        return start

    def byte(self, what: str) -> int:
        return self.data[self.take(1, what)]

    def i32(self, what: str) -> int:
        return _I32.unpack_from(self.data, self.take(4, what))[0]

    def length(self, what: str) -> int:
        size = self.i32(what)
        if size < 0:
            raise MalformedMessage(f"{what} is negative ({size}) at offset {self.at - 4}")
        return size

    def message(self) -> None:
        (version,) = _U32.unpack_from(self.data, self.take(4, "the message header"))
        if version & VERSION_MASK != VERSION_1:
            raise MalformedMessage("not a strict Thrift binary message (no version 1 header)")
        self.take(self.length("the method name's length"), "the method name")
        self.take(4, "the sequence id")
        self.struct(1)
        if self.left:
            raise MalformedMessage(f"{self.left} bytes follow the end of the message")

    def struct(self, depth: int) -> None:
        self.deeper(depth)
        while True:
            ttype = self.byte("a field's type")
            if ttype == TType.STOP:
                return
            self.take(2, "a field's id")
            self.value(ttype, depth)

    def value(self, ttype: int, depth: int) -> None:
        if ttype in _FIXED:
            self.take(_FIXED[ttype], "a value")
        elif ttype in _BYTES:
            self.take(self.length("a string's length"), "a string")
        elif ttype == TType.STRUCT:
            self.struct(depth + 1)
        elif ttype in _CONTAINERS:
            self.container(ttype, depth + 1)
        else:
            raise MalformedMessage(f"type {ttype} at offset {self.at - 1} is not a Thrift type")

    def container(self, ttype: int, depth: int) -> None:
        self.deeper(depth)
        kinds = [self.byte("a container's element type")]
        if ttype == TType.MAP:
            kinds.append(self.byte("a map's value type"))
        count = self.length("a container's element count")
        for kind in kinds:
            if kind not in _SMALLEST:
                raise MalformedMessage(f"a container of type {kind}, which is not a Thrift type")
        smallest = count * sum(_SMALLEST[kind] for kind in kinds)
        if smallest > self.left:
            raise MalformedMessage(
                f"a container declares {count} elements, at least {smallest} bytes; "
                f"the message has {self.left} left"
            )
        if len(kinds) == 1 and kinds[0] in _FIXED:  # all the same size: step over them at once
            self.take(smallest, "a container's elements")
            return
        for _ in range(count):  # each element takes at least one byte: at most `left` steps
            for kind in kinds:
                self.value(kind, depth)

    def deeper(self, depth: int) -> None:
        if depth > self.max_depth:
            raise MalformedMessage(f"structs and containers nest more than {self.max_depth} deep")


def check_message(data: bytes, max_depth: int = MAX_DEPTH) -> None:
    """Raise MalformedMessage unless ``data`` is one well-formed Thrift binary message (strict,
    version 1) whose counts fit its size; return None if it is."""
    _Walker(bytes(data), max_depth).message()
