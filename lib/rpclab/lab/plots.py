"""Plots of measurements, drawn on matplotlib Figures that display themselves in a notebook.

Used in notebooks 01, 03, 05, 07, 08, 09, 12, 13, 14 and 15. About 680 lines of independent plot
functions, one per kind of figure, sharing one drawing style.

They use ``matplotlib.figure.Figure`` rather than pyplot, so a figure shows
once (as a cell's value) and leaves no global state behind.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Callable, Mapping, Sequence

from matplotlib.figure import Figure as _MatplotlibFigure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, StrMethodFormatter

from rpclab.lab.timing import format_seconds

__all__ = [
    "Figure",
    "bars",
    "log_bars",
    "call_timeline",
    "calls_per_server",
    "stream_progress",
    "rate_bars",
    "span_timeline",
    "latency_bars",
    "payload_sweep",
    "stacked_bars",
    "rounds_strip",
    "latency_timeline",
    "latency_cdf",
    "load_curve",
    "time_bars",
]


class Figure(_MatplotlibFigure):
    """A matplotlib Figure that draws itself as PNG when it is a cell's value (no pyplot needed)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def bars(
    values: Mapping[str, float],
    *,
    title: str = "",
    unit_label: str = "seconds per call",
    label: Callable[[float], str] = format_seconds,
) -> Figure:
    """Horizontal bars on a linear scale from zero, each labelled (``label(value)``): for values
    within a decade or so of each other, where a log scale would exaggerate small differences."""
    if not values or any(v < 0 for v in values.values()):
        raise ValueError("bars needs at least one value, none below zero")
    fig = Figure(figsize=(7, 0.6 + 0.55 * len(values)), layout="constrained")
    ax = fig.add_subplot()
    names, numbers = list(values), list(values.values())
    ax.barh(names, numbers, color="#4c72b0")
    ax.invert_yaxis()
    ax.set_xlabel(unit_label)
    if title:
        ax.set_title(title)
    for y, v in enumerate(numbers):
        ax.text(v, y, "  " + label(v), va="center")
    ax.set_xlim(0, max(max(numbers), 1e-12) * 1.3)  # room on the right for the labels
    return fig


def log_bars(
    values: Mapping[str, float],
    *,
    title: str = "",
    unit_label: str = "seconds per call (log scale)",
) -> Figure:
    """Horizontal bars on a log scale, each labelled with its value in a readable unit."""
    if not values or any(v <= 0 for v in values.values()):
        raise ValueError("log_bars needs at least one value, all above zero")
    fig = Figure(figsize=(7, 0.6 + 0.55 * len(values)), layout="constrained")
    ax = fig.add_subplot()
    names, numbers = list(values), list(values.values())
    ax.barh(names, numbers, color="#4c72b0")
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel(unit_label)
    if title:
        ax.set_title(title)
    for y, v in enumerate(numbers):
        ax.text(v, y, "  " + format_seconds(v), va="center")
    ax.set_xlim(min(numbers) / 3, max(numbers) * 30)
    return fig


def call_timeline(
    steps: Sequence[object], *, title: str = "one remote call, step by step"
) -> Figure:
    """A Gantt-style timeline of a call's steps (objects with ``name``, ``start`` and ``end``)."""
    if not steps:
        raise ValueError("call_timeline needs at least one step")
    t0 = min(s.start for s in steps)  # type: ignore[attr-defined]
    fig = Figure(figsize=(8, 0.6 + 0.4 * len(steps)), layout="constrained")
    ax = fig.add_subplot()
    for y, step in enumerate(steps):
        start_us = (step.start - t0) * 1e6  # type: ignore[attr-defined]
        width_us = max((step.end - step.start) * 1e6, 0.5)  # type: ignore[attr-defined]
        side = (
            "client"
            if step.name.startswith("client")
            else "server"
            if "server" in step.name
            else "wire"
        )  # type: ignore[attr-defined]
        color = {"client": "#4c72b0", "server": "#dd8452", "wire": "#8c8c8c"}[side]
        ax.barh(y, width_us, left=start_us, color=color)
        ax.text(
            start_us + width_us, y, " " + format_seconds(width_us / 1e6), va="center", fontsize=8
        )
    ax.set_yticks(range(len(steps)), [s.name for s in steps])  # type: ignore[attr-defined]
    ax.invert_yaxis()
    ax.set_xlabel("microseconds since the call began")
    ax.set_title(title)
    return fig


