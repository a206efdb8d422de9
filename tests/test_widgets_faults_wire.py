"""rpclab.lab.wiretap (recording and formatting frames), the wire inspector and the fault panel
widgets."""

from __future__ import annotations

import socket
import socketserver
import threading

import pytest

from rpclab import faults
from rpclab.byhand import framing
from rpclab.faults import Faults
from rpclab.lab import wiretap
from rpclab.runtime import background
from rpclab.widgets import fault_panel
from rpclab.widgets.fault_panel import FaultPanel, apply_controls, run_calls
from rpclab.widgets.wire_inspector import WireInspector

REQUEST = b'{"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1}'
REPLY = b'{"jsonrpc": "2.0", "result": 5, "id": 1}'


# --------------------------------------------------------------------------- wiretap: recording


def test_recorder_keeps_frames_in_order_with_sizes_and_directions():
    recorder = wiretap.Recorder()
    recorder.on_frame("sent", REQUEST)  # socketrpc's client hook: (direction, payload)
    recorder.on_frame("received", REPLY)
    recorder.on_frame(
        "reply", b"x", 12.5, "dropped"
    )  # the proxy's tap: (direction, payload, when, fate)
    frames = recorder.frames()
    assert [(f.seq, f.direction, f.size, f.fate) for f in frames] == [
        (1, "request", len(REQUEST), "forwarded"),
        (2, "reply", len(REPLY), "forwarded"),
        (3, "reply", 1, "dropped"),
    ]
    assert frames[2].time == 12.5
    assert frames[0].payload == REQUEST


def test_a_server_side_recorder_reads_sent_as_reply():
    recorder = wiretap.Recorder(side="server")
    recorder.on_frame("received", REQUEST)
    recorder.on_frame("sent", REPLY)
    assert [f.direction for f in recorder.frames()] == ["request", "reply"]
    with pytest.raises(ValueError, match="side must be"):
        wiretap.Recorder(side="middle")


def test_recorder_is_bounded_in_frames_and_payload_bytes():
    recorder = wiretap.Recorder(max_frames=3, max_payload=4)
    for i in range(5):
        recorder.on_frame("request", b"frame-%d" % i)
    frames = recorder.frames()
    assert [f.seq for f in frames] == [3, 4, 5]  # the oldest went first
    assert frames[0].payload == b"fram" and frames[0].size == 7 and frames[0].truncated
    assert len(recorder) == 3 and recorder.seen == 5
    recorder.clear()
    assert recorder.frames() == [] and recorder.start is None and recorder.seen == 0
    with pytest.raises(ValueError, match="max_frames must be a positive int"):
        wiretap.Recorder(max_frames=0)


def test_recorder_is_safe_from_many_threads(run_threads):
    recorder = wiretap.Recorder(max_frames=10_000)

    def feed(n):
        for _ in range(500):
            recorder.on_frame("request", b"{}")

    run_threads(feed, 4)
    assert sorted(f.seq for f in recorder.frames()) == list(range(1, 2001))


# --------------------------------------------------------------------------- wiretap: formatting


def test_format_json_is_pretty_and_truncated():
    assert wiretap.format_json(REPLY) == '{\n  "jsonrpc": "2.0",\n  "result": 5,\n  "id": 1\n}'
    assert wiretap.format_json(REPLY, indent=None) == '{"jsonrpc": "2.0", "result": 5, "id": 1}'
    assert wiretap.format_json('{"name": "José"}'.encode()) == '{\n  "name": "José"\n}'
    cut = wiretap.format_json(b'"' + b"a" * 100 + b'"', limit=10)
    assert cut.startswith('"aaaaaaaaa… (') and cut.endswith("92 more characters)")


def test_format_json_says_when_a_payload_is_not_json():
    assert wiretap.format_json(b'{"half":').startswith("(not JSON: Expecting value)")
    assert wiretap.format_json(b"\xff\xfe").startswith("(not UTF-8 text, so not JSON")


def test_hexdump_looks_like_xxd_and_stops_at_the_limit():
    dump = wiretap.hexdump(framing.encode_frame(b'{"id":1}'))
    assert dump == '00000000: 0000 0008 7b22 6964 223a 317d            ....{"id":1}'
    long = wiretap.hexdump(bytes(range(48)), limit=32)
    lines = long.splitlines()
    assert lines[0] == "00000000: 0001 0203 0405 0607 0809 0a0b 0c0d 0e0f  ................"
    assert lines[1].startswith("00000010: 1011")
    assert lines[2] == "… 16 more bytes"
    assert wiretap.hexdump(b"") == ""


