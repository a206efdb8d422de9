"""The capstone's small system: four gRPC services of a shop that call each other
(protos/shop.proto).

Notebook 15's system. One module of about 900 lines on purpose: the four services, how they
call each other and how the system is started are one design, read side by side (each
servicer is under 100 lines).

::

    client -> gateway.PlaceOrder -> orders.Create -> inventory.Reserve
                                                  -> payments.Charge

Each service is a small servicer class; :func:`start` runs all four with
rpclab.runtime.background, wires them together by address and returns a :class:`Shop`::

    services = shop.start()
    stub = shop_pb2_grpc.GatewayStub(grpc.insecure_channel(f"127.0.0.1:{services.port}"))
    stub.PlaceOrder(shop_pb2.PlaceOrderRequest(customer="ada", item="teapot", quantity=1),
    timeout=1.0)
    services.stop()

What the services show:

* **Deadline propagation.** Every downstream call gets the *time its caller
  has left*, less a small margin (:func:`downstream_timeout`), so a request
  whose budget runs out stops everywhere at once, and each service stops its
  own work when its call ends (see :attr:`Shop.journal`).
* **Tracing.** Every server records spans and every downstream channel sends
  the trace id on (rpclab.lab.tracing), into one :class:`~rpclab.lab.tracing.SpanRecorder`.
* **Retries within a budget.** The gateway may retry UNAVAILABLE from Orders,
  at most ``max_attempts`` per order and only while its
  :class:`~rpclab.capstone.retrybudget.RetryBudget` allows. Orders is idempotent per
  order id, so a retry never makes a second order.
* **Health.** Each server serves grpc.health.v1; ``Gateway.Status`` checks its
  dependencies and says DEGRADED when one is not SERVING.
* **Faults on demand**, in rpclab.faults' vocabulary. :meth:`Shop.fail` makes a service fail
  calls with UNAVAILABLE (``Faults(fail=...)``, through a Flaky interceptor on its server);
  :meth:`Shop.reroute` sends a service's traffic through another address, such as a fault
  proxy's (``Faults(delay=...)``, ``reset=``...).
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from typing import Any, NamedTuple

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from rpclab import checks
from rpclab.capstone.retrybudget import RetryBudget
from rpclab.faults.flaky import Flaky
from rpclab.faults.vocabulary import Faults
from rpclab.grpcstack import protos
from rpclab.grpcstack.deadlines import time_left
from rpclab.lab.tracing import SpanRecorder
from rpclab.runtime import background

__all__ = [
    "SERVICES",
    "FULL_NAMES",
    "DEFAULT_STOCK",
    "DEFAULT_WORK",
    "PRICES",
    "Journal",
    "Note",
    "Downstream",
    "downstream_timeout",
    "Gateway",
    "Orders",
    "Inventory",
    "Payments",
    "Shop",
    "start",
    "Outcome",
    "place_orders",
    "format_outcomes",
    "shop_pb2",
    "shop_pb2_grpc",
]

shop_pb2, shop_pb2_grpc = protos.load("shop")

SERVICES = ("gateway", "orders", "inventory", "payments")
FULL_NAMES = {
    name: shop_pb2.DESCRIPTOR.services_by_name[name.capitalize()].full_name for name in SERVICES
}
DEPENDENCIES = {"gateway": ("orders", "inventory", "payments"), "orders": ("inventory", "payments")}

DEFAULT_STOCK = {"teapot": 10_000, "kettle": 5_000, "mug": 50_000}
PRICES = {"teapot": 2_500, "kettle": 4_000, "mug": 800}  # cents
DEFAULT_PRICE = 1_000  # cents, for an item not in PRICES
DEFAULT_WORK = {
    "gateway": 0.002,
    "orders": 0.005,
    "inventory": 0.030,
    "payments": 0.020,
}  # seconds per call

DEFAULT_MARGIN = (
    0.005  # seconds each hop keeps for itself: to get the reply back before its own deadline
)
DEFAULT_TIMEOUT = (
    2.0  # seconds for a downstream call when the caller set no deadline (or propagation is off)
)
HEALTH_TIMEOUT = 0.5  # seconds at most for one health check
MAX_QUANTITY = 1_000
MAX_NAME = 64  # characters in a customer or item name
MAX_WORK = 10.0  # seconds of simulated work a service may be told to do per call
REMEMBERED = 10_000  # orders, reservations and charges each service remembers for idempotency
# reconnect soon after a fault, instead of gRPC's default of about 1 s, then up to 120 s
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
)


# ------------------------------------------------------------------------ what the services noticed


class Note(NamedTuple):
    """One thing a service noticed: when (time.perf_counter()), which service, what."""

    when: float
    service: str
    text: str


class Journal:
    """What the services noticed, in order: a bounded log shared by the services of one shop."""

    def __init__(self, maxlen: int = 1_000) -> None:
        self._notes: deque[Note] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.since = time.perf_counter()

    def note(self, service: str, text: str) -> None:
        """Add a note from ``service``."""
        with self._lock:
            self._notes.append(Note(time.perf_counter(), service, text))

    def notes(self) -> list[Note]:
        """The notes kept, oldest first."""
        with self._lock:
            return list(self._notes)

    def clear(self) -> None:
        """Forget every note; times in :meth:`format` count from now."""
        with self._lock:
            self._notes.clear()
            self.since = time.perf_counter()

    def format(self) -> str:
        """The notes as lines: milliseconds since :meth:`clear`, service, text."""
        return (
            "\n".join(
                f"{(n.when - self.since) * 1000:7.1f} ms  {n.service:<9}  {n.text}"
                for n in self.notes()
            )
            or "(nothing noted)"
        )


def _work(context: grpc.ServicerContext, seconds: float) -> bool:
    """Spend ``seconds`` on (simulated) work, stopping early if the call ends; True if the work was
    finished."""
    if seconds <= 0:
        return context.is_active()
    ended = threading.Event()
    if not context.add_callback(ended.set):  # the call has ended already
        return False
    return not ended.wait(seconds)


def _ended_how(context: grpc.ServicerContext) -> str:
    left = time_left(context)
    return "its deadline passed" if left is not None and left <= 0 else "it was cancelled"


def _check_order(customer: str, item: str, quantity: int) -> str | None:
    """What is wrong with an order's fields, or None."""
    if not customer.strip() or len(customer) > MAX_NAME:
        return f"customer must be 1 to {MAX_NAME} characters"
    if not item.strip() or len(item) > MAX_NAME:
        return f"item must be 1 to {MAX_NAME} characters"
    if not 1 <= quantity <= MAX_QUANTITY:
        return f"quantity must be between 1 and {MAX_QUANTITY}, not {quantity}"
    return None


