"""Plot functions added to rpclab.lab.plots for later notebooks: each returns a Figure that renders
as PNG."""

from __future__ import annotations

import pytest

from rpclab.lab import plots


def test_calls_per_server_draws_one_panel_per_group_with_labelled_bars():
    fig = plots.calls_per_server(
        {"round_robin": {"a": 10, "b": 10, "c": 10}, "pick_first": {"a": 30, "b": 0, "c": 0}}
    )
    assert len(fig.axes) == 2
    assert [a.get_title() for a in fig.axes] == ["round_robin", "pick_first"]
    assert [t.get_text() for t in fig.axes[1].texts] == ["30", "0", "0"]
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_calls_per_server_refuses_empty_or_negative_counts():
    with pytest.raises(ValueError):
        plots.calls_per_server({})
    with pytest.raises(ValueError):
        plots.calls_per_server({"x": {}})
    with pytest.raises(ValueError):
        plots.calls_per_server({"x": {"a": -1}})


def test_stream_progress_draws_produced_and_consumed_per_run():
    samples = [(0.0, 1, 0), (0.1, 5, 1), (0.2, 6, 2)]
    fig = plots.stream_progress({"default": samples, "small window": samples[:2]})
    assert len(fig.axes) == 2
    produced, consumed = fig.axes[0].get_lines()[:2]
    assert list(produced.get_ydata()) == [1, 5, 6]
    assert list(consumed.get_ydata()) == [0, 1, 2]
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_stream_progress_refuses_a_run_without_samples():
    with pytest.raises(ValueError):
        plots.stream_progress({"empty": []})


def test_rate_bars_draws_one_panel_per_group_with_each_rate_written_on_its_bar():
    fig = plots.rate_bars(
        {
            "1 connection": {"raw": 30000.4, "socketrpc": 9000},
            "8 connections": {"raw": 25000, "socketrpc": 11000},
        },
        title="round trips per second",
    )
    assert [a.get_title() for a in fig.axes] == ["1 connection", "8 connections"]
    assert [t.get_text().strip() for t in fig.axes[0].texts] == ["30,000", "9,000"]
    assert [tick.get_text() for tick in fig.axes[1].get_yticklabels()] == ["raw", "socketrpc"]
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_rate_bars_refuses_empty_groups_or_negative_rates():
    with pytest.raises(ValueError):
        plots.rate_bars({})
    with pytest.raises(ValueError):
        plots.rate_bars({"x": {}})
    with pytest.raises(ValueError):
        plots.rate_bars({"x": {"raw": -1.0}})


# ---------------------------------------------------------------------- span_timeline (notebook 15)


class _Span:
    def __init__(
        self, span_id, parent_id, service, start, end, kind="server", status="OK", label=None
    ):
        self.span_id, self.parent_id, self.service = span_id, parent_id, service
        self.start, self.end, self.kind, self.status = start, end, kind, status
        self.label = label or f"{service} {span_id}"


def _trace(status="OK"):
    return [
        _Span("c2", "s1", "orders", 0.012, 0.040, status=status),  # listed out of order on purpose
        _Span("s1", None, "gateway", 0.010, 0.050, status=status),
        _Span(
            "c1",
            "s1",
            "gateway",
            0.011,
            0.045,
            kind="client",
            status=status,
            label="gateway → Orders.Create",
        ),
    ]


def test_span_timeline_draws_one_row_per_span_in_tree_order_indented():
    fig = plots.span_timeline(_trace())
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["gateway s1", "  gateway → Orders.Create", "  orders c2"]
    bars = ax.patches
    assert len(bars) == 3
    assert (
        bars[0].get_x() == 0 and abs(bars[0].get_width() - 40) < 1e-6
    )  # milliseconds from the first start
    assert bars[1].get_alpha() < 1 and bars[0].get_alpha() in (None, 1.0)  # a client span is pale
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_span_timeline_marks_failures_and_the_deadline():
    fig = plots.span_timeline(_trace(status="DEADLINE_EXCEEDED"), deadline=0.035)
    ax = fig.axes[0]
    assert all("DEADLINE_EXCEEDED" in t.get_text() for t in ax.texts)
    deadline_lines = [line for line in ax.get_lines() if list(line.get_xdata()) == [35.0, 35.0]]
    assert len(deadline_lines) == 1
    calm = plots.span_timeline(_trace())
    assert not any("DEADLINE" in t.get_text() for t in calm.axes[0].texts)


def test_span_timeline_refuses_no_spans_or_a_bad_deadline():
    with pytest.raises(ValueError):
        plots.span_timeline([])
    with pytest.raises(ValueError):
        plots.span_timeline(_trace(), deadline=0)


# -------------------------------------------------------------------- performance lab (notebook 13)


