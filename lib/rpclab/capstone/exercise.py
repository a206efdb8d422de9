"""The checks behind notebook 15's exercises: the undo step of an order, and a client that retries
an order safely. Each is run by rpclab.exercises.check and says what is wrong in plain words.

* :func:`check_make_order` -- the learner writes ``make_order(reserve, charge, release)``, the
  saga of one order; the check runs it with stand-ins first (charge fails, then succeeds: the
  error charge() raised must come out unchanged), then in the running shop with payments
  failing every call: no item may stay reserved for an order that failed, and the client must
  hear ABORTED (orders' words for a payments service that is down), not a status code lost on
  the way.
* :func:`check_place_safely` -- the learner writes ``place_safely(gateway, request, timeout)``,
  a client that retries; the check calls it first with stand-in gateways (one that never
  answers in time: 3 attempts, then the error; one that refuses the order: no retry; one
  UNAVAILABLE twice: retried), then puts a fault proxy in front of the real gateway that delays
  the first reply past the client's timeout (the order is made, the client hears "it failed"),
  and counts the charges: one order, one charge; and two identical orders are two orders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from rpclab.capstone.shop import PRICES, Shop, make_order, shop_pb2, shop_pb2_grpc
from rpclab.exercises import expect
from rpclab.faults import Faults, serve_proxy

__all__ = ["check_make_order", "check_place_safely", "SlowFirstReply", "StandInGateway"]

DELAY = 0.7  # seconds the first reply is held back: longer than TIMEOUT
TIMEOUT = 0.5  # seconds each attempt of place_safely is given: ample for the order itself
CUSTOMER = "exercise"
ATTEMPTS = 3  # attempts in all that place_safely makes at an order that never answers in time
ENOUGH = 10  # attempts after which a stand-in gateway stops a client that never gives up

Code = grpc.StatusCode


class StandInError(grpc.RpcError):
    """A failed call, as a stand-in service raises it: grpc.RpcError with a code and details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def _unavailable() -> grpc.RpcError:
    return StandInError(Code.UNAVAILABLE, "payments: unavailable (a stand-in)")


def _with_stand_ins(steps: Callable[..., Any], charge_fails: bool) -> tuple[list[str], Any, Any]:
    """Run ``steps`` with stand-ins; return what happened, what it returned (or raised), and the
    error the stand-in charge() raised (None if it did not fail)."""
    happened: list[str] = []
    raised: list[grpc.RpcError] = []

    def reserve() -> int:
        happened.append("reserve")
        return 2_500

    def charge(cents: int) -> str:
        happened.append(f"charge {cents}")
        if charge_fails:
            raised.append(_unavailable())
            raise raised[-1]
        return "txn-1"

    def release() -> bool:
        happened.append("release")
        return True

    try:
        result: Any = steps(reserve, charge, release)
    except grpc.RpcError as error:
        result = error
    return happened, result, raised[-1] if raised else None


