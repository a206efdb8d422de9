"""The capstone's shop (rpclab.capstone.shop), its tracing (rpclab.lab.tracing) and its retry budget
(rpclab.capstone.retrybudget)."""

from __future__ import annotations

import grpc
import pytest

from rpclab import faults
from rpclab.capstone import shop
from rpclab.capstone.retrybudget import RetryBudget
from rpclab.capstone.shop import shop_pb2, shop_pb2_grpc
from rpclab.lab import tracing
from shoplab import open_shop

FAST = {"gateway": 0.0, "orders": 0.002, "inventory": 0.005, "payments": 0.002}
ORDER = shop_pb2.PlaceOrderRequest(customer="ada", item="teapot", quantity=1)


@pytest.fixture
def running():
    with open_shop(FAST) as services_and_stub:
        yield services_and_stub


def place(stub, timeout=2.0, trace_id=None):
    trace_id = trace_id or tracing.new_trace_id()
    return stub.PlaceOrder(
        ORDER, timeout=timeout, metadata=[(tracing.TRACE_ID_KEY, trace_id)]
    ), trace_id


def server_spans(services, trace_id):
    """The first span each service served for the trace (inventory's Reserve, not its Release)."""
    first = {}
    for span in services.recorder.spans(trace_id):
        if span.kind == "server":
            first.setdefault(span.service, span)
    return first


# --------------------------------------------------------------------------- deadline propagation


def test_the_downstream_timeout_is_the_time_left_less_the_margin():
    assert shop.downstream_timeout(1.0, margin=0.005) == pytest.approx(0.995)
    assert shop.downstream_timeout(0.003, margin=0.005) <= 0  # no time left to call at all
    assert shop.downstream_timeout(None, default=2.0) == 2.0  # the caller set no deadline
    assert shop.downstream_timeout(0.1, default=2.0, propagate=False) == 2.0


def test_each_hop_sees_a_smaller_budget(running):
    services, stub = running
    reply, trace_id = place(stub, timeout=0.8)  # under 1 s, grpc-timeout is exact to the ms
    assert reply.order.transaction_id and reply.attempts == 1
    spans = server_spans(services, trace_id)
    budgets = [spans[name].budget for name in ("gateway", "orders", "inventory", "payments")]
    assert (
        0.81 > budgets[0] > budgets[1] > budgets[2] > budgets[3] > 0
    )  # payments is called after inventory


def test_when_the_budget_runs_out_the_work_downstream_stops(running):
    services, stub = running
    services.set_work(inventory=0.6)
    before = services.inventory.stock["teapot"]
    with pytest.raises(grpc.RpcError) as caught:
        place(stub, timeout=0.2, trace_id=(trace_id := tracing.new_trace_id()))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # five spans, and two more for the release of a reservation that did not answer
    assert services.recorder.wait(trace_id, 7, timeout=2.0)
    spans = server_spans(services, trace_id)
    assert spans["inventory"].status == "DEADLINE_EXCEEDED" and spans["inventory"].duration < 0.5
    assert "payments" not in spans  # orders never got as far as charging
    assert services.inventory.stock["teapot"] == before  # nothing reserved
    assert any(
        n.service == "inventory" and "stopped after" in n.text for n in services.journal.notes()
    )


def test_without_propagation_or_cancellation_the_work_goes_on_after_the_client_gave_up(running):
    services, stub = running
    services.set_propagation(False)
    services.set_cancellation(False)
    services.set_work(inventory=0.3)
    before, charged = services.inventory.stock["teapot"], services.payments.charged_cents
    with pytest.raises(grpc.RpcError) as caught:
        place(stub, timeout=0.1, trace_id=(trace_id := tracing.new_trace_id()))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert services.recorder.wait(trace_id, 7, timeout=3.0)
    assert services.inventory.stock["teapot"] == before - 1
    assert services.payments.charged_cents > charged
    assert server_spans(services, trace_id)["gateway"].status == "DEADLINE_EXCEEDED"