def _check_work(seconds: object) -> float:
    return checks.seconds("work", seconds, low=0, high=MAX_WORK)
    return float(seconds)


class _Remembered:
    """The replies to the last REMEMBERED keys (order ids), for idempotency."""

    def __init__(self) -> None:
        self._replies: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str) -> Any:
        return self._replies.get(key)

    def put(self, key: str, reply: Any) -> None:
        self._replies[key] = reply
        while len(self._replies) > REMEMBERED:
            self._replies.popitem(last=False)

    def __len__(self) -> int:
        return len(self._replies)


# --------------------------------------------------------------------------- calling downstream


def downstream_timeout(
    time_left: float | None,
    *,
    margin: float = DEFAULT_MARGIN,
    default: float = DEFAULT_TIMEOUT,
    propagate: bool = True,
) -> float:
    """The timeout to give a call downstream: the time this call has left, less ``margin``.

    ``time_left`` is None when the caller set no deadline: then ``default``,
    as it is when ``propagate`` is off (every hop with its own fixed timeout).
    A result <= 0 means no time is left to make the call at all.
    """
    if not propagate or time_left is None:
        return default
    return time_left - margin


class Downstream:
    """A service's connection to a service it calls: a traced channel, and the deadline it passes
    on."""

    def __init__(
        self,
        caller: str,
        callee: str,
        address: tuple[str, int],
        *,
        recorder: SpanRecorder | None = None,
        margin: float = DEFAULT_MARGIN,
        default_timeout: float = DEFAULT_TIMEOUT,
        propagate: bool = True,
    ) -> None:
        if callee not in FULL_NAMES:
            raise ValueError(f"callee must be one of {', '.join(SERVICES)}, not {callee!r}")
        self.caller = caller
        self.callee = callee
        self.margin = margin
        self.default_timeout = default_timeout
        self.propagate = propagate
        self._recorder = recorder
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self.address = address
        self.retarget(address)

    def retarget(self, address: tuple[str, int]) -> None:
        """Call ``address`` from now on (a new channel; the old one is closed)."""
        host, port = address
        channel = grpc.insecure_channel(f"{host}:{port}", options=CHANNEL_OPTIONS)
        if self._recorder is not None:
            channel = grpc.intercept_channel(
                channel, self._recorder.client_interceptor(self.caller)
            )
        stub = getattr(shop_pb2_grpc, f"{self.callee.capitalize()}Stub")(channel)
        with self._lock:
            old, self._channel, self._stub = self._channel, channel, stub
            self._health = health_pb2_grpc.HealthStub(channel)
            self.address = (host, port)
        if old is not None:
            old.close()

    def timeout(self, context: grpc.ServicerContext) -> float:
        """The timeout a call made now, while serving ``context``, should carry (<= 0: no time
        left)."""
        return downstream_timeout(
            time_left(context),
            margin=self.margin,
            default=self.default_timeout,
            propagate=self.propagate,
        )

    def call(self, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        """Call ``method`` of the callee with the time left; abort with DEADLINE_EXCEEDED if there
        is none.

        Raises grpc.RpcError when the call downstream fails.
        """
        timeout = self.timeout(context)
        if timeout <= 0:
            context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{self.caller}: no time left to call {self.callee}",
            )
        with self._lock:
            stub = self._stub
        return getattr(stub, method)(request, timeout=timeout)

    def health(self, context: grpc.ServicerContext) -> str:
        """The callee's health: SERVING, NOT_SERVING, UNKNOWN, or UNREACHABLE (<status code>)."""
        timeout = min(self.timeout(context), HEALTH_TIMEOUT)
        if timeout <= 0:
            return "UNKNOWN (no time left to ask)"
        with self._lock:
            stub = self._health
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=FULL_NAMES[self.callee]), timeout=timeout
            )
        except grpc.RpcError as error:
            return f"UNREACHABLE ({error.code().name})"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def close(self) -> None:
        """Close the channel."""
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def __repr__(self) -> str:
        return f"<{self.caller} -> {self.callee} at {self.address[0]}:{self.address[1]}>"


