"""Bytes <-> frames: each message is a 4-byte big-endian length N, then N bytes.

Built by hand in notebook 02; the socket RPC's frames in 04 and 05; assignment A1.

TCP delivers a stream of bytes with no message boundaries: one ``send`` may
arrive as several ``recv`` results, and several sends as one. Framing puts the
boundaries back. The length is read off the wire, so it is checked against a
maximum *before* anything is allocated: a peer that declares 4 GiB gets an
error, not our memory. A peer that sends a frame one byte at a time, each just
inside the socket's timeout, is stopped by a deadline for the whole frame
(``recv_frame(sock, timeout=...)``).

ONC RPC's *record marking* (RFC 5531 section 11) is the same idea with one more
bit: a record travels as fragments, each a 4-byte mark (top bit: "last
fragment"; 31 bits: its length) and its bytes. ``encode_record`` /
``send_record`` / ``recv_record`` below do it, bounding each fragment, the
record's total, the number of fragments and the time a started record may take.

Notebook 02 builds both framings; 04-05 (the socket RPC), 06 and 12 (ONC RPC,
rpclab.byhand.oncrpc) and the Thrift adapter use them.
"""

from __future__ import annotations

import socket
import struct
import time

from rpclab import checks

__all__ = [
    "HEADER",
    "MAX_FRAME_SIZE",
    "MAX_HEADER_LENGTH",
    "FramingError",
    "FrameTooLarge",
    "ConnectionClosed",
    "encode_frame",
    "recv_exactly",
    "recv_frame",
    "send_frame",
    "FrameDecoder",
    "LAST_FRAGMENT",
    "MAX_FRAGMENT_SIZE",
    "MAX_FRAGMENTS",
    "TooManyFragments",
    "encode_record",
    "send_record",
    "recv_record",
]

HEADER = struct.Struct(">I")  # 4-byte unsigned big-endian length
MAX_FRAME_SIZE = 1024 * 1024  # 1 MiB unless a caller says otherwise
MAX_HEADER_LENGTH = 2**32 - 1  # the largest length four bytes can say


class FramingError(Exception):
    """The byte stream does not hold well-formed frames."""


class FrameTooLarge(FramingError):
    """A frame's declared length is over the maximum; nothing was allocated for it."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"frame of {size} bytes is over the {limit}-byte limit")
        self.size = size
        self.limit = limit


class ConnectionClosed(FramingError, ConnectionError):
    """The peer closed the connection; ``partial`` says whether it did so mid-frame."""

    def __init__(self, received: int, expected: int):
        self.partial = received > 0
        where = f"after {received} of {expected} bytes" if received else "before a frame began"
        super().__init__(f"connection closed {where}")


def encode_frame(payload: bytes, max_size: int = MAX_FRAME_SIZE) -> bytes:
    """The frame for ``payload``: its length, then the payload."""
    limit = min(max_size, MAX_HEADER_LENGTH)
    if len(payload) > limit:
        raise FrameTooLarge(len(payload), limit)
    return HEADER.pack(len(payload)) + payload


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Read exactly ``n`` bytes, however many ``recv`` calls that takes.

    Raises ConnectionClosed if the peer closes first, and lets the socket's own
    timeout (socket.timeout) through if the peer stalls.
    """
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        count = sock.recv_into(view[got:], n - got)
        if count == 0:
            raise ConnectionClosed(got, n)
        got += count
    return bytes(buf)


def recv_frame(
    sock: socket.socket, max_size: int = MAX_FRAME_SIZE, *, timeout: float | None = None
) -> bytes:
    """Read one frame and return its payload.

    The length is checked against ``max_size`` before anything is allocated for the payload
    (FrameTooLarge). Without ``timeout`` every ``recv`` waits as the socket's own timeout says,
    so a peer that trickles one byte just inside it can make one frame take for ever. With
    ``timeout`` (seconds), the first byte of the frame is awaited as the socket says, and the
    whole rest of the frame must arrive within ``timeout`` of it (TimeoutError). After a
    timeout mid-frame the stream's position is lost: close the connection.
    """
    if timeout is None:
        (size,) = HEADER.unpack(recv_exactly(sock, HEADER.size))
        if size > max_size:
            raise FrameTooLarge(size, max_size)
        return recv_exactly(sock, size) if size else b""
    if not timeout > 0:
        raise ValueError(f"timeout must be above 0 seconds, not {timeout!r}")
    first = recv_exactly(sock, 1)  # between frames: wait as long as the socket says
    deadline = time.monotonic() + timeout
    previous = sock.gettimeout()
    try:
        (size,) = HEADER.unpack(_recv_before(sock, HEADER.size, deadline, first, "frame header"))
        if size > max_size:
            raise FrameTooLarge(size, max_size)
        return _recv_before(sock, size, deadline, what="frame payload") if size else b""
    finally:
        sock.settimeout(previous)


def send_frame(sock: socket.socket, payload: bytes, max_size: int = MAX_FRAME_SIZE) -> None:
    """Send ``payload`` as one frame (one ``sendall``, so concurrent senders must hold a lock)."""
    sock.sendall(encode_frame(payload, max_size))


