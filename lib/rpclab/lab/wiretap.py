"""Record the frames that cross the wire and format them for reading: JSON, hex dump, table.

Used in notebooks 04 (the wire inspector), 05, 07, 10 (a token read off the wire) and 12.

The logic behind the wire inspector widget, usable on its own::

    recorder = wiretap.Recorder()
    client = socketrpc.connect(server.address, on_frame=recorder.on_frame)   # or a proxy's tap
    client.add(2, 3)
    print(wiretap.render_text(recorder.frames()))

Directions are named from the client's side: ``"request"`` (client -> server,
shown ``→``) and ``"reply"`` (server -> client, shown ``←``). Other common
names ("sent", "received", "out", "in", ...) are understood and translated.
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from rpclab import checks

__all__ = [
    "Frame",
    "Recorder",
    "Row",
    "normalize_direction",
    "format_json",
    "hexdump",
    "table_rows",
    "render_html",
    "render_text",
]

MAX_FRAMES = 500  # frames a Recorder keeps unless told otherwise (the oldest go first)
MAX_PAYLOAD = 64 * 1024  # bytes of each payload a Recorder keeps
JSON_LIMIT = 600  # characters of pretty JSON shown per frame
HEX_LIMIT = 256  # bytes shown in a hex dump

ARROWS = {"request": "→", "reply": "←"}
_ALIASES = {
    "request": "request",
    "requests": "request",
    "send": "request",
    "sent": "request",
    "out": "request",
    "outgoing": "request",
    "tx": "request",
    "->": "request",
    "→": "request",
    "c2s": "request",
    "reply": "reply",
    "replies": "reply",
    "response": "reply",
    "recv": "reply",
    "received": "reply",
    "in": "reply",
    "incoming": "reply",
    "rx": "reply",
    "<-": "reply",
    "←": "reply",
    "s2c": "reply",
}


_SIDES = ("client", "server")


def normalize_direction(direction: object, side: str = "client") -> str:
    """ "request" or "reply" for the usual names of the two directions; anything else as a string.

    "sent" and "received" depend on who says them: a client sends requests, a
    server (``side="server"``) sends replies.
    """
    text = str(direction)
    name = _ALIASES.get(text.strip().lower(), text)
    if side == "server" and text.strip().lower() in _SIDE_RELATIVE:
        return {"request": "reply", "reply": "request"}[name]
    return name


_SIDE_RELATIVE = {
    "send",
    "sent",
    "out",
    "outgoing",
    "tx",
    "recv",
    "received",
    "in",
    "incoming",
    "rx",
}


@dataclass(frozen=True)
class Frame:
    """One recorded frame: its number, when (time.monotonic()), which way, its size, its payload
    (maybe cut), its fate."""

    seq: int
    time: float
    direction: str
    size: int  # the whole payload's size, even when ``payload`` was cut to the recorder's limit
    payload: bytes
    fate: str = "forwarded"

    @property
    def truncated(self) -> bool:
        return len(self.payload) < self.size


class Recorder:
    """A thread-safe, bounded log of frames, fed by ``on_frame`` from a client hook or a proxy's
    tap.

    Keeps the last ``max_frames`` frames and the first ``max_payload`` bytes of
    each. ``side="server"`` when it records a server's hook (whose "sent" frames are replies).
    """

    def __init__(
        self, max_frames: int = MAX_FRAMES, max_payload: int = MAX_PAYLOAD, side: str = "client"
    ):
        if side not in _SIDES:
            raise ValueError(
                "side must be 'client' or 'server' (whose 'sent' and 'received' these are), not "
                f"{side!r}"
            )
        for name, value in (("max_frames", max_frames), ("max_payload", max_payload)):
            checks.integer(name, value, low=1)
        self.max_frames = max_frames
        self.max_payload = max_payload
        self.side = side
        self._frames: deque[Frame] = deque(maxlen=max_frames)
        self._lock = threading.Lock()
        self._seq = 0
        self._start: float | None = None

    def on_frame(self, direction: str, payload: bytes, *extra: object) -> None:
        """Record one frame. Fits ``on_frame(direction, payload)`` and the proxy's ``(direction,
        payload, when, fate)``."""
        when = (
            extra[0]
            if extra and isinstance(extra[0], (int, float)) and not isinstance(extra[0], bool)
            else time.monotonic()
        )
        fate = extra[1] if len(extra) > 1 and isinstance(extra[1], str) else "forwarded"
        data = bytes(payload)
        with self._lock:
            self._seq += 1
            if self._start is None:
                self._start = float(when)
            self._frames.append(
                Frame(
                    self._seq,
                    float(when),
                    normalize_direction(direction, self.side),
                    len(data),
                    data[: self.max_payload],
                    fate,
                )
            )

    __call__ = on_frame  # a Recorder can be passed wherever a callback is expected

    def frames(self) -> list[Frame]:
        """The frames kept, oldest first (a copy)."""
        with self._lock:
            return list(self._frames)

    @property
    def start(self) -> float | None:
        """When the first frame since the last clear() was recorded (time.monotonic())."""
        with self._lock:
            return self._start

    @property
    def seen(self) -> int:
        """How many frames were recorded since the last clear(), including those no longer kept."""
        with self._lock:
            return self._seq

    def clear(self) -> None:
        """Forget every frame; numbering and time start again."""
        with self._lock:
            self._frames.clear()
            self._seq = 0
            self._start = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def __repr__(self) -> str:
        return f"<Recorder with {len(self)} frames (keeps {self.max_frames})>"


# --------------------------------------------------------------------------- formatting


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def format_json(payload: bytes, limit: int = JSON_LIMIT, indent: int | None = 2) -> str:
    """The payload as pretty JSON, cut to ``limit`` characters; says so when it is not UTF-8
    JSON."""
    try:
        value = json.loads(bytes(payload).decode("utf-8"))
    except UnicodeDecodeError:
        return _cut(
            f"(not UTF-8 text, so not JSON: {bytes(payload[:48])!r}"
            f"{'…' if len(payload) > 48 else ''})",
            limit,
        )
    except ValueError as exc:  # json.JSONDecodeError
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return _cut(
            f"(not JSON: {reason}) {bytes(payload[:48])!r}{'…' if len(payload) > 48 else ''}", limit
        )
    return _cut(json.dumps(value, indent=indent, ensure_ascii=False), limit)


def hexdump(payload: bytes, limit: int = HEX_LIMIT, width: int = 16) -> str:
    """An ``xxd``-style dump: offset, bytes in hex (two per group), bytes as ASCII; at most
    ``limit`` bytes."""
    data = bytes(payload[:limit])
    lines = []
    for offset in range(0, len(data), width):
        row = data[offset : offset + width]
        groups = " ".join(row[i : i + 2].hex() for i in range(0, len(row), 2))
        full = (width // 2) * 5 - 1  # the width of a full row of groups
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{offset:08x}: {groups.ljust(full)}  {text}")
    if len(payload) > limit:
        lines.append(f"… {len(payload) - limit} more bytes")
    return "\n".join(lines)


class Row(NamedTuple):
    """One line of the wire inspector's table, every cell already text."""

    seq: int
    time: str  # seconds since the first frame, "+0.012 s"
    arrow: str  # → request, ← reply
    direction: str
    size: str  # "42 B"
    fate: str
    payload: str  # pretty JSON or a hex dump