# --------------------------------------------------------------------------- the services


class _Service:
    """What every service of the shop has: a name, simulated work per call, a journal to note things
    in."""

    name = ""

    def __init__(self, journal: Journal, work: float) -> None:
        self.journal = journal
        self.work = _check_work(work)
        self._lock = threading.Lock()

    def _working(self, context: grpc.ServicerContext, order_id: str) -> bool:
        """Do this call's work; if the call ends first, note that the work stopped and return
        False."""
        started = time.perf_counter()
        if _work(context, self.work):
            return True
        done = (time.perf_counter() - started) * 1000
        self.journal.note(
            self.name,
            f"{order_id}: stopped after {done:.0f} of {self.work * 1000:.0f} ms of work: "
            f"{_ended_how(context)}",
        )
        return False

    def _relay(
        self, context: grpc.ServicerContext, order_id: str, callee: str, error: grpc.RpcError
    ) -> None:
        """A call to ``callee`` failed: note it and fail this call with the same status."""
        self.journal.note(self.name, f"{order_id}: {callee} answered {error.code().name}")
        context.abort(error.code(), f"{callee}: {error.details()}")


class Inventory(_Service, shop_pb2_grpc.InventoryServicer):
    """Keeps the stock; Reserve takes items out of it, once per order id."""

    name = "inventory"

    def __init__(
        self, journal: Journal, stock: Mapping[str, int] | None = None, *, work: float = 0.0
    ) -> None:
        super().__init__(journal, work)
        self._stock = dict(DEFAULT_STOCK if stock is None else stock)
        self._reserved = _Remembered()

    @property
    def stock(self) -> dict[str, int]:
        """Items in stock now."""
        with self._lock:
            return dict(self._stock)

    def Reserve(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not 1 <= request.quantity <= MAX_QUANTITY:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"quantity must be between 1 and {MAX_QUANTITY}"
            )
        with self._lock:
            known = request.item in self._stock
        if not known:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"inventory: no such item {request.item[:MAX_NAME]!r}"
            )
        if not self._working(context, request.order_id):
            return shop_pb2.ReserveReply()  # nobody is waiting for it: nothing reserved
        price = PRICES.get(request.item, DEFAULT_PRICE)
        with self._lock:
            if self._reserved.get(request.order_id) is None:
                if self._stock[request.item] < request.quantity:
                    context.abort(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"inventory: only {self._stock[request.item]} {request.item} left",
                    )
                self._stock[request.item] -= request.quantity
                self._reserved.put(request.order_id, request.quantity)
            left = self._stock[request.item]
        self.journal.note(
            self.name,
            f"{request.order_id}: reserved {request.quantity} {request.item} ({left} left)",
        )
        return shop_pb2.ReserveReply(remaining=left, unit_price_cents=price)


