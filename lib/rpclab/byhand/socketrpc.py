"""JSON-RPC 2.0 over TCP, built by hand: a threaded server and a client stub.

Each message is one frame (rpclab.byhand.framing: a 4-byte big-endian length, then
UTF-8 JSON). The pieces follow Birrell and Nelson's picture of an RPC system::

    from rpclab.byhand import socketrpc
    server = socketrpc.serve(handlers)              # server stub + runtime, in a background thread
    client = socketrpc.connect(server.address)      # user stub + runtime
    client.subtract(42, 23)                         # -> 19, as if it were local
    client.subtract(minuend=42, subtrahend=23)      # keyword arguments travel as named params
    client.close(); server.stop()

The server gives each connection a thread, refuses frames over its size
limit (before reading them), drops a peer that stalls in the middle of a
frame, and -- with ``at_most_once=True`` -- remembers replies by request id
so that a retried request is answered again instead of run again. It answers
a connection's requests in order, or with ``workers=N`` in up to N threads
of that connection's own, each as soon as it is ready.

The client is thread-safe: calls from several threads share one connection,
and replies are matched to callers by id. Every call has a timeout. With
``retries=N`` a call that timed out or lost its connection is sent again, with
the SAME id (so an at-most-once server recognises it), reconnecting if needed.

Both sides can show every frame: ``on_frame(direction, payload)`` is called
with ``"sent"`` or ``"received"`` and the frame's JSON bytes (the wire
inspector records these).
"""

from __future__ import annotations

import itertools
import logging
import math
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent import futures
from typing import Any

from rpclab.byhand import framing, jsonrpc
from rpclab.byhand.framing import MAX_FRAME_SIZE, FrameTooLarge
from rpclab.byhand.jsonrpc import RemoteError
from rpclab.runtime import background

__all__ = [
    "serve",
    "connect",
    "Server",
    "Client",
    "Batch",
    "DedupTable",
    "RemoteError",
    "CallTimeout",
    "ConnectionLost",
    "FRAME_TIMEOUT",
    "DEDUP_SIZE",
]

log = logging.getLogger(__name__)

FRAME_TIMEOUT = 5.0  # seconds a peer may take to finish a frame it has started
DEDUP_SIZE = 10_000  # replies an at-most-once server remembers
DUPLICATE_WAIT = 30.0  # seconds a repeated request waits for the first one to finish
RECV_SIZE = 64 * 1024  # bytes asked of each recv (under malloc's mmap threshold: cheap)
DRAIN_LIMIT = 1024 * 1024  # bytes discarded, at most, after refusing a frame
DRAIN_TIME = 0.25  # seconds spent, at most, discarding them
TIMEOUT_SLACK = (
    0.05  # seconds a client read may overrun its call's deadline (saves a system call per call)
)

OnFrame = Callable[[str, bytes], Any]


class CallTimeout(TimeoutError):
    """No reply came within the call's timeout (the request may or may not have run)."""


class ConnectionLost(ConnectionError):
    """The connection to the server broke (or could not be made) before the reply came."""


def _notify(on_frame: OnFrame | None, direction: str, payload: bytes) -> None:
    """Tell an on_frame hook about a frame; a failing hook is logged, never fatal."""
    if on_frame is None:
        return
    try:
        on_frame(direction, payload)
    except Exception:
        log.exception("on_frame hook raised; the frame went on regardless")


# =========================================================================== server


