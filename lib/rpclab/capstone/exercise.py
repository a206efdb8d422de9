"""The checks behind notebook 15's exercises: the undo step of an order, and a client that retries
an order safely. Each is run by rpclab.exercises.check and says what is wrong in plain words.

* :func:`check_make_order` -- the learner writes ``make_order(reserve, charge, release)``, the
  saga of one order; the check runs it with stand-ins first (charge fails, then succeeds), then
  in the running shop with payments failing every call: no item may stay reserved for an order
  that failed.
* :func:`check_place_safely` -- the learner writes ``place_safely(gateway, request, timeout)``,
  a client that retries; the check puts a fault proxy in front of the gateway that delays the
  first reply past the client's timeout (the order is made, the client hears "it failed"), and
  counts the charges: one order, one charge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from rpclab.capstone.downstream import NotCalled
from rpclab.capstone.shop import PRICES, Shop, make_order, shop_pb2, shop_pb2_grpc
from rpclab.exercises import expect
from rpclab.faults import Faults, serve_proxy

__all__ = ["check_make_order", "check_place_safely", "SlowFirstReply"]

DELAY = 0.7  # seconds the first reply is held back: longer than TIMEOUT
TIMEOUT = 0.5  # seconds each attempt of place_safely is given: ample for the order itself
CUSTOMER = "exercise"


def _unavailable() -> grpc.RpcError:
    return NotCalled(grpc.StatusCode.UNAVAILABLE, "payments: unavailable (a stand-in)")


def _with_stand_ins(steps: Callable[..., Any], charge_fails: bool) -> tuple[list[str], Any]:
    happened: list[str] = []

    def reserve() -> int:
        happened.append("reserve")
        return 2_500

    def charge(cents: int) -> str:
        happened.append(f"charge {cents}")
        if charge_fails:
            raise _unavailable()
        return "txn-1"

    def release() -> bool:
        happened.append("release")
        return True

    try:
        result: Any = steps(reserve, charge, release)
    except grpc.RpcError as error:
        result = error
    return happened, result


def check_make_order(steps: Callable[..., Any], services: Shop) -> str:
    """Check the learner's ``steps(reserve, charge, release)``: stand-ins first, then the shop."""
    happened, result = _with_stand_ins(steps, charge_fails=False)
    expect(
        happened[:2] == ["reserve", "charge 2500"],
        f"reserve() first, then charge(price) with the price reserve() gave: the calls were "
        f"{happened}",
    )
    expect(
        "release" not in happened,
        "the charge worked, yet the items were released: release() only when the charge fails",
    )
    expect(
        result == (2_500, "txn-1"),
        f"when the charge works, return (price, transaction id), here (2500, 'txn-1'), "
        f"not {result!r}",
    )
    happened, result = _with_stand_ins(steps, charge_fails=True)
    expect(
        "release" in happened,
        "the charge failed and the items were never released: call release() when charge() "
        "raises grpc.RpcError",
    )
    expect(
        isinstance(result, grpc.RpcError),
        f"the charge failed, yet make_order returned {result!r}: raise the error again "
        "after release(), so that the order fails",
    )

    payments_faults = services.flaky["payments"].faults
    services.orders.steps = steps
    try:
        services.fail("payments", 1.0)
        before = services.inventory.stock["mug"]
        with grpc.insecure_channel(f"127.0.0.1:{services.port}") as channel:
            gateway = shop_pb2_grpc.GatewayStub(channel)
            order = shop_pb2.PlaceOrderRequest(customer=CUSTOMER, item="mug", quantity=2)
            try:
                gateway.PlaceOrder(order, timeout=2.0)
            except grpc.RpcError as error:
                failed = error.code().name
            else:
                failed = ""
            expect(failed, "with payments failing every call, the order still succeeded")
            left = services.inventory.stock["mug"]
            expect(
                left == before,
                f"in the shop, with payments down, the order failed ({failed}) but "
                f"{before - left} mugs stayed reserved",
            )
            services.fail("payments", 0)
            reply = gateway.PlaceOrder(order, timeout=2.0)
            expect(
                services.inventory.stock["mug"] == before - 2,
                "with payments back, an order for 2 mugs should take 2 out of stock",
            )
    finally:
        services.fail("payments", payments_faults)  # as the check found it
        services.orders.steps = make_order
    return (
        f"with payments down the order failed ({failed}) and the stock stayed at {before}; "
        f"with payments back it was made ({reply.order.transaction_id})"
    )