class Payments(_Service, shop_pb2_grpc.PaymentsServicer):
    """Charges customers, once per order id."""

    name = "payments"

    def __init__(self, journal: Journal, *, work: float = 0.0) -> None:
        super().__init__(journal, work)
        self._charges = _Remembered()
        self._numbers = itertools.count(1)
        self.charged_cents = 0

    def Charge(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.amount_cents <= 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "payments: the amount must be positive")
        if not self._working(context, request.order_id):
            return shop_pb2.ChargeReply()  # nobody is waiting for it: nobody charged
        with self._lock:
            transaction = self._charges.get(request.order_id)
            if transaction is None:
                transaction = f"txn-{next(self._numbers):05d}"
                self._charges.put(request.order_id, transaction)
                self.charged_cents += request.amount_cents
        self.journal.note(
            self.name,
            f"{request.order_id}: charged {request.customer[:MAX_NAME]} "
            f"{request.amount_cents / 100:.2f} ({transaction})",
        )
        return shop_pb2.ChargeReply(transaction_id=transaction)


class Orders(_Service, shop_pb2_grpc.OrdersServicer):
    """Creates orders: reserve the stock, then charge the customer. Once per order id."""

    name = "orders"

    def __init__(
        self, journal: Journal, inventory: Downstream, payments: Downstream, *, work: float = 0.0
    ) -> None:
        super().__init__(journal, work)
        self.inventory = inventory
        self.payments = payments
        self._orders = _Remembered()

    def Create(self, request: Any, context: grpc.ServicerContext) -> Any:
        problem = _check_order(request.customer, request.item, request.quantity)
        if problem or not request.order_id:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"orders: {problem or 'order_id is missing'}"
            )
        with self._lock:
            made = self._orders.get(request.order_id)
        if made is not None:  # a retry of an order already made
            return made
        if not self._working(context, request.order_id):
            return shop_pb2.Order()
        try:
            reserved = self.inventory.call(
                "Reserve",
                shop_pb2.ReserveRequest(
                    order_id=request.order_id, item=request.item, quantity=request.quantity
                ),
                context,
            )
        except grpc.RpcError as error:
            self._relay(context, request.order_id, "inventory", error)
        amount = reserved.unit_price_cents * request.quantity
        try:
            charged = self.payments.call(
                "Charge",
                shop_pb2.ChargeRequest(
                    order_id=request.order_id, customer=request.customer, amount_cents=amount
                ),
                context,
            )
        except grpc.RpcError as error:
            self._relay(context, request.order_id, "payments", error)
        order = shop_pb2.Order(
            order_id=request.order_id,
            customer=request.customer,
            item=request.item,
            quantity=request.quantity,
            amount_cents=amount,
            transaction_id=charged.transaction_id,
        )
        with self._lock:
            self._orders.put(request.order_id, order)
        return order


