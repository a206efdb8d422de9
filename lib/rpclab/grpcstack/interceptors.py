"""Server interceptors: code that runs around every call a gRPC server receives, whatever its
service.

Taught in notebook 10 (interceptors, token auth).

* :class:`CallLog` -- times and logs each call (method, kind, status code,
  duration, peer), keeping the most recent ones in a bounded list.
* :class:`TokenAuth` -- refuses calls that lack a valid ``authorization:
  Bearer <token>`` metadata entry, with UNAUTHENTICATED, before the servicer runs.
  Every method needs the token, server reflection and health checking included,
  unless ``exempt`` names them.

Interceptors wrap each other in the order given to the server: with
``interceptors=[log, auth]`` the log sees every call, the ones auth refuses too.

:func:`wrap_handler` replaces a method handler's behaviour, keeping what gRPC needs
to know about it: its kind, its (de)serializers, and the ``experimental_non_blocking``
flag of a handler that holds no thread while its stream is open (grpc_health's Watch).
Lose the flag and every open health Watch holds one of the server's worker threads.

Used by notebook 10 (the call log, tokens), 14/15 (tracing), and ``rpclab serve grpc``
(tokens and per-learner limits, rpclab.grpcstack.limits).

About 440 lines: CallLog and TokenAuth each wrap all four kinds of call (unary and
streaming, blocking and not), through the shared wrap_handler.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from rpclab import checks

__all__ = [
    "CallRecord",
    "CallLog",
    "TokenAuth",
    "kind_of",
    "wrap_handler",
    "bearer_token",
    "peer_host",
    "is_non_blocking",
    "RefusalLog",
    "MAX_RECORDS",
]

log = logging.getLogger(__name__)

MAX_RECORDS = 1000  # records a CallLog keeps by default (the oldest are forgotten first)
MAX_TOKEN_LENGTH = 4096  # longer authorization values are refused without comparing them

_KINDS = (
    ("unary_unary", "unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", "server streaming", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", "client streaming", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", "bidi streaming", grpc.stream_stream_rpc_method_handler),
)

Behaviour = Callable[[Any, grpc.ServicerContext], Any]


def kind_of(handler: grpc.RpcMethodHandler) -> str:
    """The kind of call a method handler serves: "unary", "server streaming", "client streaming" or
    "bidi streaming"."""
    for attribute, kind, _ in _KINDS:
        if getattr(handler, attribute) is not None:
            return kind
    raise ValueError(f"{handler!r} has no behaviour")


NON_BLOCKING = "experimental_non_blocking"  # the attribute gRPC looks for on a behaviour


def is_non_blocking(behaviour: Behaviour) -> bool:
    """Whether gRPC calls ``behaviour`` with a ``send_response_callback`` and no thread of its own
    for the stream (grpc_health's Watch is such a behaviour)."""
    return bool(getattr(behaviour, NON_BLOCKING, False))


def wrap_handler(
    handler: grpc.RpcMethodHandler, wrap: Callable[[Behaviour, str], Behaviour]
) -> grpc.RpcMethodHandler:
    """The same kind of handler, its behaviour replaced by ``wrap(behaviour, kind)`` (same
    (de)serializers).

    gRPC calls the wrapper as ``wrapper(request, context, *extra)``: it must pass ``extra``
    on to ``behaviour``. For a non-blocking behaviour ``extra`` is ``(send_response_callback,)``,
    the behaviour returns at once, and the call ends later (``context.add_callback`` says when);
    the wrapper is marked non-blocking too, so that gRPC keeps calling it that way.
    """
    for attribute, kind, make in _KINDS:
        behaviour = getattr(handler, attribute)
        if behaviour is not None:
            wrapped = wrap(behaviour, kind)
            if is_non_blocking(behaviour):
                setattr(wrapped, NON_BLOCKING, True)
            return make(
                wrapped,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def peer_host(context: grpc.ServicerContext) -> str:
    """The caller's address without its port: "ipv4:10.0.0.7:53412" -> "10.0.0.7",
    "ipv6:[::1]:53412" -> "::1"; anything else as gRPC gives it."""
    peer = context.peer() or ""
    scheme, _, rest = peer.partition(":")
    if scheme == "ipv4":
        return rest.rpartition(":")[0] or rest
    if scheme == "ipv6":
        host = rest.rpartition(":")[0] or rest
        return host.strip("[]")
    return peer


class RefusalLog:
    """Logs refused calls without letting a flood of them flood the log: per ``key`` (a learner),
    at most one line every ``every`` seconds, which counts the refusals it stood for.

    ``counts`` holds every refusal per key (at most ``max_keys`` keys, the oldest forgotten).
    """

    def __init__(self, logger: logging.Logger, every: float = 10.0, max_keys: int = 1000) -> None:
        self.logger = logger
        self.every = every
        self.max_keys = max_keys
        self.counts: dict[str, int] = {}
        self._last: dict[str, tuple[float, int]] = {}  # key -> (when logged, count then)
        self._lock = threading.Lock()

    def note(self, key: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            count = self.counts.pop(key, 0) + 1
            self.counts[key] = count  # most recent last
            while len(self.counts) > self.max_keys:
                oldest = next(iter(self.counts))
                del self.counts[oldest]
                self._last.pop(oldest, None)
            when, logged = self._last.get(key, (float("-inf"), 0))
            if now - when < self.every:
                return
            self._last[key] = (now, count)
        more = count - logged - 1
        self.logger.info("%s%s", message, f" (and {more} more like it)" if more > 0 else "")


# --------------------------------------------------------------------------- timing and logging


@dataclass(frozen=True)
class CallRecord:
    """One call the server finished: which method, what kind, how it ended, how long it took, who
    called."""

    method: str  # "/helloworld.Greeter/SayHello"
    # "unary", "server streaming", "client streaming", "bidi streaming" or "" (no such method)
    kind: str
    code: str  # the status code's name: "OK", "NOT_FOUND", "UNAUTHENTICATED", ...
    seconds: (
        float  # from the servicer's start until its last reply (streams: until the stream ended)
    )
    peer: str  # "ipv4:127.0.0.1:53412"
    started: float  # time.time() when the call began
    learner: str = ""  # who called, when the CallLog was given a way to tell (``learner=``)


def _ended_code(context: grpc.ServicerContext, failed: bool) -> str:
    """The status a finished call ended with, as the server knows it."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if not context.is_active():  # the client left first: cancelled, or its deadline passed
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    return "UNKNOWN" if failed else "OK"


class CallLog(grpc.ServerInterceptor):
    """A server interceptor that times every call and keeps the last ``max_records`` of them.

    ``background.serve_grpc("greeter", add_greeter, interceptors=[calls])``,
    then ``calls.records`` or ``print(calls.table())``. Each record is also
    logged at DEBUG level to the ``rpclab.grpcstack.interceptors`` logger.
    ``learner(metadata, context)``, if given, names the caller of each call in its record
    (``rpclab serve grpc`` gives the token holder's name, else the peer's address).
    """

    def __init__(
        self,
        max_records: int = MAX_RECORDS,
        *,
        learner: Callable[[Any, grpc.ServicerContext], str] | None = None,
    ) -> None:
        checks.integer("max_records", max_records, low=1)
        self._records: deque[CallRecord] = deque(maxlen=max_records)
        self._lock = threading.Lock()
        self.max_records = max_records
        self.learner = learner

    # -- the interceptor --------------------------------------------------------

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:  # no such method: gRPC answers UNIMPLEMENTED
            self._add(CallRecord(details.method, "", "UNIMPLEMENTED", 0.0, "", time.time()))
            return None
        method, metadata = details.method, details.invocation_metadata
        return wrap_handler(
            handler, lambda behaviour, kind: self._timed(behaviour, kind, method, metadata)
        )

    def _timed(self, behaviour: Behaviour, kind: str, method: str, metadata: Any) -> Behaviour:
        streams_out = kind in ("server streaming", "bidi streaming")

        def timed(request: Any, context: grpc.ServicerContext, *extra: Any) -> Any:
            started, start = time.time(), time.perf_counter()
            finished = threading.Lock()

            def finish(failed: bool) -> None:
                if not finished.acquire(blocking=False):
                    return  # once per call
                learner = self.learner(metadata, context) if self.learner is not None else ""
                self._add(
                    CallRecord(
                        method,
                        kind,
                        _ended_code(context, failed),
                        time.perf_counter() - start,
                        context.peer(),
                        started,
                        learner,
                    )
                )

            try:
                result = behaviour(request, context, *extra)
            except BaseException:
                finish(True)
                raise
            if extra:  # non-blocking: replies go to extra[0], and the stream ends later
                if not context.add_callback(lambda: finish(False)):
                    finish(False)
                return result
            if not streams_out:
                finish(False)
                return result
            return self._stream(result, finish)

        return timed

    @staticmethod
    def _stream(replies: Iterable[Any], finish: Callable[[bool], None]) -> Iterator[Any]:
        failed = False
        try:
            yield from replies
        except BaseException:  # GeneratorExit too: gRPC closes the stream when the call ends early
            failed = True
            raise
        finally:
            finish(failed)

    def _add(self, record: CallRecord) -> None:
        with self._lock:
            self._records.append(record)
        log.debug(
            "%s %s %s %s %.3f ms %s",
            record.learner or "-",
            record.method,
            record.kind,
            record.code,
            record.seconds * 1000,
            record.peer,
        )

    # -- reading the log ----------------------------------------------------------

    @property
    def records(self) -> list[CallRecord]:
        """The calls finished so far (the last ``max_records``), oldest first."""
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._records.clear()

    def table(self, last: int | None = None) -> str:
        """The records (or the ``last`` few) as an aligned text table: method, kind, status,
        milliseconds."""
        records = self.records
        if last is not None:
            records = records[-last:] if last > 0 else []
        if not records:
            return "(no calls yet)"
        rows = [("#", "method", "kind", "status", "ms")]
        for number, r in enumerate(records, 1):
            rows.append((str(number), r.method, r.kind or "-", r.code, f"{r.seconds * 1000:.2f}"))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = []
        for row in rows:
            cells = [row[i].ljust(widths[i]) for i in range(4)] + [row[4].rjust(widths[4])]
            lines.append("  ".join(cells))
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


# --------------------------------------------------------------------------- token authentication


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry; None if there is none.

    Raises ValueError if the entry is there but is not a bearer token.
    """
    for key, value in metadata or ():
        if key != "authorization":
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if len(value) > MAX_TOKEN_LENGTH:
            raise ValueError(
                f"the authorization value is {len(value)} characters; the limit is "
                f"{MAX_TOKEN_LENGTH}"
            )
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ValueError("authorization metadata must read 'Bearer <token>'")
        return token.strip()
    return None


class TokenAuth(grpc.ServerInterceptor):
    """A server interceptor that lets a call through only with a known bearer token.

    ``tokens`` maps each valid token to who holds it (or is a plain list of
    tokens). Every method needs a token, server reflection and health checking
    included: methods starting with one of ``exempt`` (none by default; for example
    ``("/grpc.health.",)``) need none. Exempting reflection shows your whole API to
    anyone, and any exempt stream is a thread anyone may hold. A refused call ends with
    UNAUTHENTICATED before the servicer runs; ``allowed`` counts the calls let
    through per holder, and each refusal is logged (an INFO line, at most one per
    caller's address every 10 seconds) to the ``rpclab.grpcstack.interceptors`` logger.
    """

    def __init__(
        self,
        tokens: Mapping[str, str] | Iterable[str],
        exempt: Iterable[str] = (),
    ) -> None:
        holders = (
            dict(tokens)
            if isinstance(tokens, Mapping)
            else {t: f"holder of token {i + 1}" for i, t in enumerate(tokens)}
        )
        for token in holders:
            if (
                not isinstance(token, str)
                or not token
                or len(token) > MAX_TOKEN_LENGTH
                or token != token.strip()
            ):
                raise ValueError(
                    f"each token must be a non-empty str without surrounding spaces, "
                    f"at most {MAX_TOKEN_LENGTH} characters"
                )
        if not holders:
            raise ValueError("TokenAuth needs at least one token")
        self._holders = [(token.encode(), holder) for token, holder in holders.items()]
        if isinstance(exempt, str):
            exempt = (exempt,)  # one prefix, not its letters
        self.exempt = tuple(exempt)
        self.allowed: dict[str, int] = {}
        self.refusals = RefusalLog(log)
        self._lock = threading.Lock()

    def holder(self, metadata: Iterable[tuple[str, Any]] | None) -> str | None:
        """Who holds the bearer token in ``metadata``; None if nobody valid does."""
        try:
            return self.check(metadata)
        except PermissionError:
            return None

    def check(self, metadata: Iterable[tuple[str, Any]] | None) -> str:
        """Who holds the bearer token in ``metadata``; PermissionError saying why if nobody valid
        does."""
        try:
            token = bearer_token(metadata)
        except ValueError as exc:
            raise PermissionError(str(exc)) from None
        if token is None:
            raise PermissionError(
                "no 'authorization: Bearer <token>' metadata: this service needs a token"
            )
        given = token.encode()
        holder = None
        for known, name in self._holders:  # compare with every token, in constant time each
            if hmac.compare_digest(given, known):
                holder = name
        if holder is None:
            raise PermissionError("the bearer token is not valid")
        return holder

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        if details.method.startswith(self.exempt):
            return continuation(details)
        try:
            holder = self.check(details.invocation_metadata)
        except PermissionError as exc:
            reason = str(exc)
            method = details.method

            def refused(request: Any, context: grpc.ServicerContext, *extra: Any) -> Any:
                host = peer_host(context)
                self.refusals.note(host, f"UNAUTHENTICATED: {method} from {host}: {reason}")
                context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

            handler = continuation(details)
            if handler is None:
                # No such method -- but a caller without a token must not learn even that
                # (UNIMPLEMENTED would say it). A streaming handler reads no request first.
                return grpc.stream_stream_rpc_method_handler(refused)
            return wrap_handler(handler, lambda behaviour, kind: refused)
        with self._lock:
            self.allowed[holder] = self.allowed.get(holder, 0) + 1
        return continuation(details)
