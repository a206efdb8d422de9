"""The capstone's shop stays correct under failure: retries at one layer, status codes translated
at every service, an undo step when a payment fails, one idempotency key from the client to the
last hop, cancellation with the caller -- and, for each, the failure it prevents."""

from __future__ import annotations

import json
import threading

import grpc
import pytest

from rpclab import faults
from rpclab.capstone import shop
from rpclab.capstone.downstream import (
    PASSED_ON,
    NotCalled,
    Retries,
    ended,
    ended_how,
    translate,
)
from rpclab.capstone.retrybudget import RetryBudget
from rpclab.capstone.shop import shop_pb2, shop_pb2_grpc
from rpclab.lab import tracing
from shoplab import open_shop

NO_WORK = {name: 0.0 for name in shop.SERVICES}
Code = grpc.StatusCode


@pytest.fixture
def running():
    with open_shop(NO_WORK) as services_and_stub:
        yield services_and_stub


def order(key: str = "", item: str = "teapot", quantity: int = 1, customer: str = "ada"):
    return shop_pb2.PlaceOrderRequest(
        customer=customer, item=item, quantity=quantity, idempotency_key=key
    )


def code_of(stub, request, timeout=2.0):
    try:
        stub.PlaceOrder(request, timeout=timeout)
    except grpc.RpcError as error:
        return error.code()
    return Code.OK


def without_undo(reserve, charge, release):
    price = reserve()
    return price, charge(price)


# --------------------------------------------------------------------------- translating codes


def test_a_dependencys_unavailable_never_goes_up_unchanged():
    assert translate(Code.UNAVAILABLE) is Code.ABORTED
    assert translate(Code.RESOURCE_EXHAUSTED) is Code.ABORTED
    for code in PASSED_ON:
        assert translate(code) is code
    for code in (Code.INVALID_ARGUMENT, Code.UNKNOWN, Code.INTERNAL, Code.UNIMPLEMENTED):
        assert translate(code) is Code.INTERNAL  # went wrong between services: not the caller's
    assert all(translate(code) is not Code.UNAVAILABLE for code in Code)


def test_passing_unavailable_on_makes_every_layer_retry_the_chain_4_x_4_x_4(running):
    services, stub = running
    services.set_translation(False)
    services.orders.steps = without_undo
    services.set_retries("gateway", 4)
    services.set_retries("orders", 4)
    services.fail("payments", 1.0)
    for _ in range(4):  # the client retries UNAVAILABLE too: 4 attempts
        if code_of(stub, order()) is not Code.UNAVAILABLE:
            break
    calls = services.recorder.calls()
    assert (calls["gateway"], calls["orders"], calls["payments"]) == (4, 16, 64)


def test_translated_only_the_layer_above_the_failing_service_retries(running):
    services, stub = running
    services.set_retries("gateway", 4)
    services.set_retries("orders", 4)
    services.fail("payments", 1.0)
    codes = []
    for _ in range(4):
        codes.append(code_of(stub, order()))
        if codes[-1] is not Code.UNAVAILABLE:
            break
    assert codes == [Code.ABORTED]  # the client is told not to retry the call as it is
    calls = services.recorder.calls()
    assert (calls["gateway"], calls["orders"], calls["payments"]) == (1, 1, 4)


def test_a_code_about_the_callers_own_request_goes_up_unchanged(running):
    services, _ = running
    services.orders.retries = Retries()
    with grpc.insecure_channel(f"127.0.0.1:{services.handles['orders'].port}") as channel:
        orders = shop_pb2_grpc.OrdersStub(channel)
        # An item inventory refuses as NOT_FOUND goes up unchanged: it is the caller's item.
        with pytest.raises(grpc.RpcError) as caught:
            orders.Create(
                shop_pb2.CreateOrderRequest(order_id="x", customer="ada", item="yacht", quantity=1),
                timeout=2.0,
            )
        assert caught.value.code() is Code.NOT_FOUND


def test_retries_are_bounded_and_checked():
    with pytest.raises(ValueError):
        Retries(0)
    with pytest.raises(ValueError):
        Retries(11)
    with pytest.raises(ValueError):
        Retries(2, budget=0.1)
    with pytest.raises(ValueError):
        Retries(2, backoff=-1)
    assert "3 attempts" in repr(Retries(3, budget=RetryBudget()))


# --------------------------------------------------------------------------- the undo step


def test_without_the_undo_step_a_failed_payment_leaks_a_reserved_item(running):
    services, stub = running
    services.orders.steps = without_undo
    services.fail("payments", 1.0)
    before = services.inventory.stock["teapot"]
    assert code_of(stub, order()) is Code.ABORTED
    assert services.inventory.stock["teapot"] == before - 1