class Gateway(_Service, shop_pb2_grpc.GatewayServicer):
    """The front door: names each order, asks Orders to make it (retrying within a budget), reports
    health."""

    name = "gateway"

    def __init__(
        self,
        journal: Journal,
        orders: Downstream,
        dependencies: Iterable[Downstream] = (),
        *,
        work: float = 0.0,
        max_attempts: int = 1,
        budget: RetryBudget | None = None,
        backoff: float = 0.005,
        seed: int = 0,
    ) -> None:
        super().__init__(journal, work)
        self.orders = orders
        self.dependencies = {d.callee: d for d in (orders, *dependencies)}
        self.max_attempts = (
            max_attempts  # calls to Orders per order, retries included (1: no retries)
        )
        self.budget = budget  # None: retry up to max_attempts whatever happens
        self.backoff = backoff  # seconds before the first retry, doubling, with full jitter
        self._random = random.Random(seed)
        self._numbers = itertools.count(1)

    def PlaceOrder(self, request: Any, context: grpc.ServicerContext) -> Any:
        problem = _check_order(request.customer, request.item, request.quantity)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        with self._lock:
            order_id = f"ord-{next(self._numbers):05d}"
        finished = threading.Event()

        def ended() -> None:  # runs when the call ends, whoever ends it
            if not finished.is_set():
                self.journal.note(
                    self.name,
                    f"{order_id}: my caller is gone ({_ended_how(context)}); "
                    "still waiting for orders",
                )

        context.add_callback(ended)
        try:
            if not self._working(context, order_id):
                return shop_pb2.PlaceOrderReply()
            order, attempts = self._create(
                context,
                shop_pb2.CreateOrderRequest(
                    order_id=order_id,
                    customer=request.customer,
                    item=request.item,
                    quantity=request.quantity,
                ),
            )
            if not context.is_active():
                self.journal.note(
                    self.name,
                    f"{order_id}: order made, but the customer was told "
                    f"it failed ({_ended_how(context)})",
                )
            return shop_pb2.PlaceOrderReply(order=order, attempts=attempts)
        finally:
            finished.set()

    def _create(self, context: grpc.ServicerContext, create: Any) -> tuple[Any, int]:
        """Call Orders.Create, retrying UNAVAILABLE up to max_attempts while the budget allows."""
        if self.budget is not None:
            self.budget.record_call()
        for attempt in itertools.count(1):
            try:
                return self.orders.call("Create", create, context), attempt
            except grpc.RpcError as error:
                retry = error.code() is grpc.StatusCode.UNAVAILABLE and attempt < self.max_attempts
                if retry and (self.budget is None or self.budget.try_retry()):
                    with self._lock:
                        pause = self._random.uniform(0, self.backoff * 2 ** (attempt - 1))
                    time.sleep(
                        min(pause, max(self.orders.timeout(context), 0))
                    )  # a deliberate back-off
                    continue
                refused = " (retry budget spent)" if retry else ""
                context.abort(error.code(), f"orders: {error.details()}{refused}")
        raise AssertionError("not reached")

    def Status(self, request: Any, context: grpc.ServicerContext) -> Any:
        found = {name: dependency.health(context) for name, dependency in self.dependencies.items()}
        overall = "SERVING" if all(status == "SERVING" for status in found.values()) else "DEGRADED"
        return shop_pb2.StatusReply(status=overall, dependencies=found)


# --------------------------------------------------------------------------- the running system


