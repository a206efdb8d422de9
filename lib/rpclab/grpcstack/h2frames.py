"""HTTP/2 frames read off a recorded connection: what a gRPC channel and server say (RFC 9113).

Used in notebooks 07 (one connection, frame by frame, in time order, headers decoded), 08
(flow control: the SETTINGS and WINDOW_UPDATE frames that size the windows) and 12 (why gRPC's
byte counts move from run to run: PINGs, and the deadline in grpc-timeout).

Feed a :class:`Conversation` the bytes that cross ONE connection, chunk by chunk, in the order
they crossed. rpclab.faults' proxy in bytes mode calls ``on_frame(direction, payload, when,
fate)`` for every chunk it forwards, which is :meth:`Conversation.on_chunk`'s signature::

    conversation = h2frames.Conversation()
    tap = faults.serve_proxy("tap", target=server, mode="bytes", on_frame=conversation.on_chunk)
    ...                                      # one channel to 127.0.0.1:tap.port, a few calls
    for frame in conversation.frames():      # both directions, in time order
        print(frame)

Each direction is split on its own (a frame may arrive in several chunks, a chunk may hold
several frames); a frame is dated by the chunk that completed it. The client's side starts with
the 24-byte connection preface. HEADERS blocks (with their CONTINUATIONs) are decoded with HPACK
(RFC 7541, the ``hpack`` library), one decoder per direction, in order, as the peers do.

Bounded: a DATA frame keeps at most ``keep`` bytes of its payload (its size is still counted), any
other frame at most MAX_CONTROL_PAYLOAD bytes, and at most ``max_frames`` frames are kept
(``dropped`` counts the rest). Bytes that are not HTTP/2 stop that direction with a message in
``errors``, never an exception into the proxy.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from rpclab import checks

__all__ = [
    "PREFACE",
    "FRAME_TYPES",
    "SETTINGS",
    "ERROR_CODES",
    "Frame",
    "Conversation",
    "parse_settings",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # what a client sends first (RFC 9113 section 3.4)
HEADER_SIZE = 9  # length (3 bytes), type, flags, stream identifier (4 bytes, top bit reserved)
MAX_CONTROL_PAYLOAD = 1 << 20  # bytes of a non-DATA frame's payload a Conversation accepts
MAX_FRAMES = 10_000
KEEP_DATA = 1024
DETAIL_WIDTH = 40  # characters of a frame's payload summary that str(frame) shows

FRAME_TYPES = {
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

# Flag bits by frame type (RFC 9113 section 6): the only flags each type defines.
_FLAGS = {
    "DATA": {0x1: "END_STREAM", 0x8: "PADDED"},
    "HEADERS": {0x1: "END_STREAM", 0x4: "END_HEADERS", 0x8: "PADDED", 0x20: "PRIORITY"},
    "SETTINGS": {0x1: "ACK"},
    "PING": {0x1: "ACK"},
    "PUSH_PROMISE": {0x4: "END_HEADERS", 0x8: "PADDED"},
    "CONTINUATION": {0x4: "END_HEADERS"},
}

# SETTINGS parameters (RFC 9113 section 6.5.2, RFC 8441, RFC 9218, and gRPC's own).
SETTINGS = {
    0x1: "HEADER_TABLE_SIZE",
    0x2: "ENABLE_PUSH",
    0x3: "MAX_CONCURRENT_STREAMS",
    0x4: "INITIAL_WINDOW_SIZE",
    0x5: "MAX_FRAME_SIZE",
    0x6: "MAX_HEADER_LIST_SIZE",
    0x8: "ENABLE_CONNECT_PROTOCOL",
    0x9: "NO_RFC7540_PRIORITIES",
    0xFE03: "GRPC_ALLOW_TRUE_BINARY_METADATA",
    0xFE04: "GRPC_PREFERRED_RECEIVE_CRYPTO_FRAME_SIZE",
    0xFE05: "GRPC_ALLOW_SECURITY_FRAME",
}

ERROR_CODES = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}

_ARROWS = {"request": "->", "reply": "<-"}


def parse_settings(payload: bytes) -> list[tuple[str, int]]:
    """A SETTINGS payload as ``[(name, value), ...]``: 6 bytes each, a 16-bit id, a 32-bit value."""
    if len(payload) % 6:
        raise ValueError(f"a SETTINGS payload is a multiple of 6 bytes, not {len(payload)}")
    pairs = []
    for pos in range(0, len(payload), 6):
        ident = int.from_bytes(payload[pos : pos + 2], "big")
        value = int.from_bytes(payload[pos + 2 : pos + 6], "big")
        pairs.append((SETTINGS.get(ident, f"0x{ident:x}"), value))
    return pairs


@dataclass
class Frame:
    """One HTTP/2 frame: when it was complete, which way it went, its header, and its payload."""

    time: float  # time.monotonic() of the chunk that completed it
    direction: str  # "request" (client -> server) or "reply" (server -> client)
    type: int
    flags: int
    stream: int
    length: int  # the payload's length, from the frame header
    payload: bytes  # the payload, cut to the Conversation's ``keep`` bytes for DATA
    headers: list[tuple[str, str]] | None = None  # a HEADERS frame's decoded header list
    seq: int = 0

    @property
    def kind(self) -> str:
        """The frame type's name (``"UNKNOWN(0xa)"`` for an extension type)."""
        return FRAME_TYPES.get(self.type, f"UNKNOWN(0x{self.type:x})")

    @property
    def flag_names(self) -> list[str]:
        """The names of the flags set, as RFC 9113 defines them for this type."""
        known = _FLAGS.get(self.kind, {})
        return [name for bit, name in known.items() if self.flags & bit]

    @property
    def settings(self) -> list[tuple[str, int]]:
        """A SETTINGS frame's parameters (empty for an ACK or another type)."""
        return parse_settings(self.payload) if self.kind == "SETTINGS" else []

    @property
    def increment(self) -> int | None:
        """A WINDOW_UPDATE's credit in bytes (None for another type)."""
        if self.kind != "WINDOW_UPDATE" or len(self.payload) != 4:
            return None
        return int.from_bytes(self.payload, "big") & 0x7FFF_FFFF

    @property
    def error_code(self) -> str | None:
        """RST_STREAM's or GOAWAY's error code, by name."""
        raw = {"RST_STREAM": self.payload[:4], "GOAWAY": self.payload[4:8]}.get(self.kind)
        if raw is None or len(raw) != 4:
            return None
        code = int.from_bytes(raw, "big")
        return ERROR_CODES.get(code, f"0x{code:x}")

    def describe(self) -> str:
        """What the payload says, in a few words."""
        kind = self.kind
        if kind == "SETTINGS":
            return ", ".join(f"{name}={value:,}" for name, value in self.settings)
        if kind == "WINDOW_UPDATE":
            return f"+{self.increment:,}"
        if kind == "PING":
            return self.payload.hex()
        if kind in ("RST_STREAM", "GOAWAY"):
            return str(self.error_code)
        if kind == "HEADERS" and self.headers is not None:
            return ", ".join(f"{name}: {value}" for name, value in self.headers)
        if kind == "DATA" and self.length:
            return self.payload[:24].hex(" ") + (" ..." if self.length > 24 else "")
        return ""

    def __str__(self) -> str:
        flags = "|".join(self.flag_names)
        text = (
            f"{_ARROWS.get(self.direction, self.direction)} {self.kind:<13} stream {self.stream:<2}"
            f" {flags:<22} {self.length:4} B"
        )
        detail = self.describe()
        if len(detail) > DETAIL_WIDTH:
            detail = detail[: DETAIL_WIDTH - 1] + "…"
        return f"{text}  {detail}" if detail else text