def test_table_rows_and_html_show_time_arrow_size_and_payload():
    frames = [
        wiretap.Frame(1, 100.0, "request", len(REQUEST), REQUEST),
        wiretap.Frame(2, 100.25, "reply", len(REPLY), REPLY, "dropped"),
    ]
    rows = wiretap.table_rows(frames)
    assert rows[0][:6] == (1, "+0.000 s", "→", "request", f"{len(REQUEST)} B", "forwarded")
    assert rows[1][:6] == (2, "+0.250 s", "←", "reply", f"{len(REPLY)} B", "dropped")
    assert '"result": 5' in rows[1].payload
    assert wiretap.table_rows(frames, hex=True)[1].payload.startswith("00000000: 7b22")
    page = wiretap.render_html(frames)
    assert page.count("<tr>") == 3 and "&quot;result&quot;: 5" in page and "dropped" in page
    assert "1 earlier frames not shown" in wiretap.render_html(frames, last=1)
    assert "No frames yet" in wiretap.render_html([])
    text = wiretap.render_text(frames)
    assert (
        "→" in text and '{"jsonrpc": "2.0", "result": 5, "id": 1}' in text and "[dropped]" in text
    )


def test_html_escapes_what_came_off_the_wire():
    evil = b'"<script>alert(1)</script>"'
    page = wiretap.render_html([wiretap.Frame(1, 0.0, "reply", len(evil), evil)])
    assert "<script>" not in page and "&lt;script&gt;" in page


# --------------------------------------------------------------------------- fault panel logic


class FakeProxy:
    """Just what the panel needs of a FaultProxy, without sockets."""

    def __init__(self, mode: str = "frames"):
        self.mode = mode
        self.faults = Faults()
        self.stats = faults.ProxyStats()
        self.running = True

    def configure(self, **changes):
        new = self.faults.replace(**changes)
        if self.mode == "bytes" and (new.drop or new.duplicate):
            raise ValueError("drop and duplicate need mode='frames'")
        self.faults = new
        return new

    def reset_stats(self):
        self.stats = faults.ProxyStats()


def test_apply_controls_reconfigures_the_proxy():
    proxy = FakeProxy()
    assert apply_controls(proxy, drop=0.3, delay=0.05) == Faults(drop=0.3, delay=0.05)
    apply_controls(proxy, direction="reply", seed=4)
    assert proxy.faults == Faults(drop=0.3, delay=0.05, direction="reply", seed=4)
    with pytest.raises(ValueError, match="drop is a probability"):
        apply_controls(proxy, drop=3)
    with pytest.raises(TypeError, match="unknown control speed"):
        apply_controls(proxy, speed=1)
    assert proxy.faults.drop == 0.3


def test_run_calls_counts_successes_failures_and_timeouts():
    outcomes = iter([None, TimeoutError("slow"), ValueError("bad"), None, TimeoutError("slower")])

    def call():
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome

    summary = run_calls(call, 5)
    assert (summary.succeeded, summary.failed, summary.timeouts, summary.skipped) == (2, 1, 2, 0)
    assert summary.errors == {"TimeoutError": 2, "ValueError": 1}
    assert summary.last_error == "TimeoutError: slower"
    assert str(summary).startswith("5 calls: 2 succeeded, 1 failed, 2 timed out in ")


def test_run_calls_stops_starting_calls_when_the_budget_is_spent():
    calls = []
    clock = threading.Event()

    def slow():
        calls.append(1)
        clock.wait(0.06)  # an injected delay, as a slow call would have

    summary = run_calls(slow, 100, timeout=0.05)
    assert summary.succeeded == len(calls) == 1
    assert summary.skipped == 99
    with pytest.raises(ValueError, match="n must be"):
        run_calls(slow, -1)
    with pytest.raises(ValueError, match="timeout must be"):
        run_calls(slow, 1, timeout=0)


def test_is_timeout_knows_the_usual_timeout_errors():
    class CallTimeout(Exception):
        pass

    class DeadlineError(Exception):
        def code(self):
            return "StatusCode.DEADLINE_EXCEEDED"

    assert fault_panel.is_timeout(TimeoutError())
    assert fault_panel.is_timeout(CallTimeout())
    assert fault_panel.is_timeout(DeadlineError())
    assert not fault_panel.is_timeout(ConnectionResetError())