def table_rows(
    frames: Sequence[Frame],
    *,
    hex: bool = False,
    start: float | None = None,
    json_limit: int = JSON_LIMIT,
    json_indent: int | None = 2,
    hex_limit: int = HEX_LIMIT,
) -> list[Row]:
    """The rows the wire inspector shows for ``frames``: time since ``start`` (default: the first
    frame), arrow, size, payload."""
    if start is None and frames:
        start = frames[0].time
    rows = []
    for frame in frames:
        shown = (
            hexdump(frame.payload, hex_limit)
            if hex
            else format_json(frame.payload, json_limit, json_indent)
        )
        if frame.truncated and not hex:
            shown = (
                f"(only the first {len(frame.payload)} of {frame.size} bytes were kept) " + shown
            )
        rows.append(
            Row(
                frame.seq,
                f"{frame.time - (start if start is not None else frame.time):+.3f} s",
                ARROWS.get(frame.direction, "?"),
                frame.direction,
                f"{frame.size} B",
                frame.fate,
                shown,
            )
        )
    return rows


_FATE_COLOURS = {"dropped": "#c62828", "reset": "#c62828", "duplicated": "#ef6c00"}


def render_html(
    frames: Sequence[Frame],
    *,
    hex: bool = False,
    start: float | None = None,
    last: int | None = None,
) -> str:
    """An HTML table of ``frames`` (the ``last`` ones only, if given), every value escaped."""
    frames = list(frames)
    shown = frames[-last:] if last else frames
    if not shown:
        return "<p><i>No frames yet: make a call, then refresh.</i></p>"
    if start is None:
        start = frames[0].time
    cells = "padding:2px 8px;text-align:left;vertical-align:top"
    head = "".join(
        f"<th style='{cells}'>{h}</th>" for h in ("#", "time", "", "size", "fate", "payload")
    )
    body = []
    for row in table_rows(shown, hex=hex, start=start):
        colour = _FATE_COLOURS.get(row.fate)
        fate = (
            f"<span style='color:{colour}'>{html.escape(row.fate)}</span>"
            if colour
            else html.escape(row.fate)
        )
        body.append(
            f"<tr><td style='{cells}'>{row.seq}</td><td "
            f"style='{cells};white-space:nowrap'>{row.time}</td>"
            f"<td style='{cells};font-size:1.2em' title='{row.direction}'>{row.arrow}</td>"
            f"<td style='{cells};white-space:nowrap'>{row.size}</td><td style='{cells}'>{fate}</td>"
            f"<td style='{cells}'><pre "
            f"style='margin:0;font-size:0.85em;line-height:1.25'>{html.escape(row.payload)}</pre></td></tr>"
        )
    dropped = (
        f"<p><i>{len(frames) - len(shown)} earlier frames not shown.</i></p>"
        if len(shown) < len(frames)
        else ""
    )
    return (
        f"{dropped}<table "
        f"style='border-collapse:collapse;font-family:monospace'><tr>{head}</tr>{''.join(body)}</table>"
    )


def render_text(
    frames: Iterable[Frame], *, hex: bool = False, start: float | None = None, json_limit: int = 200
) -> str:
    """The same table as plain text, one frame per line (hex dumps and JSON on the lines after), for
    print()."""
    frames = list(frames)
    if not frames:
        return "(no frames)"
    lines = []
    for row in table_rows(frames, hex=hex, start=start, json_limit=json_limit, json_indent=None):
        fate = "" if row.fate == "forwarded" else f"  [{row.fate}]"
        lines.append(f"{row.seq:>4}  {row.time:>10}  {row.arrow}  {row.size:>8}{fate}")
        lines.extend("      " + line for line in row.payload.splitlines())
    return "\n".join(lines)
