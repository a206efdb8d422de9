"""The capstone's small system: four gRPC services of a shop that call each other
(protos/shop.proto).

Notebook 15's system. One module of about 900 lines on purpose: the four services, the order's
saga and how the system is started are one design, read side by side (each servicer is under
120 lines). How one service calls another is downstream.py.

::

    client -> gateway.PlaceOrder -> orders.Create -> inventory.Reserve
                                                  -> payments.Charge
                                                  -> inventory.Release   (if the charge failed)

Each service is a small servicer class; :func:`start` runs all four with
rpclab.runtime.background, wires them together by address and returns a :class:`Shop`::

    services = shop.start()
    stub = shop_pb2_grpc.GatewayStub(grpc.insecure_channel(f"127.0.0.1:{services.port}"))
    stub.PlaceOrder(shop_pb2.PlaceOrderRequest(customer="ada", item="teapot", quantity=1,
                                               idempotency_key="k-1"), timeout=1.0)
    services.stop()

What the services show, each with a switch to show the failure it prevents:

* **Deadline propagation** (``set_propagation``). Every downstream call gets the time its caller
  has left, less a margin; a handler that *cooperates* (``cooperative``: it waits on its call's
  end, not on a plain sleep) stops its work when its call ends (see :attr:`Shop.journal`).
* **Cancellation with the caller** (``set_cancellation``). When the call a service is serving
  ends, the calls it made for it are cancelled, so the services behind stop too.
* **Retries at one layer** (``set_retries``, ``set_translation``). A service retries only
  UNAVAILABLE from the service it called, within a RetryBudget, and never passes a dependency's
  UNAVAILABLE on (downstream.translate): a failure it gave up on goes up as ABORTED.
* **An undo step** (``Orders.steps``, :func:`make_order`). When the charge fails, the items
  reserved for the order go back to the shelf: a saga's compensating step.
* **Undoing a step that did not answer** (``Orders.undo_unanswered``). A reservation may be made
  after its caller is gone (a cancel that came late, a handler that does not listen), and its
  reply is lost. So when Inventory.Reserve fails without saying "no" (downstream.REFUSALS),
  Orders releases the reservation anyway, naming its attempt; and since that release may
  overtake the reservation it undoes, Inventory remembers it and refuses a late Reserve of
  that attempt.
* **One key from the client to the last hop.** The client's ``idempotency_key`` names the order;
  Orders, Inventory and Payments act once per order, so a client may retry after "it failed"
  without buying twice. Without a key the gateway makes up a name, and a retry is a new order.
* **Tracing.** Every server records spans and every downstream channel sends the trace id on
  (rpclab.lab.tracing), into one SpanRecorder; with ``telemetry`` (rpclab.capstone.otel),
  OpenTelemetry records the same calls, with W3C ``traceparent`` on the wire.
* **Health.** Each server serves grpc.health.v1; ``Gateway.Status`` says DEGRADED when a
  dependency is not SERVING.
* **Faults on demand**, in rpclab.faults' vocabulary: :meth:`Shop.fail` makes a service fail
  calls with UNAVAILABLE; :meth:`Shop.reroute` sends a service's traffic through a fault proxy.
"""

from __future__ import annotations

import itertools
import re
import statistics
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent import futures
from typing import Any, NamedTuple

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from rpclab import checks
from rpclab.capstone.downstream import (
    CHANNEL_OPTIONS,
    DEFAULT_MARGIN,
    DEFAULT_TIMEOUT,
    FULL_NAMES,
    REFUSALS,
    SERVICES,
    Downstream,
    NotCalled,
    Retries,
    downstream_timeout,
    ended,
    ended_how,
    shop_pb2,
    shop_pb2_grpc,
    translate,
)
from rpclab.capstone.retrybudget import RetryBudget
from rpclab.faults.flaky import Flaky
from rpclab.faults.vocabulary import Faults
from rpclab.grpcstack.deadlines import time_left
from rpclab.lab.tracing import SpanRecorder
from rpclab.runtime import background

