"""How one service of the shop calls another: the deadline it passes on, cancelling with its
caller, retrying at the right layer, and what it answers when a call behind it fails.

Built for notebook 15 (the capstone), which shows each of these failing first, then fixed:

* :func:`downstream_timeout` -- a call made while serving another carries the time its caller
  has left, less a margin, as its own deadline (gRPC in Python passes on no deadline by itself).
* :meth:`Downstream.call` -- with ``cancel_with_caller`` on, a call made while serving another is
  cancelled the moment the call being served ends: its caller gave up or went away.
* :class:`Retries` -- UNAVAILABLE retried, at most ``max_attempts`` calls per call, within a
  :class:`~rpclab.capstone.retrybudget.RetryBudget`, after a jittered back-off that stops when
  the caller goes away.
* :data:`REFUSALS` -- the codes with which a service said "no" to a call; any other failure of
  a call that was made leaves it unknown whether the callee did the work (its reply may have
  been lost, or it was cancelled after the work was done), so a caller that must not keep a
  step it did not hear back from undoes it (Orders does, for Inventory.Reserve).
* :func:`translate` -- the status a service answers with when a call behind it failed and it
  gave up. Never UNAVAILABLE: that says "I could not take your call, try again", so a caller
  that retries it would retry the whole chain behind, and with three layers each making four
  attempts the last service would be called 4 x 4 x 4 = 64 times for one order.

::

    orders = Downstream("gateway", "orders", ("127.0.0.1", port))
    reply, attempts = Retries(max_attempts=3).call(orders, "Create", request, context)
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rpclab import checks
from rpclab.capstone.retrybudget import RetryBudget
from rpclab.grpcstack import protos
from rpclab.grpcstack.deadlines import time_left
from rpclab.lab.tracing import SpanRecorder

__all__ = [
    "SERVICES",
    "FULL_NAMES",
    "DEFAULT_MARGIN",
    "DEFAULT_TIMEOUT",
    "HEALTH_TIMEOUT",
    "CHANNEL_OPTIONS",
    "PASSED_ON",
    "REFUSALS",
    "NotCalled",
    "translate",
    "downstream_timeout",
    "ended",
    "ended_code",
    "ended_how",
    "Downstream",
    "Retries",
]

shop_pb2, shop_pb2_grpc = protos.load("shop")

SERVICES = ("gateway", "orders", "inventory", "payments")
FULL_NAMES = {
    name: shop_pb2.DESCRIPTOR.services_by_name[name.capitalize()].full_name for name in SERVICES
}

DEFAULT_MARGIN = 0.005  # seconds each hop keeps for itself: to get the reply back in time
DEFAULT_TIMEOUT = 2.0  # seconds for a call downstream when the caller set no deadline
HEALTH_TIMEOUT = 0.5  # seconds at most for one health check
MAX_ATTEMPTS = 10  # calls per call, retries included, that a Retries may make
MAX_BACKOFF = 1.0  # seconds: the longest first back-off a Retries may be given
# gRPC waits 1 s before reconnecting after a failed connection, then 1.6 times longer each time,
# up to 120 s (doc/connection-backoff.md). The shop's channels wait 100 ms, then at most 1 s,
# so that a notebook sees a service again within a second of it coming back.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
)

# The codes a service passes on unchanged when a call behind it fails: they speak of the
# caller's own request (its item, its stock, its key, its deadline, its cancelling) or say
# already that the whole operation failed.
PASSED_ON = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)


# The codes with which a service that was called said "no": it did nothing. A call that failed
# with any other code (CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE, UNKNOWN, INTERNAL, DATA_LOSS)
# may have been done all the same: its reply was lost, or the cancel came after the work.
REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


def translate(code: grpc.StatusCode) -> grpc.StatusCode:
    """The status a service answers with when a call it made failed with ``code`` and it gave up.

    * A dependency's UNAVAILABLE (or RESOURCE_EXHAUSTED) becomes ABORTED: google.rpc.Code says
      "use UNAVAILABLE if the client can retry just the failing call; use ABORTED if the client
      should retry at a higher level". The service has retried already, if anyone should.
    * The codes in :data:`PASSED_ON` go on unchanged.
    * Anything else (INVALID_ARGUMENT, UNKNOWN, INTERNAL, UNIMPLEMENTED, ...) becomes INTERNAL:
      it went wrong between the services, and the caller cannot fix it.
    """
    if code in PASSED_ON:
        return code
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return grpc.StatusCode.ABORTED
    return grpc.StatusCode.INTERNAL


class NotCalled(grpc.RpcError):
    """A call downstream that was not made, or was cancelled, because the call being served
    ended (CANCELLED) or has no time left (DEADLINE_EXCEEDED). Caught like any failed call.

    ``made`` says whether the call had been sent before it was cancelled: then the callee may
    have done its work all the same.
    """

    def __init__(self, code: grpc.StatusCode, details: str, *, made: bool = False) -> None:
        super().__init__(details)
        self._code = code
        self._details = details
        self.made = made

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def ended_code(context: grpc.ServicerContext) -> grpc.StatusCode:
    """How a call being served has ended: DEADLINE_EXCEEDED if its deadline passed, else
    CANCELLED."""
    left = time_left(context)
    if left is not None and left <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


def ended_how(context: grpc.ServicerContext) -> str:
    """Why a call being served has ended, in words: its deadline passed, or it was cancelled
    (and how long before its deadline, as this server reckons it).

    A client's gRPC cancels its call when the client's deadline passes. A server reckons its own
    deadline from the ``grpc-timeout`` header, which may say a little more than the client had
    left (notebook 15 measures it), so a deadline that passed at the client may reach the
    server as a cancel that came a few milliseconds early.
    """
    left = time_left(context)
    if left is not None and left <= 0:
        return "its deadline passed"
    if left is None:
        return "it was cancelled"
    return f"it was cancelled, {left * 1000:.0f} ms before its deadline"


def ended(context: grpc.ServicerContext, seconds: float) -> bool:
    """Wait ``seconds``, or less if the call being served ends first; True if it ended."""
    done = threading.Event()
    if not context.add_callback(done.set):  # the call has ended already
        return True
    return done.wait(seconds) if seconds > 0 else not context.is_active()


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
    """A service's connection to a service it calls: a traced channel, the deadline it passes on,
    and cancellation with the caller."""

    def __init__(
        self,
        caller: str,
        callee: str,
        address: tuple[str, int],
        *,
        recorder: SpanRecorder | None = None,
        telemetry: Any = None,
        margin: float = DEFAULT_MARGIN,
        default_timeout: float = DEFAULT_TIMEOUT,
        propagate: bool = True,
        cancel_with_caller: bool = True,
    ) -> None:
        if callee not in FULL_NAMES:
            raise ValueError(f"callee must be one of {', '.join(SERVICES)}, not {callee!r}")
        self.caller = caller
        self.callee = callee
        self.margin = margin
        self.default_timeout = default_timeout
        self.propagate = propagate  # pass on the time left (False: a fixed default_timeout)
        self.cancel_with_caller = cancel_with_caller  # cancel this call when the caller's ends
        self._recorder = recorder
        self._telemetry = telemetry  # anything with wrap_channel(channel, service), or None
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self.address = address
        self.retarget(address)

    def retarget(self, address: tuple[str, int]) -> None:
        """Call ``address`` from now on (a new channel; the old one is closed)."""
        host, port = address
        channel = grpc.insecure_channel(f"{host}:{port}", options=CHANNEL_OPTIONS)
        wrapped: Any = channel
        if self._recorder is not None:
            wrapped = grpc.intercept_channel(
                wrapped, self._recorder.client_interceptor(self.caller)
            )
        if self._telemetry is not None:
            wrapped = self._telemetry.wrap_channel(wrapped, self.caller)
        stub = getattr(shop_pb2_grpc, f"{self.callee.capitalize()}Stub")(wrapped)
        with self._lock:
            old, self._channel, self._stub = self._channel, channel, stub
            self._health = health_pb2_grpc.HealthStub(wrapped)
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

    def call(
        self,
        method: str,
        request: Any,
        context: grpc.ServicerContext,
        *,
        timeout: float | None = None,
        detached: bool = False,
    ) -> Any:
        """Call ``method`` of the callee while serving ``context``, and return the reply.

        The call carries :meth:`timeout` (or ``timeout``, if given) and, with
        ``cancel_with_caller`` on, is cancelled when the call being served ends. A ``detached``
        call is neither: it has its own ``timeout`` and outlives its caller, as the clean-up after
        a failed order must. Raises grpc.RpcError when the call fails, :class:`NotCalled` when it
        was not made or was cancelled with its caller.
        """
        if not detached and not context.is_active():
            raise NotCalled(
                ended_code(context),
                f"{self.caller}: not calling {self.callee}: {ended_how(context)}",
            )
        if timeout is None:
            timeout = self.default_timeout if detached else self.timeout(context)
        if timeout <= 0:
            raise NotCalled(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{self.caller}: no time left to call {self.callee}",
            )
        with self._lock:
            stub = self._stub
        future = getattr(stub, method).future(request, timeout=timeout)
        if self.cancel_with_caller and not detached and not context.add_callback(future.cancel):
            future.cancel()  # the call being served ended while this one was being made
        try:
            return future.result()
        except grpc.FutureCancelledError:
            raise NotCalled(
                ended_code(context),
                f"{self.caller}: cancelled its call to {self.callee}: {ended_how(context)}",
                made=True,
            ) from None

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


class Retries:
    """How a service retries the calls it makes: UNAVAILABLE only, at most ``max_attempts`` calls
    per call (1: no retries), each retry paid for by ``budget`` if there is one, after a back-off
    drawn from 0 to ``backoff`` x 2^(retry - 1) seconds (full jitter).

    Retry here only what the callee itself could not take: with :func:`translate` at every
    service, an UNAVAILABLE always comes from the service called, so only the layer right above
    a failing service retries, once.
    """

    def __init__(
        self,
        max_attempts: int = 1,
        *,
        budget: RetryBudget | None = None,
        backoff: float = 0.005,
        seed: int = 0,
    ) -> None:
        self.max_attempts = checks.integer("max_attempts", max_attempts, low=1, high=MAX_ATTEMPTS)
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ValueError(f"budget must be a RetryBudget or None, not {budget!r}")
        self.budget = budget
        self.backoff = checks.seconds("backoff", backoff, low=0, high=MAX_BACKOFF)
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def call(
        self,
        link: Downstream,
        method: str,
        request: Any,
        context: grpc.ServicerContext,
        *,
        note: Callable[[str], None] | None = None,
    ) -> tuple[Any, int]:
        """Call ``method`` over ``link``, retrying as this policy says; return (reply, attempts).

        Raises the last failure when it gives up. ``note`` hears about a retry refused by the
        budget.
        """
        if self.budget is not None:
            self.budget.record_call()
        for attempt in itertools.count(1):
            try:
                return link.call(method, request, context), attempt
            except NotCalled:
                raise
            except grpc.RpcError as error:
                if error.code() is not grpc.StatusCode.UNAVAILABLE or attempt >= self.max_attempts:
                    raise
                if self.budget is not None and not self.budget.try_retry():
                    if note is not None:
                        note(f"{link.callee} answered UNAVAILABLE; retry budget spent: no retry")
                    raise
                with self._lock:
                    pause = self._random.uniform(0, self.backoff * 2 ** (attempt - 1))
                if ended(context, min(pause, max(link.timeout(context), 0))):
                    raise NotCalled(
                        ended_code(context),
                        f"{link.caller}: stopped retrying {link.callee}: {ended_how(context)}",
                        made=True,
                    ) from error
        raise AssertionError("not reached")

    def __repr__(self) -> str:
        budget = "" if self.budget is None else f", {self.budget!r}"
        return f"<Retries up to {self.max_attempts} attempts{budget}>"
