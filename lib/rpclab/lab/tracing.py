"""Distributed tracing, small: a trace id carried in gRPC metadata across every hop, and spans
recorded per call.

Taught in notebook 15 (tracing metadata across services). About 500 lines: the trace context,
the span recorder and its client and server interceptors (unary and streaming) are one
mechanism, and notebook 15 reads them together.

One request that crosses four services leaves four servers' worth of logs.
To put them back together, the first service gives the request a **trace id**
and every call it makes downstream carries that id in its metadata, with the
id of the caller's **span** (one unit of work: one call served, or one call
made) as the new span's parent::

    recorder = SpanRecorder()
    background.serve_grpc("orders", register, interceptors=[recorder.server_interceptor("orders")])
    channel = grpc.intercept_channel(grpc.insecure_channel(address),
    recorder.client_interceptor("orders"))

    recorder.spans(trace_id)     # every span of one request, on every service
    recorder.wait_started(trace_id, "orders")   # until orders is at work on it
    print(format_trace(recorder.spans(trace_id)))

The server interceptor reads ``x-trace-id`` and ``x-parent-span-id`` (starting a
new trace when there is none, or when what arrived is not a valid id), records
a *server* span around the method, and makes it the current span of the
thread that runs the method. The client interceptor, used on the channels a
service calls others with, records a *client* span for every call made while a
server span is current, and sends the trace id and its own span id on.

Every service records into one SpanRecorder here, because they all live in one
process; across machines each would send its spans to a collector (Jaeger,
Zipkin, an OpenTelemetry collector), and W3C's ``traceparent`` header would
carry the same two ids. Times are ``time.perf_counter()`` seconds, one clock
for all services in this process.
"""

from __future__ import annotations

import contextvars
import re
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import grpc

from rpclab import checks

__all__ = [
    "TRACE_ID_KEY",
    "PARENT_ID_KEY",
    "MAX_SPANS",
    "Span",
    "SpanContext",
    "SpanRecorder",
    "current",
    "new_trace_id",
    "new_span_id",
    "is_trace_id",
    "is_span_id",
    "tree",
    "format_trace",
]

TRACE_ID_KEY = (
    "x-trace-id"  # metadata: the request's trace id, 32 hex digits (as in W3C traceparent)
)
# metadata: the caller's span id, 16 hex digits: the parent of the span it starts
PARENT_ID_KEY = "x-parent-span-id"
MAX_SPANS = 10_000  # spans a recorder keeps (the oldest are forgotten first)
NO_DEADLINE = (
    1e9  # seconds; grpcio's time_remaining() for a call without a deadline is far above this
)

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")


def new_trace_id() -> str:
    """A fresh random trace id: 32 lowercase hex digits."""
    return secrets.token_hex(16)


def new_span_id() -> str:
    """A fresh random span id: 16 lowercase hex digits."""
    return secrets.token_hex(8)


def is_trace_id(value: object) -> bool:
    """Whether ``value`` is a valid trace id (32 lowercase hex digits, not all zero)."""
    return (
        isinstance(value, str) and _TRACE_ID.fullmatch(value) is not None and value.strip("0") != ""
    )


def is_span_id(value: object) -> bool:
    """Whether ``value`` is a valid span id (16 lowercase hex digits, not all zero)."""
    return (
        isinstance(value, str) and _SPAN_ID.fullmatch(value) is not None and value.strip("0") != ""
    )


@dataclass(frozen=True)
class Span:
    """One unit of work in a trace: a call served (``kind="server"``) or a call made
    (``kind="client"``)."""

    trace_id: str
    span_id: str
    parent_id: str | None  # the span that caused this one; None for the first span of a trace
    service: str  # the service that did this work (for a client span: the caller)
    method: str  # the gRPC method, e.g. "/rpclab.shop.Orders/Create"
    kind: str  # "server" or "client"
    start: float  # time.perf_counter()
    end: float
    status: str  # "OK" or a grpc.StatusCode name
    budget: (
        float | None
    )  # server: seconds left before the deadline on arrival; client: the timeout given; None: none

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return self.end - self.start

    @property
    def name(self) -> str:
        """The method, short: "Orders.Create" for "/rpclab.shop.Orders/Create"."""
        service, _, method = self.method.rpartition("/")
        return f"{service.rsplit('.', 1)[-1].lstrip('/')}.{method}" if service else method

    @property
    def label(self) -> str:
        """How a timeline names this span: "orders: Create" (served), "orders → Inventory.Reserve"
        (called)."""
        if self.kind == "client":
            return f"{self.service} → {self.name}"
        return f"{self.service}: {self.name.rsplit('.', 1)[-1]}"


