"""A layer-4 load balancer: a TCP proxy that sends each new connection to the next of several
upstreams.

Used in notebook 09 (why an L4 proxy does not balance gRPC calls).

It plays the part of an Nginx ``stream { upstream ... }`` block or any other
TCP (L4) balancer: it sees connections and bytes, never the calls inside them::

    from rpclab.grpcstack import balancer
    lb = balancer.serve_balancer("lb", [a.address, b.address, c.address])
    channel = grpc.insecure_channel(f"127.0.0.1:{lb.port}")   # talk to the balancer
    lb.connections          # {'127.0.0.1:40001': 1, '127.0.0.1:40002': 0, ...}
    lb.stop()

Because it balances *connections*, every call a gRPC channel makes over its one
HTTP/2 connection reaches the same upstream. An L7 (HTTP/2-aware) proxy such as
Envoy or Nginx's ``grpc_pass`` instead balances each call.

Each client connection is served by one thread that moves bytes both ways with
non-blocking sockets; each direction holds at most ``MAX_BUFFERED`` bytes
before the balancer stops reading from its sender (back-pressure, not memory
growth). At most ``max_connections`` connections are open at once; more are
closed at once.
"""

from __future__ import annotations

import selectors
import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from rpclab import checks
from rpclab.runtime import background

__all__ = ["Balancer", "RoundRobinProxy", "serve_balancer", "MAX_BUFFERED", "CONNECT_TIMEOUT"]

CHUNK = 64 * 1024  # bytes read from a socket at a time
MAX_BUFFERED = 256 * 1024  # bytes held for one direction before reading from its sender pauses
CONNECT_TIMEOUT = 2.0  # seconds to reach an upstream
POLL_S = 0.1  # how often a connection's loop checks whether the balancer is stopping
MAX_CONNECTIONS = 64  # client connections open at once, by default