__all__ = [
    "SERVICES",
    "FULL_NAMES",
    "CHANNEL_OPTIONS",
    "DEFAULT_STOCK",
    "DEFAULT_WORK",
    "PRICES",
    "Journal",
    "Note",
    "Downstream",
    "Retries",
    "downstream_timeout",
    "translate",
    "make_order",
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

DEFAULT_STOCK = {"teapot": 10_000, "kettle": 5_000, "mug": 50_000}
PRICES = {"teapot": 2_500, "kettle": 4_000, "mug": 800}  # cents
DEFAULT_PRICE = 1_000  # cents, for an item not in PRICES
DEFAULT_WORK = {
    "gateway": 0.002,
    "orders": 0.005,
    "inventory": 0.030,
    "payments": 0.020,
}  # seconds per call

UNDO_TIMEOUT = 1.0  # seconds for a compensating call (its caller may be gone: it has its own)
UNDO_ATTEMPTS = 3  # calls to Inventory.Release before a reservation is left for a person to fix
MAX_QUANTITY = 1_000
MAX_NAME = 64  # characters in a customer or item name
MAX_KEY = 64  # characters in an idempotency key
MAX_ORDER_ID = MAX_NAME + 1 + MAX_KEY
MAX_WORK = 10.0  # seconds of simulated work a service may be told to do per call
REMEMBERED = 10_000  # orders, reservations and charges each service remembers for idempotency
KEPT_UNRELEASED = 100  # reservations Orders could not undo, kept for a person to look at
_KEY = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_KEY}}}")


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


def _check_order(customer: str, item: str, quantity: int) -> str | None:
    """What is wrong with an order's fields, or None."""
    if not customer.strip() or len(customer) > MAX_NAME:
        return f"customer must be 1 to {MAX_NAME} characters"
    if not item.strip() or len(item) > MAX_NAME:
        return f"item must be 1 to {MAX_NAME} characters"
    if not 1 <= quantity <= MAX_QUANTITY:
        return f"quantity must be between 1 and {MAX_QUANTITY}, not {quantity}"
    return None


def _check_order_id(order_id: str) -> str | None:
    if not 1 <= len(order_id) <= MAX_ORDER_ID:
        return f"order_id must be 1 to {MAX_ORDER_ID} characters"
    return None


def _check_work(seconds: object) -> float:
    return checks.seconds("work", seconds, low=0, high=MAX_WORK)


class _Remembered:
    """The last REMEMBERED replies (or reservations, or releases), by order id, for
    idempotency."""

    def __init__(self) -> None:
        self._replies: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        return self._replies.get(key)

    def put(self, key: Hashable, reply: Any) -> None:
        self._replies[key] = reply
        while len(self._replies) > REMEMBERED:
            self._replies.popitem(last=False)

    def pop(self, key: Hashable) -> Any:
        return self._replies.pop(key, None)

    def __len__(self) -> int:
        return len(self._replies)


# --------------------------------------------------------------------------- the order's saga


def make_order(
    reserve: Callable[[], int], charge: Callable[[int], str], release: Callable[[], bool]
) -> tuple[int, str]:
    """Orders' steps for one order, a two-step saga: reserve the items, then charge for them; if
    the charge fails, release the items again (the compensating step) and fail.

    ``reserve()`` returns the price in cents, ``charge(cents)`` the transaction id; each raises
    grpc.RpcError when it fails (a reserve() that fails has undone whatever it may have
    reserved). ``release()`` puts the reserved items back (it never raises).
    Returns (price, transaction id).
    """
    price = reserve()
    try:
        return price, charge(price)
    except grpc.RpcError:
        release()
        raise


# --------------------------------------------------------------------------- the services


