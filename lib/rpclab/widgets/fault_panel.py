"""The fault panel: sliders that reconfigure a running fault proxy, its live counts, and a "run N
calls" button.

Used in notebook 05.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rpclab import checks
from rpclab import faults as _faults

__all__ = ["FaultPanel", "CallSummary", "apply_controls", "run_calls", "is_timeout", "stats_html"]

CONTROLS = ("delay", "jitter", "drop", "duplicate", "reset", "seed", "direction")


def apply_controls(proxy: Any, **values: Any) -> _faults.Faults:
    """Set the proxy's faults from control values (any of delay, jitter, drop, duplicate, reset,
    seed, direction).

    Returns the faults now in force. Raises ValueError (bad value, or drop on
    a bytes-mode proxy) or TypeError (unknown control) and leaves the proxy as it was.
    """
    unknown = sorted(set(values) - set(CONTROLS))
    if unknown:
        raise TypeError(
            f"unknown control {', '.join(unknown)}; the controls are {', '.join(CONTROLS)}"
        )
    return proxy.configure(**values)


def is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` says a call ran out of time (TimeoutError, a ...Timeout class, gRPC
    DEADLINE_EXCEEDED)."""
    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
        return True
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            return str(code()).endswith("DEADLINE_EXCEEDED")
        except Exception:
            return False
    return False


@dataclass
class CallSummary:
    """How ``n`` calls went: succeeded, failed (with a count per error type), timed out, or not
    started."""

    n: int
    succeeded: int = 0
    failed: int = 0
    timeouts: int = 0
    skipped: int = 0  # not started because the time budget ran out
    elapsed: float = 0.0  # seconds
    errors: Counter = field(
        default_factory=Counter
    )  # "TypeName" -> count, for failures and timeouts
    last_error: str = ""

    def __str__(self) -> str:
        text = (
            f"{self.n} calls: {self.succeeded} succeeded, {self.failed} failed, "
            f"{self.timeouts} timed out"
        )
        if self.skipped:
            text += f", {self.skipped} not started (out of time)"
        return text + f" in {self.elapsed:.2f} s"


def run_calls(fn: Callable[[], Any], n: int, timeout: float | None = None) -> CallSummary:
    """Call ``fn()`` ``n`` times, one after another, and count what happened.

    ``timeout`` is a budget in seconds for the whole run: once it is spent, the
    calls not yet started are counted as skipped (each call's own timeout is
    the client's business). KeyboardInterrupt stops the run.
    """
    checks.function("fn", fn, "fn() with no arguments")
    checks.integer("n", n, low=0)
    checks.seconds("timeout", timeout, above=0, optional=True)
    summary = CallSummary(n)
    start = time.monotonic()
    for done in range(n):
        if timeout is not None and time.monotonic() - start >= timeout:
            summary.skipped = n - done
            break
        try:
            fn()
        except Exception as exc:
            if is_timeout(exc):
                summary.timeouts += 1
            else:
                summary.failed += 1
            summary.errors[type(exc).__name__] += 1
            summary.last_error = f"{type(exc).__name__}: {exc}"
        else:
            summary.succeeded += 1
    summary.elapsed = time.monotonic() - start
    return summary


def stats_html(proxy: Any) -> str:
    """The panel's stats line: what the proxy did in each direction."""
    stats = proxy.stats
    rows = []
    for direction, arrow in (("request", "→ requests"), ("reply", "← replies")):
        d = stats[direction]
        rows.append(
            f"<b>{arrow}</b>: {d.forwarded} forwarded, {d.dropped} dropped, {d.duplicated} "
            "duplicated, "
            f"{d.delayed} delayed, {d.resets} resets"
        )
    rows.append(f"{stats.connections} connection{'s' if stats.connections != 1 else ''}")
    return "<span style='font-family:monospace'>" + " &nbsp;|&nbsp; ".join(rows) + "</span>"