# --------------------------------------------------------------------------- tracing


def test_the_trace_id_reaches_every_hop_with_parent_links(running):
    services, stub = running
    _, trace_id = place(stub)
    spans = services.recorder.spans(trace_id)
    assert {s.trace_id for s in spans} == {trace_id}
    by_id = {s.span_id: s for s in spans}
    servers = {s.service: s for s in spans if s.kind == "server"}
    assert set(servers) == {"gateway", "orders", "inventory", "payments"}
    assert servers["gateway"].parent_id is None
    for callee, caller in (("orders", "gateway"), ("inventory", "orders"), ("payments", "orders")):
        link = by_id[servers[callee].parent_id]  # the caller's client span ...
        assert link.kind == "client" and link.service == caller
        assert link.method.startswith(f"/rpclab.shop.{callee.capitalize()}/")
        assert link.parent_id == servers[caller].span_id  # ... made while serving its own call
        assert link.start <= servers[callee].start and servers[callee].end <= link.end


def test_a_missing_or_malformed_trace_id_starts_a_new_trace(running):
    services, stub = running
    stub.PlaceOrder(ORDER, timeout=2.0, metadata=[(tracing.TRACE_ID_KEY, "x" * 200)])
    stub.PlaceOrder(ORDER, timeout=2.0)
    ids = services.recorder.trace_ids()
    assert len(ids) == 2 and all(tracing.is_trace_id(i) for i in ids)
    for trace_id in ids:
        assert len(server_spans(services, trace_id)) == 4


def test_the_recorder_is_bounded_and_counts_what_it_forgot():
    recorder = tracing.SpanRecorder(maxlen=3)
    for i in range(5):
        recorder.record(
            tracing.Span(
                "a" * 32, f"{i + 1:016x}", None, "svc", "/p.S/M", "server", i, i + 1, "OK", None
            )
        )
    assert len(recorder) == 3 and recorder.forgotten == 2
    assert [s.start for s in recorder.spans()] == [2, 3, 4]
    assert recorder.calls() == {"svc": 3}
    with pytest.raises(ValueError):
        tracing.SpanRecorder(maxlen=0)


def test_tree_puts_children_under_parents_and_survives_loops():
    def span(span_id, parent, start):
        return tracing.Span(
            "a" * 32, span_id, parent, "s", "/p.S/M", "server", start, start + 1, "OK", None
        )

    root, child, late, orphan = (
        span("1", None, 0),
        span("2", "1", 1),
        span("3", "1", 3),
        span("4", "zz", 2),
    )
    grandchild = span("5", "2", 2)
    rows = tracing.tree([late, grandchild, orphan, child, root])
    assert [(d, s.span_id) for d, s in rows] == [(0, "1"), (1, "2"), (2, "5"), (1, "3"), (0, "4")]
    loop = tracing.tree([span("6", "7", 0), span("7", "6", 1)])
    assert sorted(s.span_id for _, s in loop) == ["6", "7"]


def test_format_trace_shows_each_hop_its_budget_and_status(running):
    services, stub = running
    _, trace_id = place(stub, timeout=1.0)
    text = tracing.format_trace(services.recorder.spans(trace_id))
    lines = text.splitlines()
    assert lines[1].startswith("gateway: PlaceOrder") and "OK" in lines[1]
    assert any(line.strip().startswith("orders → Inventory.Reserve") for line in lines)
    assert tracing.format_trace([]) == "(no spans)"


# --------------------------------------------------------------------------- retries and the budget


def test_the_retry_budget_caps_retries_at_the_ratio_after_the_initial_tokens():
    budget = RetryBudget(ratio=0.1, max_tokens=5, initial_tokens=2)
    allowed = 0
    for _ in range(100):
        budget.record_call()
        allowed += sum(
            budget.try_retry() for _ in range(2)
        )  # every call fails twice and wants two retries
    assert allowed == 2 + 10  # the initial tokens plus 10% of 100 calls
    assert budget.stats == (100, allowed, 200 - allowed, 0.0)