def check_make_order(steps: Callable[..., Any], services: Shop) -> str:
    """Check the learner's ``steps(reserve, charge, release)``: stand-ins first, then the shop."""
    happened, result, _ = _with_stand_ins(steps, charge_fails=False)
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
    happened, result, charge_error = _with_stand_ins(steps, charge_fails=True)
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
    expect(
        result is charge_error,
        f"the charge failed with UNAVAILABLE, but make_order raised another error "
        f"({_described(result)}): the status code is lost on the way. "
        "After release(), raise the error charge() raised, unchanged (a bare `raise`)",
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
            expect(
                failed == "ABORTED",
                f"with payments down the client should hear ABORTED (payments' UNAVAILABLE, in "
                f"orders' words), but it heard {failed}: raise the error charge() raised, "
                "unchanged, so that orders can say what failed",
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


def _code_name(error: object) -> str:
    code = getattr(error, "code", None)
    try:
        value = code() if callable(code) else None
    except Exception:  # noqa: BLE001 (a learner's error class may break in any way)
        value = None
    return value.name if isinstance(value, grpc.StatusCode) else "no status code"


def _described(error: object) -> str:
    name = _code_name(error)
    if name != "no status code":
        return name
    return f"an error with no status code ({type(error).__name__})"


def _short(value: object) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


class _TooManyAttempts(BaseException):
    """Raised by a stand-in gateway to stop a client that never gives up (a BaseException, so
    that ``except grpc.RpcError`` and ``except Exception`` let it through)."""


class StandInGateway:
    """A GatewayStub stand-in: each PlaceOrder raises the next of ``failures`` (status codes),
    then answers; it records the timeout and key of every attempt, and stops a client that
    makes more than ENOUGH attempts."""

    def __init__(self, *failures: grpc.StatusCode, answers: bool = True) -> None:
        self.failures = list(failures)
        self.answers = answers
        self.timeouts: list[float | None] = []
        self.keys: list[str] = []

    @property
    def calls(self) -> int:
        return len(self.timeouts)

    def PlaceOrder(self, request: Any, timeout: float | None = None, **kwargs: Any) -> Any:  # noqa: N802 (a stub's method)
        if self.calls >= ENOUGH:
            raise _TooManyAttempts
        self.timeouts.append(timeout)
        self.keys.append(request.idempotency_key)
        if self.calls <= len(self.failures):
            code = self.failures[self.calls - 1]
            raise StandInError(code, f"a stand-in gateway's {code.name}")
        if not self.answers:
            raise StandInError(Code.DEADLINE_EXCEEDED, "Deadline Exceeded")
        order = shop_pb2.Order(order_id=request.idempotency_key, transaction_id="txn-stand-in")
        return shop_pb2.PlaceOrderReply(order=order, attempts=1)


def _with_stand_in(
    place_safely: Callable[..., Any], gateway: StandInGateway, timeout: float
) -> tuple[Any, grpc.RpcError | None]:
    """Call the learner's client with a stand-in gateway; (reply or None, error or None)."""
    request = shop_pb2.PlaceOrderRequest(customer=CUSTOMER, item="mug", quantity=1)
    try:
        return place_safely(gateway, request, timeout), None
    except grpc.RpcError as error:
        return None, error
    except _TooManyAttempts:
        expect(
            False,
            f"place_safely was still retrying after {ENOUGH} attempts at an order that never "
            f"answered in time: bound the attempts ({ATTEMPTS} in all), then raise the last error",
        )
    raise AssertionError("not reached")


def _check_with_stand_ins(place_safely: Callable[..., Any]) -> None:
    """The client's retry policy, against stand-in gateways: bounded, and only what may pass."""
    never = StandInGateway(answers=False)
    reply, error = _with_stand_in(place_safely, never, 0.25)
    expect(
        error is not None,
        f"the gateway never answered in time, yet place_safely returned {_short(reply)}: raise "
        "the last error when the attempts are spent",
    )
    expect(
        never.calls == ATTEMPTS,
        f"the gateway never answered in time and place_safely made {never.calls} attempt(s): "
        f"make {ATTEMPTS} in all, then raise the last error",
    )
    expect(
        error is not None and _code_name(error) == "DEADLINE_EXCEEDED",
        f"after the last attempt place_safely raised {_described(error)}: raise the error "
        "the last attempt failed with (DEADLINE_EXCEEDED), unchanged",
    )
    expect(
        all(timeout == 0.25 for timeout in never.timeouts),
        f"place_safely was given 0.25 s per attempt but passed timeout={never.timeouts}: give "
        "every attempt `timeout` seconds",
    )
    expect(
        len(set(never.keys)) == 1 and never.keys[0],
        f"the attempts at one order carried the keys {never.keys}: choose one key per order, "
        "before the first attempt, and send it with every attempt",
    )
    refused = StandInGateway(Code.INVALID_ARGUMENT)
    reply, error = _with_stand_in(place_safely, refused, 0.25)
    expect(
        refused.calls == 1 and error is not None and _code_name(error) == "INVALID_ARGUMENT",
        f"the gateway refused the order (INVALID_ARGUMENT: the order itself is wrong, so "
        f"another attempt cannot help), and place_safely made {refused.calls} attempt(s) and "
        f"ended with {_code_name(error) if error else 'a reply'}: retry only "
        "DEADLINE_EXCEEDED and UNAVAILABLE, and raise anything else at once",
    )
    down = StandInGateway(Code.UNAVAILABLE, Code.UNAVAILABLE)
    reply, error = _with_stand_in(place_safely, down, 0.25)
    expect(
        error is None and down.calls == ATTEMPTS,
        f"the gateway answered UNAVAILABLE twice, then took the order; place_safely made "
        f"{down.calls} attempt(s) and ended with {_code_name(error) if error else 'a reply'}: "
        "UNAVAILABLE is worth another attempt too",
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
    """Check the learner's ``place_safely(gateway, request, timeout)``: a bounded retry of what
    may be retried (stand-ins), then in the shop one order, one charge, although the first reply
    comes too late, and two identical orders, two charges."""
    _check_with_stand_ins(place_safely)
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
        again = shop_pb2.PlaceOrderRequest(customer=CUSTOMER, item="mug", quantity=1)
        try:
            third = place_safely(gateway, again, 2.0)
        except grpc.RpcError as error:
            expect(False, f"a second order for a mug failed with {error.code().name}")
        expect(
            payments.charges - charges == 3 and third.order.order_id != reply.order.order_id,
            "the customer ordered a mug, then another mug: two orders, but the second was "
            f"answered with the first ({third.order.order_id}) and not charged. A key made from "
            "what is ordered names every identical order the same: choose a new random key for "
            "every order (uuid.uuid4().hex)",
        )
    finally:
        gateway.close()
        services.set_work(**work)
    price = PRICES["mug"] / 100
    return (
        f"{gateway.calls} calls to the gateway for three orders; the first mug was charged once "
        f"({price:.2f}), although its first reply came too late"
    )
