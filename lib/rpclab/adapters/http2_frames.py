"""The frames of an HTTP/2 connection, one line each: how to read the bytes gRPC puts on the wire.

Used in notebook 12 (a gRPC call on the wire, frame by frame, next to Thrift's bytes).

    for frame in http2_frames.split(client_bytes):     # what one side sent, from its first byte
        print(frame)
    #    0  preface                  24 bytes  PRI * HTTP/2.0 ... (every client's first bytes)
    #   24  SETTINGS       stream 0  45 bytes  MAX_CONCURRENT_STREAMS=0, ...
    #  ...
    #  299  HEADERS        stream 1 232 bytes  END_HEADERS; HPACK-coded headers
    #  531  DATA           stream 1  24 bytes  END_STREAM; a gRPC message: 10 bytes, not compressed

RFC 9113 section 4.1: every frame starts with the same 9 bytes -- a 24-bit payload length, a
type, a byte of flags and a 31-bit stream id -- then the payload. Stream 0 is the connection
itself (SETTINGS, PING, WINDOW_UPDATE for the whole connection, GOAWAY); each call is a stream of
its own, numbered 1, 3, 5... by the client. A client's bytes open with a 24-byte preface
(section 3.4). gRPC's DATA frames carry its own 5-byte prefix before each message: a flag
(1: compressed) and a 4-byte length (gRPC's PROTOCOL-HTTP2.md, "Length-Prefixed-Message").
Header blocks are HPACK-coded (RFC 7541) against what the connection sent before, so they are
sized here, not decoded.

Only splits bytes already in memory: the work is bounded by their length, and a last frame cut
short (a recording that stopped mid-frame) is reported as such, not read past its end.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PREFACE", "Frame", "split", "render"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 section 3.4
HEADER_SIZE = 9

TYPES = {
    0: "DATA",
    1: "HEADERS",
    2: "PRIORITY",
    3: "RST_STREAM",
    4: "SETTINGS",
    5: "PUSH_PROMISE",
    6: "PING",
    7: "GOAWAY",
    8: "WINDOW_UPDATE",
    9: "CONTINUATION",
}
SETTINGS = {  # RFC 9113 section 6.5.2; 8 is RFC 8441's
    1: "HEADER_TABLE_SIZE",
    2: "ENABLE_PUSH",
    3: "MAX_CONCURRENT_STREAMS",
    4: "INITIAL_WINDOW_SIZE",
    5: "MAX_FRAME_SIZE",
    6: "MAX_HEADER_LIST_SIZE",
    8: "ENABLE_CONNECT_PROTOCOL",
}
ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 8: "CANCEL"}
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8  # flag bits


@dataclass(frozen=True)
class Frame:
    """One frame: where it starts in the bytes, its type's name, flags, stream and total size (the
    9-byte header included), and what its payload says."""

    offset: int
    kind: str
    stream: int
    size: int
    flags: int
    note: str

    def __str__(self) -> str:
        stream = f"stream {self.stream}" if self.kind != "preface" else ""
        return f"{self.offset:5}  {self.kind:14} {stream:9} {self.size:4} bytes  {self.note}"


def split(data: bytes) -> list[Frame]:
    """The frames in ``data``, the bytes one side of an HTTP/2 connection sent, in order (from
    the connection's first byte, or from the start of any frame)."""
    data = bytes(data)
    frames = []
    at = 0
    if data.startswith(PREFACE):
        frames.append(Frame(0, "preface", 0, len(PREFACE), 0, "every HTTP/2 client's first bytes"))
        at = len(PREFACE)
    while at < len(data):
        if len(data) - at < HEADER_SIZE:
            frames.append(_cut(at, len(data) - at, "a frame header cut short"))
            break
        length = int.from_bytes(data[at : at + 3], "big")
        kind, flags = data[at + 3], data[at + 4]
        stream = int.from_bytes(data[at + 5 : at + 9], "big") & 0x7FFF_FFFF
        payload = data[at + HEADER_SIZE : at + HEADER_SIZE + length]
        if len(payload) < length:
            frames.append(_cut(at, len(data) - at, f"{TYPES.get(kind, kind)} cut short"))
            break
        name = TYPES.get(kind, f"type {kind}")
        frames.append(
            Frame(at, name, stream, HEADER_SIZE + length, flags, _note(kind, flags, payload))
        )
        at += HEADER_SIZE + length
    return frames


def render(data: bytes) -> str:
    """The frames of ``data`` as text, one per line."""
    return "\n".join(str(frame) for frame in split(data))


def _cut(at: int, size: int, what: str) -> Frame:
    return Frame(at, "(incomplete)", 0, size, 0, f"{what}: the recording ends here")


def _note(kind: int, flags: int, payload: bytes) -> str:
    if kind == 4:  # SETTINGS: 6-byte entries, an id and a value
        if flags & ACK:
            return "ACK: your settings, applied"
        entries = []
        for i in range(0, len(payload) - len(payload) % 6, 6):
            ident = int.from_bytes(payload[i : i + 2], "big")
            value = int.from_bytes(payload[i + 2 : i + 6], "big")
            entries.append(f"{SETTINGS.get(ident, hex(ident))}={value}")
        return ", ".join(entries) or "(none: the defaults)"
    if kind == 8 and len(payload) == 4:  # WINDOW_UPDATE
        increment = int.from_bytes(payload, "big") & 0x7FFF_FFFF
        return f"you may send me {increment:,} bytes more"
    if kind == 6:  # PING: 8 bytes the answer (ACK) repeats
        return "ACK: your 8 bytes, sent back" if flags & ACK else "send these 8 bytes back"
    if kind == 1:  # HEADERS
        said = _flag_words(flags, {END_STREAM: "END_STREAM", END_HEADERS: "END_HEADERS"})
        return f"{said}; HPACK-coded headers"
    if kind == 0:  # DATA: gRPC's length-prefixed messages
        said = _flag_words(flags, {END_STREAM: "END_STREAM"})
        if flags & PADDED or len(payload) < 5:
            return f"{said}{'; ' if said else ''}{len(payload)} bytes"
        compressed = "compressed" if payload[0] else "not compressed"
        size = int.from_bytes(payload[1:5], "big")
        return f"{said}{'; ' if said else ''}a gRPC message: {size} bytes, {compressed}"
    if (kind, len(payload)) == (3, 4) or (kind == 7 and len(payload) >= 8):
        code = int.from_bytes(payload[-4:] if kind == 3 else payload[4:8], "big")
        return f"error code {code} ({ERRORS.get(code, '?')})"  # RST_STREAM's, or GOAWAY's
    return ""


def _flag_words(flags: int, names: dict[int, str]) -> str:
    return ", ".join(name for bit, name in names.items() if flags & bit)
