"""Bytes <-> frames: each message is a 4-byte big-endian length N, then N bytes.

Built by hand in notebook 02; the socket RPC's frames in 04 and 05; assignment A1.

TCP delivers a stream of bytes with no message boundaries: one ``send`` may
arrive as several ``recv`` results, and several sends as one. Framing puts the
boundaries back. The length is read off the wire, so it is checked against a
maximum *before* anything is allocated: a peer that declares 4 GiB gets an
error, not our memory.
"""

from __future__ import annotations

import socket
import struct

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


def recv_frame(sock: socket.socket, max_size: int = MAX_FRAME_SIZE) -> bytes:
    """Read one frame and return its payload."""
    (size,) = HEADER.unpack(recv_exactly(sock, HEADER.size))
    if size > max_size:
        raise FrameTooLarge(size, max_size)
    return recv_exactly(sock, size) if size else b""


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
