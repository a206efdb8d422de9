"""What a learner does to each notebook's widgets in the browser, and what must change on screen.

Every widget in every notebook is checked for rendering automatically (no registry entry needed).
This registry adds *one real interaction per control*: the browser suite finds the control, acts
on it like a person would, and fails unless the text shown next to it changes.

To cover a new widget, add to INTERACTIONS under the notebook's file name without ".ipynb":

    INTERACTIONS["05-failures-and-semantics"] = [
        slider("Delay (ms)"),                     # press → five times on the slider's handle
        button("Drop next reply", watch=".widget-html"),
        dropdown("Fault", "duplicate"),
        text_field("Key", "colour"),
        checkbox("Retry"),
    ]

- The first argument is the control's description as shown on screen (a button's text). It is
  matched as a substring, inside the open notebook only; pass nth=1 for the second match.
- watch (optional) is a CSS selector of what must change, searched inside the same cell's output
  area. Without it, all text the cell shows (slider readouts excepted, images fingerprinted) must
  change.
- expect (optional) is text that must appear once it has changed (a reply, a count).
- fills (optional) types into text fields of the same output first, as a person fills a form
  before pressing its button: button("Call", fills=(("name", "Ada"),), expect="Ada").
- timeout (s) bounds the wait for the change, for controls that call a server (default 30 s).

Each entry becomes one test, e.g. test_widget_interaction[05-failures-and-semantics-button:Drop].
A registry key that names no notebook fails a test, so renaming a notebook cannot silently drop
its interactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from playwright.sync_api import Locator

Action = Literal["slider", "button", "text", "checkbox", "dropdown"]

# CSS of each kind of ipywidgets 8 control, and where its description is written.
_CONTROL_CSS: dict[str, tuple[str, str]] = {
    "slider": (".widget-slider", ".widget-label"),
    "button": ("button.jupyter-button", ""),
    "text": (".widget-text, .widget-textarea", ".widget-label"),
    "checkbox": (".widget-checkbox", ".widget-label-basic"),
    "dropdown": (".widget-dropdown", ".widget-label"),
}


@dataclass(frozen=True)
class Interaction:
    """One action on one widget control, and the output that must change because of it."""

    action: Action
    label: str  # the control's description (a button's text), matched as a substring
    value: str = ""  # text to type (text) or option to choose (dropdown)
    presses: int = 5  # arrow-key presses (slider)
    key: str = "ArrowRight"  # which arrow key (slider)
    watch: str | None = None  # CSS selector, within the cell's output area, of what must change
    nth: int = 0  # which match, when several controls carry the label
    timeout: float = 30.0  # s to wait for the change
    fills: tuple[tuple[str, str], ...] = ()  # (text field label, value) typed first, same output
    expect: str | None = None  # text that must appear in what changed

    @property
    def id(self) -> str:
        """A short test id: action and label."""
        return f"{self.action}:{self.label}" + (f"#{self.nth}" if self.nth else "")

    def locate(self, scope: Locator) -> Locator:
        """The control inside `scope` (the open notebook panel)."""
        css, label_css = _CONTROL_CSS[self.action]
        controls = scope.locator(css)
        if label_css:
            controls = controls.filter(has=scope.page.locator(label_css, has_text=self.label))
        else:
            controls = controls.filter(has_text=self.label)
        return controls.nth(self.nth)

    def perform(self, control: Locator) -> None:
        """Act on the control the way a person would (after filling in `fills`, if any)."""
        area = control.locator("xpath=ancestor::*[contains(@class, 'jp-Cell-outputArea')]")
        for label, value in self.fills:
            Interaction("text", label).locate(area).locator("input, textarea").first.fill(value)
        if self.action == "slider":
            handle = control.locator(".noUi-handle").first
            handle.focus()
            for _ in range(self.presses):
                handle.press(self.key)
        elif self.action == "button":
            control.click()
        elif self.action == "text":
            field = control.locator("input, textarea").first
            field.fill(self.value)
            field.press("Enter")  # commits fields with continuous_update=False
        elif self.action == "checkbox":
            control.locator("input[type=checkbox]").click()
        elif self.action == "dropdown":
            control.locator("select").select_option(label=self.value)
        else:  # pragma: no cover - Literal keeps this unreachable
            raise ValueError(f"unknown widget action {self.action!r}")


def slider(label: str, *, presses: int = 5, key: str = "ArrowRight", **kw: object) -> Interaction:
    """Move a slider with the keyboard: focus its handle, press `key` `presses` times."""
    return Interaction("slider", label, presses=presses, key=key, **kw)  # type: ignore[arg-type]


def button(text: str, **kw: object) -> Interaction:
    """Click the button whose text contains `text`."""
    return Interaction("button", text, **kw)  # type: ignore[arg-type]


def text_field(label: str, value: str, **kw: object) -> Interaction:
    """Type `value` into a text field and press Enter."""
    return Interaction("text", label, value=value, **kw)  # type: ignore[arg-type]


def checkbox(label: str, **kw: object) -> Interaction:
    """Toggle a checkbox."""
    return Interaction("checkbox", label, **kw)  # type: ignore[arg-type]


def dropdown(label: str, option: str, **kw: object) -> Interaction:
    """Choose `option` (its visible text) in a dropdown."""
    return Interaction("dropdown", label, value=option, **kw)  # type: ignore[arg-type]


# notebook file name without ".ipynb" -> the interactions to perform, in order, after Run All.
INTERACTIONS: dict[str, list[Interaction]] = {
    # The latency explorer (rpclab.widgets.latency_explorer): every control recomputes the answer.
    "01-local-vs-remote": [
        slider("round trip (s)", watch=".widget-html"),
        text_field("calls", "100", watch=".widget-html"),
        slider("in flight", watch=".widget-html"),
        dropdown("link", "across an ocean", watch=".widget-html"),
    ],
    # The wire inspector (rpclab.widgets.wire_inspector): cells after it made more calls.
    "04-socket-rpc-step-by-step": [
        button("refresh"),  # the frames sent since it was drawn appear
        checkbox("hex"),  # the payloads turn into hex dumps
        button("clear"),  # the table empties
    ],
    # The fault panel (rpclab.widgets.fault_panel) on the proxy in front of the KV server.
    "05-failures-and-semantics": [
        slider("delay (s)", expect="delay 25 ms"),  # the proxy is reconfigured, the panel says so
        dropdown("applies to", "replies only", expect="replies only"),
        # After Run All the notebook's last cell has stopped every server: the button must say so.
        button("run calls", expect="proxy is stopped"),
    ],
    # The call explorer (rpclab.widgets.call_explorer) on the TLS server, with alice's token.
    "10-grpc-security-and-operations": [
        dropdown("service", "rpclab.kv.KV"),  # its methods and the first one's messages appear
        button(
            "Call", watch=".widget-html"
        ),  # Get with no key: the server's INVALID_ARGUMENT shows
    ],
}

# JavaScript: what a cell's output area shows, as one comparable string.
WATCHED_TEXT_JS = """
([area, watch]) => {
  const hash = (s) => { let h = 0; for (let i = 0; i < s.length; i++) h = (h * 31 +
  s.charCodeAt(i)) | 0; return h; };
  const parts = watch ? [...area.querySelectorAll(watch)] : [area.cloneNode(true)];
  return parts.map((el) => {
    if (!watch) el.querySelectorAll('.widget-readout').forEach((r) => r.remove());
    const images = [...el.querySelectorAll('img')].map((img) => hash(img.src)).join(',');
    return (watch ? el.innerText : el.textContent) + '|' + images;
  }).join('\\n');
}
"""