class FaultPanel:
    """Sliders for delay, jitter, drop, duplicate and reset, a seed, a direction, live stats, and
    an optional run button.

    ``run``, if given, is a callable making one call through the proxy; the
    button calls it ``n`` times (within ``budget`` seconds) and shows the tally.
    """

    def __init__(
        self, proxy: Any, run: Callable[[], Any] | None = None, n: int = 20, budget: float = 15.0
    ):
        import ipywidgets as w

        self.proxy = proxy
        self.run = run
        self.budget = budget
        current = proxy.faults
        wide = {"style": {"description_width": "90px"}, "layout": w.Layout(width="420px")}
        seconds = {
            "min": 0.0,
            "step": 0.005,
            "readout_format": ".3f",
            "continuous_update": False,
            **wide,
        }
        chance = {
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "readout_format": ".0%",
            "continuous_update": False,
            **wide,
        }
        self.controls: dict[str, Any] = {
            "delay": w.FloatSlider(
                value=current.delay, max=max(2.0, current.delay), description="delay (s)", **seconds
            ),
            "jitter": w.FloatSlider(
                value=current.jitter,
                max=max(1.0, current.jitter),
                description="jitter (s)",
                **seconds,
            ),
            "drop": w.FloatSlider(value=current.drop, description="drop", **chance),
            "duplicate": w.FloatSlider(value=current.duplicate, description="duplicate", **chance),
            "reset": w.FloatSlider(value=current.reset, description="reset", **chance),
            "seed": w.IntText(value=current.seed, description="seed", **wide),
            "direction": w.Dropdown(
                options=[
                    ("both ways", "both"),
                    ("requests only", "request"),
                    ("replies only", "reply"),
                ],
                value=current.direction,
                description="applies to",
                **wide,
            ),
        }
        if getattr(proxy, "mode", "frames") == "bytes":
            for name in ("drop", "duplicate"):
                self.controls[name].disabled = True
                self.controls[name].tooltip = "needs a proxy in mode='frames'"
        for name, control in self.controls.items():
            control.observe(
                lambda change, name=name: self._changed(name, change["new"]), names="value"
            )
        self.message = w.HTML()
        self.stats = w.HTML()
        refresh = w.Button(description="refresh stats", icon="refresh")
        refresh.on_click(lambda _: self.refresh())
        clear = w.Button(description="reset stats")
        clear.on_click(lambda _: (self.proxy.reset_stats(), self.refresh()))
        rows = [*self.controls.values(), w.HBox([refresh, clear]), self.stats, self.message]
        self.n = w.BoundedIntText(
            value=n, min=1, max=10_000, description="calls", layout=w.Layout(width="160px")
        )
        self.run_button = w.Button(description="run calls", button_style="primary", icon="play")
        self.result = w.HTML()
        if run is not None:
            self.run_button.on_click(lambda _: self.run_calls())
            rows += [w.HBox([self.n, self.run_button]), self.result]
        self.widget = w.VBox(rows)
        self.refresh()

    def _changed(self, name: str, value: Any) -> None:
        try:
            faults = apply_controls(self.proxy, **{name: value})
        except (TypeError, ValueError) as exc:
            self.message.value = f"<span style='color:#c62828'>{html.escape(str(exc))}</span>"
        else:
            self.message.value = f"now: {html.escape(str(faults))}"
        self.refresh()

    def refresh(self) -> None:
        """Show the proxy's counts as they are now."""
        self.stats.value = stats_html(self.proxy)

    def run_calls(self) -> CallSummary | None:
        """Run the ``run`` callable ``n`` times and show the tally (also what the button does)."""
        if self.run is None:
            return None
        if not self.proxy.running:
            self.result.value = (
                "<b>The proxy is stopped</b> (the notebook's last cell stops every server). "
                "Run the cells that start the server, the proxy and this panel again to play."
            )
            return None
        self.result.value = "<i>running…</i>"
        summary = run_calls(self.run, int(self.n.value), self.budget)
        text = html.escape(str(summary))
        if summary.last_error:
            text += f"<br><small>last error: {html.escape(summary.last_error)}</small>"
        self.result.value = text
        self.refresh()
        return summary

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