class DedupTable:
    """At-most-once: the reply to each request id, kept so a repeated id gets it again.

    Keyed by id alone, so a retry on a new connection is recognised too:
    clients must make ids unique (rpclab's client sends ``"<client-uuid>:<n>"``).
    Holds at most ``max_entries`` replies; the least recently used go first.
    A repeat that arrives while the first is still running waits for it.
    """

    def __init__(self, max_entries: int = DEDUP_SIZE, *, wait_timeout: float = DUPLICATE_WAIT):
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be a positive int, not {max_entries!r}")
        self.max_entries = max_entries
        self.wait_timeout = wait_timeout
        self.replays = 0  # how many requests were answered from the table
        self._entries: OrderedDict[Any, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def once(self, request: jsonrpc.Request, run: Callable[[], dict]) -> dict:
        """``run()``'s reply for the first request with this id; the same reply for every repeat."""
        key = (type(request.id), request.id)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
                first = True
            else:
                self._entries.move_to_end(key)
                self.replays += 1
                first = False
        if first:
            try:
                entry.reply = run()
            except BaseException:
                with self._lock:  # it did not finish: a retry may run it
                    if self._entries.get(key) is entry:
                        del self._entries[key]
                raise
            finally:
                entry.done.set()
            return entry.reply
        if not entry.done.wait(self.wait_timeout) or entry.reply is None:
            problem = jsonrpc.RPCError(
                jsonrpc.SERVER_ERROR,
                "Duplicate request still running",
                f"request {request.id!r} is still running; try again later",
            )
            return jsonrpc.error_response(request.id, problem)
        return entry.reply

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, request_id: object) -> bool:
        with self._lock:
            return (type(request_id), request_id) in self._entries

    def clear(self) -> None:
        """Forget every reply."""
        with self._lock:
            self._entries.clear()

    def __repr__(self) -> str:
        return f"<DedupTable {len(self)}/{self.max_entries} replies, {self.replays} replayed>"


class _Entry:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: dict | None = None


