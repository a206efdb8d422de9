"""One proxied connection: for each direction, a reader that decides every message's fate and a
writer that sends the survivors on time; and the counts of what happened.

Part of the fault proxy (proxy.py; taught in notebook 05, used in 01, 07, 10, 12 and 15). The
decisions follow vocabulary.py's ``decide`` and seed rule; this module carries them out.

Each direction of each connection has a reader thread that decides the fate of every frame as
it arrives, and a writer thread that sends the survivors at their scheduled time, in order. A
delayed frame therefore holds back only the frames behind it in the same direction, never the
other direction or another connection. A reset ends both sides with a TCP RST.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from rpclab.byhand import framing
from rpclab.faults.vocabulary import Faults, decide, stream

__all__ = ["DirectionStats", "ProxyStats", "ProxyState", "Connection", "OnFrame"]

log = logging.getLogger("rpclab.faults.proxy")

CHUNK = 64 * 1024  # bytes read from a socket at a time
MAX_IN_FLIGHT = 4 * 1024 * 1024  # bytes a direction holds back (delayed) before it stops reading
CONNECT_TIMEOUT = 5.0  # seconds to reach the target server
WRITER_GRACE = 1.0  # seconds a writer gets to notice a reset before its socket is shut under it

OnFrame = Callable[[str, bytes, float, str], None]


# --------------------------------------------------------------------------- what happened


@dataclass
class DirectionStats:
    """Counts for one direction: frames (or chunks, in bytes mode) forwarded, dropped, duplicated,
    delayed; resets."""

    forwarded: int = 0  # frames delivered (a duplicated frame counts once here)
    dropped: int = 0
    duplicated: int = 0  # frames delivered twice
    delayed: int = 0  # frames held back by delay or jitter
    resets: int = 0  # connections reset by this direction's frames
    bytes: int = 0  # payload bytes sent on, copies included


@dataclass
class ProxyStats:
    """What a proxy did: ``request`` (client -> server) and ``reply`` counts, and connections
    accepted."""

    request: DirectionStats = field(default_factory=DirectionStats)
    reply: DirectionStats = field(default_factory=DirectionStats)
    connections: int = 0
    upstream_errors: int = 0  # connections the target server refused
    errors: int = 0  # connections closed because their bytes were not valid frames

    def __getitem__(self, direction: str) -> DirectionStats:
        if direction not in ("request", "reply"):
            raise KeyError(f"direction is 'request' or 'reply', not {direction!r}")
        return self.request if direction == "request" else self.reply

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        def line(d: DirectionStats) -> str:
            return (
                f"{d.forwarded} forwarded, {d.dropped} dropped, {d.duplicated} duplicated, "
                f"{d.delayed} delayed, {d.resets} resets"
            )

        return (
            f"requests: {line(self.request)} | replies: {line(self.reply)} | "
            f"{self.connections} connection{'s' if self.connections != 1 else ''}"
        )


# --------------------------------------------------------------------------- shared state


class ProxyState:
    """The live settings and counters one proxy's connections share."""

    def __init__(
        self,
        faults: Faults,
        mode: str,
        max_frame_size: int,
        target: tuple[str, int],
        on_frame: OnFrame | None,
    ):
        self.mode = mode
        self.max_frame_size = max_frame_size
        self.target = target
        self.on_frame = on_frame
        self.lock = threading.Lock()
        self.settings = (
            faults,
            0,
        )  # (faults, generation): swapped whole, so readers see a consistent pair
        self.stats = ProxyStats()
        self.numbers = itertools.count()

    def count(self, direction: str, **increments: int) -> None:
        with self.lock:
            counts = self.stats[direction]
            for name, n in increments.items():
                setattr(counts, name, getattr(counts, name) + n)

    def tap(self, direction: str, payload: bytes, when: float, fate: str) -> None:
        on_frame = self.on_frame
        if on_frame is None:
            return
        try:
            on_frame(direction, payload, when, fate)
        except Exception:  # a broken tap must never break the traffic
            log.exception("the proxy's on_frame tap raised; the frame went on regardless")


class Registry(Protocol):
    """Where a connection registers while it runs (the proxy's server), so stop() can end it."""

    def register(self, conn: Connection) -> bool: ...

    def unregister(self, conn: Connection) -> None: ...


# --------------------------------------------------------------------------- one connection


_EOF = object()  # put on a line when the sender closed its side


class _Send(NamedTuple):
    due: float  # time.monotonic() at which to send
    payload: bytes
    copies: int


class _Line:
    """The frames in flight in one direction: a FIFO the reader fills and the writer empties,
    bounded in bytes."""

    def __init__(self, max_bytes: int = MAX_IN_FLIGHT):
        self._items: deque[Any] = deque()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: Any, size: int = 0) -> bool:
        """Queue ``item``; wait while the line is full. False if the line was closed."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or not self._items or self._bytes + size <= self._max_bytes
            )
            if self._closed:
                return False
            self._items.append((item, size))
            self._bytes += size
            self._cond.notify_all()
            return True

    def get(self) -> Any:
        """The next item, waiting for one; None once the line is closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._items)
            if self._closed:
                return None
            item, size = self._items.popleft()
            self._bytes -= size
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()


