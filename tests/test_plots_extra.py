"""Plot functions added to rpclab.plots for later notebooks: each returns a Figure that renders as PNG."""

from __future__ import annotations

import pytest

from rpclab import plots


def test_calls_per_server_draws_one_panel_per_group_with_labelled_bars():
    fig = plots.calls_per_server({"round_robin": {"a": 10, "b": 10, "c": 10}, "pick_first": {"a": 30, "b": 0, "c": 0}})
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
    fig = plots.rate_bars({"1 connection": {"raw": 30000.4, "socketrpc": 9000}, "8 connections": {"raw": 25000, "socketrpc": 11000}},
                          title="round trips per second")
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



# --------------------------------------------------------------------------- span_timeline (notebook 14)


class _Span:
    def __init__(self, span_id, parent_id, service, start, end, kind="server", status="OK", label=None):
        self.span_id, self.parent_id, self.service = span_id, parent_id, service
        self.start, self.end, self.kind, self.status = start, end, kind, status
        self.label = label or f"{service} {span_id}"


def _trace(status="OK"):
    return [
        _Span("c2", "s1", "orders", 0.012, 0.040, status=status),   # listed out of order on purpose
        _Span("s1", None, "gateway", 0.010, 0.050, status=status),
        _Span("c1", "s1", "gateway", 0.011, 0.045, kind="client", status=status, label="gateway → Orders.Create"),
    ]


def test_span_timeline_draws_one_row_per_span_in_tree_order_indented():
    fig = plots.span_timeline(_trace())
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["gateway s1", "  gateway → Orders.Create", "  orders c2"]
    bars = ax.patches
    assert len(bars) == 3
    assert bars[0].get_x() == 0 and abs(bars[0].get_width() - 40) < 1e-6  # milliseconds from the first start
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
