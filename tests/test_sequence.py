"""Sequence charts (rpclab.lab.sequence): each message's trip drawn from what the taps saw."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rpclab.lab import sequence
from rpclab.lab.sequence import Recorder


def request(n: int = 1, method: str = "increment") -> bytes:
    message = {"jsonrpc": "2.0", "method": method, "params": ["hits"], "id": f"c:{n}"}
    return json.dumps(message).encode()


def reply(result, n: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "result": result, "id": f"c:{n}"}).encode()


def test_messages_are_labelled_by_method_and_number_or_by_result():
    assert sequence.describe(request(3), "request") == "increment #3"
    assert sequence.describe(reply(7, 3), "reply") == "→ 7"
    error = b'{"jsonrpc": "2.0", "error": {"code": 1, "message": "x"}, "id": "c:1"}'
    assert sequence.describe(error, "reply") == "error 1"
    assert sequence.describe(b"not json", "request") == "8 bytes"
    assert sequence.describe(b"[1, 2]", "request") == "batch of 2"


def _run(*steps) -> Recorder:
    """A recorder fed by hand: (tap, direction, payload[, fate]) at times 0, 1, 2, ... s."""
    chart = Recorder()
    for when, (side, direction, payload, *fate) in enumerate(steps):
        if side == "proxy":
            chart.proxy_tap(direction, payload, float(when), fate[0])
        else:
            chart._add(side, "sent", payload, direction, float(when))
    return chart


def test_a_lost_request_then_its_retry_are_two_trips_and_the_retry_is_named():
    chart = _run(
        ("client", "request", request()),
        ("proxy", "request", request(), "dropped"),
        ("client", "request", request()),
        ("proxy", "request", request(), "forwarded"),
    )
    trips = sequence.arrows(chart.events())
    assert [(a.label, a.fate, a.start, a.end) for a in trips] == [
        ("increment #1", "lost", 0.0, 1.0),
        ("increment #1, try 2", "arrived", 2.0, 3.0),
    ]


def test_replies_are_paired_by_their_bytes_first_in_first_out_not_by_id_alone():
    chart = _run(
        ("server", "reply", reply(1)),  # the retry's reply, sent first
        ("server", "reply", reply(2)),  # the slow first try's, sent second
        ("proxy", "reply", reply(1), "forwarded"),
        ("proxy", "reply", reply(2), "forwarded"),
    )
    trips = sequence.arrows(chart.events())
    assert [(a.label, a.start, a.end) for a in trips] == [("→ 1", 0.0, 2.0), ("→ 2", 1.0, 3.0)]


def test_a_copy_is_drawn_from_the_same_send_as_its_original():
    chart = _run(
        ("client", "request", request()),
        ("proxy", "request", request(), "forwarded"),
        ("proxy", "request", request(), "duplicated"),
    )
    trips = sequence.arrows(chart.events())
    assert [(a.fate, a.start) for a in trips] == [("arrived", 0.0), ("copy", 0.0)]


def test_the_text_and_the_figure_show_the_same_run():
    chart = _run(
        ("client", "request", request()),
        ("proxy", "request", request(), "reset"),
    )
    chart.note("client", "gives up", when=2.0)
    assert sequence.render_text(chart).splitlines() == [
        "     0.0 ms  client  sends increment #1 (→ server)",
        "  1000.0 ms  proxy   resets the connection on increment #1 (→ server)",
        "  2000.0 ms  client  gives up",
    ]
    figure = sequence.draw({"a": chart, "b": chart, "c": chart, "d": chart}, columns=3)
    assert sum(ax.get_visible() for ax in figure.axes) == 4
    assert figure._repr_png_().startswith(b"\x89PNG")


def test_draw_and_note_refuse_what_they_cannot_show():
    with pytest.raises(ValueError, match="at least one event"):
        sequence.draw(Recorder())
    with pytest.raises(ValueError, match="side must be"):
        Recorder().note("database", "hello")


def test_a_recorder_keeps_a_bounded_number_of_events():
    chart = Recorder(max_events=3)
    for n in range(10):
        chart.note("client", str(n))
    assert [e.label for e in chart.events()] == ["7", "8", "9"]


# --------------------------------------------------------------------------- real runs


def _runs(chart: Recorder) -> list[str]:
    return [e.label for e in chart.events() if e.side == "server" and e.kind == "note"]


def test_a_lost_reply_makes_a_server_that_forgets_run_the_call_twice():
    chart = sequence.one_call(drop=1.0, after="request")
    assert _runs(chart) == ["runs: hits = 1", "runs: hits = 2"]
    fates = [a.fate for a in sequence.arrows(chart.events())]
    assert fates == ["arrived", "lost", "arrived", "arrived"]


def test_a_lost_reply_to_a_server_with_a_table_is_answered_from_the_table():
    chart = sequence.one_call(drop=1.0, after="request", at_most_once=True)
    assert _runs(chart) == ["runs: hits = 1"]
    assert [e.label for e in chart.events() if e.side == "client" and e.kind == "note"] == [
        "returns 1"
    ]


def test_a_duplicated_request_runs_twice_and_its_second_reply_finds_nobody():
    chart = sequence.one_call(duplicate=1.0)
    assert sorted(_runs(chart)) == ["runs: hits = 1", "runs: hits = 2"]
    notes = [e.label for e in chart.events() if e.side == "client" and e.kind == "note"]
    assert sum(n.endswith(": nobody waits for it") for n in notes) == 1  # it took one of two
    assert [n for n in notes if n.startswith("returns")] in (["returns 1"], ["returns 2"])


def test_a_reset_after_the_call_ran_is_retried_on_a_new_connection_and_runs_again():
    chart = sequence.one_call(reset=1.0, after="request")
    assert _runs(chart) == ["runs: hits = 1", "runs: hits = 2"]
    assert "reset" in [a.fate for a in sequence.arrows(chart.events())]


def test_one_call_refuses_what_would_hang_or_mean_nothing():
    with pytest.raises(ValueError, match="after must be one of"):
        sequence.one_call(drop=1.0, after="sideways")
    with pytest.raises(ValueError, match="slow_first"):
        sequence.one_call(slow_first=60)


# --------------------------------------------------------------------------- the layout


def _texts_of(ax):
    """The texts drawn inside a panel: notes, fates and arrows' labels (not titles or ticks)."""
    return [t for t in ax.texts if t.get_text() and t.get_transform() == ax.transData]