class _Service:
    """What every service of the shop has: a name, simulated work per call, a journal to note things
    in, and how it answers when a call it made failed."""

    name = ""

    def __init__(self, journal: Journal, work: float) -> None:
        self.journal = journal
        self.work = _check_work(work)
        # True: the work stops when the call ends (it waits on the call, as a handler should);
        # False: it runs to the end whatever happens, as a blocking database call does.
        self.cooperative = True
        # True: a dependency's failure goes up in this service's own words (translate);
        # False: its status code goes up unchanged.
        self.translate = True
        self._lock = threading.Lock()

    def _working(self, context: grpc.ServicerContext, order_id: str) -> bool:
        """Do this call's work; False if the call ended first and the work stopped (noted)."""
        started = time.perf_counter()
        if not self.cooperative:
            time.sleep(self.work)  # the work a handler does without looking at its call
            return True
        if not ended(context, self.work):
            return True
        done = (time.perf_counter() - started) * 1000
        self.journal.note(
            self.name,
            f"{order_id}: stopped after {done:.0f} of {self.work * 1000:.0f} ms of work: "
            f"{ended_how(context)}",
        )
        return False

    def _late(self, context: grpc.ServicerContext) -> str:
        """Words to add to a note of work done for a call that has ended."""
        return "" if context.is_active() else f" (after its call ended: {ended_how(context)})"

    def _give_up(
        self, context: grpc.ServicerContext, order_id: str, callee: str, error: grpc.RpcError
    ) -> None:
        """A call to ``callee`` failed and this service gives up: note it and fail this call, with
        the status :func:`translate` gives (or the same status, with ``translate`` off), and the
        details prefixed with the callee's name (once: a service names itself in its own)."""
        code = translate(error.code()) if self.translate else error.code()
        changed = "" if code is error.code() else f"; answering {code.name}"
        self.journal.note(self.name, f"{order_id}: {callee} answered {error.code().name}{changed}")
        details = error.details() or ""
        context.abort(code, details if details.startswith(f"{callee}:") else f"{callee}: {details}")


class Inventory(_Service, shop_pb2_grpc.InventoryServicer):
    """Keeps the stock; Reserve takes items out of it, Release puts them back, once per order
    id. A Reserve that comes after the Release of its attempt is refused (ABORTED)."""

    name = "inventory"

    def __init__(
        self, journal: Journal, stock: Mapping[str, int] | None = None, *, work: float = 0.0
    ) -> None:
        super().__init__(journal, work)
        self._stock = dict(DEFAULT_STOCK if stock is None else stock)
        self._reserved = _Remembered()  # order id -> (item, quantity)
        self._released = _Remembered()  # (order id, attempt) -> True: undone, maybe before made

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
        problem = _check_order_id(request.order_id)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"inventory: {problem}")
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
            released = self._released.get((request.order_id, request.attempt)) is not None
            if not released and self._reserved.get(request.order_id) is None:
                if self._stock[request.item] < request.quantity:
                    context.abort(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"inventory: only {self._stock[request.item]} {request.item} left",
                    )
                self._stock[request.item] -= request.quantity
                self._reserved.put(request.order_id, (request.item, request.quantity))
            left = self._stock[request.item]
        if released:  # its caller gave up on it, and released it before it got here
            self.journal.note(
                self.name,
                f"{request.order_id}: not reserving: attempt {request.attempt} was released "
                f"before it got here{self._late(context)}",
            )
            context.abort(
                grpc.StatusCode.ABORTED,
                f"inventory: {request.order_id} (attempt {request.attempt}) was released "
                "already: not reserving",
            )
        self.journal.note(
            self.name,
            f"{request.order_id}: reserved {request.quantity} {request.item} ({left} left)"
            f"{self._late(context)}",
        )
        return shop_pb2.ReserveReply(remaining=left, unit_price_cents=price)

    def Release(self, request: Any, context: grpc.ServicerContext) -> Any:
        problem = _check_order_id(request.order_id)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"inventory: {problem}")
        with self._lock:
            self._released.put((request.order_id, request.attempt), True)  # a late Reserve: no
            reserved = self._reserved.pop(request.order_id)
            if reserved is None:
                return shop_pb2.ReleaseReply(released=False)
            item, quantity = reserved
            self._stock[item] += quantity
            left = self._stock[item]
        self.journal.note(
            self.name, f"{request.order_id}: released {quantity} {item} ({left} left)"
        )
        return shop_pb2.ReleaseReply(released=True, remaining=left)


