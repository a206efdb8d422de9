"""The call explorer: pick a service and method found by reflection, fill in the request, press
Call, read the reply.

Used in notebook 10.

Only wiring lives here; rpclab.grpcstack.explorer does the work (and is what the tests call).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import grpc

from rpclab.grpcstack import explorer

__all__ = ["CallExplorer"]


def _pre(text: str, color: str | None = None) -> str:
    style = "font-family:monospace; white-space:pre-wrap; margin:0"
    if color:
        style += f"; color:{color}"
    return f"<pre style='{style}'>{html.escape(text)}</pre>"


class CallExplorer:
    """Dropdowns for service and method, a text box per request field, a Call button, and the
    outcome.

    ``channel`` is any open channel (TLS, with call credentials, or plain);
    ``metadata`` is sent with every call. Services starting with one of
    ``skip`` are left out of the list.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        timeout: float = 2.0,
        metadata: Sequence[tuple[str, str]] | None = None,
        skip: Sequence[str] = ("grpc.reflection.",),
    ) -> None:
        import ipywidgets as w

        self.channel = channel
        self.metadata = metadata
        self.last_result: explorer.CallResult | None = None
        self.methods: list[explorer.Method] = []
        self.fields: dict[str, Any] = {}
        self._w = w
        self._quiet = False
        label = {"style": {"description_width": "130px"}, "layout": w.Layout(width="520px")}
        self.service = w.Dropdown(description="service", **label)
        self.method = w.Dropdown(description="method", **label)
        self.signature = w.HTML()
        self.form = w.VBox()
        self.timeout = w.BoundedFloatText(
            value=timeout, min=0.05, max=60.0, step=0.5, description="timeout (s)", **label
        )
        self.button = w.Button(description="Call", button_style="primary", icon="play")
        self.output = w.HTML("<i>pick a method, fill in the request, press Call</i>")
        try:
            self.methods = explorer.list_methods(channel, skip=skip)
        except grpc.RpcError as error:
            self.output.value = _pre(
                f"reflection failed: {error.code().name}: {error.details()}", "#c62828"
            )
        services = sorted({m.service for m in self.methods})
        self.service.options = services
        self.service.observe(lambda _: self._show_methods(), names="value")
        self.method.observe(lambda _: None if self._quiet else self._show_form(), names="value")
        self.button.on_click(lambda _: self.call())
        ours = [
            name for name in services if not name.startswith("grpc.")
        ]  # gRPC's own services last
        if services:
            self.service.value = (ours or services)[0]  # the observer shows its methods
        else:
            self._show_methods()
        self.widget = w.VBox(
            [
                self.service,
                self.method,
                self.signature,
                self.form,
                self.timeout,
                self.button,
                self.output,
            ]
        )

    @property
    def selected(self) -> explorer.Method | None:
        """The method picked in the dropdowns."""
        return self.method.value

    def _show_methods(self) -> None:
        options = [
            (f"{m.name}  ({m.kind})", m) for m in self.methods if m.service == self.service.value
        ]
        self._quiet = True  # one form for the new list, not one per step
        try:
            self.method.options = options
            self.method.value = options[0][1] if options else None
        finally:
            self._quiet = False
        self._show_form()

    def _show_form(self) -> None:
        method = self.selected
        for box in self.fields.values():
            box.close()  # the old form's boxes: free their models in the kernel and the page
        self.fields = {}
        if method is None:
            self.signature.value = ""
            self.form.children = ()
            return
        self.signature.value = _pre(explorer.describe(method), "#455a64")
        for f in explorer.request_fields(method):
            hint = f.type + (" (optional: leave empty to not send it)" if f.optional else "")
            if f.choices:
                hint += ": " + " | ".join(f.choices)
            self.fields[f.path] = self._w.Text(
                description=f.path,
                placeholder=hint,
                tooltip=f"{f.path}: {hint}",
                style={"description_width": "130px"},
                layout=self._w.Layout(width="520px"),
            )
        self.form.children = tuple(self.fields.values())

    def call(self) -> explorer.CallResult | None:
        """Build the request from the text boxes and call the method (also what the button does)."""
        method = self.selected
        if method is None:
            self.output.value = _pre("no method picked", "#c62828")
            return None
        try:
            request = explorer.build_request(
                method, {path: box.value for path, box in self.fields.items()}
            )
        except explorer.RequestError as exc:
            self.output.value = _pre(
                "\n".join(f"{name}: {why}" for name, why in exc.problems.items()), "#c62828"
            )
            return None
        self.output.value = "<i>calling…</i>"
        result = explorer.call(
            self.channel, method, request, timeout=float(self.timeout.value), metadata=self.metadata
        )
        self.last_result = result
        self.output.value = _pre(explorer.format_result(result), None if result.ok else "#c62828")
        return result

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