class _TCPServer(socketserver.ThreadingTCPServer):
    """The listening socket: one thread per connection, each running _Connection."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = (
        False  # rpclab.runtime.background closes the connections and joins their threads
    )
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
        sock: socket.socket = self.request
        server = self.server
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A peer that stops reading our replies cannot hold this thread forever.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(server.frame_timeout))
        decoder = framing.FrameDecoder(server.max_frame_size)
        once = server.dedup.once if server.dedup is not None else None
        handle = server.dispatcher.handle
        on_frame = server.on_frame
        pooled = self._pool is not None
        limit = server.max_frame_size
        deadline: float | None = (
            None  # when the frame now arriving must be complete (None: between frames)
        )
        try:
            while True:
                chunk = sock.recv(RECV_SIZE)  # between frames: wait as long as the peer likes
                if not chunk:
                    return  # the peer closed (maybe mid-frame): nobody is left to answer
                # The usual case, taken quickly: between frames, a read that holds exactly one
                # frame.
                whole = (
                    deadline is None and int.from_bytes(chunk[:4], "big") == len(chunk) - 4 <= limit
                )
                frames = (chunk[4:],) if whole else decoder.feed(chunk)
                for payload in frames:
                    if on_frame is not None:
                        _notify(on_frame, "received", payload)
                    if pooled:
                        self._submit(payload)
                        continue
                    reply = handle(payload, once=once)
                    if reply is not None:
                        if on_frame is not None:
                            _notify(on_frame, "sent", reply)
                        sock.sendall(_pack_length(len(reply)) + reply)
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
                _notify(server.on_frame, "sent", reply)
                with self._send_lock:
                    self.request.sendall(_pack_length(len(reply)) + reply)
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
        _notify(self.server.on_frame, "sent", reply)
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
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, not {workers!r}")
    if (
        isinstance(max_frame_size, bool)
        or not isinstance(max_frame_size, int)
        or max_frame_size < 1
    ):
        raise ValueError(f"max_frame_size must be a positive int, not {max_frame_size!r}")
    if not frame_timeout > 0:
        raise ValueError(
            f"frame_timeout must be a positive number of seconds, not {frame_timeout!r}"
        )
    if on_frame is not None and not callable(on_frame):
        raise TypeError(
            f"on_frame must be callable as on_frame(direction, payload), not {on_frame!r}"
        )
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


# =========================================================================== client


class _Link:
    """One TCP connection of a client, with the bytes read from it that do not yet make a frame."""

    def __init__(self, sock: socket.socket, max_frame_size: int, read_timeout: float):
        self.sock = sock
        self.decoder = framing.FrameDecoder(max_frame_size)
        self.broken = False
        self.why_broken = ""  # what broke it, for the calls that find it broken
        self.read_timeout = read_timeout  # the SO_RCVTIMEO now set on sock
        _set_read_timeout(sock, read_timeout)

    def bound_reads(self, remaining: float) -> None:
        """Make sure the next recv() returns within about ``remaining`` seconds.

        Changing the kernel's timeout is a system call, so it is done only when
        the one set is too long (by over TIMEOUT_SLACK) or far too short.
        """
        if self.read_timeout > remaining + TIMEOUT_SLACK or self.read_timeout < remaining / 2:
            self.read_timeout = max(remaining, 0.001)
            _set_read_timeout(self.sock, self.read_timeout)


class _Slot:
    """Where the replies to one call (or one batch) arrive, and how that call is doing."""

    error: BaseException | None = None  # set when the call failed: a timeout, a lost connection
    done = False  # every reply is in, or the call failed

    def __init__(self, ids: tuple[str, ...], link: _Link):
        self.ids = ids
        self.link = link
        self.replies: dict[str, dict] = {}


def _params(args: tuple, kwargs: dict) -> list | dict | None:
    if args and kwargs:
        raise TypeError("a JSON-RPC call passes its params either by position or by name, not both")
    if kwargs:
        return kwargs
    return list(args) if args else None


class Client:
    """A connection to a socket RPC server whose remote methods read like local ones.

    ``client.subtract(42, 23)`` calls the remote ``subtract``; ``client.call(name,
    ...)`` is the explicit form, for names the client itself uses (``call``,
    ``notify``, ``batch``, ``close``...) or that are not Python identifiers.

    Thread-safe: callers in several threads share the connection. There is no
    reader thread: a caller waiting for a reply reads the socket itself, and
    hands other callers' replies to them (leader/follower), so a single caller
    pays for no thread hand-off.
    """

    def __init__(
        self,
        address: tuple[str, int],
        *,
        timeout: float = 2.0,
        retries: int = 0,
        backoff: float = 0.05,
        max_frame_size: int = MAX_FRAME_SIZE,
        on_frame: OnFrame | None = None,
    ):
        host, port = address
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, not {retries!r}")
        if not backoff >= 0:
            raise ValueError(f"backoff must be a number of seconds >= 0, not {backoff!r}")
        if on_frame is not None and not callable(on_frame):
            raise TypeError(
                f"on_frame must be callable as on_frame(direction, payload), not {on_frame!r}"
            )
        self.address = (str(host), int(port))
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.on_frame = on_frame
        self._max_frame_size = max_frame_size
        self._prefix = uuid.uuid4().hex[
            :16
        ]  # ids are "<prefix>:<n>": unique across clients and connections
        self._numbers = itertools.count(1)
        self._send_lock = threading.Lock()  # one frame goes out at a time; guards _link
        self._reader = (
            threading.Lock()
        )  # held by the caller reading the socket for everyone (the leader)
        self._lock = threading.Lock()  # guards _pending, _followers and every _Slot
        self._turn = threading.Condition(
            self._lock
        )  # followers wait here for their reply or their turn to read
        self._pending: dict[str, _Slot] = {}
        self._followers = 0  # callers waiting in _wait
        self._closed = threading.Event()
        self._link: _Link | None = None
        with self._send_lock:
            self._link = self._open(time.monotonic() + self.timeout)

    # -- calls ------------------------------------------------------------------

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the remote ``method`` with positional or keyword arguments; return its result."""
        return self.invoke(method, _params(args, kwargs))

    def invoke(
        self, method: str, params: list | dict | None = None, *, timeout: float | None = None
    ) -> Any:
        """Call ``method`` with ``params`` (a list, a dict or None), waiting at most ``timeout``
        seconds.

        The usual case is done right here, with as little work as the rules
        allow: no one else is reading the connection, so this caller sends,
        reads, and finds exactly its reply, a plain one, in that first read.
        (Every line counts: with the server in this process, its thread waits
        for the GIL through each one.) Anything else goes on in _complete.
        """
        if type(method) is not str:
            raise TypeError(f"method must be a str, not {method!r}")
        request_id = f"{self._prefix}:{next(self._numbers)}"
        if params is None:
            message = {"jsonrpc": "2.0", "method": method, "id": request_id}
        else:
            message = {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}
        payload = jsonrpc.encode(message)
        if timeout is None:
            timeout = self.timeout
        if (
            self.on_frame is not None
            or len(payload) > self._max_frame_size
            or not self._reader.acquire(False)
        ):
            return _result(self._exchange((request_id,), payload, timeout)[request_id])
        # We hold the reader lock: no one else reads the socket until we hand over.
        deadline = time.monotonic() + timeout
        chunk: bytes | OSError | None = None
        with self._send_lock:
            link = self._link
            tried = (
                link is not None and not link.broken
            )  # (if sending fails, the call was still tried)
            if tried:
                if timeout != link.read_timeout:
                    link.bound_reads(timeout)
                try:
                    link.sock.sendall(_pack_length(len(payload)) + payload)
                except OSError as exc:
                    self._break(link, f"sending failed: {exc}")
                    chunk = exc
        if (
            not tried
        ):  # no connection yet: _exchange makes one (and retries as it does for every call)
            self._hand_over()
            return _result(self._exchange((request_id,), payload, timeout)[request_id])
        body = None  # the one frame that the first read holds exactly, if it does
        if chunk is None:
            try:
                chunk = link.sock.recv(RECV_SIZE)
            except OSError as exc:
                chunk = exc
            else:
                size = len(chunk) - 4
                if (
                    0 < size <= self._max_frame_size
                    and int.from_bytes(chunk[:4], "big") == size
                    and not link.decoder.pending
                ):
                    body = chunk[4:]
                    result = jsonrpc.plain_result(body, request_id)
                    if result is not jsonrpc.NOT_PLAIN:
                        self._hand_over()
                        return result
        return _result(self._complete(request_id, payload, timeout, link, chunk, body, deadline))

    def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Send a notification: the server runs ``method`` and sends nothing back."""
        self._post(jsonrpc.encode(jsonrpc.notification(method, _params(args, kwargs))))

    def batch(self) -> Batch:
        """A builder for a batch: queue calls and notifications, then ``send()`` them in one
        frame."""
        return Batch(self)

    def next_id(self) -> str:
        """A fresh request id, unique to this client: ``"<client-uuid>:<n>"``."""
        return f"{self._prefix}:{next(self._numbers)}"

    # -- lifetime -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the client has a working connection now (it reconnects on the next call if
        not)."""
        link = self._link
        return link is not None and not link.broken

    def close(self) -> None:
        """Close the connection; calls still waiting fail with ConnectionLost. Closing twice is
        harmless."""
        self._closed.set()
        with self._send_lock:
            link, self._link = self._link, None
        if link is not None:
            self._break(link, "the client was closed")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> _RemoteMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        method = self.__dict__[name] = _RemoteMethod(self, name)  # found directly next time
        return method

    def __repr__(self) -> str:
        state = (
            "closed" if self._closed.is_set() else "connected" if self.connected else "disconnected"
        )
        return f"<socketrpc client to {self.address[0]}:{self.address[1]}, {state}>"

    # -- the runtime: send, wait, read, retry ------------------------------------

    def _complete(
        self,
        request_id: str,
        payload: bytes,
        timeout: float,
        link: _Link,
        chunk: bytes | OSError | None,
        body: bytes | None,
        deadline: float,
    ) -> dict:
        """The reply to a call that invoke() sent as the reader, and whose first read was not
        simply its plain reply.

        ``chunk`` is what that read gave (bytes, or the error it raised), or
        the error sending raised; ``body`` the one frame it held exactly, if so.
        """
        if body is not None:  # one frame, but not a plain reply: an error, a list... or not ours
            try:
                value = jsonrpc.decode(body)
            except jsonrpc.ParseError:
                value = None  # _lead reads it again, and says what is wrong
            if type(value) is dict and value.get("id") == request_id:
                self._hand_over()
                return value
        slot = _Slot((request_id,), link)
        self._register(slot)
        self._lead(slot, deadline, chunk)
        return self._exchange((request_id,), payload, timeout, sent=(slot, deadline))[request_id]

    def _exchange(
        self,
        ids: tuple[str, ...],
        payload: bytes,
        timeout: float | None,
        sent: tuple[_Slot, float] | None = None,
    ) -> dict[str, dict]:
        """Send ``payload`` and return the replies to ``ids``, by id.

        A call that times out or loses its connection is sent again, with the
        same ids, up to ``retries`` times (reconnecting if needed). ``sent`` is
        the slot and deadline of a first try made already.
        """
        if timeout is None:
            timeout = self.timeout
        if len(payload) > self._max_frame_size:
            raise FrameTooLarge(len(payload), self._max_frame_size)
        frame = _pack_length(len(payload)) + payload
        attempt = 0
        while True:
            try:
                if sent is None:
                    deadline = time.monotonic() + timeout
                    slot = self._send(ids, payload, frame, deadline, timeout)
                else:
                    (slot, deadline), sent = sent, None
                if not slot.done:
                    self._wait(slot, deadline)
                if slot.error is None:
                    return slot.replies
                raise slot.error
            except (CallTimeout, ConnectionLost):
                if attempt >= self.retries or self._closed.is_set():
                    raise
            if self._closed.wait(self.backoff * 2**attempt):  # back off before trying again
                raise ConnectionLost("the client was closed")
            attempt += 1

    def _post(self, payload: bytes) -> None:
        """Send a frame that wants no reply (a notification, or a batch of them)."""
        self._send(
            (),
            payload,
            framing.encode_frame(payload, self._max_frame_size),
            time.monotonic() + self.timeout,
            self.timeout,
        )

    def _open(self, deadline: float) -> _Link:
        """Connect to the server (the caller holds _send_lock)."""
        if self._closed.is_set():
            raise ConnectionLost("the client was closed")
        try:
            sock = socket.create_connection(
                self.address, timeout=max(deadline - time.monotonic(), 0.001)
            )
        except OSError as exc:
            raise ConnectionLost(
                f"cannot connect to {self.address[0]}:{self.address[1]}: {exc}"
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Blocking mode with kernel timeouts (SO_SNDTIMEO / SO_RCVTIMEO): each read
        # is one recv() call. Python's own timeout mode would poll() before every
        # read, and every extra system call is one more hand-off of the GIL.
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.timeout))
        return _Link(sock, self._max_frame_size, self.timeout)

    def _send(
        self, ids: tuple[str, ...], payload: bytes, frame: bytes, deadline: float, timeout: float
    ) -> _Slot:
        """Send one frame; return the slot where the replies to ``ids`` will arrive.

        If no one else is reading the socket, the caller becomes the reader and
        reads until its replies are in; else it waits for them in _wait.
        """
        on_frame = self.on_frame
        with self._send_lock:
            link = self._link
            if link is None or link.broken:
                link = self._link = self._open(deadline)
            slot = _Slot(ids, link)
            if ids:
                self._register(slot)
                leader = self._reader.acquire(False)
                if leader and timeout != link.read_timeout:
                    link.bound_reads(timeout)
            else:
                leader = False
            if on_frame is not None:
                _notify(on_frame, "sent", payload)
            try:
                link.sock.sendall(frame)
            except OSError as exc:
                self._break(
                    link, f"sending failed: {exc}"
                )  # fails the calls waiting, ours included
                if not ids:
                    raise ConnectionLost(
                        f"connection to {self.address[0]}:{self.address[1]} lost: "
                        f"sending failed: {exc}"
                    ) from exc
        if leader:
            self._lead(slot, deadline, None)
        return slot

    def _register(self, slot: _Slot) -> None:
        """Wait for replies to ``slot``'s ids (the caller holds no lock); fail it at once if its
        link broke."""
        with self._lock:
            if slot.link.broken:
                host, port = self.address
                slot.error = ConnectionLost(
                    f"connection to {host}:{port} lost: {slot.link.why_broken}"
                )
                slot.done = True
                return
            for request_id in slot.ids:
                self._pending[request_id] = slot

    def _hand_over(self) -> None:
        """Stop reading the socket (the caller is the leader); a waiting caller takes over."""
        self._reader.release()
        # A follower counts itself, then tries the reader lock, both under _lock:
        # if it counted itself too late to be seen here, it found the lock free.
        if self._followers:
            with self._lock:
                self._turn.notify_all()

    def _wait(self, slot: _Slot, deadline: float) -> None:
        """Wait for ``slot``'s replies while another caller reads; read ourselves if that caller
        leaves first."""
        with self._lock:
            self._followers += 1
            try:
                while not slot.done:
                    if self._reader.acquire(False):
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._give_up(slot)
                        return
                    self._turn.wait(remaining)
                else:
                    return
            finally:
                self._followers -= 1
        self._lead(slot, deadline, None)

    def _lead(self, slot: _Slot, deadline: float, chunk: bytes | OSError | None) -> None:
        """Read for everyone until ``slot`` is answered, its link breaks or its deadline passes;
        then hand over.

        The caller holds the reader lock. ``chunk`` is what a read made already
        gave (bytes, or the error it raised), or None.
        """
        link = slot.link
        try:
            while not slot.done:
                if chunk is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        with self._lock:
                            self._give_up(slot)
                        return
                    link.bound_reads(remaining)
                    try:
                        chunk = link.sock.recv(RECV_SIZE)
                    except OSError as exc:
                        chunk = exc
                if type(chunk) is not bytes:
                    if isinstance(chunk, (BlockingIOError, TimeoutError)):
                        chunk = None
                        continue  # the read timed out: the deadline check above decides
                    self._break(link, f"receiving failed: {chunk}")
                    return
                if not chunk:
                    self._break(link, "the server closed the connection")
                    return
                try:
                    frames = link.decoder.feed(chunk)
                except FrameTooLarge as exc:
                    self._break(link, f"the server sent {exc}")
                    return
                chunk = None
                for payload in frames:
                    if self.on_frame is not None:
                        _notify(self.on_frame, "received", payload)
                    self._deliver(link, payload)
        finally:
            self._hand_over()

    def _deliver(self, link: _Link, payload: bytes) -> None:
        """Hand the reply (or batch of replies) in ``payload`` to the callers waiting for them."""
        value = jsonrpc.decode_plain(payload)  # most replies are plain: one parse, no scan
        if value is None:
            try:
                value = jsonrpc.decode(payload)
            except jsonrpc.ParseError as exc:
                self._break(link, f"the server sent a frame that is not JSON ({exc.data})")
                return
        if (
            type(value) is dict and type(request_id := value.get("id")) is str
        ):  # one reply, the usual case
            with self._lock:
                slot = self._pending.pop(request_id, None)
                if slot is not None:
                    slot.replies[request_id] = value
                    if len(slot.replies) == len(slot.ids):
                        slot.done = True
                        if self._followers:
                            self._turn.notify_all()
            return
        unreadable = None
        with self._lock:
            woke = False
            for reply in value if type(value) is list else (value,):
                request_id = reply.get("id") if type(reply) is dict else None
                slot = self._pending.pop(request_id, None) if type(request_id) is str else None
                if slot is None:
                    if request_id is None:  # the server could not read one of our frames
                        unreadable = reply
                    continue  # else: the answer to a call that already gave up
                slot.replies[request_id] = reply
                if len(slot.replies) == len(slot.ids):
                    slot.done = woke = True
            if woke and self._followers:
                self._turn.notify_all()
        if unreadable is not None:
            # Which frame it could not read, the reply cannot say (its id is null):
            # rather than guess, fail every call in flight on this connection.
            error = unreadable.get("error") if type(unreadable) is dict else None
            try:
                detail: object = jsonrpc.RemoteError.from_dict(error)
            except jsonrpc.InvalidResponse:
                detail = unreadable
            self._break(link, f"the server could not read a request: {detail}")

    def _give_up(self, slot: _Slot) -> None:
        """Stop waiting for ``slot`` (the caller holds _lock): its call timed out."""
        if slot.done:
            return
        for request_id in slot.ids:
            if self._pending.get(request_id) is slot:
                del self._pending[request_id]
        slot.error = CallTimeout(
            f"no reply from {self.address[0]}:{self.address[1]} within the timeout"
        )
        slot.done = True

    def _break(self, link: _Link, reason: str) -> None:
        """Close a broken connection and fail every call waiting on it."""
        with self._lock:
            if link.broken:
                return
            link.broken = True
            link.why_broken = reason
            for request_id, slot in list(self._pending.items()):
                if slot.link is link:
                    del self._pending[request_id]
                    if not slot.done:
                        slot.error = ConnectionLost(
                            f"connection to {self.address[0]}:{self.address[1]} lost: {reason}"
                        )
                        slot.done = True
            self._turn.notify_all()
        try:
            link.sock.shutdown(socket.SHUT_RDWR)  # wakes a caller blocked reading it
        except OSError:
            pass
        link.sock.close()