class Payments(_Service, shop_pb2_grpc.PaymentsServicer):
    """Charges customers, once per order id."""

    name = "payments"

    def __init__(self, journal: Journal, *, work: float = 0.0) -> None:
        super().__init__(journal, work)
        self._charges = _Remembered()
        self._numbers = itertools.count(1)
        self.charged_cents = 0
        self.charges = 0

    def Charge(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.amount_cents <= 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "payments: the amount must be positive")
        problem = _check_order_id(request.order_id)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"payments: {problem}")
        if not self._working(context, request.order_id):
            return shop_pb2.ChargeReply()  # nobody is waiting for it: nobody charged
        with self._lock:
            transaction = self._charges.get(request.order_id)
            if transaction is None:
                transaction = f"txn-{next(self._numbers):05d}"
                self._charges.put(request.order_id, transaction)
                self.charged_cents += request.amount_cents
                self.charges += 1
        self.journal.note(
            self.name,
            f"{request.order_id}: charged {request.customer[:MAX_NAME]} "
            f"{request.amount_cents / 100:.2f} ({transaction}){self._late(context)}",
        )
        return shop_pb2.ChargeReply(transaction_id=transaction)


class Orders(_Service, shop_pb2_grpc.OrdersServicer):
    """Creates orders by running :attr:`steps` (reserve, charge, and release if the charge
    failed); once per order id. Each run of the steps is an attempt, numbered; a reservation
    that did not answer is released (``undo_unanswered``)."""

    name = "orders"

    def __init__(
        self, journal: Journal, inventory: Downstream, payments: Downstream, *, work: float = 0.0
    ) -> None:
        super().__init__(journal, work)
        self.inventory = inventory
        self.payments = payments
        self.retries = Retries()  # for calls to inventory and payments
        # The saga: steps(reserve, charge, release) -> (price, transaction id). See make_order.
        self.steps: Callable[..., tuple[int, str]] = make_order
        self.unreleased: deque[str] = deque(maxlen=KEPT_UNRELEASED)  # reservations left behind
        # True: when Reserve fails without saying "no" (it was cancelled, timed out, or its reply
        # was lost), release what it may have reserved; False: keep no such books.
        self.undo_unanswered = True
        self._attempts = itertools.count(1)
        self._orders = _Remembered()
        self._making: dict[str, threading.Event] = {}  # order ids being made now

    def Create(self, request: Any, context: grpc.ServicerContext) -> Any:
        problem = _check_order(request.customer, request.item, request.quantity)
        problem = problem or _check_order_id(request.order_id)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"orders: {problem}")
        made = self._made(request, context)
        if made is not None:  # a retry of an order already made
            return made
        mine = self._take_turn(request, context)
        if mine is None:  # made by another call while this one waited
            return self._made(request, context)
        try:
            if not self._working(context, request.order_id):
                return shop_pb2.Order()
            order = self._run_steps(request, context)
            with self._lock:
                self._orders.put(request.order_id, order)
            return order
        finally:
            with self._lock:
                del self._making[request.order_id]
            mine.set()

    def _made(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The order made before under this order id, or None; ALREADY_EXISTS if it was another."""
        with self._lock:
            made = self._orders.get(request.order_id)
        if made is None:
            return None
        if (made.customer, made.item, made.quantity) != (
            request.customer,
            request.item,
            request.quantity,
        ):
            context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                f"orders: {request.order_id} is already an order for {made.quantity} "
                f"{made.item}: one key names one order",
            )
        return made

    def _take_turn(self, request: Any, context: grpc.ServicerContext) -> threading.Event | None:
        """Make this call the one making the order, waiting while another call makes it; None if
        the other made it meanwhile."""
        while True:
            with self._lock:
                if self._orders.get(request.order_id) is not None:
                    return None
                other = self._making.get(request.order_id)
                if other is None:
                    mine = self._making[request.order_id] = threading.Event()
                    return mine
            left = time_left(context)
            wait = DEFAULT_TIMEOUT if left is None else max(left, 0.0)
            if not other.wait(min(wait, DEFAULT_TIMEOUT)) or not context.is_active():
                context.abort(
                    grpc.StatusCode.ABORTED,
                    f"orders: {request.order_id} is being made by another call: ask again",
                )

    def _run_steps(self, request: Any, context: grpc.ServicerContext) -> Any:
        key = request.order_id
        with self._lock:
            attempt = next(self._attempts)
        failed: list[str] = []  # the service whose call failed

        def note(text: str) -> None:
            self.journal.note(self.name, f"{key}: {text}")

        def reserve() -> int:
            try:
                reply, _ = self.retries.call(
                    self.inventory,
                    "Reserve",
                    shop_pb2.ReserveRequest(
                        order_id=key, item=request.item, quantity=request.quantity, attempt=attempt
                    ),
                    context,
                    note=note,
                )
            except grpc.RpcError as error:
                failed.append("inventory")
                if self.undo_unanswered and _unanswered(error):
                    why = f"inventory did not answer ({error.code().name})"
                    self._release(key, attempt, context, why, unanswered=True)
                raise
            return reply.unit_price_cents * request.quantity

        def charge(amount_cents: int) -> str:
            try:
                reply, _ = self.retries.call(
                    self.payments,
                    "Charge",
                    shop_pb2.ChargeRequest(
                        order_id=key, customer=request.customer, amount_cents=amount_cents
                    ),
                    context,
                    note=note,
                )
            except grpc.RpcError:
                failed.append("payments")
                raise
            return reply.transaction_id

        def release() -> bool:
            return self._release(key, attempt, context, "payment failed")

        try:
            price, transaction = self.steps(reserve, charge, release)
        except grpc.RpcError as error:
            self._give_up(context, key, failed[-1] if failed else "a step", error)
        return shop_pb2.Order(
            order_id=key,
            customer=request.customer,
            item=request.item,
            quantity=request.quantity,
            amount_cents=price,
            transaction_id=transaction,
        )

    def _release(
        self,
        key: str,
        attempt: int,
        context: grpc.ServicerContext,
        why: str,
        *,
        unanswered: bool = False,
    ) -> bool:
        """Put the items reserved by attempt ``attempt`` of an order back (``why``: words for the
        journal; ``unanswered``: the reservation never answered, so it may not have been made
        yet): a detached call with its own timeout (the caller may be gone), retried; if it
        cannot be done, the order id is kept in :attr:`unreleased`."""
        for call in range(1, UNDO_ATTEMPTS + 1):
            try:
                reply = self.inventory.call(
                    "Release",
                    shop_pb2.ReleaseRequest(order_id=key, attempt=attempt),
                    context,
                    timeout=UNDO_TIMEOUT,
                    detached=True,
                )
            except grpc.RpcError as error:
                if error.code() is grpc.StatusCode.UNAVAILABLE and call < UNDO_ATTEMPTS:
                    continue
                self.unreleased.append(key)
                self.journal.note(
                    self.name,
                    f"{key}: {why}; could not release the reservation ({error.code().name}): "
                    "left for a person to fix",
                )
                return False
            if reply.released:
                self.journal.note(self.name, f"{key}: {why}, so the reservation is undone")
            elif not unanswered:
                self.journal.note(self.name, f"{key}: {why}; nothing was reserved to undo")
            else:
                self.journal.note(
                    self.name,
                    f"{key}: {why}; released attempt {attempt}, which had reserved nothing "
                    "yet (inventory will refuse it if it comes late)",
                )
            return True
        raise AssertionError("not reached")


def _unanswered(error: grpc.RpcError) -> bool:
    """Whether a call that failed with ``error`` may have been done all the same: it was made,
    and the callee did not say "no"."""
    if isinstance(error, NotCalled) and not error.made:
        return False
    return error.code() not in REFUSALS


class Gateway(_Service, shop_pb2_grpc.GatewayServicer):
    """The front door: names each order (by the client's key), asks Orders to make it (retrying
    as :attr:`retries` says), reports health."""

    name = "gateway"

    def __init__(
        self,
        journal: Journal,
        orders: Downstream,
        dependencies: Iterable[Downstream] = (),
        *,
        work: float = 0.0,
    ) -> None:
        super().__init__(journal, work)
        self.orders = orders
        self.dependencies = {d.callee: d for d in (orders, *dependencies)}
        self.retries = Retries()  # for calls to orders
        self._numbers = itertools.count(1)

    def PlaceOrder(self, request: Any, context: grpc.ServicerContext) -> Any:
        problem = _check_order(request.customer, request.item, request.quantity)
        key = request.idempotency_key
        if not problem and key and not _KEY.fullmatch(key):
            problem = f"idempotency_key must be 1 to {MAX_KEY} letters, digits, '-' or '_'"
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if key:  # keys count per customer: two customers may pick the same key
            order_id = f"{request.customer}:{key}"
        else:
            with self._lock:
                order_id = f"ord-{next(self._numbers):05d}"
        finished = threading.Event()

        def gone() -> None:  # runs when the call ends, whoever ends it
            if not finished.is_set():
                then = (
                    "cancelling my call to orders"
                    if self.orders.cancel_with_caller
                    else "still waiting for orders"
                )
                self.journal.note(
                    self.name, f"{order_id}: my caller is gone ({ended_how(context)}); {then}"
                )

        context.add_callback(gone)
        try:
            if not self._working(context, order_id):
                return shop_pb2.PlaceOrderReply()
            create = shop_pb2.CreateOrderRequest(
                order_id=order_id,
                customer=request.customer,
                item=request.item,
                quantity=request.quantity,
            )
            try:
                order, attempts = self.retries.call(
                    self.orders,
                    "Create",
                    create,
                    context,
                    note=lambda text: self.journal.note(self.name, f"{order_id}: {text}"),
                )
            except grpc.RpcError as error:
                self._give_up(context, order_id, "orders", error)
            if not context.is_active():
                self.journal.note(
                    self.name,
                    f"{order_id}: order made, but the customer was told "
                    f"it failed ({ended_how(context)})",
                )
            return shop_pb2.PlaceOrderReply(order=order, attempts=attempts)
        finally:
            finished.set()

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
        telemetry: Any = None,
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
        self.telemetry = telemetry  # rpclab.capstone.otel.Telemetry, or None
        self.journal = Journal()
        self.prefix = prefix
        self.handles: dict[str, background.ServerHandle] = {}
        self.health: dict[str, health.HealthServicer] = {}
        self.flaky: dict[str, Flaky] = {}
        self._downstreams: list[Downstream] = []
        settings = dict(
            recorder=self.recorder,
            telemetry=telemetry,
            margin=margin,
            default_timeout=default_timeout,
        )

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

        extra = [] if self.telemetry is None else list(self.telemetry.server_interceptors(name))
        self.handles[name] = background.serve_grpc(
            f"{self.prefix}-{name}",
            register,
            interceptors=[self.recorder.server_interceptor(name), *extra, self.flaky[name]],
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

    def set_cancellation(self, on: bool) -> None:
        """Cancel the calls a service made for a call when that call ends (True), or let them run
        on (False)."""
        for downstream in self._downstreams:
            downstream.cancel_with_caller = bool(on)

    def set_translation(self, on: bool) -> None:
        """Every service answers a dependency's failure in its own words (True), or passes its
        status code on unchanged (False)."""
        for servicer in self.services.values():
            servicer.translate = bool(on)

    def set_retries(
        self, service: str, max_attempts: int = 1, *, budget: RetryBudget | None = None
    ) -> None:
        """How ``service`` (gateway or orders) retries UNAVAILABLE from the services it calls."""
        if self._check(service) not in ("gateway", "orders"):
            raise ValueError(f"only the gateway and orders call other services, not {service}")
        self.services[service].retries = Retries(max_attempts, budget=budget)

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
    telemetry: Any = None,
    stock: Mapping[str, int] | None = None,
    work: Mapping[str, float] | None = None,
    margin: float = DEFAULT_MARGIN,
    default_timeout: float = DEFAULT_TIMEOUT,
) -> Shop:
    """Start the four services (stopping the shop started before, if it is still running) and
    return the Shop.

    ``work`` sets seconds of simulated work per call for some services (the
    rest keep DEFAULT_WORK); ``stock`` the items and counts the inventory holds;
    ``telemetry`` (an rpclab.capstone.otel.Telemetry) traces every call with OpenTelemetry too.
    """
    global _running
    with _running_lock:
        previous, _running = _running, None
    if previous is not None:
        previous.stop()
    started = Shop(
        recorder=recorder,
        telemetry=telemetry,
        stock=stock,
        work=work,
        margin=margin,
        default_timeout=default_timeout,
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