def test_the_retry_budget_saves_up_at_most_max_tokens():
    budget = RetryBudget(ratio=0.5, max_tokens=3, initial_tokens=0)
    assert not budget.try_retry()
    for _ in range(100):
        budget.record_call()
    assert budget.tokens == 3
    assert [budget.try_retry() for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ratio": -0.1},
        {"ratio": float("nan")},
        {"max_tokens": 0},
        {"initial_tokens": 11},
        {"ratio": True},
    ],
)
def test_the_retry_budget_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError):
        RetryBudget(**kwargs)


def test_the_budget_caps_the_retries_of_an_outage(running):
    services, stub = running
    services.fail("orders", 1.0)
    services.set_retries("gateway", 3)

    outcomes = shop.place_orders(stub, 10, timeout=2.0)
    assert {o.status for o in outcomes} == {"ABORTED"}  # the gateway gave up on orders
    assert services.recorder.calls()["orders"] == 30  # every order tried three times

    services.recorder.clear()
    budget = RetryBudget(ratio=0.1, max_tokens=2)
    services.set_retries("gateway", 3, budget=budget)
    shop.place_orders(stub, 20, timeout=2.0)
    assert budget.stats.retries == 3  # 2 saved tokens, then one more after ten calls
    assert services.recorder.calls()["orders"] == 23


def test_a_retry_recovers_from_a_flaky_orders_service_and_makes_one_order(running):
    services, stub = running
    services.fail("orders", faults.Faults(fail=0.5, seed=3))
    services.set_retries("gateway", 5)
    before = services.inventory.stock["teapot"]
    outcomes = shop.place_orders(stub, 10, timeout=2.0)
    made = [o for o in outcomes if o.status == "OK"]
    # An order fails only if all five attempts do (1 in 32); the rest recover by retrying.
    assert {o.status for o in outcomes} <= {"OK", "ABORTED"} and len(made) >= 8
    assert any(o.attempts > 1 for o in made)
    assert services.inventory.stock["teapot"] == before - len(made)  # one order each, retried


def test_a_service_fails_as_the_shared_fault_vocabulary_says(running):
    services, stub = running
    services.fail("orders", faults.Faults(fail=1.0, seed=4))
    assert services.flaky["orders"].faults == faults.Faults(fail=1.0, seed=4)
    assert {o.status for o in shop.place_orders(stub, 2, timeout=2.0)} == {"ABORTED"}
    services.fail("orders", 0)
    assert services.flaky["orders"].faults == faults.Faults()
    # The gateway retries with new calls: to the server each is a first attempt.
    with pytest.raises(ValueError, match="cannot act on fail_first: the gateway retries"):
        services.fail("orders", faults.Faults(fail_first=1))


def test_orders_is_idempotent_per_order_id(running):
    services, _ = running
    with grpc.insecure_channel(f"127.0.0.1:{services.handles['orders'].port}") as channel:
        orders = shop_pb2_grpc.OrdersStub(channel)
        request = shop_pb2.CreateOrderRequest(
            order_id="ord-x", customer="ada", item="mug", quantity=2
        )
        first, second = (orders.Create(request, timeout=2.0) for _ in range(2))
    assert first == second and first.amount_cents == 2 * shop.PRICES["mug"]
    assert services.inventory.stock["mug"] == shop.DEFAULT_STOCK["mug"] - 2


# --------------------------------------------------------------------------- faults and errors


def test_a_reset_at_inventory_reaches_orders_as_unavailable_and_the_client_as_aborted(running):
    services, stub = running
    proxy = faults.serve_proxy(
        "test-inventory-proxy",
        target=services.handles["inventory"],
        faults=faults.Faults(reset=1.0),
        mode="bytes",
    )
    try:
        services.reroute("inventory", proxy.address)
        with pytest.raises(grpc.RpcError) as caught:
            place(stub)
        assert caught.value.code() == grpc.StatusCode.ABORTED
        assert caught.value.details().startswith("orders: inventory: ")
        assert any(
            n.service == "orders" and "inventory answered UNAVAILABLE; answering ABORTED" in n.text
            for n in services.journal.notes()
        )
        assert proxy.stats.request.resets + proxy.stats.reply.resets >= 1
        services.reroute("inventory")
        assert place(stub)[0].order.transaction_id
    finally:
        proxy.stop()


