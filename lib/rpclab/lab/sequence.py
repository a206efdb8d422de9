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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from matplotlib.axes import Axes

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


def draw(charts: Recorder | Mapping[str, Recorder], *, title: str = "", columns: int = 3) -> Figure:
    """Sequence charts, up to ``columns`` in a row: a client and a server lane each, time down.

    ``charts`` is one Recorder or a mapping of panel titles to Recorders.
    """
    panels = {"": charts} if isinstance(charts, Recorder) else dict(charts)
    if not panels or any(len(r) == 0 for r in panels.values()):
        raise ValueError("draw needs at least one chart, each with at least one event")
    cols = max(1, min(columns, len(panels)))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.5 * cols, 4.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for index, (ax, (name, recorder)) in enumerate(zip(axes, panels.items(), strict=False)):
        _panel(ax, name, recorder.events(), first_column=index % cols == 0)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def _panel(ax: Axes, name: str, events: list[Event], *, first_column: bool) -> None:
    t0 = events[0].when
    span = max((events[-1].when - t0) * 1000, 1.0)

    def ms(t: float) -> float:
        return (t - t0) * 1000

    for side in ("client", "server"):
        ax.axvline(LANE[side], color="#444444", linewidth=1.5)
    ax.axvline(LANE["proxy"], color="#bbbbbb", linewidth=1, linestyle=":")
    placed: list[tuple[float, float]] = []  # where arrow labels went, so none covers another
    for arrow in arrows(events):
        _arrow(ax, arrow, ms, placed, span * 0.035)
    gap = span * 0.05  # notes closer than this in time are spread apart, so none covers another
    last: dict[str, float] = {}
    for e in events:
        if e.kind != "note":
            continue
        x, y = LANE[e.side], ms(e.when)
        text_y = max(y, last.get(e.side, -gap) + gap)
        last[e.side] = text_y
        ha = {"client": "right", "server": "left"}.get(e.side, "center")
        dx = {"client": -0.05, "server": 0.05}.get(e.side, 0.0)
        ax.plot([x], [y], marker="o", color="#333333", markersize=3)
        ax.text(x + dx, text_y, e.label, ha=ha, va="center", fontsize=_FONT)
    ax.set_xlim(-1.35, 2.2)
    ax.set_ylim(span * 1.08, -span * 0.08)  # time runs down
    ax.set_xticks([0, 1], ["client", "server"])
    ax.xaxis.tick_top()
    ax.tick_params(axis="x", length=0)
    top = ax.get_xaxis_transform()  # x in data, y in axes: 1.0 is the top edge
    ax.text(0.5, 1.01, "network", transform=top, ha="center", va="bottom", fontsize=7, color="#888")
    if first_column:
        ax.set_ylabel("milliseconds since the first message")
    for spine in ("top", "right", "bottom"):
        ax.spines[spine].set_visible(False)
    if name:
        ax.set_title(name, fontsize=10)


def _arrow(
    ax: Axes,
    arrow: Arrow,
    ms: Callable[[float], float],
    placed: list[tuple[float, float]],
    gap: float,
) -> None:
    x0, x1 = (0.0, 1.0) if arrow.direction == "request" else (1.0, 0.0)
    y0, y1 = ms(arrow.start), ms(arrow.end)
    colour = _COLOURS[arrow.direction]
    if arrow.fate in ("lost", "reset"):
        x1 = LANE["proxy"]
        ax.plot([x0, x1], [y0, y1], color=colour, linewidth=1.3)
        ax.plot([x1], [y1], marker="X", color=_BROKEN, markersize=9)
        request = (
            arrow.direction == "request"
        )  # the fate is written beyond the X, away from the line
        ax.text(
            x1 + (0.08 if request else -0.08),
            y1,
            arrow.fate,
            color=_BROKEN,
            ha="left" if request else "right",
            va="center",
            fontsize=_FONT,
        )
    else:
        style = (0, (4, 2)) if arrow.fate == "copy" else "-"
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={"arrowstyle": "-|>", "color": colour, "linestyle": style, "lw": 1.3},
        )
    for share in (0.5, 0.3, 0.7, 0.15, 0.85):  # along the line: the first free place
        x, y = x0 + share * (x1 - x0), y0 + share * (y1 - y0)
        if all(abs(x - px) > 0.3 or abs(y - py) > gap for px, py in placed):
            break
    placed.append((x, y))
    ax.text(
        x,
        y,
        arrow.label + (" (a copy)" if arrow.fate == "copy" else ""),
        fontsize=_FONT,
        ha="center",
        va="bottom",
        color=colour,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5},
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
    chart, store, runs = Recorder(), KVStore(), []

    def increment(key: str) -> int:
        runs.append(key)
        if len(runs) == 1 and slow_first:
            chart.note("server", f"starts: slow this time ({slow_first * 1000:.0f} ms)")
            time.sleep(slow_first)  # the server is slow this once: a busy disk, say
        value = store.increment(key)
        chart.note("server", f"runs: {key} = {value}")
        return value

    server = socketrpc.serve(
        {"increment": increment},
        name="sequence-server",
        at_most_once=at_most_once,
        on_frame=chart.server_tap,
        workers=4,  # a retry need not wait behind a slow first try
    )
    try:
        proxy = faults.serve_proxy("sequence-network", server, faults.Faults(delay=delay))
        try:

            def tap(direction: str, payload: bytes, when: float, fate: str) -> None:
                chart.proxy_tap(direction, payload, when, fate)
                if fate in ("dropped", "duplicated", "reset"):
                    proxy.configure(**quiet)  # one message broken is enough
                elif direction == after and fate == "forwarded" and any(fault.values()):
                    proxy.configure(**fault)  # armed for the next message
                    fault.update(quiet)

            proxy.on_frame = tap
            if after is None:
                proxy.configure(**fault)
                fault.update(quiet)
            with socketrpc.connect(
                proxy.address,
                timeout=timeout,
                retries=retries,
                backoff=0.01,
                on_frame=chart.client_tap,
            ) as client:
                try:
                    chart.note("client", f"returns {client.increment('hits')}")
                except (socketrpc.CallTimeout, socketrpc.ConnectionLost) as exc:
                    chart.note("client", f"gives up: {type(exc).__name__}")
                chart.wait_settled(timeout=2.0 + slow_first)
            replies = [
                e
                for e in chart.events()
                if e.kind in ("forwarded", "duplicated") and e.direction == "reply"
            ]
            for e in replies[1:]:  # one call takes one reply, the first to come
                chart.note("client", f"{e.label}: nobody waits for it", when=e.when)
        finally:
            proxy.stop()
    finally:
        server.stop()
    return chart
