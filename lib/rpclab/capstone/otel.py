"""The shop's calls traced by OpenTelemetry too: the real SDK, W3C ``traceparent`` on the wire.

Notebook 15 follows one order with the course's own small tracer (rpclab.lab.tracing) and with
this, side by side. OpenTelemetry's gRPC instrumentation (opentelemetry-instrumentation-grpc)
gives the client and server interceptors; each service has a TracerProvider of its own (as it
would in a process of its own), named by its ``service.name``; the spans all go to one
:class:`SpanMemory`, which stands in for a collector::

    telemetry = Telemetry()
    services = shop.start(telemetry=telemetry)       # every server and channel instrumented
    ...
    print(format_spans(telemetry.spans(trace_id)))   # the trace, as a tree
    telemetry.received("orders")                     # the traceparent headers orders received

The ids travel in the W3C Trace Context header ``traceparent``
(``version-traceid-parentid-flags``), which the SDK's default propagator writes and reads.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import grpc
from opentelemetry.instrumentation.grpc import client_interceptor, server_interceptor
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id

from rpclab import checks
from rpclab.lab.tracing import tree

__all__ = [
    "TRACEPARENT",
    "MAX_SPANS",
    "Telemetry",
    "SpanMemory",
    "OtelSpan",
    "Received",
    "Traceparent",
    "parse_traceparent",
    "format_spans",
]

TRACEPARENT = "traceparent"  # the W3C Trace Context header
MAX_SPANS = 10_000  # spans a SpanMemory keeps (the oldest are forgotten first)
MAX_RECEIVED = 1_000  # traceparent headers a Telemetry keeps
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


class SpanMemory(SpanExporter):
    """An exporter that keeps the last ``maxlen`` finished spans in memory (as the SDK's
    InMemorySpanExporter does, but bounded)."""

    def __init__(self, maxlen: int = MAX_SPANS) -> None:
        self.maxlen = checks.integer("maxlen", maxlen, low=1)
        self._spans: deque[ReadableSpan] = deque(maxlen=self.maxlen)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self._spans.extend(spans)
        return SpanExportResult.SUCCESS

    def finished(self) -> list[ReadableSpan]:
        """The spans kept, in the order they finished."""
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def shutdown(self) -> None:
        self.clear()


class OtelSpan(NamedTuple):
    """An OpenTelemetry span, short: ids as hex (as in traceparent), times in seconds."""

    trace_id: str
    span_id: str
    parent_id: str | None
    service: str  # the resource's service.name
    name: str  # the gRPC method, e.g. "/rpclab.shop.Orders/Create"
    kind: str  # "server" or "client"
    start: float  # seconds (the SDK's nanoseconds since the epoch / 1e9)
    end: float
    status: str  # "UNSET", "OK" or "ERROR" (OpenTelemetry's span status)

    @property
    def label(self) -> str:
        """How a tree names this span: "orders: Create" (served), "orders → Inventory.Reserve"
        (called)."""
        service, _, method = self.name.rpartition("/")
        short = service.rsplit(".", 1)[-1]
        if self.kind == "client":
            return f"{self.service} → {short}.{method}"
        return f"{self.service}: {method}"


class Received(NamedTuple):
    """A traceparent header as a server received it."""

    service: str
    method: str
    traceparent: str | None


class Traceparent(NamedTuple):
    """The four fields of a W3C traceparent header."""

    version: str
    trace_id: str
    parent_id: str
    flags: str


def parse_traceparent(value: str) -> Traceparent:
    """The fields of a ``traceparent`` value, ``00-<32 hex>-<16 hex>-<2 hex>``; ValueError if it is
    not one."""
    match = _TRACEPARENT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"not a traceparent header: {value!r:.80}")
    return Traceparent(*match.groups())


class _HeaderLog(grpc.ServerInterceptor):
    """Remembers the traceparent header of every call a server receives."""

    def __init__(self, telemetry: Telemetry, service: str) -> None:
        self.telemetry = telemetry
        self.service = service

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        sent = dict(details.invocation_metadata or ()).get(TRACEPARENT)
        self.telemetry._received(Received(self.service, details.method, sent))
        return continuation(details)


class Telemetry:
    """OpenTelemetry for the shop: a TracerProvider per service, the gRPC interceptors, and one
    SpanMemory for all."""

    def __init__(self, maxlen: int = MAX_SPANS) -> None:
        self.memory = SpanMemory(maxlen)
        self._providers: dict[str, TracerProvider] = {}
        self._headers: deque[Received] = deque(maxlen=MAX_RECEIVED)
        self._lock = threading.Lock()

    def provider(self, service: str) -> TracerProvider:
        """The TracerProvider of ``service``: its resource says ``service.name``."""
        with self._lock:
            found = self._providers.get(service)
            if found is None:
                found = TracerProvider(
                    resource=Resource.create({"service.name": service}), shutdown_on_exit=False
                )
                found.add_span_processor(SimpleSpanProcessor(self.memory))
                self._providers[service] = found
            return found

    def server_interceptors(self, service: str) -> list[grpc.ServerInterceptor]:
        """The interceptors for ``service``'s server: log the traceparent, then a server span."""
        return [
            _HeaderLog(self, service),
            server_interceptor(tracer_provider=self.provider(service)),
        ]

    def wrap_channel(self, channel: Any, service: str) -> Any:
        """``channel``, with a client span for every call ``service`` makes on it and the
        traceparent header sent on."""
        return intercept_channel(
            channel, client_interceptor(tracer_provider=self.provider(service))
        )

    def _received(self, received: Received) -> None:
        with self._lock:
            self._headers.append(received)

    def received(self, service: str | None = None) -> list[Received]:
        """The traceparent headers received (by ``service``, if given), oldest first."""
        with self._lock:
            return [r for r in self._headers if service is None or r.service == service]

    def spans(self, trace_id: str | None = None) -> list[OtelSpan]:
        """The spans kept (of one trace, given as 32 hex digits), in order of start."""
        found = [_short(span) for span in self.memory.finished()]
        return sorted(
            (s for s in found if trace_id is None or s.trace_id == trace_id), key=lambda s: s.start
        )

    def trace_ids(self) -> list[str]:
        """The trace ids of the spans kept, each once, in the order their first span started."""
        return list(dict.fromkeys(s.trace_id for s in self.spans()))

    def clear(self) -> None:
        """Forget every span and header."""
        self.memory.clear()
        with self._lock:
            self._headers.clear()

    def shutdown(self) -> None:
        """Shut every TracerProvider down (a Telemetry records nothing after this)."""
        with self._lock:
            providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            provider.shutdown()


