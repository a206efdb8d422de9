"""The socket RPC server: frames in, the dispatcher, frames out -- one thread per connection.

The server side of Birrell and Nelson's picture: the RPC runtime that receives (this module)
and the server stub (rpclab.byhand.jsonrpc's Dispatcher). Notebook 04 builds the same loop in
a cell (``RPCHandler``; rpclab.byhand.reference keeps it); this one adds the limits a class
server needs. Failures and ``workers=N`` in 05; measured in 13::

    server = serve({"subtract": lambda a, b: a - b})   # running, in a background thread
    server.address                                     # ('127.0.0.1', 54321)
    server.stop()

What it adds to notebook 04's loop: a frame over ``max_frame_size`` is refused before it is
read (an error reply, then the connection is closed); a peer that stalls in the middle of a
frame for ``frame_timeout`` seconds is dropped; a peer that stops reading replies cannot hold
its thread forever; ``at_most_once=True`` answers a repeated request id from a DedupTable
(dedup.py) instead of running it again; ``workers=N`` runs a connection's requests in N
threads of its own, each reply sent when ready.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from typing import Any

from rpclab import checks
from rpclab.byhand import framing, jsonrpc
from rpclab.byhand.framing import MAX_FRAME_SIZE, FrameTooLarge
from rpclab.byhand.socketrpc.dedup import DEDUP_SIZE, DUPLICATE_WAIT, DedupTable
from rpclab.byhand.socketrpc.transport import (
    RECV_SIZE,
    OnFrame,
    log,
    notify,
    pack_length,
    set_send_timeout,
)
from rpclab.runtime import background

__all__ = ["serve", "Server", "FRAME_TIMEOUT"]

FRAME_TIMEOUT = 5.0  # seconds a peer may take to finish a frame it has started
DRAIN_LIMIT = 1024 * 1024  # bytes discarded, at most, after refusing a frame
DRAIN_TIME = 0.25  # seconds spent, at most, discarding them


def serve(
    handlers: Mapping[str, Callable[..., Any]] | object,
    host: str = background.DEFAULT_HOST,
    port: int = 0,
    *,
    name: str = "socketrpc",
    max_frame_size: int = MAX_FRAME_SIZE,
    frame_timeout: float = FRAME_TIMEOUT,
    at_most_once: bool = False,
    dedup_size: int = DEDUP_SIZE,
    max_batch: int = jsonrpc.MAX_BATCH,
    on_frame: OnFrame | None = None,
    workers: int = 0,
) -> Server:
    """Serve ``handlers`` over socket RPC in a background thread, and return the running Server.

    ``handlers`` is a mapping name -> callable, an object whose public methods
    become the RPC methods, or a jsonrpc.Dispatcher. The server runs under
    ``name`` in rpclab.runtime.background: serving again under the same name replaces it.
    A frame over ``max_frame_size`` bytes gets an error reply and the connection
    is closed; a peer that starts a frame and does not finish it within
    ``frame_timeout`` seconds is dropped. ``at_most_once=True`` keeps the last
    ``dedup_size`` replies by request id and replays them for repeated ids.
    ``on_frame(direction, payload)`` sees every frame ("received" / "sent").

    With ``workers=0`` (the default, and the fastest for one caller) each
    connection's requests are answered in order, in the thread that reads
    them. With ``workers=N`` each connection's requests run in up to N
    threads of its own, and each reply goes out as soon as it is ready, so a
    slow call does not hold up the quick ones behind it on the same
    connection; a connection may have at most N requests in flight, and is
    not read while it has.
    """
    checks.integer("workers", workers, low=0)
    checks.integer("max_frame_size", max_frame_size, low=1)
    checks.seconds("frame_timeout", frame_timeout, above=0)
    checks.function("on_frame", on_frame, "on_frame(direction, payload)", optional=True)
    if isinstance(handlers, jsonrpc.Dispatcher):
        dispatcher = handlers
    else:
        dispatcher = jsonrpc.Dispatcher(
            handlers, max_batch=max_batch, max_reply_size=max_frame_size
        )
    dedup = DedupTable(dedup_size) if at_most_once else None
    made: list[_TCPServer] = []

    def make_server(address: tuple[str, int]) -> _TCPServer:
        tcp = _TCPServer(
            address,
            dispatcher,
            max_frame_size=max_frame_size,
            frame_timeout=frame_timeout,
            dedup=dedup,
            on_frame=on_frame,
            workers=workers,
            name=name,
        )
        made.append(tcp)
        return tcp

    handle = background.serve(name, make_server, host=host, port=port)
    return Server(handle, made[0])


class Server(background.RunningServer):
    """A running socket RPC server: ``address``, ``stop()``, and its ``dedup`` table if any."""

    def __init__(self, handle: background.ServerHandle, tcp_server: _TCPServer):
        super().__init__(handle)
        self._tcp = tcp_server

    @property
    def dispatcher(self) -> jsonrpc.Dispatcher:
        return self._tcp.dispatcher

    @property
    def dedup(self) -> DedupTable | None:
        """The at-most-once table (None unless served with ``at_most_once=True``)."""
        return self._tcp.dedup

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        extra = ", at-most-once" if self.dedup is not None else ""
        return f"<socketrpc server {self.name!r} on {self.host}:{self.port}, {state}{extra}>"


class _TCPServer(socketserver.ThreadingTCPServer):
    """The listening socket: one thread per connection, each running _Connection."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False  # rpclab.runtime.background closes the connections, joins their threads
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        dispatcher: jsonrpc.Dispatcher,
        *,
        max_frame_size: int,
        frame_timeout: float,
        dedup: DedupTable | None,
        on_frame: OnFrame | None,
        workers: int = 0,
        name: str = "socketrpc",
    ):
        self.dispatcher = dispatcher
        self.max_frame_size = max_frame_size
        self.frame_timeout = frame_timeout
        self.dedup = dedup
        self.on_frame = on_frame
        self.workers = workers
        self.name = name
        self.closing = threading.Event()  # set when the server begins to stop
        super().__init__(address, _Connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("socketrpc: error serving %s", client_address)

    def shutdown(self) -> None:
        self.closing.set()
        super().shutdown()


class _Connection(socketserver.BaseRequestHandler):
    """One client connection: read frames, answer each, until the peer leaves.

    Without workers, each request is answered in this thread before the next
    is read: replies come in order. With workers, each request runs in one of
    this connection's own pool threads (so no connection can take another's)
    and its reply goes out when it is ready; at most ``workers`` requests of
    the connection are in flight, and it is not read while that many are.
    """

    server: _TCPServer
    _pool: futures.ThreadPoolExecutor | None = None  # with workers: this connection's threads
    _send_lock: threading.Lock | None = None  # with workers: one reply frame at a time
    _in_flight: threading.Semaphore | None = None

    def handle(self) -> None:
        server = self.server
        if not server.workers:
            self._serve()
            return
        self._send_lock = threading.Lock()
        self._in_flight = threading.BoundedSemaphore(server.workers)
        self._pool = futures.ThreadPoolExecutor(
            max_workers=server.workers, thread_name_prefix=f"rpclab-socketrpc:{server.name}"
        )
        try:
            self._serve()
        finally:
            finished = self._drain()
            self._pool.shutdown(wait=finished, cancel_futures=True)

    def _serve(self) -> None:
        """Read frames and answer them until the peer leaves, stalls mid-frame, or oversteps."""
        sock: socket.socket = self.request
        server = self.server
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        set_send_timeout(sock, server.frame_timeout)  # a peer must read its replies in time
        decoder = framing.FrameDecoder(server.max_frame_size)
        once = server.dedup.once if server.dedup is not None else None
        handle = server.dispatcher.handle
        on_frame = server.on_frame
        pooled = self._pool is not None
        limit = server.max_frame_size
        deadline: float | None = None  # when the frame now arriving must be complete
        try:
            while True:
                chunk = sock.recv(RECV_SIZE)  # between frames: wait as long as the peer likes
                if not chunk:
                    return  # the peer closed (maybe mid-frame): nobody is left to answer
                # Speed: between frames, a read that holds exactly one frame skips the decoder.
                whole = (
                    deadline is None and int.from_bytes(chunk[:4], "big") == len(chunk) - 4 <= limit
                )
                frames = (chunk[4:],) if whole else decoder.feed(chunk)
                for payload in frames:
                    if on_frame is not None:
                        notify(on_frame, "received", payload)
                    if pooled:
                        self._submit(payload)
                        continue
                    reply = handle(payload, once=once)
                    if reply is not None:
                        if on_frame is not None:
                            notify(on_frame, "sent", reply)
                        sock.sendall(pack_length(len(reply)) + reply)
                if whole:
                    continue
                if decoder.pending:  # in the middle of a frame: it must finish in time
                    if frames:
                        decoder.feed(b"")  # raises now if the frame begun is over the limit
                    if frames or deadline is None:
                        deadline = time.monotonic() + server.frame_timeout
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return  # stalled mid-frame: drop the connection
                    sock.settimeout(remaining)
                elif deadline is not None:
                    deadline = None
                    sock.settimeout(None)
        except FrameTooLarge as exc:
            self._refuse(sock, exc)
        except OSError:
            return  # timed out mid-frame, reset by the peer, or closed by stop(): nothing to say

    def _submit(self, payload: bytes) -> None:
        """Run one request in the pool, once fewer than ``workers`` of this connection's are in
        flight."""
        assert self._in_flight is not None and self._pool is not None
        while not self._in_flight.acquire(timeout=0.25):  # meanwhile, this connection is not read
            if self.server.closing.is_set():
                raise OSError("the server is stopping")
        self._pool.submit(self._answer, payload)

    def _answer(self, payload: bytes) -> None:
        """In a pool thread: run one request and send its reply."""
        assert self._in_flight is not None and self._send_lock is not None
        server = self.server
        try:
            reply = server.dispatcher.handle(
                payload, once=server.dedup.once if server.dedup is not None else None
            )
            if reply is not None:
                notify(server.on_frame, "sent", reply)
                with self._send_lock:
                    self.request.sendall(pack_length(len(reply)) + reply)
        except OSError:
            pass  # the client left, or the server is stopping: no one to answer
        except Exception:
            log.exception("socketrpc: error answering a request")
        finally:
            self._in_flight.release()

    def _drain(self) -> bool:
        """Wait (a bounded time) for this connection's requests still running; whether they all
        finished."""
        assert self._in_flight is not None
        deadline = time.monotonic() + self.server.frame_timeout + DUPLICATE_WAIT
        for _ in range(self.server.workers):
            if not self._in_flight.acquire(timeout=max(deadline - time.monotonic(), 0)):
                log.warning("socketrpc: closing a connection with requests still running")
                return False
        return True

    def _refuse(self, sock: socket.socket, exc: FrameTooLarge) -> None:
        """Answer an over-limit frame with an error, then close without reading it."""
        reply = jsonrpc.encode(jsonrpc.error_response(None, jsonrpc.InvalidRequest(str(exc))))
        notify(self.server.on_frame, "sent", reply)
        try:
            sock.settimeout(DRAIN_TIME)
            if self._send_lock is not None:
                with self._send_lock:
                    sock.sendall(framing.encode_frame(reply))
            else:
                sock.sendall(framing.encode_frame(reply))
            sock.shutdown(socket.SHUT_WR)
            # Read (and drop) a little of what the peer is still sending, so that
            # closing does not reset the connection before it reads the error.
            deadline = time.monotonic() + DRAIN_TIME
            drained = 0
            while drained < DRAIN_LIMIT and (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                data = sock.recv(65536)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass
