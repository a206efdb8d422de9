"""Guards for a server other machines can reach: connections per address, and deadlines.

A server with a thread per connection (socketserver's ThreadingMixIn: the Thrift and XML-RPC
servers here) gives every connection a thread for as long as it stays open. A classmate who
opens hundreds of connections, or sends half a request and waits, holds that many threads
and file descriptors, and the next learner cannot get in. Three small pieces bound that:

* :class:`ConnectionLimits` counts open connections per peer address and in all, and admits
  one more or says why not;
* :class:`Watchdog` is one thread that shuts down each socket whose deadline has passed
  (shutting a socket down wakes the thread blocked reading or writing it);
* :class:`GuardedServerMixIn` puts both on a socketserver server: it refuses a connection
  over a limit (``refuse`` may first tell the peer why), closes connections idle for
  ``idle_timeout`` seconds, and gives each request ``request_timeout`` seconds from its first
  byte to its reply. A handler calls :meth:`~GuardedServerMixIn.wait_for_request` between
  requests and runs each request inside :meth:`~GuardedServerMixIn.request_deadline`.

Used by rpclab.adapters.thrift and rpclab.adapters.xml_rpc (notebook 12, ``rpclab serve``);
the REST server applies the same limits in its uvicorn protocol (rpclab.adapters.rest).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from rpclab import checks

__all__ = [
    "ConnectionLimits",
    "Watchdog",
    "GuardedServerMixIn",
    "peer_address",
    "DEFAULT_CONNECTIONS_PER_ADDRESS",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_REQUEST_TIMEOUT",
]

log = logging.getLogger(__name__)

DEFAULT_CONNECTIONS_PER_ADDRESS = 16  # open connections from one peer address
DEFAULT_MAX_CONNECTIONS = 160  # open connections in all (a thread each)
DEFAULT_IDLE_TIMEOUT = 120.0  # seconds a connection may wait between requests
DEFAULT_REQUEST_TIMEOUT = 10.0  # seconds from a request's first byte to its reply


def _positive_int(name: str, value: object) -> int:
    return checks.integer(name, value, low=1)


def _positive_seconds(name: str, value: object) -> float:
    return checks.number(name, value, above=0, unit="seconds")


def peer_address(client_address: Any) -> str:
    """The host part of a socket peer address: ("10.0.0.7", 53412) -> "10.0.0.7"."""
    if isinstance(client_address, tuple) and client_address:
        return str(client_address[0])
    return str(client_address)


class ConnectionLimits:
    """Open connections, counted per peer address and in all, up to ``per_address`` and
    ``total``.

    ``admit(address)`` counts one more connection and returns None, or returns why it may
    not (counting nothing); ``release(address)`` counts one fewer. Thread-safe.
    """

    def __init__(
        self,
        per_address: int = DEFAULT_CONNECTIONS_PER_ADDRESS,
        total: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.per_address = _positive_int("per_address", per_address)
        self.total = _positive_int("total", total)
        self._open: dict[str, int] = {}
        self._count = 0
        self._lock = threading.Lock()

    def admit(self, address: str) -> str | None:
        with self._lock:
            if self._count >= self.total:
                return (
                    f"the server has {self._count} connections open, its limit; "
                    "try again in a moment"
                )
            mine = self._open.get(address, 0)
            if mine >= self.per_address:
                return (
                    f"{address} already has {mine} connections open, the most one address "
                    "may have; close one first"
                )
            self._open[address] = mine + 1
            self._count += 1
            return None

    def release(self, address: str) -> None:
        with self._lock:
            mine = self._open.get(address, 0)
            if mine <= 0:
                return
            self._count -= 1
            if mine == 1:
                del self._open[address]
            else:
                self._open[address] = mine - 1

    def open(self) -> dict[str, int]:
        """Open connections per address, now."""
        with self._lock:
            return dict(self._open)


class Watchdog:
    """One thread that shuts down each armed socket whose deadline passes (started on first use).

    ``arm(sock, seconds)`` sets (or moves) a socket's deadline, ``disarm(sock)`` removes it,
    ``close()`` ends the thread. Shutting a socket down (``SHUT_RDWR``) makes a blocked
    ``recv`` return b"" and a blocked ``sendall`` fail, so the thread serving it ends.
    """

    def __init__(self, name: str = "rpclab-watchdog") -> None:
        self.name = name
        self._deadlines: dict[socket.socket, float] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.expired = 0  # how many sockets it has shut down

    def arm(self, sock: socket.socket, seconds: float) -> None:
        with self._cond:
            if self._closed:
                return
            self._deadlines[sock] = time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def disarm(self, sock: socket.socket) -> None:
        with self._cond:
            self._deadlines.pop(sock, None)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for sock in [s for s, due in self._deadlines.items() if due <= now]:
                    del self._deadlines[sock]
                    self.expired += 1
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass  # already closed
                soonest = min(self._deadlines.values(), default=None)
                self._cond.wait(None if soonest is None else max(soonest - now, 0.001))

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._deadlines.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


class GuardedServerMixIn:
    """For a socketserver server with a thread per connection: limits and deadlines.

    Put it first among the bases (``class S(GuardedServerMixIn, ThreadingMixIn, TCPServer)``);
    it guards with the defaults (no connection limits), and :meth:`guard` sets others. Over a
    limit, :meth:`refuse` is called with the reason (by default it does nothing: the
    connection is closed), and the refusal is logged (an INFO line, at most one per address
    every 10 s).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.guard()
        super().__init__(*args, **kwargs)

    def guard(
        self,
        limits: ConnectionLimits | None = None,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        """Set the limits (None: no connection limits) and the timeouts."""
        self.limits = limits
        self.idle_timeout = _positive_seconds("idle_timeout", idle_timeout)
        self.request_timeout = _positive_seconds("request_timeout", request_timeout)
        if not hasattr(self, "watchdog"):
            self.watchdog = Watchdog(f"rpclab-watchdog:{type(self).__name__}")
            self._admitted: dict[socket.socket, str] = {}
            self._admitted_lock = threading.Lock()
            self._refusal_logged: dict[str, float] = {}

    # -- socketserver hooks ------------------------------------------------------

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self.limits is None:
            return True
        address = peer_address(client_address)
        reason = self.limits.admit(address)
        if reason is not None:
            self._log_refusal(address, reason)
            try:
                request.settimeout(1.0)  # a refusal never waits on a slow reader
                self.refuse(request, reason)
            except OSError:
                pass
            return False
        with self._admitted_lock:
            self._admitted[request] = address
        return True

    def shutdown_request(self, request: Any) -> None:
        with self._admitted_lock:
            address = self._admitted.pop(request, None)
        self.watchdog.disarm(request)
        if address is not None and self.limits is not None:
            self.limits.release(address)
        super().shutdown_request(request)  # type: ignore[misc]

    def server_close(self) -> None:
        self.watchdog.close()
        super().server_close()  # type: ignore[misc]

    def refuse(self, request: socket.socket, reason: str) -> None:
        """Tell a refused peer why, before its connection is closed (override; default: nothing)."""

    # -- for handlers ------------------------------------------------------------

    def wait_for_request(self, sock: socket.socket) -> bool:
        """Wait until ``sock`` has bytes to read (or is closed); False if it stays idle for
        ``idle_timeout`` seconds."""
        try:
            readable, _, _ = select.select([sock], [], [], self.idle_timeout)
        except (OSError, ValueError):  # closed under us
            return False
        return bool(readable)

    @contextlib.contextmanager
    def request_deadline(self, sock: socket.socket) -> Iterator[None]:
        """Shut ``sock`` down if the block has not finished within ``request_timeout`` seconds."""
        self.watchdog.arm(sock, self.request_timeout)
        try:
            yield
        finally:
            self.watchdog.disarm(sock)

    def _log_refusal(self, address: str, reason: str) -> None:
        now = time.monotonic()
        with self._admitted_lock:
            if now - self._refusal_logged.get(address, float("-inf")) < 10.0:
                return
            if len(self._refusal_logged) > 1000:
                self._refusal_logged.clear()
            self._refusal_logged[address] = now
        log.info("refused a connection from %s: %s", address, reason)
