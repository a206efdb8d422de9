"""XDR (RFC 4506) by hand: the data representation ONC RPC's calls and replies are made of.

Every item is a whole number of 4-byte units, big-endian, with no type tags and
no field names -- the reader must already know the type, which is what an
interface file (protos/kv.x) is for::

    int, unsigned int, enum, bool   4 bytes (bool is 0 or 1)
    hyper, unsigned hyper           8 bytes
    opaque[n]                       n bytes, then zero bytes up to a multiple of 4
    opaque<max>, string<max>        a 4-byte length, the bytes, the padding
    T array<max>                    a 4-byte count, then each element
    T *optional                     a bool (is it there?), then T if it is
    struct                          its members, one after another
    union                           the discriminant, then the arm it selects

    packer = Packer(); packer.pack_string("hello", 256); packer.pack_hyper(-1)
    packer.get_buffer().hex(" ")    # '00 00 00 05 68 65 6c 6c 6f 00 00 00 ff ff ...'

An Unpacker reads one received message. Every length and count off the wire is
checked, against its declared maximum and against the bytes left, *before*
anything is allocated or looped over; anything wrong raises XDRError. The
standard library had an ``xdrlib`` until Python 3.13 (PEP 594 removed it).

Notebook 06 reads kv.x and decodes a call with it; notebook 12 calls the store
over ONC RPC (rpclab.byhand.oncrpc), which is built on it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["XDRError", "Packer", "Unpacker", "UNBOUNDED", "padding", "unpacked"]

T = TypeVar("T")

UNBOUNDED = 2**32 - 1  # the bound of ``opaque<>``, ``string<>`` and ``T array<>``: 4 bytes' worth

_UINT = struct.Struct(">I")
_INT = struct.Struct(">i")
_UHYPER = struct.Struct(">Q")
_HYPER = struct.Struct(">q")


class XDRError(ValueError):
    """Bytes that are not the XDR of the expected type, or a value that has no XDR encoding."""


def padding(n: int) -> int:
    """How many zero bytes follow ``n`` bytes of opaque data or string to reach a multiple of 4."""
    return -n % 4


def _check_int(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise XDRError(f"{what} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise XDRError(f"{what} must be between {low} and {high}, not {value}")
    return value


class Packer:
    """Builds the XDR encoding of a message, item by item, in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def get_buffer(self) -> bytes:
        """The bytes packed so far."""
        return bytes(self._buffer)

    # -- 4- and 8-byte items ----------------------------------------------------

    def pack_uint(self, value: int) -> None:
        self._buffer += _UINT.pack(_check_int(value, 0, 2**32 - 1, "an unsigned int"))

    def pack_int(self, value: int) -> None:
        self._buffer += _INT.pack(_check_int(value, -(2**31), 2**31 - 1, "an int"))

    def pack_enum(self, value: int) -> None:
        """An enum is an int on the wire (its members are named ints)."""
        self.pack_int(int(value))

    def pack_bool(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise XDRError(f"a bool must be True or False, not {value!r}")
        self.pack_uint(1 if value else 0)

    def pack_uhyper(self, value: int) -> None:
        self._buffer += _UHYPER.pack(_check_int(value, 0, 2**64 - 1, "an unsigned hyper"))

    def pack_hyper(self, value: int) -> None:
        self._buffer += _HYPER.pack(_check_int(value, -(2**63), 2**63 - 1, "a hyper"))

    # -- bytes and strings -------------------------------------------------------

    def pack_fixed_opaque(self, data: bytes, size: int) -> None:
        """``opaque[size]``: exactly ``size`` bytes, then padding."""
        if len(data) != size:
            raise XDRError(f"opaque[{size}] needs {size} bytes, not {len(data)}")
        self._buffer += data
        self._buffer += bytes(padding(size))

    def pack_opaque(self, data: bytes, max_size: int = UNBOUNDED) -> None:
        """``opaque<max_size>``: the length, the bytes, padding."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise XDRError(f"opaque data must be bytes, not {type(data).__name__}")
        if len(data) > max_size:
            raise XDRError(f"{len(data)} bytes is over the opaque<{max_size}> bound")
        self.pack_uint(len(data))
        self.pack_fixed_opaque(bytes(data), len(data))

    def pack_string(self, text: str, max_size: int = UNBOUNDED) -> None:
        """``string<max_size>``: its UTF-8 bytes (the bound counts bytes, not characters)."""
        if not isinstance(text, str):
            raise XDRError(f"a string must be a str, not {type(text).__name__}")
        data = text.encode("utf-8")
        if len(data) > max_size:
            raise XDRError(f"{len(data)} bytes of UTF-8 is over the string<{max_size}> bound")
        self.pack_opaque(data, max_size)

    # -- composites ----------------------------------------------------------------

    def pack_array(
        self, items: Iterable[T], pack_item: Callable[[T], None], max_count: int = UNBOUNDED
    ) -> None:
        """``T array<max_count>``: the count, then each item packed by ``pack_item``."""
        items = list(items)
        if len(items) > max_count:
            raise XDRError(f"{len(items)} items is over the array<{max_count}> bound")
        self.pack_uint(len(items))
        for item in items:
            pack_item(item)

    def pack_optional(self, value: T | None, pack_item: Callable[[T], None]) -> None:
        """``T *optional``: FALSE for None, else TRUE and the value."""
        self.pack_bool(value is not None)
        if value is not None:
            pack_item(value)


class Unpacker:
    """Reads XDR items, in order, from one message; every size is checked before it is used."""

    def __init__(self, data: bytes, offset: int = 0):
        self._data = bytes(data)
        self._position = offset

    @property
    def position(self) -> int:
        """How many bytes of the message have been read."""
        return self._position

    @property
    def remaining(self) -> int:
        """How many bytes are left to read."""
        return len(self._data) - self._position

    def rest(self) -> bytes:
        """The bytes not read yet (they are not consumed)."""
        return self._data[self._position :]

    def done(self) -> None:
        """Raise XDRError if bytes are left over: a message must be exactly its items."""
        if self.remaining:
            raise XDRError(f"{self.remaining} bytes left over after the last item")

    def _take(self, size: int, what: str) -> bytes:
        if size > self.remaining:
            raise XDRError(
                f"{what} needs {size} bytes at offset {self._position}; "
                f"the message has {self.remaining} left"
            )
        start = self._position
        self._position += size
        return self._data[start : self._position]

    # -- 4- and 8-byte items ----------------------------------------------------

    def unpack_uint(self) -> int:
        return _UINT.unpack(self._take(4, "an unsigned int"))[0]

    def unpack_int(self) -> int:
        return _INT.unpack(self._take(4, "an int"))[0]

    def unpack_enum(self, allowed: Iterable[int] | None = None) -> int:
        """An enum: an int, which must be one of ``allowed`` when given (RFC 4506 s. 4.3)."""
        value = self.unpack_int()
        if allowed is not None and value not in set(allowed):
            raise XDRError(f"{value} is not a member of the enum")
        return value

    def unpack_bool(self) -> bool:
        value = self.unpack_uint()
        if value > 1:
            raise XDRError(f"a bool is 0 or 1, not {value}")
        return value == 1

    def unpack_uhyper(self) -> int:
        return _UHYPER.unpack(self._take(8, "an unsigned hyper"))[0]

    def unpack_hyper(self) -> int:
        return _HYPER.unpack(self._take(8, "a hyper"))[0]

    # -- bytes and strings -------------------------------------------------------

    def unpack_fixed_opaque(self, size: int) -> bytes:
        """``opaque[size]``: the bytes; the padding after them must be zero."""
        data = self._take(size, f"opaque[{size}]")
        pad = self._take(padding(size), "padding")
        if pad.count(0) != len(pad):
            raise XDRError(f"padding at offset {self._position - len(pad)} is not zero bytes")
        return data

    def unpack_opaque(self, max_size: int = UNBOUNDED) -> bytes:
        """``opaque<max_size>``: a length, checked against the bound and the bytes left, then it."""
        size = self.unpack_uint()
        if size > max_size:
            raise XDRError(f"declared length {size} is over the bound of {max_size}")
        if size + padding(size) > self.remaining:
            raise XDRError(
                f"declared length {size} at offset {self._position - 4} is more than "
                f"the {self.remaining} bytes left"
            )
        return self.unpack_fixed_opaque(size)

    def unpack_string(self, max_size: int = UNBOUNDED) -> str:
        """``string<max_size>``: the bytes, which must be UTF-8."""
        data = self.unpack_opaque(max_size)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise XDRError(f"a string that is not UTF-8: {exc}") from None

    # -- composites ----------------------------------------------------------------

    def unpack_array(
        self,
        unpack_item: Callable[[], T],
        max_count: int = UNBOUNDED,
        *,
        min_item_size: int = 4,
    ) -> list[T]:
        """``T array<max_count>``: a count, checked, then that many items.

        Each item takes at least ``min_item_size`` bytes (4 for every XDR type
        but void), so a count the bytes left cannot hold is refused before the
        loop starts.
        """
        count = self.unpack_uint()
        if count > max_count:
            raise XDRError(f"declared count {count} is over the bound of {max_count}")
        if count * min_item_size > self.remaining:
            raise XDRError(f"declared count {count} cannot fit in the {self.remaining} bytes left")
        return [unpack_item() for _ in range(count)]

    def unpack_optional(self, unpack_item: Callable[[], T]) -> T | None:
        """``T *optional``: None, or the value."""
        return unpack_item() if self.unpack_bool() else None


def unpacked(data: bytes, unpack: Callable[[Unpacker], Any]) -> Any:
    """``unpack(Unpacker(data))``, which must read all of ``data`` (XDRError otherwise)."""
    reader = Unpacker(data)
    value = unpack(reader)
    reader.done()
    return value
