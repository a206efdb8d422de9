"""Sequence charts (rpclab.lab.sequence): each message's trip drawn from what the taps saw."""

from __future__ import annotations

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