def _short(span: ReadableSpan) -> OtelSpan:
    context = span.get_span_context()
    parent = span.parent
    status = span.status.status_code if span.status is not None else StatusCode.UNSET
    return OtelSpan(
        format_trace_id(context.trace_id),
        format_span_id(context.span_id),
        format_span_id(parent.span_id) if parent is not None else None,
        str(span.resource.attributes.get("service.name", "?")),
        span.name,
        "client" if span.kind is SpanKind.CLIENT else "server",
        (span.start_time or 0) / 1e9,
        (span.end_time or span.start_time or 0) / 1e9,
        status.name,
    )


def format_spans(spans: Iterable[OtelSpan]) -> str:
    """A trace as a text table, one span a line, indented under its parent: span id, parent id,
    duration, status."""
    rows = tree(spans)
    if not rows:
        return "(no spans)"
    width = max(len("  " * depth + span.label) for depth, span in rows)
    lines = [f"{'span':<{width}}  {'span id':<16}  {'parent id':<16}  {'took':>8}  status"]
    for depth, span in rows:
        lines.append(
            f"{'  ' * depth + span.label:<{width}}  {span.span_id}  "
            f"{span.parent_id or '(none)':<16}  {(span.end - span.start) * 1000:5.1f} ms  "
            f"{span.status}"
        )
    return "\n".join(lines)
