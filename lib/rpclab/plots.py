"""Plots of measurements, drawn on matplotlib Figures that display themselves in a notebook.

They use ``matplotlib.figure.Figure`` rather than pyplot, so a figure shows
once (as a cell's value) and leaves no global state behind.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import io

from matplotlib.figure import Figure as _MatplotlibFigure

from rpclab.timing import format_seconds

__all__ = ["Figure", "log_bars", "call_timeline"]


class Figure(_MatplotlibFigure):
    """A matplotlib Figure that draws itself as PNG when it is a cell's value (no pyplot needed)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def log_bars(values: Mapping[str, float], *, title: str = "", unit_label: str = "seconds per call (log scale)") -> Figure:
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


def call_timeline(steps: Sequence[object], *, title: str = "one remote call, step by step") -> Figure:
    """A Gantt-style timeline of a call's steps (objects with ``name``, ``start`` and ``end``)."""
    if not steps:
        raise ValueError("call_timeline needs at least one step")
    t0 = min(s.start for s in steps)  # type: ignore[attr-defined]
    fig = Figure(figsize=(8, 0.6 + 0.4 * len(steps)), layout="constrained")
    ax = fig.add_subplot()
    for y, step in enumerate(steps):
        start_us = (step.start - t0) * 1e6  # type: ignore[attr-defined]
        width_us = max((step.end - step.start) * 1e6, 0.5)  # type: ignore[attr-defined]
        side = "client" if step.name.startswith("client") else "server" if "server" in step.name else "wire"  # type: ignore[attr-defined]
        color = {"client": "#4c72b0", "server": "#dd8452", "wire": "#8c8c8c"}[side]
        ax.barh(y, width_us, left=start_us, color=color)
        ax.text(start_us + width_us, y, " " + format_seconds(width_us / 1e6), va="center", fontsize=8)
    ax.set_yticks(range(len(steps)), [s.name for s in steps])  # type: ignore[attr-defined]
    ax.invert_yaxis()
    ax.set_xlabel("microseconds since the call began")
    ax.set_title(title)
    return fig
