"""The socket RPC server: frames in, the dispatcher, frames out -- one thread per connection.

The server side of Birrell and Nelson's picture: the RPC runtime that receives (this module)
and the server stub (rpclab.byhand.jsonrpc's Dispatcher). Notebook 04 builds the same loop in
a cell (``RPCHandler``; rpclab.byhand.reference keeps it); this one adds the limits a class
server needs. Failures, at-most-once and ``workers=N`` in 05; measured in 13; ``rpclab serve
socket`` runs it for a class::

    server = serve({"subtract": lambda a, b: a - b})   # running, in a background thread
    server.address                                     # ('127.0.0.1', 54321)
    server.stop()

What it adds to notebook 04's loop: a frame over ``max_frame_size`` is refused before it is
read (an error reply, then the connection is closed); a peer that stalls in the middle of a
frame for ``frame_timeout`` seconds is dropped; a peer that stops reading replies cannot hold
its thread forever, and a reply it did not take whole ends its connection (no frame may follow
half a frame); ``at_most_once=True`` answers a repeated request from a DedupTable (dedup.py)
instead of running it again; ``workers=N`` runs a connection's requests in N threads of its
own, each reply sent when ready; ``limits=Limits.for_class()`` bounds what one learner may
hold (limits.py: connections, calls at once, idle time). When the machine runs out of file
descriptors, the accept loop waits before it tries again instead of spinning a CPU.

About 480 lines, one module: the limits are checked where connections are accepted and frames
read, so they live beside that loop; what they count, and the answer over them, is limits.py.
"""

from __future__ import annotations

import errno
import functools
import itertools
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
from rpclab.byhand.socketrpc.dedup import DEDUP_BYTES, DEDUP_SIZE, DUPLICATE_WAIT, DedupTable
from rpclab.byhand.socketrpc.limits import Admission, Limits, refusal
from rpclab.byhand.socketrpc.transport import (
    RECV_SIZE,
    OnFrame,
    log,
    notify,
    pack_length,
    set_read_timeout,
    set_send_timeout,
)
from rpclab.runtime import background
from rpclab.runtime.guard import peer_address

__all__ = ["serve", "Server", "FRAME_TIMEOUT"]