@dataclass
class _Side:
    """The parsing state of one direction."""

    buffer: bytearray = field(default_factory=bytearray)
    header: tuple[int, int, int, int] | None = None  # length, type, flags, stream of the frame
    kept: bytearray = field(default_factory=bytearray)  # the payload kept so far
    remaining: int = 0  # payload bytes still to come for the current frame
    preface_left: int = 0  # bytes of the connection preface still expected
    block: bytearray = field(default_factory=bytearray)  # a header block awaiting END_HEADERS
    block_frame: Frame | None = None
    stopped: bool = False
    decoder: object = None


class Conversation:
    """The frames of one HTTP/2 connection, both ways, fed chunk by chunk (thread-safe)."""

    def __init__(self, *, keep: int = KEEP_DATA, max_frames: int = MAX_FRAMES) -> None:
        import hpack

        self.keep = checks.integer("keep", keep, low=0, high=MAX_CONTROL_PAYLOAD)
        self.max_frames = checks.integer("max_frames", max_frames, low=1)
        self._frames: list[Frame] = []
        self.dropped = 0  # frames seen beyond max_frames
        self.errors: list[str] = []
        self.start: float | None = None
        self._lock = threading.Lock()
        self._seq = 0
        self._sides = {
            "request": _Side(preface_left=len(PREFACE), decoder=hpack.Decoder()),
            "reply": _Side(decoder=hpack.Decoder()),
        }

    def on_chunk(self, direction: str, payload: bytes, when: float | None = None, *_: object):
        """Take the next bytes sent in ``direction`` ("request": client to server, or "reply")."""
        if direction not in self._sides:
            raise ValueError(f"direction must be 'request' or 'reply', not {direction!r}")
        when = time.monotonic() if when is None else float(when)
        with self._lock:
            if self.start is None:
                self.start = when
            side = self._sides[direction]
            if not side.stopped:
                self._feed(direction, side, memoryview(bytes(payload)), when)

    __call__ = on_chunk

    def frames(self) -> list[Frame]:
        """The frames kept, both directions, in the order they were complete."""
        with self._lock:
            return sorted(self._frames, key=lambda f: (f.time, f.seq))

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def __repr__(self) -> str:
        return f"<Conversation of {len(self)} frames>"

    # -- parsing -------------------------------------------------------------------------------

    def _stop(self, direction: str, side: _Side, message: str) -> None:
        side.stopped = True
        self.errors.append(f"{direction}: {message}; the rest of that direction is not read")

    def _feed(self, direction: str, side: _Side, data: memoryview, when: float) -> None:
        pos = 0
        if side.preface_left:
            offset = len(PREFACE) - side.preface_left
            take = min(side.preface_left, len(data))
            if bytes(data[:take]) != PREFACE[offset : offset + take]:
                self._stop(direction, side, "the client did not start with HTTP/2's preface")
                return
            side.preface_left -= take
            pos = take
        while pos < len(data) and not side.stopped:
            if side.header is None:
                need = HEADER_SIZE - len(side.buffer)
                side.buffer += data[pos : pos + need]
                pos += min(need, len(data) - pos)
                if len(side.buffer) < HEADER_SIZE:
                    return
                head = bytes(side.buffer)
                side.buffer.clear()
                length = int.from_bytes(head[:3], "big")
                kind, flags = head[3], head[4]
                stream = int.from_bytes(head[5:9], "big") & 0x7FFF_FFFF
                if kind != 0 and length > MAX_CONTROL_PAYLOAD:
                    self._stop(direction, side, f"a {length:,}-byte non-DATA frame is too long")
                    return
                side.header = (length, kind, flags, stream)
                side.remaining = length
                side.kept.clear()
            length, kind, flags, stream = side.header
            take = min(side.remaining, len(data) - pos)
            room = (self.keep if kind == 0 else length) - len(side.kept)
            if room > 0:
                side.kept += data[pos : pos + min(take, room)]
            pos += take
            side.remaining -= take
            if side.remaining == 0:
                side.header = None
                self._complete(
                    direction,
                    side,
                    Frame(when, direction, kind, flags, stream, length, bytes(side.kept)),
                )

    def _complete(self, direction: str, side: _Side, frame: Frame) -> None:
        self._seq += 1
        frame.seq = self._seq
        if frame.kind == "SETTINGS" and not frame.flags & 0x1:
            try:
                settings = dict(frame.settings)
            except ValueError as exc:
                self._stop(direction, side, str(exc))
                return
            if "HEADER_TABLE_SIZE" in settings:  # what the OTHER side's encoder may now use
                other = self._sides["reply" if direction == "request" else "request"]
                other.decoder.max_allowed_table_size = settings["HEADER_TABLE_SIZE"]
        if frame.kind in ("HEADERS", "CONTINUATION"):
            self._header_block(direction, side, frame)
        if len(self._frames) < self.max_frames:
            self._frames.append(frame)
        else:
            self.dropped += 1

    def _header_block(self, direction: str, side: _Side, frame: Frame) -> None:
        payload = frame.payload
        if frame.kind == "HEADERS":
            start, end = 0, len(payload)
            if frame.flags & 0x8:  # PADDED: a pad length byte first, that many zeros at the end
                start, end = 1, len(payload) - (payload[0] if payload else 0)
            if frame.flags & 0x20:  # PRIORITY: 5 bytes of stream dependency and weight
                start += 5
            if start > end:
                self._stop(direction, side, "a HEADERS frame shorter than its padding")
                return
            side.block = bytearray(payload[start:end])
            side.block_frame = frame
        elif side.block_frame is None:
            self._stop(direction, side, "a CONTINUATION frame with no HEADERS before it")
            return
        else:
            side.block += payload
        if frame.flags & 0x4:  # END_HEADERS: the block is whole; decode it
            import hpack

            target, block = side.block_frame, bytes(side.block)
            side.block_frame, side.block = None, bytearray()
            try:
                decoded = side.decoder.decode(block, raw=True)
            except hpack.HPACKError as exc:
                self._stop(direction, side, f"HPACK could not decode a header block ({exc})")
                return
            target.headers = [
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in decoded
            ]