# --------------------------------------------------------------------------- the widgets


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while True:
                framing.send_frame(self.request, framing.recv_frame(self.request))
        except (framing.FramingError, OSError):
            pass


class EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def test_fault_panel_sliders_reconfigure_a_live_proxy():
    with (
        background.serve("echo", lambda a: EchoServer(a, Echo)) as echo,
        faults.serve_proxy("proxy", echo, Faults(delay=0.01)) as proxy,
    ):
        panel = FaultPanel(proxy)
        assert panel.controls["delay"].value == pytest.approx(0.01)
        panel.controls["drop"].value = 0.5
        assert proxy.faults.drop == 0.5
        panel.controls["direction"].value = "request"
        panel.controls["seed"].value = 9
        assert proxy.faults == Faults(delay=0.01, drop=0.5, direction="request", seed=9)
        assert "drop 50%" in panel.message.value
        with socket.create_connection(proxy.address, timeout=2) as sock:
            panel.controls["drop"].value = 0.0
            framing.send_frame(sock, b"{}")
            assert framing.recv_frame(sock) == b"{}"
        panel.refresh()
        assert "1 forwarded" in panel.stats.value


def test_fault_panel_shows_refusals_and_disables_drop_in_bytes_mode():
    proxy = FakeProxy(mode="bytes")
    panel = FaultPanel(proxy)
    assert panel.controls["drop"].disabled and panel.controls["duplicate"].disabled
    panel.controls["reset"].value = 0.2
    assert proxy.faults.reset == 0.2
    panel.controls[
        "duplicate"
    ].value = 0.5  # disabled in the UI, but set from code: refused, explained
    assert proxy.faults.duplicate == 0.0
    assert "need mode=&#x27;frames&#x27;" in panel.message.value


def test_fault_panel_runs_calls_and_shows_the_tally():
    answers = iter([1, TimeoutError("lost")])

    def one_call():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    panel = FaultPanel(FakeProxy(), run=one_call, n=2)
    summary = panel.run_calls()
    assert (summary.succeeded, summary.timeouts) == (1, 1)
    assert "1 succeeded" in panel.result.value and "TimeoutError: lost" in panel.result.value


def test_wire_inspector_shows_frames_and_switches_to_hex():
    recorder = wiretap.Recorder()
    inspector = WireInspector(recorder)
    assert "No frames yet" in inspector.table.value
    recorder.on_frame("sent", REQUEST)
    recorder.on_frame("received", REPLY)
    inspector.refresh()
    as_json = inspector.table.value
    assert "&quot;method&quot;: &quot;add&quot;" in as_json and "→" in as_json and "←" in as_json
    inspector.hex_toggle.value = True
    assert inspector.table.value != as_json
    assert "00000000: 7b22 6a73" in inspector.table.value
    assert "2 frames" in inspector.count.value
    inspector.clear_button.click()
    assert len(recorder) == 0 and "No frames yet" in inspector.table.value


def test_wire_inspector_records_a_proxy_tap():
    recorder = wiretap.Recorder()
    with (
        background.serve("echo", lambda a: EchoServer(a, Echo)) as echo,
        faults.serve_proxy("proxy", echo, on_frame=recorder.on_frame) as proxy,
    ):
        with socket.create_connection(proxy.address, timeout=2) as sock:
            framing.send_frame(sock, REQUEST)
            assert framing.recv_frame(sock) == REQUEST
    inspector = WireInspector(recorder)
    assert [f.direction for f in recorder.frames()] == ["request", "reply"]
    assert inspector.table.value.count("&quot;add&quot;") == 2


def test_fault_panel_says_when_its_proxy_was_stopped():
    from rpclab import faults
    from rpclab.widgets.fault_panel import FaultPanel

    upstream = socket.create_server(("127.0.0.1", 0))
    try:
        proxy = faults.serve_proxy("panel-stopped", target=upstream.getsockname())
        calls = []
        panel = FaultPanel(proxy, run=lambda: calls.append(1))
        proxy.stop()
        assert panel.run_calls() is None
        assert "proxy is stopped" in panel.result.value and not calls
    finally:
        upstream.close()
