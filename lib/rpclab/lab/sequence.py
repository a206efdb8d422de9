"""Sequence charts drawn from a real run: each message as an arrow from sender to receiver, time
running down the page, and what the network did to it (lost, copied, reset).

Drawn in notebook 05 (a reset, a lost request, a lost reply, a late reply, a duplicate). The
events come from taps the socket RPC and the fault proxy already have, so nothing is staged::

    chart = sequence.Recorder()
    server = socketrpc.serve(handlers, on_frame=chart.server_tap)
    proxy = faults.serve_proxy("net", server, faults.Faults(drop=0.2), on_frame=chart.proxy_tap)
    client = socketrpc.connect(proxy.address, on_frame=chart.client_tap)
    client.increment("hits")
    chart.note("client", "returns 1")        # anything else worth marking, when it happens
    sequence.draw({"a lost reply": chart})   # a Figure: a client and a server lane per chart
    print(sequence.render_text(chart))       # the same run as lines of text

A message is *sent* when its sender's tap sees it go out (client: a request; server: a reply).
It *arrives* when the proxy passes it on to the receiver (its "forwarded" or "duplicated" tap),
or ends in the network when the proxy drops it or resets the connection on it. Each fate is
paired with its send by the message's bytes, first in first out (the proxy keeps the order of
each direction), so two tries of one request, or two different replies to it, are told apart.

Drawing places its texts last, measured once the figure's layout is known: the lanes move apart
or together until every note fits inside its panel, notes that would touch move apart in time
(their dots stay where they happened), and each arrow's label goes to the first free place
along its arrow. Two messages whose arrows would lie on top of each other (a copy and its
original; two replies sent at once) are drawn bent apart, their ends where they happened.

About 650 lines, one module: the recorder, the pairing of sends with fates, the drawing and
``one_call`` are one instrument, and each part is small and reads on its own.

About 660 lines: recording the taps' events, pairing them into arrows and laying out a
chart whose labels never overlap are one picture; the layout is most of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import textwrap
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from rpclab import checks, faults
from rpclab.byhand import socketrpc
from rpclab.kv import KVStore
from rpclab.lab.plots import Figure

__all__ = ["Event", "Arrow", "Recorder", "describe", "arrows", "render_text", "draw", "one_call"]

MAX_EVENTS = 2_000  # a chart of more messages than this is unreadable anyway; older ones go
MAX_LABEL_PAYLOAD = 64 * 1024  # larger payloads are labelled by size, not decoded
SIDES = ("client", "proxy", "server")
LANE = {"client": 0.0, "proxy": 0.5, "server": 1.0}
ENDINGS = {"dropped": "lost", "reset": "reset"}  # the proxy fates that end a message mid-way


@dataclass(frozen=True)
class Event:
    """One thing seen during the run.

    ``kind`` is "sent", "forwarded", "duplicated", "dropped" or "reset" for a message (then
    ``direction`` is "request" or "reply" and ``key`` a digest of its bytes), or "note".
    """

    when: float  # time.monotonic()
    side: str  # "client", "proxy" or "server"
    kind: str
    label: str
    direction: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Arrow:
    """One message's trip: from its sender's lane at ``start`` to ``end``, ending as ``fate``."""

    direction: str  # "request" (client -> server) or "reply" (server -> client)
    label: str
    start: float
    end: float
    fate: str  # "arrived", "copy" (a second delivery), "lost" or "reset"


class Recorder:
    """Collects the events of a run from the client's, the server's and the proxy's taps.

    Thread-safe: the taps are called from the client's, the server's and the proxy's threads.
    Keeps the last MAX_EVENTS events.
    """

    def __init__(self, max_events: int = MAX_EVENTS):
        self._events: deque[Event] = deque(maxlen=max_events)
        self._changed = threading.Condition()

    # -- the taps -------------------------------------------------------------

    def client_tap(self, direction: str, payload: bytes) -> None:
        """A socketrpc client's ``on_frame``: records each request it sends."""
        if direction == "sent":
            self._add("client", "sent", payload, "request")

    def server_tap(self, direction: str, payload: bytes) -> None:
        """A socketrpc server's ``on_frame``: records each reply it sends."""
        if direction == "sent":
            self._add("server", "sent", payload, "reply")

    def proxy_tap(self, direction: str, payload: bytes, when: float, fate: str) -> None:
        """A fault proxy's ``on_frame``: what became of each message (its FATES)."""
        self._add("proxy", fate, payload, direction, when)

    def note(self, side: str, text: str, when: float | None = None) -> None:
        """Mark ``text`` on ``side``'s lane ("client", "proxy" or "server") at ``when`` (a
        time.monotonic() reading; now if not given)."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}, not {side!r}")
        moment = time.monotonic() if when is None else float(when)
        self._append(Event(moment, side, "note", str(text)))

    # -- reading --------------------------------------------------------------

    def events(self) -> list[Event]:
        """Every event so far, in time order."""
        with self._changed:
            return sorted(self._events, key=lambda e: e.when)

    def wait_settled(self, timeout: float = 5.0) -> bool:
        """Wait until the server has answered every request it was given and every message has
        met its fate in the network (delivered, lost or reset on); return whether that happened
        within ``timeout`` seconds."""

        def settled() -> bool:
            events = self._events
            sent = sum(e.kind == "sent" for e in events)
            fates = sum(e.kind in ("forwarded", "dropped", "reset") for e in events)
            delivered = sum(
                e.kind in ("forwarded", "duplicated") and e.direction == "request" for e in events
            )
            answered = sum(e.kind == "sent" and e.side == "server" for e in events)
            return sent == fates and answered >= delivered

        with self._changed:
            return self._changed.wait_for(settled, timeout)

    def clear(self) -> None:
        with self._changed:
            self._events.clear()

    def __len__(self) -> int:
        with self._changed:
            return len(self._events)

    # -- inside -------------------------------------------------------------

    def _add(
        self, side: str, kind: str, payload: bytes, direction: str, when: float | None = None
    ) -> None:
        key = hashlib.blake2b(payload, digest_size=8).hexdigest()
        moment = time.monotonic() if when is None else when
        self._append(Event(moment, side, kind, describe(payload, direction), direction, key))

    def _append(self, event: Event) -> None:
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()


def describe(payload: bytes, direction: str) -> str:
    """A short label for a JSON-RPC message: ``increment #3`` (the number ending its id) or
    ``→ 7``."""
    try:
        message = json.loads(payload) if len(payload) <= MAX_LABEL_PAYLOAD else None
    except ValueError:
        message = None
    if isinstance(message, list):
        return f"batch of {len(message)}"
    if not isinstance(message, dict):
        return f"{len(payload):,} bytes"
    request_id = message.get("id")
    number = "" if request_id is None else str(request_id).rpartition(":")[2]
    if direction == "request":
        return f"{message.get('method', '?')} #{number}".rstrip(" #")
    if isinstance(message.get("error"), dict):
        return f"error {message['error'].get('code')}"
    result = json.dumps(message.get("result"))
    return f"→ {result if len(result) <= 16 else result[:15] + '…'}"


def arrows(events: list[Event]) -> list[Arrow]:
    """Each message's trip: every fate the proxy gave a message, paired with the send of the same
    bytes, first in first out."""
    result: list[Arrow] = []
    waiting: dict[tuple[str | None, str | None], deque[Event]] = {}
    decided: dict[tuple[str | None, str | None], Event] = {}  # for a copy: its original's send
    tries: dict[tuple[str | None, str | None], int] = {}
    for event in sorted(events, key=lambda e: e.when):
        message = (event.direction, event.key)
        if event.kind == "sent":
            tries[message] = tries.get(message, 0) + 1
            if tries[message] > 1:  # the same bytes again: a retry, or a reply replayed
                again = f", try {tries[message]}" if event.direction == "request" else " (again)"
                event = dataclasses.replace(event, label=event.label + again)
            waiting.setdefault(message, deque()).append(event)
            continue
        if event.side != "proxy" or event.direction is None:
            continue
        if event.kind == "duplicated":
            sent = decided.get(message)
        else:
            queue = waiting.get(message)
            sent = decided[message] = queue.popleft() if queue else None
        if sent is None:  # sent before the recording began
            continue
        fate = {"forwarded": "arrived", "duplicated": "copy"}.get(
            event.kind, ENDINGS.get(event.kind)
        )
        if fate is not None:
            result.append(Arrow(event.direction, sent.label, sent.when, event.when, fate))
    return result


def render_text(recorder: Recorder) -> str:
    """The run as lines of text, one event a line, times in milliseconds since the first."""
    events = recorder.events()
    if not events:
        return "(nothing recorded)"
    t0 = events[0].when
    verbs = {
        "sent": "sends",
        "forwarded": "delivers",
        "duplicated": "delivers a copy of",
        "dropped": "loses",
        "reset": "resets the connection on",
        "note": "",
    }
    lines = []
    for e in events:
        what = f"{verbs.get(e.kind, e.kind)} {e.label}".strip()
        arrow = {"request": " (→ server)", "reply": " (→ client)"}.get(e.direction or "", "")
        lines.append(f"{(e.when - t0) * 1000:8.1f} ms  {e.side:<6}  {what}{arrow}")
    return "\n".join(lines)


_COLOURS = {"request": "#4c72b0", "reply": "#dd8452"}
_BROKEN = "#c44e52"
_FONT = 8
_NOTE_WIDTH = 18  # characters a line of a note may hold
_MARGIN = 4.0  # pixels kept free around every text: from another text, a mark, the axes' edge
_SAME_TIME = 0.03  # arrows whose ends are this close (a share of the panel's span) would overlap
_BEND = 0.35  # how far such an arrow bends away from the one before it (matplotlib's arc3 rad)


def draw(charts: Recorder | Mapping[str, Recorder], *, title: str = "", columns: int = 3) -> Figure:
    """Sequence charts, up to ``columns`` in a row: a client and a server lane each, time down.

    ``charts`` is one Recorder or a mapping of panel titles to Recorders. Every message is an
    arrow from its send to its fate; two messages that would be drawn on top of each other (a
    copy and its original, two replies sent at once) bend apart. Texts are placed after the
    layout is known, measured, so none covers another, a mark or the axes' edge.
    """
    panels = {"": charts} if isinstance(charts, Recorder) else dict(charts)
    if not panels or any(len(r) == 0 for r in panels.values()):
        raise ValueError("draw needs at least one chart, each with at least one event")
    cols = max(1, min(columns, len(panels)))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.5 * cols, 4.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    drawn = [
        _Panel(ax, name, recorder.events(), first_column=index % cols == 0)
        for index, (ax, (name, recorder)) in enumerate(zip(axes, panels.items(), strict=False))
    ]
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.draw_without_rendering()  # the layout, now final: texts are left out of it
    renderer = fig._get_renderer()
    for panel in drawn:
        panel.arrange(renderer)
    return fig


@dataclass
class _Label:
    """A text to place, and where it may go: candidate anchor points in data coordinates."""

    text: Text
    candidates: Callable[[], list[tuple[float, float]]]


class _Panel:
    """One chart: lanes, arrows and marks drawn at once; texts placed by :meth:`arrange`."""

    def __init__(self, ax: Axes, name: str, events: list[Event], *, first_column: bool):
        self.ax = ax
        self.t0 = events[0].when
        self.span = max((events[-1].when - self.t0) * 1000, 1.0)
        self.notes: list[tuple[Text, str]] = []  # (text, side): pinned to a lane
        self.marks: list[tuple[float, float, float]] = []  # (x, y, radius in points): dots, Xs
        self.fixed: list[Text] = []  # texts placed beside a mark: a fate ("lost")
        self.labels: list[_Label] = []  # arrows' labels: placed last, where there is room
        for side in ("client", "server"):
            ax.axvline(LANE[side], color="#444444", linewidth=1.5)
        ax.axvline(LANE["proxy"], color="#bbbbbb", linewidth=1, linestyle=":")
        drawn: list[Arrow] = []
        for arrow in arrows(events):
            self._arrow(arrow, drawn)
            drawn.append(arrow)
        for e in events:
            if e.kind == "note":
                self._note(e)
        ax.set_xlim(-1.35, 2.2)  # for now: arrange() widens it to fit every text
        ax.set_ylim(self.span * 1.08, -self.span * 0.08)  # time runs down
        ax.set_xticks([0, 1], ["client", "server"])
        ax.xaxis.tick_top()
        ax.tick_params(axis="x", length=0)
        top = ax.get_xaxis_transform()  # x in data, y in axes: 1.0 is the top edge
        ax.text(
            0.5, 1.01, "network", transform=top, ha="center", va="bottom", fontsize=7, color="#888"
        )
        if first_column:
            ax.set_ylabel("milliseconds since the first message")
        for spine in ("top", "right", "bottom"):
            ax.spines[spine].set_visible(False)
        if name:
            ax.set_title(name, fontsize=10)

    def ms(self, t: float) -> float:
        return (t - self.t0) * 1000

    # -- drawing ----------------------------------------------------------------

    def _note(self, e: Event) -> None:
        x, y = LANE[e.side], self.ms(e.when)
        ha = {"client": "right", "server": "left"}.get(e.side, "center")
        dx = {"client": -0.05, "server": 0.05}.get(e.side, 0.0)
        self.ax.plot([x], [y], marker="o", color="#333333", markersize=3)
        self.marks.append((x, y, 2.0))
        label = textwrap.fill(e.label, _NOTE_WIDTH)  # long notes would push the lanes together
        text = self.ax.text(x + dx, y, label, ha=ha, va="center", fontsize=_FONT)
        text.set_in_layout(False)
        self.notes.append((text, e.side))

    def _arrow(self, arrow: Arrow, before: list[Arrow]) -> None:
        ax = self.ax
        x0, x1 = (0.0, 1.0) if arrow.direction == "request" else (1.0, 0.0)
        y0, y1 = self.ms(arrow.start), self.ms(arrow.end)
        colour = _COLOURS[arrow.direction]
        bend = 0.0
        if arrow.fate in ("lost", "reset"):
            x1 = LANE["proxy"]
            ax.plot([x0, x1], [y0, y1], color=colour, linewidth=1.3)
            ax.plot([x1], [y1], marker="X", color=_BROKEN, markersize=9)
            self.marks.append((x1, y1, 5.5))
            request = arrow.direction == "request"  # the fate goes beyond the X, off the line
            fate = ax.text(
                x1 + (0.08 if request else -0.08),
                y1,
                arrow.fate,
                color=_BROKEN,
                ha="left" if request else "right",
                va="center",
                fontsize=_FONT,
            )
            fate.set_in_layout(False)
            self.fixed.append(fate)
        else:
            close = self.span * _SAME_TIME
            twins = sum(
                b.direction == arrow.direction
                and b.fate not in ("lost", "reset")
                and abs(b.start - arrow.start) * 1000 < close
                and abs(b.end - arrow.end) * 1000 < close
                for b in before
            )
            if twins:  # it would hide under one already drawn: bend it, to alternate sides
                bend = _BEND * ((twins + 1) // 2) * (1 if twins % 2 else -1)
            style = (0, (4, 2)) if arrow.fate == "copy" else "-"
            ax.annotate(
                "",
                xy=(x1, y1),
                xytext=(x0, y0),
                arrowprops={
                    "arrowstyle": "-|>",
                    "color": colour,
                    "linestyle": style,
                    "lw": 1.3,
                    "connectionstyle": f"arc3,rad={bend}",
                },
            )
        text = ax.text(
            x0,
            y0,
            arrow.label + (" (a copy)" if arrow.fate == "copy" else ""),
            fontsize=_FONT,
            ha="center",
            va="center",
            color=colour,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.5},
        )
        text.set_in_layout(False)
        self.labels.append(_Label(text, self._along(x0, y0, x1, y1, bend)))

    def _along(
        self, x0: float, y0: float, x1: float, y1: float, bend: float
    ) -> Callable[[], list[tuple[float, float]]]:
        """Points along an arrow, best first, in data coordinates (worked out once the layout
        is known: a bent arrow bends in display space, as matplotlib draws it)."""

        def points() -> list[tuple[float, float]]:
            to_display = self.ax.transData
            (px0, py0), (px1, py1) = to_display.transform([(x0, y0), (x1, y1)])
            dx, dy = px1 - px0, py1 - py0
            cx, cy = (px0 + px1) / 2 + bend * dy, (py0 + py1) / 2 - bend * dx  # arc3's control
            found = []
            for t in (0.5, 0.38, 0.62, 0.26, 0.74, 0.15, 0.85):
                u = 1 - t  # a quadratic Bezier curve; a straight line when bend is 0
                px = u * u * px0 + 2 * u * t * cx + t * t * px1
                py = u * u * py0 + 2 * u * t * cy + t * t * py1
                found.append(tuple(to_display.inverted().transform((px, py))))
            return found

        return points

    # -- placing the texts ------------------------------------------------------

    def arrange(self, renderer: object) -> None:
        """Widen the x range until every note fits inside the axes, spread notes that would
        touch, then put each arrow's label at the first place along it that is free."""
        self._fit_width(renderer)
        self._spread_notes(renderer)
        taken = [t.get_window_extent(renderer) for t, _ in self.notes]
        taken += [t.get_window_extent(renderer) for t in self.fixed]
        taken += [self._mark_box(x, y, r) for x, y, r in self.marks]
        inside = self.ax.get_window_extent(renderer)
        for label in self.labels:
            best, fewest = None, None
            for point, lift in self._positions(label, renderer):
                label.text.set_position(point)
                box = label.text.get_window_extent(renderer)
                box = Bbox.from_extents(box.x0, box.y0 + lift, box.x1, box.y1 + lift)
                clashes = sum(_overlap(box, other) for other in taken) + (
                    0 if _contains(inside, box) else 1e6
                )
                if fewest is None or clashes < fewest:
                    best, fewest = (point, lift, box), clashes
                if clashes == 0:
                    break
            assert best is not None
            point, lift, box = best
            label.text.set_position(self._lifted(point, lift))
            taken.append(box)

    def _positions(
        self, label: _Label, renderer: object
    ) -> list[tuple[tuple[float, float], float]]:
        """Where a label may go: each point along its arrow, on the line, then a little above
        or below it (a lift in pixels)."""
        box = label.text.get_window_extent(renderer)
        points = label.candidates()
        lifts = [0.0, box.height * 0.9, -box.height * 0.9, box.height * 1.8, -box.height * 1.8]
        (x0, y0), (x1, y1) = self.ax.transData.transform([points[-2], points[-1]])
        if box.width > 0.6 * math.hypot(x1 - x0, y1 - y0) / 0.7:  # the line is shorter than
            lifts = lifts[1:]  # the label would hide it: beside it, then
        return [(p, lift) for lift in lifts for p in points]

    def _lifted(self, point: tuple[float, float], lift: float) -> tuple[float, float]:
        px, py = self.ax.transData.transform(point)
        return tuple(self.ax.transData.inverted().transform((px, py + lift)))

    def _mark_box(self, x: float, y: float, radius: float) -> Bbox:
        px, py = self.ax.transData.transform((x, y))
        r = radius * self.ax.figure.dpi / 72
        return Bbox.from_extents(px - r, py - r, px + r, py + r)

    def _fit_width(self, renderer: object) -> None:
        """Choose the x range so that every note and fate stays inside the axes: measured in
        pixels, the lanes as far apart as what is left allows."""
        ax = self.ax
        width = ax.get_window_extent(renderer).width
        texts = [t for t, _ in self.notes] + self.fixed
        gap = width / 3.55  # the lanes' distance in pixels, refined below
        for _ in range(8):
            left = right = _MARGIN
            for text in texts:
                x = text.get_position()[0]
                box = text.get_window_extent(renderer)
                anchor = ax.transData.transform((x, 0))[0]
                # how far the text reaches past the client lane (left) or the server lane (right)
                left = max(left, anchor - box.x0 - x * gap + _MARGIN)
                right = max(right, box.x1 - anchor + (x - 1) * gap + _MARGIN)
            gap = max(min(width - left - right, width * 0.45), width * 0.2)
            spare = max(width - left - right - gap, 0.0) / 2
            ax.set_xlim(-(left + spare) / gap, 1 + (right + spare) / gap)

    def _spread_notes(self, renderer: object) -> None:
        """Move a lane's notes apart (in time) just enough that none touches the next, and none
        falls off the bottom of the axes."""
        floor = self.ax.get_window_extent(renderer).y0 + _MARGIN  # display y grows upwards
        for side in SIDES:
            texts = sorted(
                (t for t, s in self.notes if s == side), key=lambda t: t.get_position()[1]
            )
            bottom = None  # the lowest edge so far
            for text in texts:  # down the page: each below the one before
                box = text.get_window_extent(renderer)
                if bottom is not None and box.y1 > bottom - _MARGIN / 2:
                    box = self._shift(text, bottom - _MARGIN / 2 - box.y1, renderer)
                bottom = box.y0
            top = floor  # back up the page: the last above the floor, each above the next
            for text in reversed(texts):
                box = text.get_window_extent(renderer)
                if box.y0 < top:
                    box = self._shift(text, top - box.y0, renderer)
                top = box.y1 + _MARGIN / 2

    def _shift(self, text: Text, up: float, renderer: object) -> Bbox:
        """Move ``text`` up by ``up`` pixels (down if negative); its new box."""
        px, py = self.ax.transData.transform(text.get_position())
        text.set_position(tuple(self.ax.transData.inverted().transform((px, py + up))))
        return text.get_window_extent(renderer)