def test_a_failed_payment_puts_the_reserved_items_back(running):
    services, stub = running
    services.fail("payments", 1.0)
    before = services.inventory.stock["mug"]
    assert code_of(stub, order("k1", item="mug", quantity=3)) is Code.ABORTED
    assert services.inventory.stock["mug"] == before
    assert services.recorder.calls("client", by="method")["Inventory.Release"] == 1
    # The same key, once payments is back, makes the order: the release forgot the reservation.
    services.fail("payments", 0)
    assert code_of(stub, order("k1", item="mug", quantity=3)) is Code.OK
    assert services.inventory.stock["mug"] == before - 3


def test_a_release_that_cannot_be_made_is_kept_for_a_person(running):
    services, stub = running
    services.fail("payments", 1.0)
    proxy = faults.serve_proxy(
        "test-release-proxy", target=services.handles["inventory"], mode="bytes"
    )
    try:
        services.reroute("inventory", proxy.address)
        original = services.orders._release

        def release_through_reset(*args, **kwargs):  # inventory unreachable for the undo only
            proxy.faults = faults.Faults(reset=1.0)
            return original(*args, **kwargs)

        services.orders._release = release_through_reset
        assert code_of(stub, order("k9")) is Code.ABORTED
    finally:
        services.reroute("inventory")
        proxy.stop()
    assert list(services.orders.unreleased) == ["ada:k9"]
    assert any("left for a person to fix" in n.text for n in services.journal.notes())


def test_the_undo_step_runs_although_the_caller_is_gone(running):
    services, stub = running
    services.set_work(payments=0.5)
    before = services.inventory.stock["teapot"]
    trace_id = tracing.new_trace_id()
    with pytest.raises(grpc.RpcError) as caught:
        stub.PlaceOrder(order("late"), timeout=0.2, metadata=[(tracing.TRACE_ID_KEY, trace_id)])
    assert caught.value.code() is Code.DEADLINE_EXCEEDED
    # Reserve, Charge (cut short by the deadline) and Release, each as a call made and served.
    assert services.recorder.wait(trace_id, 9, timeout=3.0)
    assert services.inventory.stock["teapot"] == before


# --------------------------------------------------------------------------- one key, every hop


def test_a_key_travels_to_every_hop_as_the_order_id(running):
    services, stub = running
    reply = stub.PlaceOrder(order("k-7"), timeout=2.0)
    assert reply.order.order_id == "ada:k-7"
    assert any("ada:k-7: reserved" in n.text for n in services.journal.notes())
    assert any("ada:k-7: charged" in n.text for n in services.journal.notes())