def calls_per_server(
    groups: Mapping[str, Mapping[str, int]], *, title: str = "calls per server"
) -> Figure:
    """Bars of how many calls each server received, one panel per way of spreading them (e.g. per LB
    policy)."""
    if not groups or any(not counts for counts in groups.values()):
        raise ValueError("calls_per_server needs at least one group, each with at least one server")
    if any(v < 0 for counts in groups.values() for v in counts.values()):
        raise ValueError("call counts cannot be negative")
    fig = Figure(figsize=(min(3.2 * len(groups), 12), 2.8), layout="constrained")
    axes = fig.subplots(1, len(groups), sharey=True, squeeze=False)[0]
    top = max(max(counts.values()) for counts in groups.values())
    for ax, (label, counts) in zip(axes, groups.items(), strict=False):
        names, numbers = list(counts), list(counts.values())
        ax.bar(names, numbers, color="#4c72b0")
        for x, v in enumerate(numbers):
            ax.text(x, v, str(v), ha="center", va="bottom")
        ax.set_title(label)
        ax.set_ylim(0, max(top, 1) * 1.2)
        ax.tick_params(axis="x", labelrotation=0)
    axes[0].set_ylabel("calls received")
    fig.suptitle(title)
    return fig


def stream_progress(
    runs: Mapping[str, Sequence[tuple[float, int, int]]],
    *,
    title: str = "a server stream read slowly",
    credit: Mapping[str, Sequence[tuple[float, float]]] | None = None,
) -> Figure:
    """Messages produced by the server and consumed by the client over time, one panel per run.

    Each run is a sequence of ``(seconds, produced, consumed)`` samples; the
    shaded gap between the lines is what sits in buffers and flow-control windows.
    ``credit`` (optional, by run label) is ``(seconds, messages)`` steps: how many messages the
    flow-control credit the client had granted by then would hold, drawn dashed. Each panel has
    its own y-axis: runs whose windows differ a hundredfold stay readable side by side.
    """
    if not runs or any(len(samples) == 0 for samples in runs.values()):
        raise ValueError("stream_progress needs at least one run, each with at least one sample")
    fig = Figure(figsize=(min(4.5 * len(runs), 12), 3.6), layout="constrained")
    axes = fig.subplots(1, len(runs), squeeze=False)[0]
    for ax, (label, samples) in zip(axes, runs.items(), strict=False):
        seconds = [s[0] for s in samples]
        produced = [s[1] for s in samples]
        consumed = [s[2] for s in samples]
        ax.step(seconds, produced, where="post", color="#dd8452", label="produced by the server")
        ax.step(seconds, consumed, where="post", color="#4c72b0", label="consumed by the client")
        ax.fill_between(seconds, consumed, produced, step="post", color="#dd8452", alpha=0.15)
        steps = (credit or {}).get(label)
        if steps:
            ax.step(
                [t for t, _ in steps] + [seconds[-1]],
                [m for _, m in steps] + [steps[-1][1]],
                where="post",
                color="#55a868",
                linestyle="--",
                label="credit granted by the client",
            )
        ax.set_title(label)
        ax.set_xlabel("seconds since the call began")
        ax.set_ylabel("messages")
        ax.set_ylim(bottom=0)
    handles = {}
    for ax in axes:
        handles.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    fig.legend(
        list(handles.values()), list(handles), loc="outside lower center", ncols=3, fontsize=9
    )
    fig.suptitle(title)
    return fig


