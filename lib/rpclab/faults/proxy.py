"""A fault-injecting TCP proxy: it sits between a client and a server and delays, drops,
duplicates or resets traffic.

Taught in notebook 05 (lost requests and replies, retries, at-most-once); a slow network in 01;
a wire tap in 07, 08, 10 and 12; faults in front of one service in 15; assignment A3. It takes the
faults of vocabulary.py, by name::

    from rpclab import faults
    proxy = faults.serve_proxy("wan", server, faults.Faults(delay=0.05, drop=0.1, seed=1))
    client = socketrpc.connect(proxy.address)       # talk to the proxy instead of the server
    proxy.configure(drop=0.5)                        # takes effect for the next frame
    proxy.stats                                      # what the proxy did, per direction
    proxy.stop()

Directions are named from the client's side: ``"request"`` is client -> server,
``"reply"`` is server -> client.

Two modes:

* ``mode="frames"`` (the default) reads the stream as rpclab.byhand.framing frames, so
  every fault acts on a whole message: a dropped frame is a lost request or
  reply, a duplicated frame is a request the server receives twice (what a
  retransmission or a duplicated UDP datagram looks like to the RPC layer).
* ``mode="bytes"`` forwards chunks of whatever protocol it carries (HTTP for
  XML-RPC, HTTP/2 for gRPC). Delay, jitter and reset work; drop and duplicate
  are refused, because dropping bytes from the middle of a TCP stream is not a
  fault TCP can have: it would only corrupt the stream.

``fail`` and ``fail_first`` are refused in both: a proxy cannot answer for the server.

Each connection is carried by pumps.py: a reader and a writer thread each way.

Reproducibility, by the vocabulary's seed rule: every direction of every connection is a
stream of its own (``stream(seed, connection number, direction)``) and draws the same four
numbers for every frame whatever the probabilities are. So a proxy started with the same seed
that sees the same frames on its first, second, ... connection gives every frame the same
fate. ``configure(seed=...)`` restarts the sequences of the open connections.
"""

from __future__ import annotations

import dataclasses
import socketserver
import threading
from typing import Any

from rpclab import checks
from rpclab.byhand import framing
from rpclab.faults.pumps import Connection, DirectionStats, OnFrame, ProxyState, ProxyStats
from rpclab.faults.vocabulary import CALL_FAULTS, NETWORK_FAULTS, Faults
from rpclab.runtime import background

__all__ = [
    "DirectionStats",
    "ProxyStats",
    "FaultProxy",
    "ProxyServer",
    "serve_proxy",
]


MODES = ("frames", "bytes")


def _check_for_mode(faults: Faults, mode: str) -> Faults:
    """``faults``, if a proxy in ``mode`` can act on all of them; else a ValueError that says who
    can."""
    if not isinstance(faults, Faults):
        raise TypeError(f"faults must be a faults.Faults, not {type(faults).__name__}")
    if mode == "bytes" and (faults.drop or faults.duplicate):
        raise ValueError(
            "drop and duplicate act on whole messages, so they need mode='frames'; a mode='bytes' "
            "proxy forwards a byte stream (HTTP, HTTP/2) where losing or repeating bytes would "
            "only corrupt it. Use delay, jitter and reset here."
        )
    return faults.refuse_all_but(
        NETWORK_FAULTS,
        "a TCP proxy",
        f"{' and '.join(CALL_FAULTS)} are answers with an error status, which only a server can "
        "give: use faults.Flaky (a gRPC interceptor) or the capstone's Shop.fail",
    )


# --------------------------------------------------------------------------- the server


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: ProxyServer

    def handle(self) -> None:
        state = self.server.state
        with state.lock:
            state.stats.connections += 1
        conn = Connection(state, next(state.numbers), self.request, self.server.name)
        conn.run(self.server)