class Connection:
    """One client connection and its upstream twin, pumped both ways with faults."""

    def __init__(self, state: ProxyState, number: int, client: socket.socket, name: str):
        self.state = state
        self.number = number
        self.client = client
        self.upstream: socket.socket | None = None
        self.name = name
        self.pumps: list[_Pump] = []
        self.aborted = threading.Event()
        self._abort_lock = threading.Lock()

    def run(self, server: Registry) -> None:
        try:
            self.upstream = socket.create_connection(self.state.target, timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            log.warning("proxy %s: cannot reach %s:%s: %s", self.name, *self.state.target, exc)
            with self.state.lock:
                self.state.stats.upstream_errors += 1
            _set_linger_zero(self.client)
            self.client.close()
            return
        self.upstream.settimeout(None)
        for sock in (self.client, self.upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pumps = [
            _Pump(self, "request", self.client, self.upstream),
            _Pump(self, "reply", self.upstream, self.client),
        ]
        if not server.register(self):  # the proxy is stopping
            self.abort(reset=False)
        else:
            threads = {
                (pump.direction, role): threading.Thread(
                    target=getattr(pump, role),
                    daemon=True,
                    name=f"rpclab-proxy:{self.name}#{self.number}:{pump.direction}-{role}",
                )
                for pump in self.pumps
                for role in ("read", "write")
            }
            for thread in threads.values():
                thread.start()
            for direction in ("request", "reply"):
                threads[direction, "read"].join()  # a reader ends at EOF, or at once when aborted
            for direction in ("request", "reply"):
                writer = threads[direction, "write"]
                while writer.is_alive():  # it sends what is still queued, unless aborted
                    writer.join(WRITER_GRACE)
                    if writer.is_alive() and self.aborted.is_set():
                        self._wake_writers()
            server.unregister(self)
        self.upstream.close()
        self.client.close()  # before socketserver's shutdown_request, whose FIN would spoil a reset

    def _wake_writers(self) -> None:
        """After a reset a writer may be stuck in sendall() to a peer that stopped reading: shut the
        sockets under it."""
        for sock in (self.client, self.upstream):
            try:
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def abort(self, reset: bool) -> None:
        """End the connection now: wake every pump; with ``reset``, both peers get a TCP RST on
        close."""
        with self._abort_lock:
            if self.aborted.is_set():
                return
            self.aborted.set()
        for (
            pump
        ) in self.pumps:  # first, so that no writer passes on an EOF that the shutdown below causes
            pump.line.close()
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            try:
                if reset:
                    _set_linger_zero(sock)  # close() now sends RST instead of FIN
                    sock.shutdown(socket.SHUT_RD)  # wakes our reader without sending anything
                else:
                    sock.shutdown(
                        socket.SHUT_RDWR
                    )  # wakes our reader and writer; the peer sees EOF
            except OSError:
                pass  # already closed by the peer


def _set_linger_zero(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class _Pump:
    """One direction of one connection: a reader that decides each frame's fate, a writer that sends
    on time."""

    def __init__(self, conn: Connection, direction: str, src: socket.socket, dst: socket.socket):
        self.conn = conn
        self.state = conn.state
        self.direction = direction
        self.src = src
        self.dst = dst
        self.line = _Line()
        self.frames = self.state.mode == "frames"
        self.decoder = framing.FrameDecoder(self.state.max_frame_size)
        self.generation = -1
        self.rng: random.Random | None = None  # this direction's stream (vocabulary.stream)

    # -- reader ---------------------------------------------------------------

    def read(self) -> None:
        try:
            while not self.conn.aborted.is_set():
                chunk = self.src.recv(CHUNK)
                if not chunk:
                    self.line.put(
                        _EOF
                    )  # the sender closed its side: pass the close on after the frames
                    return
                for payload in self.decoder.feed(chunk) if self.frames else [chunk]:
                    if not self._admit(payload):
                        return
        except framing.FrameTooLarge as exc:
            log.warning("proxy %s: %s; closing the connection", self.conn.name, exc)
            with self.state.lock:
                self.state.stats.errors += 1
            self.conn.abort(reset=True)
        except OSError:
            self.conn.abort(reset=True)  # a peer reset us, or we were stopped: pass it on

    def _admit(self, payload: bytes) -> bool:
        faults, generation = self.state.settings
        if generation != self.generation:  # a new seed: restart this direction's random sequence
            self.rng = stream(faults.seed, self.conn.number, self.direction)
            self.generation = generation
        decision = decide(faults, self.direction, self.rng)
        now = time.monotonic()
        if decision.fate == "reset":
            self.state.count(self.direction, resets=1)
            self.state.tap(self.direction, payload, now, "reset")
            self.conn.abort(reset=True)
            return False
        if decision.fate == "dropped":
            self.state.count(self.direction, dropped=1)
            self.state.tap(self.direction, payload, now, "dropped")
            return True
        if decision.wait > 0:
            self.state.count(self.direction, delayed=1)
        return self.line.put(_Send(now + decision.wait, payload, decision.copies), len(payload))

    # -- writer ---------------------------------------------------------------

    def write(self) -> None:
        while True:
            item = self.line.get()
            if item is None:
                return
            if item is _EOF:
                if self.conn.aborted.is_set():
                    return
                try:
                    self.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            while (remaining := item.due - time.monotonic()) > 0:
                if self.conn.aborted.wait(remaining):
                    return
            data = (
                framing.encode_frame(item.payload, self.state.max_frame_size)
                if self.frames
                else item.payload
            )
            for copy in range(item.copies):
                if self.conn.aborted.is_set():
                    return
                # counted and tapped just before sending, so that whoever reads the reply also sees
                # the count
                if copy == 0:
                    self.state.count(self.direction, forwarded=1, bytes=len(item.payload))
                else:
                    self.state.count(self.direction, duplicated=1, bytes=len(item.payload))
                self.state.tap(
                    self.direction,
                    item.payload,
                    time.monotonic(),
                    "forwarded" if copy == 0 else "duplicated",
                )
                try:
                    self.dst.sendall(data)
                except OSError:
                    self.conn.abort(reset=True)
                    return