@pytest.fixture
def slow_reply(running):
    """The gateway behind a proxy that holds every reply back 0.7 s (connected first)."""
    services, _ = running
    proxy = faults.serve_proxy(
        "test-gateway-proxy", target=services.handles["gateway"], mode="bytes"
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{proxy.address[1]}")
    stub = shop_pb2_grpc.GatewayStub(channel)
    stub.Status(shop_pb2.StatusRequest(), timeout=2.0)
    proxy.faults = faults.Faults(delay=0.7, direction="reply")
    try:
        yield services, stub
    finally:
        channel.close()
        proxy.stop()


@pytest.mark.parametrize(("key", "charges"), [("", 3), ("one-key", 1)])
def test_retrying_after_a_late_reply_charges_once_only_with_a_key(slow_reply, key, charges):
    services, stub = slow_reply
    before = services.payments.charges
    for _ in range(3):
        assert code_of(stub, order(key, item="mug"), timeout=0.5) is Code.DEADLINE_EXCEEDED
    # Every attempt was served in full before its late reply: the charges are all in.
    assert services.payments.charges - before == charges


def test_a_key_names_one_order(running):
    _, stub = running
    assert code_of(stub, order("same", item="mug")) is Code.OK
    assert code_of(stub, order("same", item="mug")) is Code.OK  # a retry: the same order
    assert code_of(stub, order("same", item="kettle")) is Code.ALREADY_EXISTS
    assert code_of(stub, order("same", item="kettle", customer="bob")) is Code.OK  # per customer


@pytest.mark.parametrize("key", ["has space", "x" * 65, "colon:", "ü"])
def test_bad_keys_are_refused(running, key):
    _, stub = running
    assert code_of(stub, order(key)) is Code.INVALID_ARGUMENT


def test_two_calls_making_one_order_at_once_make_it_once(running):
    services, _ = running
    services.set_work(inventory=0.2)
    request = shop_pb2.CreateOrderRequest(order_id="twice", customer="ada", item="mug", quantity=1)
    replies = []
    with grpc.insecure_channel(f"127.0.0.1:{services.handles['orders'].port}") as channel:
        orders = shop_pb2_grpc.OrdersStub(channel)
        threads = [
            threading.Thread(target=lambda: replies.append(orders.Create(request, timeout=3.0)))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
    assert len(replies) == 2 and replies[0] == replies[1]
    assert services.payments.charges == 1
    assert services.inventory.stock["mug"] == shop.DEFAULT_STOCK["mug"] - 1


# --------------------------------------------------------------------------- cancellation


@pytest.mark.parametrize("cancel", [False, True])
def test_a_caller_that_goes_away_stops_the_services_behind_only_with_cancellation(running, cancel):
    services, stub = running
    services.set_cancellation(cancel)
    services.set_work(inventory=0.2)
    stock, charges = services.inventory.stock["teapot"], services.payments.charges
    reserving = threading.Event()
    working = services.inventory._working

    def noticed(context, order_id):  # a seam: tell the test that inventory is at work
        reserving.set()
        return working(context, order_id)

    services.inventory._working = noticed
    trace_id = tracing.new_trace_id()
    call = stub.PlaceOrder.future(order(), timeout=5.0, metadata=[(tracing.TRACE_ID_KEY, trace_id)])
    assert reserving.wait(3.0)
    call.cancel()
    # gateway, orders and inventory served and called; payments too if nothing stopped them
    assert services.recorder.wait(trace_id, 5 if cancel else 7, timeout=3.0)
    if cancel:
        assert services.inventory.stock["teapot"] == stock
        assert services.payments.charges == charges
        assert any("stopped after" in n.text for n in services.journal.notes())
    else:
        assert services.inventory.stock["teapot"] == stock - 1
        assert services.payments.charges == charges + 1
        assert any("still waiting for orders" in n.text for n in services.journal.notes())


@pytest.mark.parametrize("undo", [False, True])
def test_a_handler_that_does_not_cooperate_works_on_and_only_the_undo_keeps_its_effect_away(
    running, undo
):
    services, stub = running
    services.set_work(inventory=0.3)
    services.inventory.cooperative = False
    services.orders.undo_unanswered = undo
    before = services.inventory.stock["teapot"]
    trace_id = tracing.new_trace_id()
    with pytest.raises(grpc.RpcError) as caught:
        stub.PlaceOrder(order(), timeout=0.15, metadata=[(tracing.TRACE_ID_KEY, trace_id)])
    assert caught.value.code() is Code.DEADLINE_EXCEEDED
    # five spans; with the undo, a Release made and served too
    assert services.recorder.wait(trace_id, 7 if undo else 5, timeout=3.0)
    assert services.recorder.wait(trace_id, 99, timeout=0.3) is False  # and nothing more
    notes = [n.text for n in services.journal.notes() if n.service == "inventory"]
    if undo:  # the release overtook the reservation, which was refused when it came
        assert services.inventory.stock["teapot"] == before
        assert any("not reserving: attempt" in text for text in notes)
    else:
        assert services.inventory.stock["teapot"] == before - 1  # reserved for nobody
        assert any("after its call ended" in text for text in notes)


@pytest.mark.parametrize("undo", [False, True])
def test_a_reservation_made_just_before_the_cancel_came_is_released(running, undo):
    # The cold reader's run: inventory reserved, then the cancel arrived, and its reply was lost.
    services, stub = running
    services.orders.undo_unanswered = undo
    inventory = services.inventory
    reserved = threading.Event()
    note_late = inventory._late

    def hold_the_reply(context):  # a seam: runs after the reservation, before the reply
        reserved.set()
        ended(context, 3.0)  # until the cancel has reached inventory
        return note_late(context)

    inventory._late = hold_the_reply
    before = inventory.stock["teapot"]
    trace_id = tracing.new_trace_id()
    call = stub.PlaceOrder.future(order(), timeout=5.0, metadata=[(tracing.TRACE_ID_KEY, trace_id)])
    assert reserved.wait(3.0)
    call.cancel()
    assert services.recorder.wait(trace_id, 7 if undo else 5, timeout=3.0)
    assert services.payments.charges == 0
    assert inventory.stock["teapot"] == (before if undo else before - 1)
    if undo:
        assert any("so the reservation is undone" in n.text for n in services.journal.notes())


def test_a_release_that_overtakes_its_reservation_refuses_that_attempt_only(running):
    services, _ = running
    with grpc.insecure_channel(f"127.0.0.1:{services.handles['inventory'].port}") as channel:
        inventory = shop_pb2_grpc.InventoryStub(channel)
        released = inventory.Release(shop_pb2.ReleaseRequest(order_id="o-1", attempt=1), timeout=2)
        assert released.released is False
        late = shop_pb2.ReserveRequest(order_id="o-1", item="mug", quantity=2, attempt=1)
        with pytest.raises(grpc.RpcError) as caught:
            inventory.Reserve(late, timeout=2)
        assert caught.value.code() is Code.ABORTED
        assert services.inventory.stock["mug"] == shop.DEFAULT_STOCK["mug"]
        # The next attempt at the same order (the client retried with its key) is served.
        again = shop_pb2.ReserveRequest(order_id="o-1", item="mug", quantity=2, attempt=2)
        assert inventory.Reserve(again, timeout=2).remaining == shop.DEFAULT_STOCK["mug"] - 2


def test_after_an_unanswered_reservation_was_undone_a_retry_with_the_key_makes_the_order(running):
    services, stub = running
    services.set_work(inventory=0.3)
    services.inventory.cooperative = False
    assert code_of(stub, order("retry-me"), timeout=0.15) is Code.DEADLINE_EXCEEDED
    # wait until the late reservation has come and been refused
    assert services.recorder.wait(services.recorder.trace_ids()[-1], 7, timeout=3.0)
    services.set_work(inventory=0.0)
    services.inventory.cooperative = True
    assert code_of(stub, order("retry-me")) is Code.OK
    assert services.inventory.stock["teapot"] == shop.DEFAULT_STOCK["teapot"] - 1
    assert services.payments.charges == 1


def test_not_called_reads_like_a_failed_call():
    error = NotCalled(Code.CANCELLED, "gateway: not calling orders")
    assert isinstance(error, grpc.RpcError)
    assert (error.code(), error.details()) == (Code.CANCELLED, "gateway: not calling orders")


# --------------------------------------------------------------------------- deadlines


def test_a_server_over_estimates_its_time_left_by_the_time_in_transit(running):
    services, stub = running
    proxy = faults.serve_proxy(
        "test-orders-proxy",
        target=services.handles["orders"],
        mode="bytes",
        faults=faults.Faults(delay=0.05, direction="request"),
    )
    try:
        services.reroute("orders", proxy.address)
        trace_id = tracing.new_trace_id()
        stub.PlaceOrder(order(), timeout=0.8, metadata=[(tracing.TRACE_ID_KEY, trace_id)])
    finally:
        services.reroute("orders")
        proxy.stop()
    spans = services.recorder.spans(trace_id)
    sent = next(s for s in spans if s.kind == "client" and s.name == "Orders.Create")
    served = next(s for s in spans if s.kind == "server" and s.service == "orders")
    over = (served.start + served.budget) - (sent.start + sent.budget)
    assert served.start - sent.start >= 0.05  # 50 ms on the way
    # ... which orders counts as its own time (less the moment the client took to send it)
    assert over >= 0.035


# --------------------------------------------------------------------------- retry throttling


def test_grpc_retry_throttling_stops_retrying_in_an_outage_unlike_a_retry_budget(running):
    """gRFC A6: tokens start at maxTokens, a failure takes one, a success gives tokenRatio back,
    and no retry is made while tokens <= maxTokens / 2."""
    services, stub = running
    services.fail("orders", 1.0)
    config = {
        "methodConfig": [
            {
                "name": [{"service": "rpclab.shop.Orders"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.05s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
        "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
    }
    options = [("grpc.service_config", json.dumps(config)), ("grpc.enable_retries", 1)]
    address = f"127.0.0.1:{services.handles['orders'].port}"
    with grpc.insecure_channel(address, options=options) as channel:
        orders = shop_pb2_grpc.OrdersStub(channel)
        for i in range(100):
            with pytest.raises(grpc.RpcError):
                orders.Create(
                    shop_pb2.CreateOrderRequest(
                        order_id=f"t{i}", customer="ada", item="mug", quantity=1
                    ),
                    timeout=2.0,
                )
    # 10 -> 9 -> 8 -> 7 (a call and its two retries), 6 -> 5 (a call and one retry), then none.
    assert services.recorder.calls()["orders"] == 103

    services.recorder.clear()
    budget = RetryBudget(ratio=0.1, max_tokens=10)
    services.set_retries("gateway", 3, budget=budget)
    shop.place_orders(stub, 100, timeout=2.0)
    assert services.recorder.calls()["orders"] == 100 + 10 + 9  # keeps allowing about 10%


class _Context:  # what ended_how reads of a call being served
    def __init__(self, left):
        self.left = left

    def time_remaining(self):
        return self.left


def test_how_a_call_ended_says_how_long_before_its_deadline_a_cancel_came():
    assert ended_how(_Context(0.0)) == "its deadline passed"
    assert ended_how(_Context(0.0123)) == "it was cancelled, 12 ms before its deadline"
    assert ended_how(_Context(1e10)) == "it was cancelled"  # grpcio's "no deadline"


def test_the_details_name_each_service_on_the_way_once(running):
    _, stub = running
    with pytest.raises(grpc.RpcError) as caught:
        stub.PlaceOrder(order(item="spoon"), timeout=2.0)
    assert caught.value.code() is Code.NOT_FOUND
    assert caught.value.details() == "orders: inventory: no such item 'spoon'"