FRAME_TIMEOUT = 5.0  # seconds a peer may take to finish a frame it has started
DRAIN_LIMIT = 1024 * 1024  # bytes discarded, at most, after refusing a frame
DRAIN_TIME = 0.25  # seconds spent, at most, discarding them
ACCEPT_PAUSE = (0.01, 1.0)  # seconds the accept loop waits when out of descriptors: first, most
# accept() fails with these when the process or the machine is out of descriptors or memory
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


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
    dedup_bytes: int = DEDUP_BYTES,
    max_batch: int = jsonrpc.MAX_BATCH,
    on_frame: OnFrame | None = None,
    workers: int = 0,
    limits: Limits | None = None,
) -> Server:
    """Serve ``handlers`` over socket RPC in a background thread, and return the running Server.

    ``handlers`` is a mapping name -> callable, an object whose public methods
    become the RPC methods (only those it lists in ``rpc_methods``, if it has that),
    or a jsonrpc.Dispatcher. The server runs under ``name`` in
    rpclab.runtime.background: serving again under the same name replaces it.
    A frame over ``max_frame_size`` bytes gets an error reply and the connection
    is closed; a peer that starts a frame and does not finish it within
    ``frame_timeout`` seconds is dropped, and so is one that does not take a reply
    within that time. ``at_most_once=True`` keeps the replies by caller and request id,
    at most ``dedup_size`` of them and ``dedup_bytes`` bytes, and replays them for
    repeated requests (dedup.py). ``limits`` (limits.py; None: none) bounds
    connections per address and in all, calls per learner and idle time.
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
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"limits must be a socketrpc.Limits or None, not {limits!r}")
    if isinstance(handlers, jsonrpc.Dispatcher):
        dispatcher = handlers
    else:
        dispatcher = jsonrpc.Dispatcher(
            handlers, max_batch=max_batch, max_reply_size=max_frame_size
        )
    dedup = DedupTable(dedup_size, max_bytes=dedup_bytes) if at_most_once else None
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
            limits=limits,
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

    @property
    def admission(self) -> Admission | None:
        """What the limits count now: connections, calls, refusals (None without limits)."""
        return self._tcp.admission

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        extra = ", at-most-once" if self.dedup is not None else ""
        return f"<socketrpc server {self.name!r} on {self.host}:{self.port}, {state}{extra}>"


class _TCPServer(socketserver.ThreadingTCPServer):
    """The listening socket: one thread per connection, each running _Connection; the limits
    on connections are checked here, as each is accepted."""

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
        limits: Limits | None = None,
    ):
        self.dispatcher = dispatcher
        self.max_frame_size = max_frame_size
        self.frame_timeout = frame_timeout
        self.dedup = dedup
        self.on_frame = on_frame
        self.workers = workers
        self.name = name
        self.admission = Admission(limits) if limits is not None else None
        self.idle_timeout = limits.idle_timeout if limits is not None else None
        self.calls_limited = limits is not None and limits.calls_per_learner is not None
        self.closing = threading.Event()  # set when the server begins to stop
        self.numbers = itertools.count(1)  # each connection's number (the dedup table's callers)
        self._learners: dict[socket.socket, str] = {}  # admitted connections, by socket
        self._learners_lock = threading.Lock()
        self._pause = 0.0  # seconds the accept loop waited last, out of descriptors
        super().__init__(address, _Connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("socketrpc: error serving %s", client_address)

    def shutdown(self) -> None:
        self.closing.set()
        if self.dedup is not None:
            self.dedup.release_waiters()  # repeats waiting for a first request end now
        super().shutdown()

    # -- accepting --------------------------------------------------------------

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            request = super().get_request()
        except OSError as exc:
            if exc.errno in _OUT_OF_RESOURCES:
                self._back_off(exc)
            raise
        self._pause = 0.0
        return request

    def _back_off(self, exc: OSError) -> None:
        """Wait before accepting again: out of descriptors, accept() fails while the listening
        socket stays readable, and trying again at once would spin a CPU for nothing. Each wait
        is twice the last (up to ACCEPT_PAUSE[1]); stopping the server ends it."""
        first, most = ACCEPT_PAUSE
        if not self._pause:
            log.warning(
                "socketrpc %r: cannot accept connections (%s): waiting for descriptors to free",
                self.name,
                exc.strerror,
            )
        self._pause = min(max(2 * self._pause, first), most)
        self.closing.wait(self._pause)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self.admission is None:
            return True
        learner = peer_address(client_address)
        reason = self.admission.admit(learner)
        if reason is not None:
            _refuse_at_once(request, refusal(reason))
            return False
        with self._learners_lock:
            self._learners[request] = learner
        return True

    def shutdown_request(self, request: Any) -> None:
        if self.admission is not None:
            with self._learners_lock:
                learner = self._learners.pop(request, None)
            if learner is not None:
                self.admission.leave(learner)
        super().shutdown_request(request)


def _refuse_at_once(sock: socket.socket, frame: bytes) -> None:
    """Tell a connection refused as it was accepted why, without ever waiting on it (this is the
    accept loop): one send (a new connection's window holds the frame), then our side ends, and
    what the peer has sent already is dropped so that closing does not reset the connection."""
    try:
        sock.setblocking(False)
        sock.send(frame)
        sock.shutdown(socket.SHUT_WR)
        for _ in range(16):  # bounded: a peer that keeps sending is reset, and that is that
            if not sock.recv(RECV_SIZE):
                break
    except OSError:
        pass


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
        self.learner = peer_address(self.client_address)
        self.once: Any = None  # how the dispatcher runs a request: at most once, if so served
        if server.dedup is not None:
            caller = (self.learner, next(server.numbers))
            self.once = functools.partial(server.dedup.once, caller=caller)
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
        """Read frames and answer them until the peer leaves, stalls mid-frame, idles too long,
        or oversteps."""
        sock: socket.socket = self.request
        server = self.server
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        set_send_timeout(sock, server.frame_timeout)  # a peer must read its replies in time
        if server.idle_timeout is not None:  # the kernel's timeout: no extra system call a read
            set_read_timeout(sock, server.idle_timeout)
        decoder = framing.FrameDecoder(server.max_frame_size)
        once = self.once
        handle = server.dispatcher.handle
        on_frame = server.on_frame
        pooled = self._pool is not None
        admission = server.admission if server.calls_limited else None
        learner = self.learner
        limit = server.max_frame_size
        deadline: float | None = None  # when the frame now arriving must be complete
        try:
            while True:
                chunk = sock.recv(RECV_SIZE)  # between frames: wait until the peer's idle time
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
                        if not self._submit(payload):
                            return  # over a limit: refused, and the connection ends
                        continue
                    if admission is None:
                        reply = handle(payload, once=once)
                    else:
                        refused = admission.start_call(learner)
                        if refused is not None:
                            self._close_with(sock, refusal(refused, _request_id(payload)))
                            return
                        try:
                            reply = handle(payload, once=once)
                        finally:
                            admission.end_call(learner)
                    if reply is not None:
                        if on_frame is not None:
                            notify(on_frame, "sent", reply)
                        try:
                            sock.sendall(pack_length(len(reply)) + reply)
                        except OSError:
                            self._gave_up_sending()
                            return
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
                    sock.settimeout(None)  # (the idle timeout, a kernel one, applies again)
        except FrameTooLarge as exc:
            reply = jsonrpc.encode(jsonrpc.error_response(None, jsonrpc.InvalidRequest(str(exc))))
            notify(self.server.on_frame, "sent", reply)
            self._close_with(sock, framing.encode_frame(reply))
        except OSError:
            return  # idle or stalled too long, reset by the peer, or stopped: no one to tell

    def _submit(self, payload: bytes) -> bool:
        """Run one request in the pool, once fewer than ``workers`` of this connection's are in
        flight; False if it was refused (over the learner's calls), which ends the connection."""
        assert self._in_flight is not None and self._pool is not None
        while not self._in_flight.acquire(timeout=0.25):  # meanwhile, this connection is not read
            if self.server.closing.is_set():
                raise OSError("the server is stopping")
        admission = self.server.admission if self.server.calls_limited else None
        if admission is not None:
            refused = admission.start_call(self.learner)
            if refused is not None:
                self._in_flight.release()
                self._close_with(self.request, refusal(refused, _request_id(payload)))
                return False
        self._pool.submit(self._answer, payload, admission)
        return True

    def _answer(self, payload: bytes, admission: Admission | None) -> None:
        """In a pool thread: run one request and send its reply."""
        assert self._in_flight is not None and self._send_lock is not None
        server = self.server
        try:
            reply = server.dispatcher.handle(payload, once=self.once)
            if admission is not None:
                admission.end_call(self.learner)
                admission = None
            if reply is not None:
                notify(server.on_frame, "sent", reply)
                with self._send_lock:
                    self.request.sendall(pack_length(len(reply)) + reply)
        except OSError:
            self._gave_up_sending()
        except Exception:
            log.exception("socketrpc: error answering a request")
        finally:
            if admission is not None:
                admission.end_call(self.learner)
            self._in_flight.release()

    def _gave_up_sending(self) -> None:
        """A reply did not go out whole (the peer stopped reading, or left): end the connection,
        since no frame may follow part of one, and wake this connection's reading thread."""
        log.debug("socketrpc: a reply to %s did not go out whole: closing", self.learner)
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

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

    def _close_with(self, sock: socket.socket, frame: bytes) -> None:
        """Send ``frame`` (an error: over a limit, say) and close our side without reading further,
        then drop a little of what the peer is still sending, so that closing does not reset the
        connection before the peer reads the error."""
        try:
            sock.settimeout(DRAIN_TIME)
            if self._send_lock is not None:
                with self._send_lock:
                    sock.sendall(frame)
            else:
                sock.sendall(frame)
            sock.shutdown(socket.SHUT_WR)
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


def _request_id(payload: bytes) -> jsonrpc.Id:
    """The id of the request in ``payload``, if it is one plain request with a readable id; else
    None (the error then answers no request in particular)."""
    value = jsonrpc.decode_plain(payload)
    request_id = value.get("id") if value is not None else None
    return request_id if type(request_id) in (str, int) else None