class SpanContext(NamedTuple):
    """The span a thread is working in now: what a call made from this thread carries downstream."""

    trace_id: str
    span_id: str
    service: str


_current: contextvars.ContextVar[SpanContext | None] = contextvars.ContextVar(
    "rpclab_span", default=None
)


def current() -> SpanContext | None:
    """The server span this thread is serving now (set by a SpanRecorder's server interceptor), or
    None."""
    return _current.get()


# --------------------------------------------------------------------------- the recorder


class SpanRecorder:
    """Keeps the spans of every service in this process (the last ``maxlen``); hands out the
    interceptors that record them."""

    def __init__(self, maxlen: int = MAX_SPANS) -> None:
        self.maxlen = checks.integer("maxlen", maxlen, low=1)
        self._spans: deque[Span] = deque(maxlen=maxlen)
        self._started: deque[tuple[str, str]] = deque(maxlen=maxlen)  # (trace id, service)
        self._forgotten = 0
        self._lock = threading.Lock()
        self._recorded = threading.Condition(self._lock)

    def record(self, span: Span) -> None:
        """Keep ``span``, forgetting the oldest one if ``maxlen`` are kept already."""
        with self._lock:
            if len(self._spans) == self.maxlen:
                self._forgotten += 1
            self._spans.append(span)
            self._recorded.notify_all()

    def started(self, trace_id: str, service: str) -> None:
        """Note that ``service`` has started serving a call of ``trace_id`` (its server span is
        recorded when the call ends)."""
        with self._lock:
            self._started.append((trace_id, service))
            self._recorded.notify_all()

    def wait_started(self, trace_id: str, service: str, timeout: float = 5.0) -> bool:
        """Wait until ``service`` has started serving a call of ``trace_id``: to act while it is
        at work (cancel the call, say). Returns whether it has; False after ``timeout`` seconds.
        """
        with self._lock:
            return self._recorded.wait_for(
                lambda: (trace_id, service) in self._started, checks.seconds("timeout", timeout)
            )

    def wait(self, trace_id: str, count: int, timeout: float = 5.0) -> bool:
        """Wait until ``count`` spans of ``trace_id`` are kept (services still working may record
        theirs late).

        Returns whether they are there; False after ``timeout`` seconds.
        """
        with self._lock:
            return self._recorded.wait_for(
                lambda: sum(s.trace_id == trace_id for s in self._spans) >= count, timeout
            )

    def spans(self, trace_id: str | None = None) -> list[Span]:
        """The spans kept (of one trace, if ``trace_id`` is given), in order of start."""
        with self._lock:
            found = [s for s in self._spans if trace_id is None or s.trace_id == trace_id]
        return sorted(found, key=lambda s: s.start)

    def trace_ids(self) -> list[str]:
        """The trace ids of the spans kept, each once, in the order their first span started."""
        return list(dict.fromkeys(s.trace_id for s in self.spans()))

    def calls(self, kind: str = "server", *, by: str = "service") -> dict[str, int]:
        """How many spans of ``kind`` there are per service (or per method, ``by="method"``).

        With "server", the calls each service received; with "client", the calls each service
        made (by method: the calls made to each method, "Payments.Charge", failed ones too,
        which is how calls to a server that is down are counted).
        """
        if kind not in ("server", "client"):
            raise ValueError(f"kind is 'server' or 'client', not {kind!r}")
        if by not in ("service", "method"):
            raise ValueError(f"by is 'service' or 'method', not {by!r}")
        with self._lock:
            spans = [s for s in self._spans if s.kind == kind]
        return dict(Counter(s.service if by == "service" else s.name for s in spans))

    @property
    def forgotten(self) -> int:
        """How many spans were dropped to keep at most ``maxlen``."""
        with self._lock:
            return self._forgotten

    def clear(self) -> None:
        """Forget every span."""
        with self._lock:
            self._spans.clear()
            self._started.clear()
            self._forgotten = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._spans)

    def server_interceptor(self, service: str) -> grpc.ServerInterceptor:
        """A server interceptor for the server of ``service``: a server span per call, the trace
        read from metadata."""
        return _ServerTracing(self, _check_service(service))

    def client_interceptor(self, service: str) -> _ClientTracing:
        """A client interceptor for the channels ``service`` calls others on: a client span per
        call, the trace sent on."""
        return _ClientTracing(self, _check_service(service))


