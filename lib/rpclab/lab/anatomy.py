"""One remote call taken apart: Birrell and Nelson's five pieces, its seven steps timed.

Used in notebook 01 (the flow of one call, drawn live).

client -> stub (marshal) -> transport -> server stub (unmarshal, dispatch) ->
server procedure -> back the same way. Client and server share this process,
so one clock times every step of a real XML-RPC call. Like xmlrpc.client, the
tracer keeps its HTTP connection open between calls: the first call also pays
for connecting (and the server's new thread for the connection), the next ones
do not (``TracedCall.connected`` says which a call was).
"""

from __future__ import annotations

import http.client
import select
import threading
import time
import xmlrpc.client
from dataclasses import dataclass
from typing import Any
from xmlrpc.server import SimpleXMLRPCServer

from rpclab.adapters.xml_rpc import KVXMLRPCServer
from rpclab.kv import KVStore
from rpclab.runtime import background

__all__ = ["Step", "TracedCall", "CallTracer", "STEPS"]

MAX_REPLY = 1024 * 1024

STEPS = (
    "client stub: marshal",
    "transport: request",
    "server stub: unmarshal",
    "server: procedure",
    "server stub: marshal",
    "transport: reply",
    "client stub: unmarshal",
)


@dataclass(frozen=True)
class Step:
    """One step of a call: its name and when it started and ended (seconds, perf_counter)."""

    name: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class TracedCall:
    """A remote call's result, the bytes that crossed the wire, and its timed steps."""

    result: Any
    request: bytes
    reply: bytes
    steps: tuple[Step, ...]
    connected: bool = False  # this call opened a new connection (its request step includes it)

    @property
    def total(self) -> float:
        return self.steps[-1].end - self.steps[0].start


class _TracingServer(KVXMLRPCServer):
    """The XML-RPC KV server, noting when each server-side step starts and ends."""

    def __init__(self, address: tuple[str, int], store: KVStore):
        super().__init__(address, store)
        self.marks = threading.local()
        self.last: dict[str, float] = {}
        self._last_lock = threading.Lock()

    def _marshaled_dispatch(
        self, data: bytes, dispatch_method: Any = None, path: Any = None
    ) -> bytes:
        marks = {"received": time.perf_counter()}
        self.marks.current = marks
        reply = super()._marshaled_dispatch(data, dispatch_method, path)
        marks["replied"] = time.perf_counter()
        with self._last_lock:
            self.last = marks
        return reply

    def _dispatch(self, method: str, params: Any) -> Any:
        marks = self.marks.current
        marks["called"] = time.perf_counter()
        try:
            return SimpleXMLRPCServer._dispatch(self, method, params)
        finally:
            marks["returned"] = time.perf_counter()


class CallTracer:
    """An XML-RPC KV server in the background, and a hand-made client stub that times each step."""

    def __init__(
        self, store: KVStore, *, name: str = "kv-traced", host: str = "127.0.0.1", port: int = 0
    ):
        self._store = store
        self._server: _TracingServer | None = None
        self._conn: http.client.HTTPConnection | None = None
        self.handle = background.serve(name, self._make, host=host, port=port)

    def _make(self, address: tuple[str, int]) -> _TracingServer:
        self._server = _TracingServer(address, self._store)
        return self._server

    def call(self, method: str, *params: Any, timeout: float = 5.0) -> TracedCall:
        """Make one XML-RPC call by hand -- marshal, send, receive, unmarshal -- timing every
        step, on the connection kept from the last call when the server still holds it open."""
        assert self._server is not None
        t0 = time.perf_counter()
        body = xmlrpc.client.dumps(params, method, allow_none=True).encode()
        t1 = time.perf_counter()
        connected = self._conn is None or _dropped(self._conn)
        if connected:
            self._close()
            self._conn = http.client.HTTPConnection(
                self.handle.host, self.handle.port, timeout=timeout
            )
        conn = self._conn
        assert conn is not None
        try:
            conn.request("POST", "/RPC2", body, {"Content-Type": "text/xml"})
            response = conn.getresponse()
            reply = response.read(MAX_REPLY + 1)
            t4 = time.perf_counter()
        except BaseException:
            self._close()  # never resend: the server may have run the call (notebook 01 shows it)
            raise
        if response.will_close:
            self._close()
        if len(reply) > MAX_REPLY:
            self._close()
            raise ValueError(f"reply larger than {MAX_REPLY} bytes")
        (result,), _ = xmlrpc.client.loads(reply)
        t5 = time.perf_counter()
        m = self._server.last
        times = (t0, t1, m["received"], m["called"], m["returned"], m["replied"], t4, t5)
        steps = tuple(Step(name, a, b) for name, a, b in zip(STEPS, times, times[1:], strict=False))
        return TracedCall(result, body, reply, steps, connected)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        self._close()
        self.handle.stop()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether the server closed a kept connection while it was idle (readable with nothing to
    read: its FIN, or a reset), so a new call must open a new one."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)  # an idle HTTP connection has nothing to say: anything means it ended
