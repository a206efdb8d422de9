"""A flaky gRPC server: an interceptor that fails attempts on purpose, and logs every attempt.

Taught in notebook 09 (retries by service config); the capstone's ``Shop.fail`` in 15 is one per
service. It takes the faults of vocabulary.py that a server can act on -- ``fail`` (a
probability) and ``fail_first`` (a count) -- and answers each failed attempt with a status
(UNAVAILABLE, as a server that is restarting would)::

    flaky = Flaky(Faults(fail_first=2))         # or Flaky(fail_first=2): the same
    background.serve_grpc("flaky", add_greeter, interceptors=[flaky])
    flaky.attempts                  # [Attempt('/helloworld.Greeter/SayHello', 1, True), ...]
    flaky.configure(fail=0.3, seed=9)           # from the next attempt on

The server tells a retry from a first attempt by the ``grpc-previous-rpc-attempts`` metadata
that gRPC's client adds to retries. By the vocabulary's seed rule each method is a stream of
its own (``stream(seed, method)``), drawing one number per attempt.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import grpc

from rpclab.faults.vocabulary import CALL_FAULTS, Faults, fails, stream
from rpclab.grpcstack.handlers import run_before

__all__ = ["Flaky", "Attempt", "ATTEMPTS_METADATA_KEY", "MAX_LOG"]

ATTEMPTS_METADATA_KEY = (
    "grpc-previous-rpc-attempts"  # sent by the client on a retry: attempts made before this one
)
MAX_LOG = 10_000  # entries a log keeps (the oldest are forgotten first)


class Attempt(NamedTuple):
    """One attempt the flaky server saw: which method, the how-manieth attempt of its call,
    whether it failed, and the ``grpc-previous-rpc-attempts`` value it arrived with."""

    method: str
    number: int  # 1 for a first attempt; grpc-previous-rpc-attempts + 1 for a retry
    failed: bool
    header: str | None = None  # grpc-previous-rpc-attempts as received (None: not sent)


class Flaky(grpc.ServerInterceptor):
    """A server interceptor that fails attempts with ``code`` (UNAVAILABLE), as described by
    ``faults``.

    ``Flaky(Faults(fail_first=N))`` fails the first N attempts of every call, so a call
    succeeds on attempt N+1 if the client retries that often; ``fail=p`` fails any other
    attempt with probability p. Settings may also be given by name: ``Flaky(fail_first=2)``.
    ``methods`` limits the failures to those full method names (None: every method). Every
    attempt is logged in ``attempts``.
    """

    def __init__(
        self,
        faults: Faults | None = None,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        methods: Iterable[str] | None = None,
        **settings: Any,
    ) -> None:
        if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
            raise ValueError(f"code must be a grpc.StatusCode other than OK, not {code!r}")
        self.code = code
        self.methods = None if methods is None else frozenset(methods)  # None: every method
        self._lock = threading.Lock()
        self._log: deque[Attempt] = deque(maxlen=MAX_LOG)
        self._streams: dict[str, random.Random] = {}
        self.faults = (Faults() if faults is None else faults).replace(**settings)

    @property
    def faults(self) -> Faults:
        """The faults in force now."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a faults.Faults, not {type(faults).__name__}")
        faults.refuse_all_but(
            CALL_FAULTS,
            "a Flaky server",
            "delay, jitter and reset act on the connection: put faults.serve_proxy(..., "
            "mode='bytes') in front of the server; drop and duplicate need whole messages "
            "(a mode='frames' proxy, for the socket RPC)",
        )
        with self._lock:
            self._faults = faults
            self._streams.clear()  # every method's sequence starts again from the seed

    def configure(self, **changes: Any) -> Faults:
        """Change some settings (``fail``, ``fail_first``, ``seed``); the next attempt sees them.
        The random sequences start again."""
        self.faults = self.faults.replace(**changes)
        return self.faults

    def reset(self, seed: int | None = None) -> None:
        """Forget the attempts and start the random sequences again, from ``seed`` if given."""
        if seed is not None:
            self.faults = self.faults.replace(seed=seed)
        with self._lock:
            self._log.clear()
            self._streams.clear()

    @property
    def attempts(self) -> list[Attempt]:
        """Every attempt seen so far (the last MAX_LOG), oldest first."""
        with self._lock:
            return list(self._log)

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if self.methods is not None and details.method not in self.methods:
            return handler
        header = _attempts_header(details.invocation_metadata)
        number = _previous_attempts(header) + 1
        with self._lock:
            faults = self._faults
            rng = self._streams.get(details.method)
            if rng is None:
                rng = self._streams[details.method] = stream(faults.seed, details.method)
            failed = fails(faults, number, rng)
            self._log.append(Attempt(details.method, number, failed, header))
        if not failed:
            return handler

        def fail(context: grpc.ServicerContext) -> None:
            context.abort(self.code, f"flaky server: attempt {number} failed on purpose")

        return run_before(handler, fail)

    def __repr__(self) -> str:
        return f"<Flaky: {self.faults}>"


def _attempts_header(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The grpc-previous-rpc-attempts value of a call's metadata, as text (None: absent)."""
    for key, value in metadata or ():
        if key == ATTEMPTS_METADATA_KEY:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            return text[:20]  # a number; anything longer is not one
    return None


def _previous_attempts(header: str | None) -> int:
    try:
        return max(int(header), 0) if header is not None else 0
    except ValueError:
        return 0