def _check_service(service: object) -> str:
    if not isinstance(service, str) or not service.strip():
        raise ValueError(f"service must be a non-empty str naming the service, not {service!r}")
    return service


def _time_left(context: grpc.ServicerContext) -> float | None:
    left = context.time_remaining()
    return None if left is None or left > NO_DEADLINE else left


# --------------------------------------------------------------------------- the server side


class _ServerTracing(grpc.ServerInterceptor):
    """Records a server span around every call and makes it the current span of the call's
    thread."""

    def __init__(self, recorder: SpanRecorder, service: str) -> None:
        self.recorder = recorder
        self.service = service

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        received = dict(details.invocation_metadata or ())
        trace_id = received.get(TRACE_ID_KEY)
        parent_id = received.get(PARENT_ID_KEY)
        if not is_trace_id(trace_id):  # none, or not an id: this call starts a trace of its own
            trace_id, parent_id = new_trace_id(), None
        elif not is_span_id(parent_id):
            parent_id = None
        return _wrap(
            handler, lambda context: _ServerSpan(self, details.method, trace_id, parent_id, context)
        )


class _ServerSpan:
    """The span of one call being served: current while the method runs, recorded when it ends."""

    def __init__(
        self,
        tracing: _ServerTracing,
        method: str,
        trace_id: str,
        parent_id: str | None,
        context: grpc.ServicerContext,
    ) -> None:
        self.tracing = tracing
        self.method = method
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.context = context

    def __enter__(self) -> None:
        self.span_id = new_span_id()
        self.budget = _time_left(self.context)
        self.token = _current.set(SpanContext(self.trace_id, self.span_id, self.tracing.service))
        self.start = time.perf_counter()
        self.tracing.recorder.started(self.trace_id, self.tracing.service)

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        end = time.perf_counter()
        try:
            _current.reset(self.token)
        except (
            ValueError
        ):  # a streaming reply closed from another thread: that thread never had it set
            pass
        code = self.context.code()
        if isinstance(code, grpc.StatusCode):
            status = code.name
        elif kind is not None:
            status = grpc.StatusCode.UNKNOWN.name  # the method raised without setting a status
        elif not self.context.is_active():  # it returned, but its call had already ended
            left = _time_left(self.context)
            status = "DEADLINE_EXCEEDED" if left is not None and left <= 0 else "CANCELLED"
        else:
            status = "OK"
        self.tracing.recorder.record(
            Span(
                self.trace_id,
                self.span_id,
                self.parent_id,
                self.tracing.service,
                self.method,
                "server",
                self.start,
                end,
                status,
                self.budget,
            )
        )


def _wrap(
    handler: grpc.RpcMethodHandler, span: Callable[[grpc.ServicerContext], _ServerSpan]
) -> grpc.RpcMethodHandler:
    """The same handler, with every call run inside ``span(context)`` (to the end of its stream, for
    a streaming reply)."""
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
    )
    for attribute, make, streams_out in kinds:
        method = getattr(handler, attribute)
        if method is None:
            continue
        if streams_out:

            def behaviour(
                request: Any, context: grpc.ServicerContext, _method: Callable = method
            ) -> Iterator[Any]:
                with span(context):
                    yield from _method(request, context)
        else:

            def behaviour(
                request: Any, context: grpc.ServicerContext, _method: Callable = method
            ) -> Any:
                with span(context):
                    return _method(request, context)

        return make(
            behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


# --------------------------------------------------------------------------- the client side


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, Any]] | None
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _Details(_CallDetails, grpc.ClientCallDetails):
    """grpc.ClientCallDetails with new metadata."""