def rate_bars(
    groups: Mapping[str, Mapping[str, float]], *, title: str = "", unit: str = "calls per second"
) -> Figure:
    """Rates (calls per second, say) as horizontal bars, one panel per group sharing one scale, each
    bar labelled."""
    if not groups or any(not rates for rates in groups.values()):
        raise ValueError("rate_bars needs at least one group, each with at least one rate")
    if any(v < 0 for rates in groups.values() for v in rates.values()):
        raise ValueError("rates cannot be negative")
    rows = max(len(rates) for rates in groups.values())
    fig = Figure(figsize=(min(4.2 * len(groups), 12), 1.6 + 0.5 * rows), layout="constrained")
    axes = fig.subplots(1, len(groups), sharex=True, squeeze=False)[0]
    top = max(max(rates.values()) for rates in groups.values())
    for ax, (label, rates) in zip(axes, groups.items(), strict=False):
        names, numbers = list(rates), list(rates.values())
        ax.barh(names, numbers, color="#4c72b0")
        for y, v in enumerate(numbers):
            ax.text(v, y, f" {v:,.0f}", va="center", fontsize=9)
        ax.invert_yaxis()
        ax.set_title(label)
        ax.set_xlim(0, max(top, 1) * 1.3)
        ax.set_xlabel(unit)
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    if title:
        fig.suptitle(title)
    return fig


_SERVICE_COLOURS = (
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
)
_FAILED = "#c44e52"