def _overlap(a: Bbox, b: Bbox) -> float:
    """The area two boxes share, each grown by half the margin (0 when they keep apart)."""
    m = _MARGIN / 2
    w = min(a.x1, b.x1) - max(a.x0, b.x0) + 2 * m
    h = min(a.y1, b.y1) - max(a.y0, b.y0) + 2 * m
    return w * h if w > 0 and h > 0 else 0.0


def _contains(outer: Bbox, inner: Bbox) -> bool:
    return (
        inner.x0 >= outer.x0
        and inner.x1 <= outer.x1
        and inner.y0 >= outer.y0
        and inner.y1 <= outer.y1
    )


# --------------------------------------------------------------------------- one call, one fault


BREAKABLE = ("drop", "duplicate", "reset")
MAX_SLOW = 5.0  # seconds the server may be slow on its first run: a chart, not a hang


def one_call(
    *,
    drop: float = 0.0,
    duplicate: float = 0.0,
    reset: float = 0.0,
    after: str | None = None,
    slow_first: float = 0.0,
    at_most_once: bool = False,
    delay: float = 0.04,
    timeout: float = 0.3,
    retries: int = 2,
) -> Recorder:
    """One ``increment("hits")`` through a fault proxy that breaks one message; its Recorder.

    Every message spends ``delay`` seconds in the network, so the arrows slant. The fault given
    (``drop``, ``duplicate`` or ``reset``, a probability: 1.0 to be sure) hits the first message,
    or with ``after="request"`` the first message after a request got through (its reply), and
    is then switched off. ``slow_first`` makes the server's first run that many seconds slower.
    The client waits ``timeout`` seconds a try and sends the same request (the same id) up to
    ``retries`` more times; the server keeps a de-duplication table if ``at_most_once``.
    """
    checks.one_of("after", after, (None, "request", "reply"))
    checks.seconds("slow_first", slow_first, low=0, high=MAX_SLOW)
    fault = {"drop": drop, "duplicate": duplicate, "reset": reset}
    quiet = dict.fromkeys(BREAKABLE, 0.0)
    target = "request" if after in (None, "reply") else "reply"  # the message to break
    chart, store, runs = Recorder(), KVStore(), []
    under_way = [0]  # runs of increment started and not yet finished
    received: dict[bytes, int] = {}  # each request's bytes: how many times the server read them
    lock = threading.Lock()

    def increment(key: str) -> int:
        with lock:
            runs.append(key)
            under_way[0] += 1
        try:
            if len(runs) == 1 and slow_first:
                chart.note("server", f"starts: slow this time ({slow_first * 1000:.0f} ms)")
                time.sleep(slow_first)  # the server is slow this once: a busy disk, say
            value = store.increment(key)
            chart.note("server", f"runs: {key} = {value}")
        finally:
            with lock:
                under_way[0] -= 1
        return value

    def server_tap(direction: str, payload: bytes) -> None:
        chart.server_tap(direction, payload)
        if direction != "received":
            return
        with lock:
            received[payload] = received.get(payload, 0) + 1
            waits = received[payload] > 1 and at_most_once and under_way[0] > 0
        if waits:  # the table has this id and its first run is still going: the repeat waits
            chart.note("server", "a repeat: it waits for the first run")

    server = socketrpc.serve(
        {"increment": increment},
        name="sequence-server",
        at_most_once=at_most_once,
        on_frame=server_tap,
        workers=4,  # a retry need not wait behind a slow first try
    )
    try:
        proxy = faults.serve_proxy("sequence-network", server, faults.Faults(delay=delay))
        try:
            armed = [False]

            def tap(direction: str, payload: bytes, when: float, fate: str) -> None:
                chart.proxy_tap(direction, payload, when, fate)
                if armed[0] and direction == target:  # the message aimed at met its fate (a
                    proxy.configure(**quiet)  # copy is sent right after its original): enough
                    armed[0] = False
                elif direction == after and fate == "forwarded" and any(fault.values()):
                    proxy.configure(**fault)  # armed for the next message
                    armed[0] = True
                    fault.update(quiet)

            proxy.on_frame = tap
            if after is None:
                proxy.configure(**fault)
                armed[0] = True
                fault.update(quiet)
            with socketrpc.connect(
                proxy.address,
                timeout=timeout,
                retries=retries,
                backoff=0.01,
                on_frame=chart.client_tap,
            ) as client:
                try:
                    result: str = f"returns {client.increment('hits')}"
                except (socketrpc.CallTimeout, socketrpc.ConnectionLost) as exc:
                    result = f"gives up: {type(exc).__name__}"
                returned = time.monotonic()
                chart.wait_settled(timeout=2.0 + slow_first)
            replies = [
                e
                for e in chart.events()
                if e.kind in ("forwarded", "duplicated") and e.direction == "reply"
            ]
            # One call takes one reply, the first to come: it returns as that reply arrives
            # (a fraction of a millisecond later), before any other reply to it arrives.
            taken = replies[0].when if replies and result.startswith("returns") else returned
            chart.note("client", result, when=min(taken, returned))
            for e in replies[1:]:
                chart.note("client", f"{e.label}: nobody waits for it", when=e.when)
        finally:
            proxy.stop()
    finally:
        server.stop()
    return chart
