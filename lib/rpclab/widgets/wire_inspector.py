"""The wire inspector: a table of every frame a Recorder saw, as JSON or as a hex dump.

Used in notebook 04.
"""

from __future__ import annotations

from typing import Any

from rpclab.lab import wiretap

__all__ = ["WireInspector"]


class WireInspector:
    """Shows ``recorder``'s frames (time, direction, size, payload); "hex" switches JSON to bytes;
    refresh and clear buttons.

    The table is drawn by :func:`rpclab.lab.wiretap.render_html`; the widget only
    wires the controls. Call ``refresh()`` from a cell after making calls.
    """

    def __init__(self, recorder: wiretap.Recorder, hex: bool = False, last: int = 100):
        import ipywidgets as w

        self.recorder = recorder
        self.last = last
        self.hex_toggle = w.Checkbox(
            value=hex, description="hex", indent=False, layout=w.Layout(width="80px")
        )
        self.refresh_button = w.Button(description="refresh", icon="refresh")
        self.clear_button = w.Button(description="clear", icon="trash")
        self.count = w.HTML()
        self.table = w.HTML()
        self.hex_toggle.observe(lambda _: self.refresh(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.clear_button.on_click(lambda _: self.clear())
        self.widget = w.VBox(
            [
                w.HBox([self.refresh_button, self.clear_button, self.hex_toggle, self.count]),
                self.table,
            ]
        )
        self.refresh()

    def refresh(self) -> None:
        """Show the frames recorded so far."""
        frames = self.recorder.frames()
        self.table.value = wiretap.render_html(
            frames, hex=self.hex_toggle.value, start=self.recorder.start, last=self.last
        )
        seen = self.recorder.seen
        kept = f" ({seen - len(frames)} older ones forgotten)" if seen > len(frames) else ""
        self.count.value = f"&nbsp;{len(frames)} frame{'s' if len(frames) != 1 else ''}{kept}"

    def clear(self) -> None:
        """Forget every recorded frame."""
        self.recorder.clear()
        self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
