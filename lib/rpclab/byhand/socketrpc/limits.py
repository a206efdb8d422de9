"""What one learner may hold of a socket RPC server a class shares, and what they hear over it.

Part of rpclab.byhand.socketrpc: ``serve(..., limits=Limits.for_class())``, as ``rpclab serve
socket`` runs it (TEACHING.md's lab section). The server gives each connection a thread for as
long as it stays open, so a classmate who opens hundreds of connections, or floods calls, or
connects and says nothing, would hold every thread and file descriptor. The limits::

    Limits(connections_per_address=16, connections=160, calls_per_learner=8, idle_timeout=120)

A *learner* is the address a connection comes from (the socket stack carries no tokens), so
learners behind one address -- a JupyterHub on one machine, a NAT -- share one allowance:
raise it for them. Over a limit, the learner gets one frame, a JSON-RPC error -32005 "Limit
exceeded" (the code EIP-1474 gives it, among the -32000 to -32099 the JSON-RPC 2.0 spec leaves
to servers) whose data says which limit and what to do, and then the connection is closed.
Everyone else is served as before. Refusals are logged: at most one line per learner every
10 s, saying how many it stands for.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass

from rpclab import checks
from rpclab.byhand import framing, jsonrpc
from rpclab.runtime.guard import ConnectionLimits

__all__ = ["Limits", "Admission", "LIMIT_EXCEEDED", "refusal"]

log = logging.getLogger("rpclab.byhand.socketrpc")

LIMIT_EXCEEDED = -32005  # "Limit exceeded" (EIP-1474's number for it)
LOG_EVERY = 10.0  # seconds between two log lines about one learner's refusals


@dataclass(frozen=True)
class Limits:
    """What one learner, and everyone together, may hold of a socket RPC server (None: no
    limit, as in the notebooks).

    ``connections_per_address`` and ``connections`` bound open connections from one address
    and in all; ``calls_per_learner`` the calls one learner has running at once, over all their
    connections; ``idle_timeout`` how long a connection may wait between two requests before
    the server closes it (rpclab's client reconnects by itself on its next call).
    """

    connections_per_address: int | None = None
    connections: int | None = None
    calls_per_learner: int | None = None
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("connections_per_address", "connections", "calls_per_learner"):
            if getattr(self, name) is not None:
                checks.integer(name, getattr(self, name), low=1)
        checks.seconds("idle_timeout", self.idle_timeout, above=0, optional=True)

    @classmethod
    def for_class(cls) -> Limits:
        """The defaults of ``rpclab serve socket``, for a class of 30 (those of the other stacks:
        rpclab.classserver.ClassLimits)."""
        return cls(
            connections_per_address=16, connections=160, calls_per_learner=8, idle_timeout=120.0
        )


def refusal(reason: str, request_id: jsonrpc.Id = None) -> bytes:
    """The frame a learner over a limit gets: error -32005 "Limit exceeded", ``reason`` as its
    data."""
    error = jsonrpc.RPCError(LIMIT_EXCEEDED, "Limit exceeded", reason)
    return framing.encode_frame(jsonrpc.encode(jsonrpc.error_response(request_id, error)))


class Admission:
    """The counts behind :class:`Limits`: connections per learner and in all, calls per learner.

    ``admit(learner)`` counts one more connection and returns None, or says why not;
    ``leave(learner)`` counts one fewer. ``start_call`` and ``end_call`` do the same for calls.
    Thread-safe.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        per_address, total = limits.connections_per_address, limits.connections
        self.connections = (
            None
            if per_address is None and total is None
            else ConnectionLimits(per_address or sys.maxsize, total or sys.maxsize)
        )
        self.refused: dict[str, int] = {}  # refusals per learner (at most 1000 learners kept)
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()
        self._logged: dict[str, tuple[float, int]] = {}  # learner -> (when, refusals then)

    def admit(self, learner: str) -> str | None:
        if self.connections is None:
            return None
        reason = self.connections.admit(learner)
        if reason is not None:
            self.note(learner, f"refused a connection from {learner}: {reason}")
        return reason

    def leave(self, learner: str) -> None:
        if self.connections is not None:
            self.connections.release(learner)

    def start_call(self, learner: str) -> str | None:
        limit = self.limits.calls_per_learner
        if limit is None:
            return None
        with self._lock:
            running = self._calls.get(learner, 0)
            if running < limit:
                self._calls[learner] = running + 1
                return None
        reason = (
            f"{learner} already has {running} calls running, the most one learner may have at "
            "once on this server; wait for one to end"
        )
        self.note(learner, f"refused a call from {learner}: {reason}")
        return reason

    def end_call(self, learner: str) -> None:
        if self.limits.calls_per_learner is None:
            return
        with self._lock:
            running = self._calls.get(learner, 0) - 1
            if running > 0:
                self._calls[learner] = running
            else:
                self._calls.pop(learner, None)

    def calls(self) -> dict[str, int]:
        """Calls running per learner, now."""
        with self._lock:
            return dict(self._calls)

    def note(self, learner: str, message: str) -> None:
        """Count a refusal and log it, at most one line per learner every LOG_EVERY seconds."""
        now = time.monotonic()
        with self._lock:
            count = self.refused.pop(learner, 0) + 1
            self.refused[learner] = count  # the most recent last
            if len(self.refused) > 1000:
                oldest = next(iter(self.refused))
                del self.refused[oldest]
                self._logged.pop(oldest, None)
            when, then = self._logged.get(learner, (float("-inf"), 0))
            if now - when < LOG_EVERY:
                return
            self._logged[learner] = (now, count)
        more = count - then - 1
        log.info("%s%s", message, f" (and {more} more like it)" if more > 0 else "")
