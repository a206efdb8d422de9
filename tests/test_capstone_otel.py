"""The capstone traced by OpenTelemetry (rpclab.capstone.otel): the real SDK and gRPC
instrumentation, W3C traceparent on the wire, next to the course's own tracer."""

from __future__ import annotations

import grpc
import pytest

from rpclab.capstone import otel, shop
from rpclab.capstone.shop import shop_pb2, shop_pb2_grpc
from rpclab.lab import tracing

FAST = {"gateway": 0.0, "orders": 0.0, "inventory": 0.002, "payments": 0.002}


@pytest.fixture
def traced():
    telemetry = otel.Telemetry()
    services = shop.start(work=FAST, telemetry=telemetry)
    channel = grpc.insecure_channel(f"127.0.0.1:{services.port}")
    try:
        yield services, telemetry, shop_pb2_grpc.GatewayStub(channel)
    finally:
        channel.close()
        services.stop()
        telemetry.shutdown()


def test_one_order_is_one_opentelemetry_trace_with_the_same_shape_as_the_courses(traced):
    services, telemetry, stub = traced
    ours = tracing.new_trace_id()
    stub.PlaceOrder(
        shop_pb2.PlaceOrderRequest(customer="ada", item="mug", quantity=1),
        timeout=2.0,
        metadata=[(tracing.TRACE_ID_KEY, ours)],
    )
    assert services.recorder.wait(ours, 7)
    (trace_id,) = telemetry.trace_ids()
    spans = telemetry.spans(trace_id)
    assert [s.label for _, s in tracing.tree(spans)] == [
        s.label for _, s in tracing.tree(services.recorder.spans(ours))
    ]
    assert {s.service for s in spans} == set(shop.SERVICES)
    by_id = {s.span_id: s for s in spans}
    root = [s for s in spans if s.parent_id is None]
    assert len(root) == 1 and root[0].label == "gateway: PlaceOrder"
    for span in spans:
        if span.parent_id is not None:
            assert span.parent_id in by_id
    text = otel.format_spans(spans)
    assert text.splitlines()[1].startswith("gateway: PlaceOrder")


def test_the_traceparent_on_the_wire_names_the_callers_client_span(traced):
    services, telemetry, stub = traced
    stub.PlaceOrder(shop_pb2.PlaceOrderRequest(customer="ada", item="mug", quantity=1), timeout=2.0)
    (received,) = telemetry.received("orders")
    header = otel.parse_traceparent(received.traceparent)
    assert received.method == "/rpclab.shop.Orders/Create"
    sent = next(s for s in telemetry.spans() if s.label == "gateway → Orders.Create")
    assert (header.version, header.trace_id, header.parent_id) == (
        "00",
        sent.trace_id,
        sent.span_id,
    )
    assert int(header.flags, 16) & 1  # sampled
    # The gateway itself was called without one: it started the trace.
    assert [r.traceparent for r in telemetry.received("gateway")] == [None]


@pytest.mark.parametrize(
    "value", ["", "00-xyz", "00-" + "a" * 32 + "-" + "b" * 16, None, "x" * 1000]
)
def test_parse_traceparent_refuses_what_is_not_one(value):
    with pytest.raises(ValueError):
        otel.parse_traceparent(value)


def test_the_span_memory_is_bounded():
    memory = otel.SpanMemory(maxlen=2)
    memory.export(["a", "b", "c"])
    assert memory.finished() == ["b", "c"]
    memory.clear()
    assert memory.finished() == []
    with pytest.raises(ValueError):
        otel.SpanMemory(maxlen=0)
