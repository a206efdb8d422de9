"""The latency explorer: pick a round-trip time and a number of calls, see what it costs.

Used in notebook 01.
"""

from __future__ import annotations

import math
from typing import Any

from rpclab.lab.latency import PRESETS, estimate

__all__ = ["LatencyExplorer", "render"]

NO_PRESET = -1.0


def render(rtt: float, calls: int, in_flight: int = 1) -> str:
    """The explorer's answer as HTML (what the widget shows for these control values)."""
    result = estimate(rtt, calls, in_flight=in_flight)
    return f"<p style='font-size:1.1em'>{result.summary()}</p>"


class LatencyExplorer:
    """A log-scale round-trip slider, preset buttons, call count and calls in flight, and the
    answer."""

    def __init__(self, rtt: float = 50e-6, calls: int = 1000, in_flight: int = 1):
        import ipywidgets as w

        self.rtt = w.FloatLogSlider(
            value=rtt,
            base=10,
            min=-8,
            max=0,
            step=0.1,
            description="round trip (s)",
            readout_format=".1e",
            style={"description_width": "initial"},
            layout=w.Layout(width="480px"),
        )
        self.calls = w.BoundedIntText(
            value=calls, min=0, max=10**9, description="calls", layout=w.Layout(width="220px")
        )
        self.in_flight = w.IntSlider(value=in_flight, min=1, max=64, description="in flight")
        # A real option (not None) for "no preset": a Dropdown whose value is None draws blank.
        self.presets = w.Dropdown(
            options=[("choose a preset…", NO_PRESET)] + [(k, v) for k, v in PRESETS.items()],
            value=NO_PRESET,
            description="link",
        )
        self.answer = w.HTML()
        for control in (self.rtt, self.calls, self.in_flight):
            control.observe(self._update, names="value")
        self.presets.observe(self._preset, names="value")
        self.widget = w.VBox(
            [self.presets, self.rtt, w.HBox([self.calls, self.in_flight]), self.answer]
        )
        self._update()

    def _preset(self, change: dict[str, Any]) -> None:
        if change["new"] != NO_PRESET:
            self.rtt.value = max(1e-8, min(1.0, change["new"]))

    def _update(self, change: Any = None) -> None:
        rtt = self.rtt.value if math.isfinite(self.rtt.value) else 0.0
        self.answer.value = render(rtt, int(self.calls.value), int(self.in_flight.value))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
