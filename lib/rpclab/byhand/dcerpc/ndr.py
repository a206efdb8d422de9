"""NDR, the Network Data Representation of DCE/RPC, read by hand: just what the endpoint mapper
needs (integers, alignment, UUIDs, byte runs).

NDR does not fix one byte order. The sender writes in its own order and says which in the
packet's data representation label (``drep``); the receiver converts if its own differs:
"receiver makes right" (DCE 1.1 RPC, chapter 14). So every reader here is made for the order
of one packet, ``"<"`` (little-endian, drep ``0x10``) or ``">"`` (big-endian, ``0x00``)::

    r = Reader(stub, "<")
    count = r.u32()
    r.align(4)

Every read is bounded by the bytes that are really there: a length or count that points past
the end raises :class:`DecodeError` naming the offset, before anything is allocated.
Used by rpclab.byhand.dcerpc (notebooks 01 and 06: Microsoft RPC's endpoint mapper).
"""

from __future__ import annotations

import struct
import uuid

__all__ = ["DecodeError", "Reader", "uuid_bytes", "uuid_from"]


class DecodeError(ValueError):
    """Bytes that do not decode as what they should be (too short, out of range, malformed)."""


def uuid_bytes(value: uuid.UUID, order: str = "<") -> bytes:
    """A UUID as NDR writes it: three integer fields in ``order``, then 8 bytes as they are."""
    if order == "<":
        return value.bytes_le
    return value.bytes  # big-endian: the same as the textual order


def uuid_from(raw: bytes, order: str = "<") -> uuid.UUID:
    """The UUID NDR wrote as these 16 bytes in ``order``."""
    if len(raw) != 16:
        raise DecodeError(f"a UUID is 16 bytes, not {len(raw)}")
    return uuid.UUID(bytes_le=raw) if order == "<" else uuid.UUID(bytes=raw)


class Reader:
    """Reads NDR values of one byte order from a buffer, front to back, never past its end."""

    def __init__(self, data: bytes, order: str = "<", *, base: int = 0) -> None:
        if order not in ("<", ">"):
            raise ValueError(f"order must be '<' or '>', not {order!r}")
        self.data = bytes(data)
        self.order = order
        self.pos = 0
        self.base = base  # offset of data[0] in the message, for error messages and alignment

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str = "bytes") -> bytes:
        """The next ``n`` bytes; DecodeError if fewer are left."""
        if n < 0 or n > self.remaining:
            raise DecodeError(
                f"{what} at offset {self.base + self.pos}: needs {n} bytes, {self.remaining} left"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def align(self, n: int) -> None:
        """Skip the padding NDR puts before a value of size ``n`` (from the stub's start)."""
        pad = -(self.base + self.pos) % n
        self.take(pad, "alignment padding")

    def u8(self, what: str = "u8") -> int:
        return self.take(1, what)[0]

    def u16(self, what: str = "u16") -> int:
        self.align(2)
        return int(struct.unpack(self.order + "H", self.take(2, what))[0])

    def u32(self, what: str = "u32") -> int:
        self.align(4)
        return int(struct.unpack(self.order + "I", self.take(4, what))[0])

    def uuid(self, what: str = "UUID") -> uuid.UUID:
        self.align(4)  # a UUID is a struct whose largest member is a 32-bit integer
        return uuid_from(self.take(16, what), self.order)

    def count(self, what: str, limit: int) -> int:
        """A u32 that sizes something to come: DecodeError if it is over ``limit``."""
        value = self.u32(what)
        if value > limit:
            raise DecodeError(
                f"{what} at offset {self.base + self.pos - 4} is {value}, over the limit {limit}"
            )
        return value
