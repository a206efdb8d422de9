"""timing, latency, anatomy, plots and the latency explorer: the measuring tools of notebook 01."""

from __future__ import annotations

import math
import socket

import pytest
from matplotlib.figure import Figure

from rpclab.kv import KVStore
from rpclab.lab import anatomy, plots
from rpclab.lab.latency import PRESETS, estimate
from rpclab.lab.timing import Timing, format_seconds, time_calls
from rpclab.widgets.latency_explorer import LatencyExplorer, render


def test_time_calls_is_bounded_by_count():
    calls = []
    timing = time_calls(lambda: calls.append(1), max_calls=50, max_seconds=10, warmup=2)
    assert timing.calls == 50 and len(calls) == 52


def test_time_calls_is_bounded_by_time():
    clock_hits = []
    timing = time_calls(lambda: clock_hits.append(1), max_calls=10**9, max_seconds=0.05)
    assert 1 <= timing.calls < 10**9


def test_batch_divides_each_sample():
    timing = time_calls(lambda: None, batch=100, max_calls=5)
    assert timing.calls == 5 and timing.batch == 100


def test_a_batched_timing_says_its_figures_are_of_batch_means():
    one = Timing((1e-6, 2e-6, 3e-6))
    assert str(one) == "median 2 µs, p99 3 µs over 3 calls"
    batched = Timing((1e-6,) * 200, batch=1000)
    assert str(batched) == "median 1 µs, p99 1 µs of 200 means of 1,000 calls each (200,000 calls)"


def test_timing_statistics():
    t = Timing(tuple(float(i) for i in range(1, 101)))
    assert t.median == 50.5
    assert t.p99 == 100.0
    assert t.per_second == pytest.approx(1 / 50.5)


def test_time_calls_refuses_nonsense():
    with pytest.raises(ValueError):
        time_calls(lambda: None, max_calls=0)


@pytest.mark.parametrize(
    "seconds, text",
    [
        (50e-9, "50 ns"),
        (1.5e-6, "1.5 µs"),
        (0.0419, "41.9 ms"),
        (2.5, "2.5 s"),
        (150, "2.5 min"),
        (7200, "2 h"),
        (-0.001, "-1 ms"),
    ],
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_estimate_sequential_and_in_flight():
    e = estimate(0.04, 100)
    assert e.total == pytest.approx(4.0) and e.per_second == pytest.approx(25)
    overlapped = estimate(0.04, 100, in_flight=16)
    assert overlapped.total == pytest.approx(7 * 0.04)  # ceil(100 / 16) rounds
    assert overlapped.per_second == pytest.approx(400)
    assert estimate(0.01, 10, service=0.01).total == pytest.approx(0.2)
    assert "100 calls one after another" in e.summary() and "4 s in all" in e.summary()


def test_estimate_edge_cases():
    assert estimate(0.0, 5).per_second == math.inf
    assert estimate(0.1, 0).total == 0
    assert estimate(0.1, 1).summary().startswith("1 call one after another")
    for kwargs in (
        {"rtt": -1, "calls": 1},
        {"rtt": 1, "calls": -1},
        {"rtt": 1, "calls": 1, "in_flight": 0},
    ):
        with pytest.raises(ValueError):
            estimate(**kwargs)


def test_latency_explorer_reacts_to_its_controls():
    explorer = LatencyExplorer(rtt=50e-6, calls=1000)
    first = explorer.answer.value
    assert first == render(50e-6, 1000)
    explorer.rtt.value = 0.08
    assert "80 ms each" in explorer.answer.value
    explorer.presets.value = PRESETS["across an ocean"]
    assert "150 ms each" in explorer.answer.value
    explorer.in_flight.value = 10
    assert "10 at a time" in explorer.answer.value


def test_anatomy_traces_a_real_call_in_order():
    store = KVStore()
    tracer = anatomy.CallTracer(store)
    try:
        call = tracer.call("increment", "n", 5)
    finally:
        tracer.stop()
    assert call.result == 5 and store.get("n") == "5"
    assert b"<methodName>increment</methodName>" in call.request and b"<int>5</int>" in call.reply
    assert [s.name for s in call.steps] == list(anatomy.STEPS)
    assert all(s.end >= s.start for s in call.steps)
    assert all(a.end == b.start for a, b in zip(call.steps, call.steps[1:], strict=False))
    assert call.total > 0


def test_plots_make_figures_and_refuse_bad_data():
    figure = plots.log_bars({"a": 1e-6, "b": 1e-3})
    assert isinstance(figure, Figure)
    assert figure._repr_png_().startswith(b"\x89PNG")  # shows itself in a notebook without pyplot
    with pytest.raises(ValueError):
        plots.log_bars({"a": 0})
    steps = [
        anatomy.Step("client stub: marshal", 0.0, 1e-6),
        anatomy.Step("server: procedure", 1e-6, 3e-6),
    ]
    assert isinstance(plots.call_timeline(steps), Figure)
    with pytest.raises(ValueError):
        plots.call_timeline([])


def test_the_tracer_keeps_its_connection_and_opens_a_new_one_when_the_server_drops_it():
    store = KVStore()
    tracer = anatomy.CallTracer(store)
    try:
        first, second = tracer.call("put", "k", "v"), tracer.call("get", "k")
        assert first.connected and not second.connected and second.result == "v"
        tracer._conn.sock.shutdown(socket.SHUT_RDWR)  # as if the server had closed it
        third = tracer.call("get", "k")
        assert third.connected and third.result == "v"
    finally:
        tracer.stop()


def test_linear_bars_start_at_zero_and_label_each_value():
    figure = plots.bars({"json": 3e-6, "struct": 1e-6}, label=lambda v: f"{v * 1e6:.1f} µs")
    ax = figure.axes[0]
    assert ax.get_xscale() == "linear" and ax.get_xlim()[0] == 0
    assert [t.get_text().strip() for t in ax.texts] == ["3.0 µs", "1.0 µs"]
    with pytest.raises(ValueError):
        plots.bars({"a": -1.0})