class _ClientTracing(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Records a client span around every call and sends the trace id and the span's id in its
    metadata."""

    def __init__(self, recorder: SpanRecorder, service: str) -> None:
        self.recorder = recorder
        self.service = service

    def _call(self, continuation: Callable, details: grpc.ClientCallDetails, request: Any) -> Any:
        metadata = [
            (k, v) for k, v in (details.metadata or ()) if k not in (TRACE_ID_KEY, PARENT_ID_KEY)
        ]
        given = dict(details.metadata or ()).get(TRACE_ID_KEY)
        here = current()
        if here is not None:
            trace_id, parent_id = here.trace_id, here.span_id
        else:  # not serving a call: a trace id given by the caller, or a new trace
            trace_id, parent_id = (given if is_trace_id(given) else new_trace_id()), None
        span_id = new_span_id()
        metadata += [(TRACE_ID_KEY, trace_id), (PARENT_ID_KEY, span_id)]
        new_details = _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )
        start = time.perf_counter()

        def done(outcome: Any) -> None:
            code = outcome.code()
            status = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
            self.recorder.record(
                Span(
                    trace_id,
                    span_id,
                    parent_id,
                    self.service,
                    details.method,
                    "client",
                    start,
                    time.perf_counter(),
                    status,
                    details.timeout,
                )
            )

        outcome = continuation(new_details, request)
        outcome.add_done_callback(
            done
        )  # at once for a blocking call; when it ends for a future or a stream
        return outcome

    def intercept_unary_unary(
        self, continuation: Callable, client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return self._call(continuation, client_call_details, request)

    def intercept_unary_stream(
        self, continuation: Callable, client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return self._call(continuation, client_call_details, request)

    def intercept_stream_unary(
        self,
        continuation: Callable,
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterable[Any],
    ) -> Any:
        return self._call(continuation, client_call_details, request_iterator)

    def intercept_stream_stream(
        self,
        continuation: Callable,
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterable[Any],
    ) -> Any:
        return self._call(continuation, client_call_details, request_iterator)


# --------------------------------------------------------------------------- reading a trace


def tree(spans: Iterable[Any]) -> list[tuple[int, Any]]:
    """The spans as (depth, span) in tree order: each span after its parent, siblings by start time.

    Works on anything with ``span_id``, ``parent_id`` and ``start``. A span whose
    parent is not among ``spans`` is a root; each span appears once, even if
    the links loop.
    """
    spans = sorted(spans, key=lambda s: s.start)
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[Any]] = {}
    for span in spans:
        parent = (
            span.parent_id if span.parent_id in ids and span.parent_id != span.span_id else None
        )
        children.setdefault(parent, []).append(span)
    rows: list[tuple[int, Any]] = []
    seen: set[int] = set()

    def visit(span: Any, depth: int) -> None:
        if id(span) in seen:
            return
        seen.add(id(span))
        rows.append((depth, span))
        for child in children.get(span.span_id, ()):
            visit(child, depth + 1)

    for root in children.get(None, ()):
        visit(root, 0)
    for span in spans:  # spans caught in a loop of parent links, which no root reaches
        visit(span, 0)
    return rows


def format_trace(spans: Iterable[Span]) -> str:
    """A trace as a text table, one span a line, indented under its parent: start, duration,
    deadline budget, status."""
    rows = tree(spans)
    if not rows:
        return "(no spans)"
    t0 = min(span.start for _, span in rows)
    width = max(len("  " * depth + span.label) for depth, span in rows)
    lines = [f"{'span':<{width}}  {'start':>8}  {'took':>8}  {'budget':>9}  status"]
    for depth, span in rows:
        budget = "none" if span.budget is None else f"{span.budget * 1000:.1f} ms"
        lines.append(
            f"{'  ' * depth + span.label:<{width}}  {(span.start - t0) * 1000:5.1f} ms  "
            f"{span.duration * 1000:5.1f} ms  {budget:>9}  {span.status}"
        )
    return "\n".join(lines)