class FrameDecoder:
    """Turns chunks of a byte stream, however they were split, into frame payloads.

    For code that receives bytes in pieces it does not choose (a proxy, an
    event loop): ``feed(chunk)`` returns the payloads completed by that chunk.
    The result does not depend on how the stream was cut: every frame before
    an over-limit header is returned, then FrameTooLarge is raised -- by the
    same ``feed`` if no frame came before it in that chunk, else by the next
    one (``feed(b"")`` asks without waiting for more bytes).
    """

    def __init__(self, max_size: int = MAX_FRAME_SIZE):
        self.max_size = max_size
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer
        if not buffer and len(chunk) > 3:  # fast path: a chunk that is exactly one frame
            size = int.from_bytes(chunk[:4], "big")
            if len(chunk) == size + 4 and size <= self.max_size:
                return [bytes(chunk[4:])]
        buffer += chunk
        frames: list[bytes] = []
        while len(buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer)
            if size > self.max_size:
                if frames:
                    break  # hand these over first; the next feed() raises
                raise FrameTooLarge(size, self.max_size)
            end = HEADER.size + size
            if len(buffer) < end:
                break
            frames.append(bytes(buffer[HEADER.size : end]))
            del buffer[:end]
        return frames

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buffer)


# --------------------------------------------------------------------------- record marking

LAST_FRAGMENT = 0x8000_0000  # the top bit of a record mark: this fragment ends the record
MAX_FRAGMENT_SIZE = LAST_FRAGMENT - 1  # the largest length 31 bits can say
SEND_FRAGMENT_SIZE = 64 * 1024  # how much ``encode_record`` puts in one fragment by default
MAX_FRAGMENTS = 4096  # fragments in one record, at most (1 MiB in fragments of 256 bytes)


class TooManyFragments(FramingError):
    """A record came in more fragments than the reader allows (empty fragments cost no bytes)."""

    def __init__(self, limit: int):
        super().__init__(f"record has more than {limit} fragments")
        self.limit = limit


def encode_record(record: bytes, fragment_size: int = SEND_FRAGMENT_SIZE) -> bytes:
    """``record`` as record-marked fragments of at most ``fragment_size`` bytes (RFC 5531 s. 11)."""
    checks.integer("fragment_size", fragment_size, low=1, high=MAX_FRAGMENT_SIZE)
    if len(record) <= fragment_size:  # the usual case: one fragment, the last
        return HEADER.pack(LAST_FRAGMENT | len(record)) + record
    out = bytearray()
    for start in range(0, len(record), fragment_size):
        piece = record[start : start + fragment_size]
        last = LAST_FRAGMENT if start + fragment_size >= len(record) else 0
        out += HEADER.pack(last | len(piece))
        out += piece
    return bytes(out)


def send_record(
    sock: socket.socket, record: bytes, fragment_size: int = SEND_FRAGMENT_SIZE
) -> None:
    """Send ``record`` record-marked, in one ``sendall`` (concurrent senders must hold a lock)."""
    sock.sendall(encode_record(record, fragment_size))


def recv_record(
    sock: socket.socket,
    max_size: int = MAX_FRAME_SIZE,
    *,
    max_fragments: int = MAX_FRAGMENTS,
    timeout: float | None = None,
) -> bytes:
    """Read one record-marked record and return it, its fragments joined.

    Each fragment's length is checked, before it is read, against what is left
    of ``max_size`` for the whole record (FrameTooLarge); a record of more than
    ``max_fragments`` fragments raises TooManyFragments. The first mark is
    awaited as the socket's own timeout says; once its first byte has come, the
    rest of the record must arrive within ``timeout`` seconds (TimeoutError), so a
    peer that trickles a byte at a time cannot hold the reader for ever.
    """
    first = recv_exactly(sock, 1)  # between records: wait as long as the socket says
    deadline = None if timeout is None else time.monotonic() + timeout
    previous = sock.gettimeout()
    parts: list[bytes] = []
    total = 0
    try:
        for count in range(1, max_fragments + 1):
            (mark,) = HEADER.unpack(
                _recv_before(
                    sock, HEADER.size, deadline, first if count == 1 else b"", "record mark"
                )
            )
            size = mark & MAX_FRAGMENT_SIZE
            if size > max_size - total:
                raise FrameTooLarge(total + size, max_size)
            if size:
                parts.append(_recv_before(sock, size, deadline))
                total += size
            if mark & LAST_FRAGMENT:
                return parts[0] if len(parts) == 1 else b"".join(parts)
        raise TooManyFragments(max_fragments)
    finally:
        if deadline is not None:
            sock.settimeout(previous)


def _recv_before(
    sock: socket.socket, n: int, deadline: float | None, have: bytes = b"", what: str = "fragment"
) -> bytes:
    """``n`` bytes, starting with ``have`` (already read), all of them by ``deadline`` (a
    time.monotonic() value; None: each read waits as the socket's timeout says). ``what`` names
    the part in the TimeoutError."""
    buf = bytearray(n)
    buf[: len(have)] = have
    view = memoryview(buf)
    got = len(have)
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what} not complete in time: {got} of {n} bytes")
            sock.settimeout(remaining)
        try:
            count = sock.recv_into(view[got:], n - got)
        except TimeoutError:
            if deadline is None:
                raise
            raise TimeoutError(f"{what} not complete in time: {got} of {n} bytes") from None
        if count == 0:
            raise ConnectionClosed(got, n)
        got += count
    return bytes(buf)
