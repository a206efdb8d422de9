"""Per-learner limits for a gRPC server a class shares: no learner can take every worker.

A synchronous gRPC server runs each call in a thread of a fixed pool, and an open stream (a
``Watch``, a ``RecordRoute`` never finished, a reflection stream) keeps its thread until it
ends. Sixteen streams from one learner hold a 16-thread server, and every other call waits
for a thread until its deadline passes. :class:`LearnerLimits` counts, per learner, the
calls in progress and the streams open, and refuses one more with RESOURCE_EXHAUSTED and a
message that says which limit and what to do::

    limits = LearnerLimits(calls=8, streams=4, tokens=auth)   # auth: a TokenAuth, or None
    background.serve_grpc("class", register_all, max_workers=160,
                          interceptors=[auth, limits])

A learner is the holder's name of the call's bearer token when ``tokens`` is given and the
token is valid, else the caller's address without its port (so learners behind one address,
a JupyterHub or a NAT, share one allowance unless they have tokens). Refusals are logged
(an INFO line per learner at most every 10 s: `rpclab serve` shows them) and counted in ``refused``.

Used by ``rpclab serve grpc`` (its ``--max-calls-per-learner`` and
``--max-streams-per-learner``), as TEACHING.md's lab section describes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

from rpclab import checks
from rpclab.grpcstack.interceptors import (
    Behaviour,
    RefusalLog,
    TokenAuth,
    peer_host,
    wrap_handler,
)

__all__ = [
    "LearnerLimits",
    "DEFAULT_CALLS_PER_LEARNER",
    "DEFAULT_STREAMS_PER_LEARNER",
]

log = logging.getLogger(__name__)

DEFAULT_CALLS_PER_LEARNER = 8  # calls of any kind in progress at once, per learner
DEFAULT_STREAMS_PER_LEARNER = 4  # streaming calls open at once, per learner


def _positive(name: str, value: object) -> int:
    return checks.integer(name, value, low=1)


class LearnerLimits(grpc.ServerInterceptor):
    """A server interceptor that lets each learner have at most ``calls`` calls in progress, of
    which at most ``streams`` streaming calls, and answers RESOURCE_EXHAUSTED beyond that.

    A call counts from the moment its handler starts until it ends (for a stream, until its
    last message or its cancellation). Refused calls never reach the servicer.
    """

    def __init__(
        self,
        calls: int = DEFAULT_CALLS_PER_LEARNER,
        streams: int = DEFAULT_STREAMS_PER_LEARNER,
        *,
        tokens: TokenAuth | None = None,
    ) -> None:
        self.calls = _positive("calls", calls)
        self.streams = _positive("streams", streams)
        if self.streams > self.calls:
            raise ValueError(f"streams ({streams}) cannot be more than calls ({calls})")
        self.tokens = tokens
        self._in_progress: dict[str, list[int]] = {}  # learner -> [calls, streams]
        self._lock = threading.Lock()
        self.refusals = RefusalLog(log)

    @property
    def refused(self) -> dict[str, int]:
        """How many calls each learner has had refused so far."""
        return dict(self.refusals.counts)

    def in_progress(self) -> dict[str, tuple[int, int]]:
        """Each learner's (calls in progress, streams open) right now."""
        with self._lock:
            return {who: (c, s) for who, (c, s) in self._in_progress.items()}

    def learner(self, metadata: Iterable[tuple[str, Any]] | None, context: Any) -> str:
        """Who is calling: the token holder's name, else the caller's address."""
        if self.tokens is not None:
            holder = self.tokens.holder(metadata)
            if holder is not None:
                return holder
        return peer_host(context)

    # -- the interceptor --------------------------------------------------------

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method, metadata = details.method, details.invocation_metadata
        return wrap_handler(
            handler, lambda behaviour, kind: self._limited(behaviour, kind, method, metadata)
        )

    def _limited(self, behaviour: Behaviour, kind: str, method: str, metadata: Any) -> Behaviour:
        streaming = kind != "unary"
        streams_out = kind in ("server streaming", "bidi streaming")

        def limited(request: Any, context: grpc.ServicerContext, *extra: Any) -> Any:
            who = self.learner(metadata, context)
            refusal = self._admit(who, streaming)
            if refusal is not None:
                self.refusals.note(who, f"RESOURCE_EXHAUSTED: {method} from {who}: {refusal}")
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
            release = self._releaser(who, streaming)
            if not context.add_callback(release):  # the call has already ended
                release()
            try:
                result = behaviour(request, context, *extra)
            except BaseException:
                release()
                raise
            if extra:  # a non-blocking stream: released when the call ends (the callback)
                return result
            if streams_out:
                return _released_after(result, release)
            release()
            return result

        return limited

    def _admit(self, who: str, streaming: bool) -> str | None:
        """Count one more call for ``who``; or say why not."""
        with self._lock:
            counts = self._in_progress.setdefault(who, [0, 0])
            if counts[0] >= self.calls:
                return (
                    f"{who} already has {counts[0]} calls in progress, the most one learner "
                    "may have at once on this server; wait for one to end"
                )
            if streaming and counts[1] >= self.streams:
                return (
                    f"{who} already has {counts[1]} streams open, the most one learner may "
                    "have at once on this server; close one (cancel it) first"
                )
            counts[0] += 1
            counts[1] += streaming
            return None

    def _releaser(self, who: str, streaming: bool) -> Callable[[], None]:
        once = threading.Lock()

        def release() -> None:
            if not once.acquire(blocking=False):
                return
            with self._lock:
                counts = self._in_progress[who]
                counts[0] -= 1
                counts[1] -= streaming
                if counts == [0, 0]:
                    del self._in_progress[who]

        return release


def _released_after(replies: Iterable[Any], release: Callable[[], None]) -> Iterator[Any]:
    try:
        yield from replies
    finally:  # also when gRPC closes the generator because the call ended early
        release()