def test_bad_orders_are_refused_at_the_gateway(running):
    _, stub = running
    for request in (
        shop_pb2.PlaceOrderRequest(customer="", item="teapot", quantity=1),
        shop_pb2.PlaceOrderRequest(customer="ada", item="teapot", quantity=0),
        shop_pb2.PlaceOrderRequest(customer="ada", item="x" * 100, quantity=1),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            stub.PlaceOrder(request, timeout=2.0)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as caught:
        stub.PlaceOrder(
            shop_pb2.PlaceOrderRequest(customer="ada", item="spaceship", quantity=1), timeout=2.0
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


# --------------------------------------------------------------------------- health


def test_the_gateway_reports_degraded_when_a_dependency_is_not_serving(running):
    services, stub = running
    healthy = stub.Status(shop_pb2.StatusRequest(), timeout=2.0)
    assert healthy.status == "SERVING" and set(healthy.dependencies.values()) == {"SERVING"}

    services.set_serving("inventory", False)
    degraded = stub.Status(shop_pb2.StatusRequest(), timeout=2.0)
    assert degraded.status == "DEGRADED" and degraded.dependencies["inventory"] == "NOT_SERVING"

    services.set_serving("inventory", True)
    services.handles["payments"].stop()
    gone = stub.Status(shop_pb2.StatusRequest(), timeout=2.0)
    assert (
        gone.status == "DEGRADED" and gone.dependencies["payments"] == "UNREACHABLE (UNAVAILABLE)"
    )


# --------------------------------------------------------------------------- running it


def test_starting_a_shop_stops_the_one_before(running):
    first, _ = running
    second = shop.start(work=FAST)
    try:
        assert not any(h.running for h in first.handles.values())
        assert all(h.running for h in second.handles.values())
    finally:
        stopped = second.stop()
    assert sorted(stopped) == ["shop-gateway", "shop-inventory", "shop-orders", "shop-payments"]


def test_settings_are_checked(running):
    services, stub = running
    with pytest.raises(ValueError):
        services.set_work(warehouse=0.1)
    with pytest.raises(ValueError):
        services.set_work(inventory=-1)
    with pytest.raises(ValueError):
        services.fail("orders", 2)
    with pytest.raises(ValueError, match="serve_proxy"):
        services.fail("orders", faults.Faults(delay=0.1))
    with pytest.raises(ValueError):
        shop.place_orders(stub, 5, in_flight=0)


def test_place_orders_and_the_outcome_table(running):
    _, stub = running
    outcomes = shop.place_orders(stub, 6, timeout=2.0, in_flight=3)
    assert [o.status for o in outcomes] == ["OK"] * 6
    table = shop.format_outcomes({"calm": outcomes}, ["UNAVAILABLE"]).splitlines()
    assert table[0].split()[:2] == ["OK", "UNAVAILABLE"]
    assert table[1].split()[:3] == ["calm", "6", "0"]


def test_the_recorder_says_when_a_service_has_started_on_a_trace(running):
    services, stub = running
    services.set_work(inventory=0.3)
    trace_id = tracing.new_trace_id()
    call = stub.PlaceOrder.future(ORDER, timeout=2.0, metadata=[(tracing.TRACE_ID_KEY, trace_id)])
    assert services.recorder.wait_started(trace_id, "inventory", timeout=3.0)
    assert not any(s.service == "inventory" for s in services.recorder.spans(trace_id))  # at work
    assert services.recorder.wait_started(trace_id, "nobody", timeout=0.05) is False
    assert call.result(timeout=3.0).order.transaction_id