_pack_length = framing.HEADER.pack


def _timeval(seconds: float) -> bytes:
    """``seconds`` as the kernel wants it for SO_RCVTIMEO / SO_SNDTIMEO (never 0, which means
    "forever")."""
    if sys.platform == "win32":
        return struct.pack("L", max(1, math.ceil(seconds * 1000)))  # a DWORD of milliseconds
    whole = int(seconds)
    return struct.pack("ll", whole, max(1 if whole == 0 else 0, int((seconds - whole) * 1_000_000)))


def _set_read_timeout(sock: socket.socket, seconds: float) -> None:
    """Make each recv() on ``sock`` give up after ``seconds`` (it raises BlockingIOError)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(seconds))


def _result(reply: dict) -> Any:
    """The result in a reply to one call, or its error raised as RemoteError."""
    if "result" in reply and "error" not in reply and reply.get("jsonrpc") == "2.0":
        return reply["result"]  # the usual case, checked without building a Response
    return jsonrpc.parse_response(reply).unwrap()


class _RemoteMethod:
    """A remote method as a local callable: ``client.subtract(42, 23)``."""

    __slots__ = ("_client", "_name")

    def __init__(self, client: Client, name: str):
        self._client = client
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            return self._client.invoke(self._name, _params(args, kwargs))
        return self._client.invoke(self._name, list(args) if args else None)

    def __repr__(self) -> str:
        host, port = self._client.address
        return f"<remote method {self._name!r} on {host}:{port}>"


class Batch:
    """Calls and notifications queued to go out together as one JSON-RPC batch.

    ``b = client.batch(); b.sum(1, 2, 4); b.notify("hello", 7); b.send()`` ->
    ``[7]``: one result per call, in the order queued (notifications have none).
    """

    def __init__(self, client: Client):
        self._client = client
        self._messages: list[dict] = []
        self._ids: list[str] = []

    def call(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Queue a call to ``method``."""
        request_id = self._client.next_id()
        self._messages.append(jsonrpc.request(method, _params(args, kwargs), id=request_id))
        self._ids.append(request_id)

    def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Queue a notification (no result)."""
        self._messages.append(jsonrpc.notification(method, _params(args, kwargs)))

    def send(self, *, timeout: float | None = None, raise_errors: bool = False) -> list[Any]:
        """Send the queued messages as one frame; return each call's result in order.

        A call that failed has its RemoteError in its place, or, with
        ``raise_errors=True``, the first such error is raised. The queue is
        emptied, so the builder can be used again.
        """
        messages, ids = self._messages, self._ids
        self._messages, self._ids = [], []
        if not messages:
            return []
        client = self._client
        payload = jsonrpc.encode(messages)
        if not ids:  # only notifications: the server sends nothing back
            client._post(payload)
            return []
        results: list[Any] = []
        replies = client._exchange(tuple(ids), payload, timeout)
        for reply in (replies[i] for i in ids):
            response = jsonrpc.parse_response(reply)
            if response.error is not None and raise_errors:
                raise response.error
            results.append(response.result if response.error is None else response.error)
        return results

    def __len__(self) -> int:
        return len(self._messages)

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<socketrpc batch of {len(self._messages)} messages ({len(self._ids)} calls)>"


def connect(
    address: tuple[str, int],
    timeout: float = 2.0,
    retries: int = 0,
    backoff: float = 0.05,
    *,
    max_frame_size: int = MAX_FRAME_SIZE,
    on_frame: OnFrame | None = None,
) -> Client:
    """Connect to a socket RPC server at ``address`` (host, port) and return a Client.

    Every call waits at most ``timeout`` seconds (CallTimeout). With ``retries=N``
    a call that timed out or lost its connection is sent up to N more times,
    with the same request id, after ``backoff``, 2*``backoff``, 4*``backoff``...
    seconds, reconnecting if needed. ``on_frame(direction, payload)`` sees every
    frame ("sent" / "received").
    """
    return Client(
        address,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        max_frame_size=max_frame_size,
        on_frame=on_frame,
    )