def span_timeline(
    spans: Sequence[object],
    *,
    deadline: float | None = None,
    title: str = "one request, hop by hop",
) -> Figure:
    """A Gantt chart of one trace: a row per span, indented under its parent, a colour per service.

    Spans are objects with ``span_id``, ``parent_id``, ``service``, ``start`` and
    ``end`` (seconds), and optionally ``kind`` ("server": solid bar; "client":
    pale bar, the caller waiting), ``status`` (anything but "OK" is written in
    red after the bar) and ``label``. ``deadline``: seconds after the first
    span's start, drawn as a dashed line.
    """
    from rpclab.lab.tracing import (
        tree,
    )  # pure; imported here so that plots does not pull in grpc for other figures

    if not spans:
        raise ValueError("span_timeline needs at least one span")
    if deadline is not None and not deadline > 0:
        raise ValueError(
            "deadline is seconds after the first span started, and must be above zero, not "
            f"{deadline!r}"
        )
    rows = tree(spans)
    t0 = min(s.start for s in spans)  # type: ignore[attr-defined]
    colours: dict[str, str] = {}
    for _, span in rows:
        colours.setdefault(span.service, _SERVICE_COLOURS[len(colours) % len(_SERVICE_COLOURS)])
    labels = [
        "  " * depth
        + str(getattr(span, "label", None) or f"{span.service}: {getattr(span, 'method', '')}")
        for depth, span in rows
    ]
    fig = Figure(figsize=(9, 1.3 + 0.32 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    right = max(s.end for s in spans) - t0  # type: ignore[attr-defined]
    any_failed = False
    for y, (_, span) in enumerate(rows):
        start_ms, width_ms = (span.start - t0) * 1000, max((span.end - span.start) * 1000, 0.05)
        client = getattr(span, "kind", "server") == "client"
        ax.barh(
            y,
            width_ms,
            left=start_ms,
            height=0.62,
            color=colours[span.service],
            alpha=0.35 if client else 1.0,
            edgecolor=colours[span.service],
            linewidth=0.8,
        )
        status = getattr(span, "status", "OK")
        failed = status not in ("OK", None, "")
        any_failed = any_failed or failed
        ax.text(
            start_ms + width_ms,
            y,
            f" {format_seconds(span.end - span.start)}" + (f"  {status}" if failed else ""),
            va="center",
            fontsize=8,
            color=_FAILED if failed else "black",
            zorder=3,
            bbox=dict(facecolor="white", edgecolor="none", pad=0.3, alpha=0.85),
        )
    ax.set_yticks(range(len(rows)), labels, family="monospace", fontsize=9, ha="left")
    ax.tick_params(axis="y", length=0, pad=12 + 0.62 * 9 * max(len(label) for label in labels))
    ax.invert_yaxis()
    handles = [
        Patch(facecolor="#8c8c8c", label="serving a call"),
        Patch(facecolor="#8c8c8c", alpha=0.35, label="waiting for the reply to a call it made"),
    ]
    if deadline is not None:
        handles.append(
            ax.axvline(
                deadline * 1000,
                color=_FAILED,
                linestyle="--",
                linewidth=1.2,
                zorder=2,
                label=f"the client's deadline ({format_seconds(deadline)})",
            )
        )
        right = max(right, deadline)
    ax.set_xlim(0, right * 1000 * (1.6 if any_failed else 1.3))
    ax.set_xlabel("milliseconds since the first service received the request")
    ax.set_title(title)
    fig.legend(
        handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize=8
    )
    return fig


# -------------------------------------------------------------------- performance lab (notebook 13)


def latency_bars(
    latencies: Mapping[str, tuple[float, float]],
    *,
    title: str = "time per call: median, whisker to the 99th percentile",
) -> Figure:
    """Horizontal bars of median latencies on a log scale, each with a whisker up to its 99th
    percentile.

    ``latencies`` maps a name to ``(median, p99)`` in seconds.
    """
    if not latencies or any(not 0 < m <= p for m, p in latencies.values()):
        raise ValueError(
            "latency_bars needs at least one (median, p99) pair, with 0 < median <= p99"
        )
    names = list(latencies)
    medians = [m for m, _ in latencies.values()]
    p99s = [p for _, p in latencies.values()]
    fig = Figure(figsize=(7.5, 0.8 + 0.5 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(names, medians, color="#4c72b0", label="median")
    ax.errorbar(
        medians,
        range(len(names)),
        xerr=[[0] * len(names), [p - m for m, p in zip(medians, p99s, strict=False)]],
        fmt="none",
        ecolor="#333333",
        capsize=4,
        linewidth=1,
        label="99th percentile",
    )
    for y, (m, p) in enumerate(zip(medians, p99s, strict=False)):
        ax.text(p, y, f"  {format_seconds(m)}  (p99 {format_seconds(p)})", va="center", fontsize=9)
    ax.set_xscale("log")
    ax.set_xlim(min(medians) / 2, max(p99s) * 25)  # room on the right for the labels
    ax.invert_yaxis()
    ax.set_xlabel("seconds per call (log scale)")
    ax.set_title(title)
    return fig


def _format_bytes(size: float) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.3g} {unit}"
    return f"{size:.0f} B"


def payload_sweep(
    series: Mapping[str, Mapping[int, float]],
    *,
    baseline: str | None = None,
    title: str = "echoing payloads of growing size",
) -> Figure:
    """Two log-log panels over payload size: seconds per echo, and bytes carried per second (both
    directions).

    ``series`` maps a name to ``{payload bytes: seconds per echo}``; the
    ``baseline`` series, if named, is drawn as a dashed black line.
    """
    if not series or any(not points for points in series.values()):
        raise ValueError("payload_sweep needs at least one series, each with at least one point")
    if any(
        size <= 0 or seconds <= 0 for points in series.values() for size, seconds in points.items()
    ):
        raise ValueError("payload sizes and times must be above zero")
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    time_ax, rate_ax = fig.subplots(1, 2)
    sizes = sorted({size for points in series.values() for size in points})
    others = [name for name in series if name != baseline]
    for name, points in series.items():
        xs = sorted(points)
        if name == baseline:
            colour, marker = "black", "o"
        else:
            index = others.index(name)
            colour = _DISTINCT_COLOURS[index % len(_DISTINCT_COLOURS)]
            marker = _MARKERS[index % len(_MARKERS)]
        style = dict(
            marker=marker, color=colour, label=name, linestyle="--" if name == baseline else "-"
        )
        time_ax.plot(xs, [points[x] for x in xs], **style)
        rate_ax.plot(xs, [2 * x / points[x] / 2**20 for x in xs], **style)
    for ax in (time_ax, rate_ax):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [_format_bytes(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel("payload, each way (log scale)")
        ax.grid(True, which="major", alpha=0.3)
    time_ax.set_ylabel("seconds per echo (log scale)")
    time_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_seconds(v)))
    time_ax.set_title("time per echo")
    rate_ax.set_ylabel("MiB/s, both directions (log scale)")
    rate_ax.yaxis.set_major_formatter(
        FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    )
    rate_ax.set_title("payload carried per second")
    fig.legend(*time_ax.get_legend_handles_labels(), loc="outside right center", fontsize=9)
    fig.suptitle(title)
    return fig


# far apart in hue and lightness, for up to eight lines that must be told apart
_DISTINCT_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
)
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

_CATEGORY_COLOURS = (
    "#4c72b0",
    "#dd8452",
    "#c44e52",
    "#8c8c8c",
    "#55a868",
    "#8172b3",
    "#937860",
    "#da8bc3",
)


def stacked_bars(
    rows: Mapping[str, Mapping[str, float]], *, title: str = "where the time of one call goes"
) -> Figure:
    """One horizontal bar per row, split into its parts (seconds, drawn in microseconds), a colour
    per part.

    Every row should name the same parts, in the same order (a missing part counts as 0).
    """
    if not rows or any(not parts for parts in rows.values()):
        raise ValueError("stacked_bars needs at least one row, each with at least one part")
    if any(v < 0 for parts in rows.values() for v in parts.values()):
        raise ValueError("parts cannot be negative")
    labels = list(dict.fromkeys(part for parts in rows.values() for part in parts))
    names = list(rows)
    fig = Figure(figsize=(9, 1.4 + 0.45 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    left = [0.0] * len(names)
    for index, label in enumerate(labels):
        widths = [rows[name].get(label, 0.0) * 1e6 for name in names]
        ax.barh(
            names,
            widths,
            left=left,
            color=_CATEGORY_COLOURS[index % len(_CATEGORY_COLOURS)],
            label=label,
        )
        left = [a + b for a, b in zip(left, widths, strict=False)]
    for y, total in enumerate(left):
        ax.text(total, y, f" {total:,.0f}", va="center", fontsize=9)
    ax.set_xlim(0, max(left) * 1.12 if max(left) > 0 else 1)
    ax.invert_yaxis()
    ax.set_xlabel("microseconds per call")
    ax.set_title(title)
    fig.legend(loc="outside lower center", ncols=min(len(labels), 4), frameon=False, fontsize=9)
    return fig


def rounds_strip(
    groups: Mapping[str, Sequence[float]],
    *,
    unit: str = "MB/s",
    title: str = "",
    log: bool = True,
) -> Figure:
    """Every round of every measurement as a dot, one row per measurement, the median marked
    and labelled: the spread stays in view, not only a summary. Log scale when ``log`` (for
    rates that span decades)."""
    if not groups or any(not values for values in groups.values()):
        raise ValueError("rounds_strip needs at least one group, each with at least one value")
    if any(v <= 0 for values in groups.values() for v in values):
        raise ValueError("rounds_strip plots values above zero")
    names = list(groups)
    fig = Figure(figsize=(8, 1.0 + 0.5 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    top = max(max(values) for values in groups.values())
    for y, name in enumerate(names):
        values = sorted(groups[name])
        median = statistics.median(values)
        ax.scatter(values, [y] * len(values), color="#4c72b0", alpha=0.6, s=22, zorder=3)
        ax.plot([median, median], [y - 0.3, y + 0.3], color="#c44e52", linewidth=2, zorder=4)
        ax.text(
            1.02,
            y,
            f"{median:,.0f} {unit}" if median >= 100 else f"{median:.3g} {unit}",
            va="center",
            fontsize=9,
            transform=ax.get_yaxis_transform(),
            clip_on=False,
        )  # fmt: skip (the median's label, right of the axes)
    if log:
        bottom = min(min(values) for values in groups.values())
        ax.set_xscale("log")
        ax.set_xlim(bottom / 1.3, top * 1.3)  # the data, and a little room
        # ticks at 1, 2 and 5 times each power of ten, labelled as plain numbers (matplotlib's own
        # labels for a range under a few decades, "2x10^0 3x10^0 ...", run into each other)
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_xlim(0, top * 1.1)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"{unit}{' (log scale)' if log else ''}: a dot per round, the bar at the median")
    if title:
        ax.set_title(title)
    return fig


_SERIES_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#8172b3")  # far apart, even as small dots


def latency_timeline(
    runs: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    *,
    budget: float | None = None,
    title: str = "",
    log: bool = False,
) -> Figure:
    """Latency over time, one panel per run, each with its own y scale (milliseconds).

    ``runs`` maps a panel's title to its series: a label -> ``(seconds, latencies)`` pair, both
    in seconds. ``budget`` (seconds) draws the latency budget as a dashed line in every panel.
    ``log`` puts the y axis on a log scale, for series that span decades (then every panel has
    the same scale, so that panels side by side compare). The legend sits right of the panel,
    clear of the data.
    """
    if not runs or any(not series for series in runs.values()):
        raise ValueError("latency_timeline needs at least one run, each with at least one series")
    fig = Figure(figsize=(10, 0.6 + 2.0 * len(runs)), layout="constrained")
    axes = fig.subplots(len(runs), 1, sharex=True, sharey=log, squeeze=False)[:, 0]
    for ax, (label, series) in zip(axes, runs.items(), strict=True):
        for index, (name, (xs, ys)) in enumerate(series.items()):
            points = [(x, y * 1e3) for x, y in zip(xs, ys, strict=True) if y > 0 or not log]
            ax.plot(
                [x for x, _ in points],
                [y for _, y in points],
                ".",
                markersize=2,
                color=_SERIES_COLOURS[index % len(_SERIES_COLOURS)],
                label=name,
            )
        if budget is not None:
            ax.axhline(budget * 1e3, color="black", linestyle="--", linewidth=1, label="budget")
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(label, fontsize=10, loc="left")
        ax.set_ylabel("ms (log scale)" if log else "ms")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, markerscale=4)
    axes[-1].set_xlabel("seconds since the first reading was due")
    if title:
        fig.suptitle(title)
    return fig


def latency_cdf(
    series: Mapping[str, Sequence[float]],
    *,
    title: str = "",
    log: bool = True,
    tail: bool = False,
) -> Figure:
    """The distribution of latencies, one line per series: for each time on the x axis, the share
    of calls that took at most that long (a cumulative distribution). ``series`` maps a name to
    latencies in seconds; ``log`` puts the time axis on a log scale (for series that span
    decades). The median and the 99th percentile are marked with dotted lines.

    ``tail`` adds a second panel for the slow calls: the share of calls that took *longer* than
    each time (the complementary distribution), on a log scale, where 1% and 0.1% are as far
    apart as 10% and 1%."""
    if not series or any(not values for values in series.values()):
        raise ValueError("latency_cdf needs at least one series, each with at least one value")
    if any(v <= 0 for values in series.values() for v in values):
        raise ValueError("latencies must be above zero")
    fig = Figure(figsize=(12, 4.2) if tail else (8.5, 4.2), layout="constrained")
    axes = fig.subplots(1, 2) if tail else [fig.add_subplot()]
    ax = axes[0]
    for index, (name, values) in enumerate(series.items()):
        ordered = sorted(values)
        n = len(ordered)
        colour = _DISTINCT_COLOURS[index % len(_DISTINCT_COLOURS)]
        ax.step(
            ordered, [(i + 1) / n for i in range(n)], where="post", color=colour,
            label=f"{name} ({n:,} calls)",
        )  # fmt: skip
        if tail and n > 1:  # the last call has nothing slower: stop one short of it
            axes[1].step(
                ordered[:-1], [(n - i - 1) / n for i in range(n - 1)], where="post", color=colour
            )
    for share in (0.5, 0.99):
        ax.axhline(share, color="#8c8c8c", linestyle=":", linewidth=1)
        ax.text(
            0.005, share, f"{share:.0%}", va="bottom", fontsize=8,
            transform=ax.get_yaxis_transform(),
        )  # fmt: skip
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("share of calls at most this long")
    ax.legend(loc="lower right", fontsize=8)
    if tail:
        slow = axes[1]
        slow.set_yscale("log")
        slow.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * 100:g}%"))
        for share in (0.5, 0.01, 0.001):
            slow.axhline(share, color="#8c8c8c", linestyle=":", linewidth=1)
        slow.set_ylabel("share of calls longer than this (log scale)")
        slow.set_title("the slow calls: 1% of calls are above the 1% line", fontsize=10)
    for axis in axes:
        if log:
            axis.set_xscale("log")
        axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_seconds(v)))
        axis.set_xlabel(f"time per call{' (log scale)' if log else ''}")
        axis.grid(True, which="major", alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def load_curve(
    open_loop: Mapping[str, Sequence[tuple[float, float]]],
    closed_loop: Mapping[str, Sequence[tuple[float, float, str]]] | None = None,
    *,
    title: str = "latency against load",
    log: bool = False,
) -> Figure:
    """Latency (seconds; log scale when ``log``) against calls per second (linear): each
    open-loop series is ``(offered rate, latency)`` points joined by a line; each closed-loop
    series ``(achieved rate, latency, label)`` points drawn as squares, each labelled (with its
    callers, say), not joined: their rates are measured, so they need not come in order."""
    closed_loop = closed_loop or {}
    everything = [*open_loop.values(), *closed_loop.values()]
    if not everything or any(not points for points in everything):
        raise ValueError("load_curve needs at least one series, each with at least one point")
    if any(p[0] < 0 or p[1] <= 0 for points in everything for p in points):
        raise ValueError("rates cannot be negative and latencies must be above zero")
    fig = Figure(figsize=(8.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    index = 0
    for name, points in open_loop.items():
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, marker="o", color=_CATEGORY_COLOURS[index % 8], label=f"open loop: {name}")
        index += 1
    for name, points in closed_loop.items():
        colour = _CATEGORY_COLOURS[index % 8]
        ax.plot(
            [p[0] for p in points], [p[1] for p in points], marker="s", linestyle="none",
            color=colour, label=f"closed loop: {name}",
        )  # fmt: skip
        for x, y, label in points:
            ax.annotate(
                label, (x, y), textcoords="offset points", xytext=(-6, 6), ha="right",
                fontsize=8, color=colour,
                bbox=dict(facecolor="white", edgecolor="none", pad=0.5, alpha=0.8),
            )  # fmt: skip
        index += 1
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_seconds(v)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlim(left=0)
    ax.set_xlabel("calls per second (open loop: offered; closed loop: achieved)")
    ax.set_ylabel(f"latency{' (log scale)' if log else ''}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title)
    return fig


def time_bars(
    values: Mapping[str, float],
    *,
    title: str = "",
    unit_label: str = "seconds per call",
) -> Figure:
    """Horizontal bars on a LINEAR scale from zero, each labelled with its value in a readable unit.

    For times of the same order (a few hundred microseconds each, say), where a log scale would
    make small differences look large; :func:`log_bars` is for values that span decades.
    """
    if not values or any(v <= 0 for v in values.values()):
        raise ValueError("time_bars needs at least one value, all above zero")
    fig = Figure(figsize=(7, 0.6 + 0.55 * len(values)), layout="constrained")
    ax = fig.add_subplot()
    names, numbers = list(values), list(values.values())
    ax.barh(names, numbers, color="#4c72b0")
    ax.invert_yaxis()
    ax.set_xlabel(unit_label)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_seconds(v) if v else "0"))
    if title:
        ax.set_title(title)
    for y, v in enumerate(numbers):
        ax.text(v, y, "  " + format_seconds(v), va="center")
    ax.set_xlim(0, max(numbers) * 1.3)  # room on the right for the labels
    return fig