class ProxyServer(socketserver.ThreadingTCPServer):
    """The socketserver behind a FaultProxy: one thread per client connection, plus four pump
    threads."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: ProxyState, name: str = "proxy"):
        self.state = state
        self.name = name
        self._connections: set[Connection] = set()
        self._connections_lock = threading.Lock()
        self._closing = False
        super().__init__(address, _ProxyHandler)

    def register(self, conn: Connection) -> bool:
        with self._connections_lock:
            if self._closing:
                return False
            self._connections.add(conn)
            return True

    def unregister(self, conn: Connection) -> None:
        with self._connections_lock:
            self._connections.discard(conn)

    def shutdown(self) -> None:
        """Stop accepting, then close every connection so that no pump stays blocked."""
        super().shutdown()
        with self._connections_lock:
            self._closing = True
            connections = list(self._connections)
        for conn in connections:
            conn.abort(reset=False)


# --------------------------------------------------------------------------- the handle


class FaultProxy(background.RunningServer):
    """A running fault-injecting proxy: ``address`` to connect to, ``configure()`` to change faults
    live, ``stats``, ``stop()``."""

    def __init__(self, handle: background.ServerHandle, state: ProxyState, target: tuple[str, int]):
        super().__init__(handle)
        self._state = state
        self.target = target
        self.mode = state.mode

    @property
    def faults(self) -> Faults:
        """The faults in force now."""
        return self._state.settings[0]

    @faults.setter
    def faults(self, faults: Faults) -> None:
        _check_for_mode(faults, self.mode)
        with self._state.lock:
            self._state.settings = (faults, self._state.settings[1] + 1)

    def configure(self, **changes: Any) -> Faults:
        """Change some fault settings; the next frame sees them. Giving ``seed`` restarts the random
        sequences."""
        with self._state.lock:
            current, generation = self._state.settings
            new = _check_for_mode(current.replace(**changes), self.mode)
            self._state.settings = (new, generation + 1 if "seed" in changes else generation)
        return new

    @property
    def stats(self) -> ProxyStats:
        """A snapshot of the counts so far."""
        with self._state.lock:
            return dataclasses.replace(
                self._state.stats,
                request=dataclasses.replace(self._state.stats.request),
                reply=dataclasses.replace(self._state.stats.reply),
            )

    def reset_stats(self) -> None:
        """Start counting from zero."""
        with self._state.lock:
            self._state.stats = ProxyStats()

    @property
    def on_frame(self) -> OnFrame | None:
        """The tap: ``on_frame(direction, payload, when, fate)`` for every frame, or None."""
        return self._state.on_frame

    @on_frame.setter
    def on_frame(self, tap: OnFrame | None) -> None:
        checks.function("on_frame", tap, "on_frame(direction, payload, when, fate)", optional=True)
        self._state.on_frame = tap

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<fault proxy {self.name!r} {self.host}:{self.port} -> "
            f"{self.target[0]}:{self.target[1]} "
            f"({self.mode}), {self.faults}, {state}>"
        )


def _target_of(target: object) -> tuple[str, int]:
    address = getattr(target, "address", target)  # a ServerHandle, a FaultProxy, or (host, port)
    if (
        isinstance(address, (tuple, list))
        and len(address) == 2
        and isinstance(address[0], str)
        and isinstance(address[1], int)
        and not isinstance(address[1], bool)
        and 0 < address[1] <= 65535
    ):
        return address[0], address[1]
    raise ValueError(f"target must be a (host, port) pair such as server.address, not {target!r}")


def serve_proxy(
    name: str,
    target: Any,
    faults: Faults | None = None,
    *,
    mode: str = "frames",
    host: str = background.DEFAULT_HOST,
    port: int = 0,
    max_frame_size: int = framing.MAX_FRAME_SIZE,
    on_frame: OnFrame | None = None,
) -> FaultProxy:
    """Start a fault-injecting proxy called ``name`` in front of ``target`` (a (host, port), or a
    server handle).

    Runs through rpclab.runtime.background, so starting the same name again replaces
    the old proxy. ``on_frame(direction, payload, when, fate)`` is called for
    every frame (``when`` is time.monotonic(); ``fate`` one of FATES).
    """
    address = _target_of(target)
    faults = Faults() if faults is None else faults
    if mode not in MODES:
        raise ValueError(
            "mode must be 'frames' (rpclab.byhand.framing messages) or 'bytes' (any TCP "
            f"protocol), not {mode!r}"
        )
    _check_for_mode(faults, mode)
    checks.integer("max_frame_size", max_frame_size, low=1)
    checks.function("on_frame", on_frame, "on_frame(direction, payload, when, fate)", optional=True)
    state = ProxyState(faults, mode, max_frame_size, address, on_frame)
    handle = background.serve(
        name, lambda addr: ProxyServer(addr, state, name), host=host, port=port
    )
    return FaultProxy(handle, state, address)