def test_latency_bars_draw_medians_with_whiskers_to_the_99th_percentile():
    fig = plots.latency_bars({"raw": (20e-6, 50e-6), "grpc": (500e-6, 4e-3)})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["raw", "grpc"]
    assert [round(bar.get_width(), 9) for bar in ax.patches] == [20e-6, 500e-6]
    assert ax.get_xscale() == "log"
    assert [t.get_text().strip() for t in ax.texts] == ["20 µs  (p99 50 µs)", "500 µs  (p99 4 ms)"]
    whiskers = ax.collections[0].get_segments()  # from each median to its p99
    assert [(seg[0][0], seg[1][0]) for seg in whiskers] == [(20e-6, 50e-6), (500e-6, 4e-3)]
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_latency_bars_refuse_empty_or_impossible_latencies():
    for bad in ({}, {"x": (0.0, 1.0)}, {"x": (2e-3, 1e-3)}):
        with pytest.raises(ValueError):
            plots.latency_bars(bad)


def test_payload_sweep_draws_time_and_rate_on_log_log_axes_with_byte_labels():
    fig = plots.payload_sweep(
        {"raw": {16: 20e-6, 1 << 20: 500e-6}, "grpc": {16: 500e-6, 1024: 510e-6, 1 << 20: 5e-3}},
        baseline="raw",
    )
    time_ax, rate_ax = fig.axes[:2]
    assert (
        time_ax.get_xscale()
        == rate_ax.get_xscale()
        == "log"
        == time_ax.get_yscale()
        == rate_ax.get_yscale()
    )
    assert [t.get_text() for t in time_ax.get_xticklabels()] == ["16 B", "1 KiB", "1 MiB"]
    raw, grpc = time_ax.get_lines()
    assert list(grpc.get_xdata()) == [16, 1024, 1 << 20] and list(grpc.get_ydata()) == [
        500e-6,
        510e-6,
        5e-3,
    ]
    assert raw.get_linestyle() == "--" and grpc.get_linestyle() == "-"
    assert rate_ax.get_lines()[0].get_ydata()[1] == pytest.approx(
        2 * 2**20 / 500e-6 / 2**20
    )  # MiB/s both ways
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_payload_sweep_refuses_empty_series_and_non_positive_points():
    for bad in ({}, {"x": {}}, {"x": {16: 0.0}}, {"x": {0: 1e-3}}):
        with pytest.raises(ValueError):
            plots.payload_sweep(bad)