def _label(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _address_of(upstream: Any) -> tuple[str, int]:
    address = getattr(upstream, "address", upstream)  # a ServerHandle, or (host, port)
    if (
        isinstance(address, (tuple, list))
        and len(address) == 2
        and isinstance(address[0], str)
        and isinstance(address[1], int)
        and not isinstance(address[1], bool)
        and 0 < address[1] <= 65535
    ):
        return address[0], address[1]
    raise ValueError(
        f"each upstream must be a (host, port) pair or a server handle, not {upstream!r}"
    )


class _Direction:
    """Bytes read from ``src`` waiting to be written to ``dst``."""

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src, self.dst = src, dst
        self.buffer = bytearray()
        self.eof = False  # src has closed its side
        self.done = False  # ...and everything it sent has been written to dst

    def wants_read(self) -> bool:
        return not self.eof and len(self.buffer) < MAX_BUFFERED

    def read(self) -> None:
        try:
            data = self.src.recv(CHUNK)
        except BlockingIOError:
            return
        if data:
            self.buffer += data
        else:
            self.eof = True

    def write(self) -> None:
        try:
            sent = self.dst.send(self.buffer)
        except BlockingIOError:
            return
        del self.buffer[:sent]

    def finish_if_drained(self) -> None:
        if self.eof and not self.buffer and not self.done:
            self.done = True
            try:
                self.dst.shutdown(socket.SHUT_WR)  # pass the half-close on
            except OSError:
                pass


def _pipe(client: socket.socket, upstream: socket.socket, stopping: threading.Event) -> None:
    """Move bytes both ways until both sides have closed, a socket fails, or ``stopping`` is set."""
    directions = (_Direction(client, upstream), _Direction(upstream, client))
    for sock in (client, upstream):
        sock.setblocking(False)
    with selectors.DefaultSelector() as selector:
        registered: dict[socket.socket, int] = {}
        while not stopping.is_set() and not all(d.done for d in directions):
            wanted: dict[socket.socket, int] = {client: 0, upstream: 0}
            for d in directions:
                if d.wants_read():
                    wanted[d.src] |= selectors.EVENT_READ
                if d.buffer:
                    wanted[d.dst] |= selectors.EVENT_WRITE
            for sock, events in wanted.items():
                old = registered.get(sock, 0)
                if events == old:
                    continue
                if not events:
                    selector.unregister(sock)
                elif not old:
                    selector.register(sock, events)
                else:
                    selector.modify(sock, events)
                registered[sock] = events
            ready = (
                dict((key.fileobj, mask) for key, mask in selector.select(POLL_S))
                if registered
                else {}
            )
            if not registered and not any(d.buffer for d in directions):
                break  # nothing to read, nothing to write: both sides are gone
            for d in directions:
                if ready.get(d.src, 0) & selectors.EVENT_READ:
                    d.read()
                if ready.get(d.dst, 0) & selectors.EVENT_WRITE:
                    d.write()
                d.finish_if_drained()


class _Handler(socketserver.BaseRequestHandler):
    server: RoundRobinProxy

    def handle(self) -> None:
        proxy = self.server
        if not proxy._admit():
            return  # over the limit: socketserver closes the connection
        try:
            upstream = proxy._connect_next()
            if upstream is None:
                return
            with upstream:
                try:
                    _pipe(self.request, upstream, proxy._stopping)
                except OSError:
                    pass  # a reset or a broken pipe ends this connection, not the balancer
        finally:
            proxy._release()


class RoundRobinProxy(socketserver.ThreadingTCPServer):
    """The socketserver behind a Balancer: each accepted connection is piped to the next upstream in
    turn."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        upstreams: Mapping[str, tuple[str, int]],
        *,
        max_connections: int = MAX_CONNECTIONS,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.upstreams = dict(upstreams)
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.counts: Counter[str] = Counter({name: 0 for name in self.upstreams})
        self.refused = 0  # connections closed because max_connections were open
        self.failed = 0  # connections closed because no upstream answered
        self._names = list(self.upstreams)
        self._next = 0
        self._open = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        super().__init__(address, _Handler)

    def _admit(self) -> bool:
        with self._lock:
            if self._open >= self.max_connections or self._stopping.is_set():
                self.refused += 1
                return False
            self._open += 1
            return True

    def _release(self) -> None:
        with self._lock:
            self._open -= 1

    def _connect_next(self) -> socket.socket | None:
        """Connect to the next upstream in turn; if it refuses, try the others once each (like
        proxy_next_upstream)."""
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self._names)
        for step in range(len(self._names)):
            name = self._names[(start + step) % len(self._names)]
            try:
                sock = socket.create_connection(self.upstreams[name], timeout=self.connect_timeout)
            except OSError:
                continue
            with self._lock:
                self.counts[name] += 1
            return sock
        with self._lock:
            self.failed += 1
        return None

    @property
    def open_connections(self) -> int:
        with self._lock:
            return self._open

    def shutdown(self) -> None:
        """Stop accepting, then tell every open connection to close."""
        super().shutdown()
        self._stopping.set()


class Balancer(background.RunningServer):
    """A running round-robin TCP balancer: ``address`` to connect to, ``connections`` per upstream,
    ``stop()``."""

    def __init__(self, handle: background.ServerHandle, proxy: RoundRobinProxy) -> None:
        super().__init__(handle)
        self._proxy = proxy

    @property
    def upstreams(self) -> dict[str, tuple[str, int]]:
        """Upstream name -> (host, port), in round-robin order."""
        return dict(self._proxy.upstreams)

    @property
    def connections(self) -> dict[str, int]:
        """How many client connections each upstream has been given so far (name -> count)."""
        with self._proxy._lock:
            return dict(self._proxy.counts)

    @property
    def open_connections(self) -> int:
        """Client connections open through the balancer now."""
        return self._proxy.open_connections

    @property
    def refused(self) -> int:
        """Connections closed at once because ``max_connections`` were already open."""
        with self._proxy._lock:
            return self._proxy.refused

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        names = ", ".join(self._proxy.upstreams)
        return f"<round-robin balancer {self.name!r} {self.host}:{self.port} -> [{names}], {state}>"


def serve_balancer(
    name: str,
    upstreams: Mapping[str, Any] | Iterable[Any],
    *,
    host: str = background.DEFAULT_HOST,
    port: int = 0,
    max_connections: int = MAX_CONNECTIONS,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> Balancer:
    """Start a round-robin TCP balancer called ``name`` in front of ``upstreams``; return it.

    ``upstreams`` is a list of (host, port) pairs or server handles (named
    "host:port"), or a mapping name -> (host, port) or handle. Runs through
    rpclab.runtime.background, so starting the same name again replaces the old one.
    """
    if isinstance(upstreams, Mapping):
        named = {str(key): _address_of(value) for key, value in upstreams.items()}
    else:
        addresses = [_address_of(u) for u in upstreams]
        named = {_label(a): a for a in addresses}
    if not named:
        raise ValueError("serve_balancer needs at least one upstream")
    checks.integer("max_connections", max_connections, low=1)
    checks.seconds("connect_timeout", connect_timeout, above=0)
    box: list[RoundRobinProxy] = []

    def make(address: tuple[str, int]) -> RoundRobinProxy:
        box.append(
            RoundRobinProxy(
                address,
                named,
                max_connections=max_connections,
                connect_timeout=float(connect_timeout),
            )
        )
        return box[0]

    handle = background.serve(name, make, host=host, port=port)
    return Balancer(handle, box[0])