class SlowFirstReply:
    """A GatewayStub reached through a fault proxy that holds back the reply to the first
    PlaceOrder by ``delay`` seconds (the order is made; the client hears nothing in time)."""

    def __init__(self, services: Shop, delay: float = DELAY) -> None:
        self.services = services
        self.delay = delay
        self.calls = 0
        self.proxy = serve_proxy(
            "exercise-gateway-proxy", target=services.handles["gateway"], mode="bytes"
        )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.proxy.address[1]}")
        self._stub = shop_pb2_grpc.GatewayStub(self.channel)
        self._stub.Status(shop_pb2.StatusRequest(), timeout=2.0)  # connect before the fault

    def PlaceOrder(self, request: Any, timeout: float | None = None, **kwargs: Any) -> Any:  # noqa: N802 (a stub's method)
        self.calls += 1
        self.proxy.faults = (
            Faults(delay=self.delay, direction="reply") if self.calls == 1 else Faults()
        )
        return self._stub.PlaceOrder(request, timeout=timeout, **kwargs)

    def close(self) -> None:
        self.channel.close()
        self.proxy.stop()


def check_place_safely(place_safely: Callable[..., Any], services: Shop) -> str:
    """Check the learner's ``place_safely(gateway, request, timeout)``: one order, one charge,
    although the first reply comes too late."""
    payments, stock = services.payments, services.inventory
    work = {name: servicer.work for name, servicer in services.services.items()}
    services.set_work(**dict.fromkeys(work, 0.0))  # each order made at once, whatever the load
    gateway = SlowFirstReply(services)
    try:
        charges, mugs = payments.charges, stock.stock["mug"]
        request = shop_pb2.PlaceOrderRequest(customer=CUSTOMER, item="mug", quantity=1)
        try:
            reply = place_safely(gateway, request, TIMEOUT)
        except grpc.RpcError as error:
            expect(
                False,
                f"place_safely gave up after {gateway.calls} attempt(s) with "
                f"{error.code().name}: the order may have been made all the same; retry it "
                "(with the same key, that is safe)",
            )
        expect(gateway.calls >= 2, "the first reply came too late, and place_safely never retried")
        expect(
            reply is not None and reply.order.transaction_id,
            f"place_safely should return the gateway's reply, not {reply!r}",
        )
        charged = payments.charges - charges
        expect(
            charged != 0,
            "the order was answered, but nobody was charged: was its key used before? Choose a "
            "new key for every order (uuid.uuid4().hex, say)",
        )
        expect(
            charged == 1,
            f"the customer was charged {charged} times for one order: every attempt must carry "
            "the same idempotency_key, chosen once per order",
        )
        expect(stock.stock["mug"] == mugs - 1, "one order for one mug took more than one mug")
        second = shop_pb2.PlaceOrderRequest(customer=CUSTOMER, item="kettle", quantity=1)
        try:
            other = place_safely(gateway, second, 2.0)
        except grpc.RpcError as error:
            expect(
                False,
                f"a second, different order failed with {error.code().name}: "
                f"{error.details()[:80]} -- choose a new key for every order "
                "(uuid.uuid4().hex, say)",
            )
        expect(
            payments.charges - charges == 2 and other.order.item == "kettle",
            "a second, different order should be a second charge",
        )
    finally:
        gateway.close()
        services.set_work(**work)
    price = PRICES["mug"] / 100
    return (
        f"{gateway.calls} calls to the gateway for two orders; the mug was charged once "
        f"({price:.2f}), although its first reply came too late"
    )