def test_stacked_bars_stack_each_rows_parts_in_microseconds_with_one_colour_per_part():
    fig = plots.stacked_bars(
        {
            "socketrpc, client": {"socket": 30e-6, "JSON": 5e-6, "rest": 10e-6},
            "raw, client": {"socket": 20e-6, "rest": 2e-6},
        }
    )
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["socketrpc, client", "raw, client"]
    lefts = [(round(b.get_x(), 6), round(b.get_width(), 6)) for b in ax.patches]
    assert lefts == [
        (0, 30),
        (0, 20),
        (30, 5),
        (20, 0),
        (35, 10),
        (20, 2),
    ]  # part by part, a missing part is 0
    assert len({b.get_facecolor() for b in ax.patches}) == 3
    assert [t.get_text().strip() for t in ax.texts] == ["45", "22"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["socket", "JSON", "rest"]
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_stacked_bars_refuse_empty_rows_or_negative_parts():
    for bad in ({}, {"x": {}}, {"x": {"a": -1.0}}):
        with pytest.raises(ValueError):
            plots.stacked_bars(bad)


def test_latency_cdf_draws_one_step_line_per_series_rising_to_one():
    fig = plots.latency_cdf({"raw": [10e-6, 20e-6, 30e-6, 40e-6], "grpc": [1e-3, 2e-3]})
    ax = fig.axes[0]
    raw, grpc = ax.get_lines()[:2]
    assert list(raw.get_xdata()) == [10e-6, 20e-6, 30e-6, 40e-6]
    assert list(raw.get_ydata()) == [0.25, 0.5, 0.75, 1.0]
    assert list(grpc.get_ydata()) == [0.5, 1.0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "raw (4 calls)",
        "grpc (2 calls)",
    ]
    assert fig._repr_png_().startswith(b"\x89PNG")
    assert plots.latency_cdf({"x": [1e-3]}, log=False).axes[0].get_xscale() == "linear"


def test_latency_cdf_tail_panel_shows_the_share_slower_on_a_log_scale():
    fig = plots.latency_cdf({"raw": [10e-6, 20e-6, 30e-6, 40e-6]}, tail=True)
    assert len(fig.axes) == 2
    slow = fig.axes[1]
    (line,) = slow.get_lines()[:1]
    assert list(line.get_xdata()) == [10e-6, 20e-6, 30e-6]
    assert list(line.get_ydata()) == [0.75, 0.5, 0.25]  # longer than each time
    assert slow.get_yscale() == "log" and slow.get_xscale() == "log"
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_latency_cdf_refuses_empty_series_and_non_positive_latencies():
    for bad in ({}, {"x": []}, {"x": [0.0]}):
        with pytest.raises(ValueError):
            plots.latency_cdf(bad)


def test_load_curve_draws_open_loop_lines_and_labelled_closed_loop_points():
    fig = plots.load_curve(
        {"mean": [(200, 3e-3), (100, 2e-3)]},
        {"mean": [(90, 2e-3, "1 caller"), (150, 8e-3, "4 callers")]},
    )
    ax = fig.axes[0]
    opened, closed = ax.get_lines()
    assert list(opened.get_xdata()) == [100, 200]  # in order of rate
    assert list(closed.get_xdata()) == [90, 150] and closed.get_linestyle() == "None"
    assert [t.get_text() for t in ax.texts] == ["1 caller", "4 callers"]
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0  # the hockey stick, unflattened
    assert ax.get_xscale() == "linear"
    assert fig._repr_png_().startswith(b"\x89PNG")
    assert plots.load_curve({"mean": [(1, 1e-3)]}, log=True).axes[0].get_yscale() == "log"


def test_load_curve_refuses_empty_series_and_impossible_points():
    for bad in ({}, {"x": []}, {"x": [(-1, 1e-3)]}, {"x": [(10, 0.0)]}):
        with pytest.raises(ValueError):
            plots.load_curve(bad)


# ---------------------------------------------------------------------- notebook 14


def test_rounds_strip_shows_every_round_and_labels_the_median():
    fig = plots.rounds_strip({"Flight": [900.0, 1000.0, 1200.0], "JSON": [15.0, 20.0]})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "a dot per round" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Flight", "JSON"]
    assert {t.get_text() for t in ax.texts} == {"1,000 MB/s", "17.5 MB/s"}
    fig.canvas.draw()  # the ticks: 1, 2 and 5 times each power of ten, as plain numbers
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "20" in labels and "1,000" in labels and not any("10^" in t or "×" in t for t in labels)
    low, high = ax.get_xlim()
    assert 15.0 / 2 < low < 15.0 and 1200.0 < high < 1200.0 * 2  # the axis fits the data
    assert fig._repr_png_().startswith(b"\x89PNG")
    with pytest.raises(ValueError):
        plots.rounds_strip({"x": []})
    with pytest.raises(ValueError):
        plots.rounds_strip({"x": [0.0]})


def test_latency_timeline_draws_a_panel_per_run_with_the_budget():
    runs = {
        "quiet": {"latency": ([0.0, 0.001], [0.0003, 0.0004])},
        "slow": {"held back": ([0.0], [0.01]), "in transit": ([0.0], [0.002])},
    }
    fig = plots.latency_timeline(runs, budget=0.002)
    assert len(fig.axes) == 2 and fig.axes[1].get_xlabel().startswith("seconds since")
    assert [line.get_label() for line in fig.axes[1].lines] == ["held back", "in transit", "budget"]
    assert fig.axes[0].lines[-1].get_ydata()[0] == pytest.approx(2.0)  # the budget, in ms
    for ax in fig.axes:  # the legend sits right of the panel, clear of the curves' ends
        legend = ax.get_legend()
        assert legend.get_bbox_to_anchor().x0 >= ax.bbox.x1
    with pytest.raises(ValueError):
        plots.latency_timeline({})


def test_latency_timeline_on_a_log_scale_shares_it_between_panels_and_skips_zeros():
    runs = {
        "slow": {"every": ([0.0, 0.001], [0.0005, 0.9])},
        "pause": {"catch up": ([0.0, 0.001, 0.002], [0.0, 0.0004, 0.3])},
    }
    fig = plots.latency_timeline(runs, budget=0.002, log=True)
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log"]
    assert fig.axes[0].get_ylim() == fig.axes[1].get_ylim()  # panels side by side compare
    assert list(fig.axes[1].lines[0].get_ydata()) == pytest.approx([0.4, 300.0])
    assert fig.axes[0].get_ylabel() == "ms (log scale)"


def test_stream_progress_draws_the_credit_granted_where_given():
    samples = [(0.0, 1, 0), (0.1, 5, 1), (0.2, 6, 2)]
    fig = plots.stream_progress(
        {"a": samples, "b": samples}, credit={"b": [(0.0, 4.0), (0.15, 7.0)]}
    )
    assert len(fig.axes[0].get_lines()) == 2
    credit = fig.axes[1].get_lines()[2]
    assert list(credit.get_ydata()) == [4.0, 7.0, 7.0] and credit.get_linestyle() == "--"
    assert [t.get_text() for t in fig.legends[0].get_texts()][-1] == "credit granted by the client"


def test_stream_progress_gives_each_run_its_own_scale():
    fig = plots.stream_progress(
        {"big": [(0.0, 0, 0), (0.1, 400, 1)], "small": [(0.0, 0, 0), (0.1, 6, 1)]}
    )
    big, small = fig.axes
    assert big.get_ylim()[1] >= 400 and small.get_ylim()[1] < 10


def test_time_bars_use_a_linear_axis_from_zero():
    fig = plots.time_bars({"gRPC": 400e-6, "XML-RPC": 580e-6}, title="t")
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear" and ax.get_xlim()[0] == 0
    assert [t.get_text().strip() for t in ax.texts] == ["400 µs", "580 µs"]
    with pytest.raises(ValueError):
        plots.time_bars({"zero": 0})
