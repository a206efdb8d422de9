"""A flaky gRPC server (notebooks 09 and 15): an interceptor that fails attempts on purpose, and
logs every attempt.

:class:`Flaky` fails the first N attempts of every call, or a seeded fraction,
with UNAVAILABLE, and logs each attempt with the ``grpc-previous-rpc-attempts``
the server saw (retries made visible).
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import grpc

from rpclab.grpcstack.handlers import run_before

ATTEMPTS_METADATA_KEY = (
    "grpc-previous-rpc-attempts"  # sent by the client on a retry: attempts made before this one
)
MAX_LOG = 10_000  # entries a log keeps (the oldest are forgotten first)


class Attempt(NamedTuple):
    """One attempt the flaky server saw: which method, the how-manieth attempt of its call, and
    whether it failed."""

    method: str
    number: int  # 1 for a first attempt; grpc-previous-rpc-attempts + 1 for a retry
    failed: bool


class Flaky(grpc.ServerInterceptor):
    """A server interceptor that fails attempts with UNAVAILABLE, as a server that is restarting
    would.

    ``fail_first=N`` fails the first N attempts of every call (the server tells
    a retry by its ``grpc-previous-rpc-attempts`` metadata), so a call succeeds
    on attempt N+1 if the client retries that often. ``fail_fraction=p`` fails
    any other attempt with probability p, drawn from ``random.Random(seed)``.
    Every attempt is logged in ``attempts``.
    """

    def __init__(
        self,
        fail_first: int = 0,
        fail_fraction: float = 0.0,
        *,
        seed: int | None = 0,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        methods: Iterable[str] | None = None,
    ) -> None:
        if isinstance(fail_first, bool) or not isinstance(fail_first, int) or fail_first < 0:
            raise ValueError(f"fail_first must be an int >= 0, not {fail_first!r}")
        if (
            isinstance(fail_fraction, bool)
            or not isinstance(fail_fraction, (int, float))
            or not 0 <= fail_fraction <= 1
        ):
            raise ValueError(
                f"fail_fraction must be a probability between 0 and 1, not {fail_fraction!r}"
            )
        if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
            raise ValueError(f"code must be a grpc.StatusCode other than OK, not {code!r}")
        self.fail_first = fail_first
        self.fail_fraction = float(fail_fraction)
        self.code = code
        self.methods = (
            None if methods is None else frozenset(methods)
        )  # fail only these (None: all)
        self._random = random.Random(seed)
        self._log: deque[Attempt] = deque(maxlen=MAX_LOG)
        self._lock = threading.Lock()

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if self.methods is not None and details.method not in self.methods:
            return handler
        number = _previous_attempts(details.invocation_metadata) + 1
        with self._lock:
            failed = number <= self.fail_first or (
                self.fail_fraction > 0 and self._random.random() < self.fail_fraction
            )
            self._log.append(Attempt(details.method, number, failed))
        if not failed:
            return handler

        def fail(context: grpc.ServicerContext) -> None:
            context.abort(self.code, f"flaky server: attempt {number} failed on purpose")

        return run_before(handler, fail)

    @property
    def attempts(self) -> list[Attempt]:
        """Every attempt seen so far (the last MAX_LOG), oldest first."""
        with self._lock:
            return list(self._log)

    def reset(self, seed: int | None = 0) -> None:
        """Forget the attempts and restart the random sequence from ``seed``."""
        with self._lock:
            self._log.clear()
            self._random = random.Random(seed)


def _previous_attempts(metadata: Iterable[tuple[str, Any]] | None) -> int:
    for key, value in metadata or ():
        if key == ATTEMPTS_METADATA_KEY:
            try:
                return max(int(value), 0)
            except (TypeError, ValueError):
                return 0
    return 0