class Shop:
    """The four services running in the background, wired together, traced, each with a health
    service."""

    def __init__(
        self,
        *,
        recorder: SpanRecorder | None = None,
        stock: Mapping[str, int] | None = None,
        work: Mapping[str, float] | None = None,
        margin: float = DEFAULT_MARGIN,
        default_timeout: float = DEFAULT_TIMEOUT,
        prefix: str = "shop",
    ) -> None:
        work = {**DEFAULT_WORK, **(work or {})}
        unknown = sorted(set(work) - set(SERVICES))
        if unknown:
            raise ValueError(
                f"work names services {', '.join(unknown)}; the services are {', '.join(SERVICES)}"
            )
        self.recorder = SpanRecorder() if recorder is None else recorder
        self.journal = Journal()
        self.prefix = prefix
        self.handles: dict[str, background.ServerHandle] = {}
        self.health: dict[str, health.HealthServicer] = {}
        self.flaky: dict[str, Flaky] = {}
        self._downstreams: list[Downstream] = []
        settings = dict(recorder=self.recorder, margin=margin, default_timeout=default_timeout)

        def link(caller: str, callee: str) -> Downstream:
            downstream = Downstream(caller, callee, self.handles[callee].address, **settings)  # type: ignore[arg-type]
            self._downstreams.append(downstream)
            return downstream

        try:
            self.inventory = Inventory(self.journal, stock, work=work["inventory"])
            self._serve("inventory", self.inventory, shop_pb2_grpc.add_InventoryServicer_to_server)
            self.payments = Payments(self.journal, work=work["payments"])
            self._serve("payments", self.payments, shop_pb2_grpc.add_PaymentsServicer_to_server)
            self.orders = Orders(
                self.journal,
                link("orders", "inventory"),
                link("orders", "payments"),
                work=work["orders"],
            )
            self._serve("orders", self.orders, shop_pb2_grpc.add_OrdersServicer_to_server)
            self.gateway = Gateway(
                self.journal,
                link("gateway", "orders"),
                [link("gateway", "inventory"), link("gateway", "payments")],
                work=work["gateway"],
            )
            self._serve("gateway", self.gateway, shop_pb2_grpc.add_GatewayServicer_to_server)
        except BaseException:
            self.stop()
            raise

    def _serve(self, name: str, servicer: Any, add: Callable[[Any, grpc.Server], None]) -> None:
        methods = [
            f"/{FULL_NAMES[name]}/{m.name}"
            for m in shop_pb2.DESCRIPTOR.services_by_name[name.capitalize()].methods
        ]
        self.flaky[name] = Flaky(methods=methods)
        servicer_health = health.HealthServicer()
        for service in ("", FULL_NAMES[name]):
            servicer_health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self.health[name] = servicer_health

        def register(server: grpc.Server) -> None:
            add(servicer, server)
            health_pb2_grpc.add_HealthServicer_to_server(servicer_health, server)

        self.handles[name] = background.serve_grpc(
            f"{self.prefix}-{name}",
            register,
            interceptors=[self.recorder.server_interceptor(name), self.flaky[name]],
        )

    # -- looking at it ---------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The gateway's address: the front door."""
        return self.handles["gateway"].address

    @property
    def port(self) -> int:
        """The gateway's port."""
        return self.handles["gateway"].port

    @property
    def downstreams(self) -> list[Downstream]:
        """Every service-to-service connection."""
        return list(self._downstreams)

    @property
    def services(self) -> dict[str, Any]:
        """The servicer of each service, by name."""
        return {name: getattr(self, name) for name in SERVICES if hasattr(self, name)}

    # -- changing it -----------------------------------------------------------

    def _check(self, service: str) -> str:
        if service not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}, not {service!r}")
        return service

    def set_work(self, **seconds: float) -> None:
        """Set each named service's simulated work per call, e.g. ``set_work(inventory=0.3)``."""
        for name in seconds:
            self._check(name)
        for name, value in seconds.items():
            self.services[name].work = _check_work(value)

    def set_propagation(self, on: bool) -> None:
        """Pass on the time left downstream (True), or give every call downstream a fixed timeout
        (False)."""
        for downstream in self._downstreams:
            downstream.propagate = bool(on)

    def fail(self, service: str, faults: Faults | float, *, seed: int = 0) -> None:
        """Make ``service`` fail a fraction of its calls with UNAVAILABLE: ``Faults(fail=...)``.

        A number is short for ``Faults(fail=number, seed=seed)`` (0: none fail). The attempts
        seen so far are forgotten. Faults on the connection go through :meth:`reroute`.
        """
        flaky = self.flaky[self._check(service)]
        if not isinstance(faults, Faults):
            faults = Faults(fail=checks.probability("the fraction that fails", faults), seed=seed)
        flaky.faults = faults.refuse_all_but(
            ["fail"],
            "a capstone service",
            "the gateway retries with new calls, which a server cannot tell from first "
            "attempts (fail_first counts gRPC's own retries), and delay, jitter and reset act "
            "on the connection: reroute the service through faults.serve_proxy(..., "
            "mode='bytes')",
        )
        flaky.reset()

    def set_serving(self, service: str, serving: bool) -> None:
        """Make ``service``'s health service say SERVING or NOT_SERVING (the service itself goes on
        answering)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", FULL_NAMES[self._check(service)]):
            self.health[service].set(name, status)

    def reroute(self, service: str, address: tuple[str, int] | None = None) -> None:
        """Send every call to ``service`` to ``address`` (a proxy's, say), or straight to the
        service again if None."""
        target = (
            self.handles[self._check(service)].address
            if address is None
            else getattr(address, "address", address)
        )
        for downstream in self._downstreams:
            if downstream.callee == service:
                downstream.retarget(target)

    # -- stopping it -----------------------------------------------------------

    def stop(self) -> list[str]:
        """Close every channel and stop every server; return the names of the servers stopped."""
        for downstream in self._downstreams:
            downstream.close()
        stopped = []
        for name in reversed(list(self.handles)):
            handle = self.handles[name]
            if handle.running:
                handle.stop()
                stopped.append(handle.name)
        with _running_lock:
            global _running
            if _running is self:
                _running = None
        return stopped

    def __enter__(self) -> Shop:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = ", ".join(f"{name} :{handle.port}" for name, handle in self.handles.items())
        return f"<Shop {where}>"


_running: Shop | None = None
_running_lock = threading.Lock()


def start(
    *,
    recorder: SpanRecorder | None = None,
    stock: Mapping[str, int] | None = None,
    work: Mapping[str, float] | None = None,
    margin: float = DEFAULT_MARGIN,
    default_timeout: float = DEFAULT_TIMEOUT,
) -> Shop:
    """Start the four services (stopping the shop started before, if it is still running) and
    return the Shop.

    ``work`` sets seconds of simulated work per call for some services (the
    rest keep DEFAULT_WORK); ``stock`` the items and counts the inventory holds.
    """
    global _running
    with _running_lock:
        previous, _running = _running, None
    if previous is not None:
        previous.stop()
    started = Shop(
        recorder=recorder, stock=stock, work=work, margin=margin, default_timeout=default_timeout
    )
    with _running_lock:
        _running = started
    return started


# --------------------------------------------------------------------------- load


class Outcome(NamedTuple):
    """How one order went, seen from the client: status ("OK" or a status code name), seconds,
    attempts (0 if failed)."""

    status: str
    seconds: float
    attempts: int


def place_orders(
    stub: Any,
    n: int,
    *,
    timeout: float = 1.0,
    in_flight: int = 1,
    customer: str = "ada",
    item: str = "teapot",
    quantity: int = 1,
) -> list[Outcome]:
    """Place ``n`` orders through a GatewayStub, ``in_flight`` at a time; return each one's Outcome,
    in order."""
    checks.integer("n", n, low=0, high=10_000)
    checks.integer("in_flight", in_flight, low=1, high=64)
    request = shop_pb2.PlaceOrderRequest(customer=customer, item=item, quantity=quantity)

    def one(_: int) -> Outcome:
        start = time.perf_counter()
        try:
            reply = stub.PlaceOrder(request, timeout=timeout)
        except grpc.RpcError as error:
            return Outcome(error.code().name, time.perf_counter() - start, 0)
        return Outcome("OK", time.perf_counter() - start, reply.attempts)

    if in_flight == 1:
        return [one(i) for i in range(n)]
    with futures.ThreadPoolExecutor(
        max_workers=in_flight, thread_name_prefix="rpclab-orders"
    ) as pool:
        return list(pool.map(one, range(n)))


def format_outcomes(rows: Mapping[str, list[Outcome]], statuses: Iterable[str] = ()) -> str:
    """A table: one row per run, how many orders ended with each status, and the median and slowest
    time."""
    seen = list(
        dict.fromkeys([*statuses, *(o.status for outcomes in rows.values() for o in outcomes)])
    )
    if "OK" in seen:
        seen.remove("OK")
    columns = ["OK", *seen]
    width = max([len(label) for label in rows] + [3])
    lines = [
        f"{'':<{width}}  "
        + "  ".join(f"{c:>{max(len(c), 3)}}" for c in columns)
        + "     median   slowest"
    ]
    for label, outcomes in rows.items():
        counts = [sum(o.status == c for o in outcomes) for c in columns]
        times = [o.seconds for o in outcomes] or [0.0]
        lines.append(
            f"{label:<{width}}  "
            + "  ".join(f"{n:>{max(len(c), 3)}}" for n, c in zip(counts, columns, strict=False))
            + f"  {statistics.median(times) * 1000:6.1f} ms  {max(times) * 1000:5.0f} ms"
        )
    return "\n".join(lines)