def _clashes(figure):
    renderer = figure._get_renderer()
    found = []
    for ax in figure.axes:
        if not ax.get_visible():
            continue
        inside = ax.get_window_extent(renderer)
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts_of(ax)]
        for name, box in boxes:
            if not (
                box.x0 >= inside.x0 - 1 and box.x1 <= inside.x1 + 1 and box.y0 >= inside.y0 - 1
            ):
                found.append(f"{name!r} reaches past the axes")
        for i, (a, box_a) in enumerate(boxes):
            for b, box_b in boxes[i + 1 :]:
                if box_a.overlaps(box_b):
                    found.append(f"{a!r} covers {b!r}")
    return found


def test_no_text_covers_another_or_leaves_its_panel_in_the_cases_a_reader_found():
    lost_at_once = _run(  # a lost request: its X a millisecond from the start, the panel 400 ms
        ("client", "request", request()),
        ("proxy", "request", request(), "dropped"),
    )
    lost_at_once._events = type(lost_at_once._events)(
        [dataclasses.replace(e, when=e.when * 0.001) for e in lost_at_once._events]
    )
    lost_at_once.note("client", "returns 1", when=0.4)
    lost_at_once.note("client", "→ 2: nobody waits for it", when=0.401)  # long, at the left
    lost_at_once.note("server", "starts: slow this time (450 ms)", when=0.2)  # long, at the right
    twins = Recorder()  # a copy and its original, then two replies at once (the duplicate)
    twins._add("client", "sent", request(), "request", 0.0)
    twins.proxy_tap("request", request(), 0.040, "forwarded")
    twins.proxy_tap("request", request(), 0.0401, "duplicated")
    twins.note("server", "runs: hits = 1", when=0.041)
    twins.note("server", "runs: hits = 2", when=0.0411)
    for n, when in ((1, 0.0412), (2, 0.0413)):
        twins._add("server", "sent", reply(n), "reply", when)
    for n, when in ((1, 0.081), (2, 0.0812)):
        twins.proxy_tap("reply", reply(n), when, "forwarded")
    twins.note("client", "returns 1", when=0.081)
    twins.note("client", "→ 2: nobody waits for it", when=0.0812)
    figure = sequence.draw({"lost at once": lost_at_once, "twins": twins}, columns=2)
    assert _clashes(figure) == []
    bends = [
        text.arrow_patch.get_connectionstyle().rad
        for ax in figure.axes
        for text in ax.texts
        if getattr(text, "arrow_patch", None) is not None
    ]
    assert sum(rad != 0 for rad in bends) == 2  # the copy, and the second reply, bend away


def test_a_late_reply_to_a_server_with_a_table_shows_the_repeat_waiting_for_the_first_run():
    chart = sequence.one_call(slow_first=0.45, at_most_once=True)
    assert _runs(chart) == [
        "starts: slow this time (450 ms)",
        "a repeat: it waits for the first run",
        "runs: hits = 1",
    ]
    client = [e.label for e in chart.events() if e.side == "client" and e.kind == "note"]
    assert client == ["returns 1", "→ 1: nobody waits for it"]  # the first reply is the one taken
