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

