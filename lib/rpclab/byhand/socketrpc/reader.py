"""The client's RPC runtime: one connection shared by every calling thread, replies matched by id.

Part of rpclab.byhand.socketrpc; the user stub on top of it is client.py. Notebook 04's
``Stub`` sends a request and reads the next frame, which works for one caller at a time; this
is what lets many threads share a connection (pipelining, notebook 05) and what ``retries=N``
rests on. Measured in 13.

There is no reader thread. A caller that has sent a request and finds nobody reading becomes
the *leader*: it reads frames for everyone and hands each reply to the caller waiting for its
id, until its own reply is in; then it hands the reading over to a waiting caller (a
*follower*), if any. A single caller therefore pays for no thread hand-off. The state::

    _send_lock   one frame goes out at a time; guards _link (the connection)
    _reader      held by the leader, the one caller reading the socket
    _lock        guards _pending (request id -> _Slot), _followers and every _Slot
    _turn        a condition on _lock: followers wait there for their reply or their turn

A call: ``_exchange`` -> ``_send`` (register a _Slot, send; lead if nobody reads) -> ``_wait``
(follow; lead if the leader leaves) -> the replies, or CallTimeout / ConnectionLost, retried
with the same ids up to ``retries`` times. A connection the server closed while it sat idle
(a class server does) is noticed before a call goes out on it, and replaced.

About 430 lines, one module: leader and follower share one lock and one set of slots, and
reading them apart would mean reading every method twice.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
import uuid
from typing import Any

from rpclab.byhand import framing, jsonrpc
from rpclab.byhand.framing import FrameTooLarge
from rpclab.byhand.socketrpc.limits import LIMIT_EXCEEDED
from rpclab.byhand.socketrpc.transport import (
    RECV_SIZE,
    OnFrame,
    notify,
    pack_length,
    set_read_timeout,
    set_send_timeout,
)

__all__ = ["CallTimeout", "ConnectionLost", "SharedConnection", "result_of", "over_limit"]

TIMEOUT_SLACK = 0.05  # seconds a read may overrun its call's deadline (saves a system call a call)
IDLE_CHECK = 1.0  # seconds unused after which a connection is checked before a call is sent on it
# a look at the socket that takes nothing and never waits (not on Windows: no MSG_DONTWAIT)
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT if hasattr(socket, "MSG_DONTWAIT") else None


class CallTimeout(TimeoutError):
    """No reply came within the call's timeout (the request may or may not have run)."""


class ConnectionLost(ConnectionError):
    """The connection to the server broke (or could not be made) before the reply came."""


def over_limit(reply: dict) -> bool:
    """Whether ``reply`` is a class server's refusal over a limit (-32005), after which it closes
    the connection: the next call must go on a new one."""
    error = reply.get("error")
    return type(error) is dict and error.get("code") == LIMIT_EXCEEDED


def result_of(reply: dict) -> Any:
    """The result in a reply to one call, or its error raised as RemoteError."""
    if "result" in reply and "error" not in reply and reply.get("jsonrpc") == "2.0":
        return reply["result"]  # the usual case, checked without building a Response
    return jsonrpc.parse_response(reply).unwrap()


class _Link:
    """One TCP connection of a client, with the bytes read from it that do not yet make a frame."""

    def __init__(self, sock: socket.socket, max_frame_size: int, read_timeout: float):
        self.sock = sock
        self.decoder = framing.FrameDecoder(max_frame_size)
        self.broken = False
        self.why_broken = ""  # what broke it, for the calls that find it broken
        self.read_timeout = read_timeout  # the SO_RCVTIMEO now set on sock
        self.sent_at = time.monotonic()  # when a frame last went out on it
        set_read_timeout(sock, read_timeout)

    def closed_while_idle(self, now: float) -> bool:
        """Whether the server closed this connection while it was unused (a class server closes
        idle ones): then a call must go on a new one. Checked, with one system call that does not
        wait, only after IDLE_CHECK seconds unused."""
        if _PEEK is None or now - self.sent_at < IDLE_CHECK:
            return False
        try:
            return self.sock.recv(1, _PEEK) == b""
        except OSError as exc:
            return not isinstance(exc, BlockingIOError)  # nothing to read: open; else broken

    def bound_reads(self, remaining: float) -> None:
        """Make sure the next recv() returns within about ``remaining`` seconds.

        Changing the kernel's timeout is a system call, so it is done only when
        the one set is too long (by over TIMEOUT_SLACK) or far too short.
        """
        if self.read_timeout > remaining + TIMEOUT_SLACK or self.read_timeout < remaining / 2:
            self.read_timeout = max(remaining, 0.001)
            set_read_timeout(self.sock, self.read_timeout)


class _Slot:
    """Where the replies to one call (or one batch) arrive, and how that call is doing."""

    error: BaseException | None = None  # set when the call failed: a timeout, a lost connection
    done = False  # every reply is in, or the call failed

    def __init__(self, ids: tuple[str, ...], link: _Link):
        self.ids = ids
        self.link = link
        self.replies: dict[str, dict] = {}


class SharedConnection:
    """A connection to ``address`` that calls from many threads share (see the module's notes).

    ``_exchange(ids, payload)`` sends one frame and returns the replies to ``ids``;
    ``_post(payload)`` sends one that wants no reply. Client (client.py) is the stub built
    on these.
    """

    def __init__(
        self,
        address: tuple[str, int],
        *,
        timeout: float,
        retries: int,
        backoff: float,
        max_frame_size: int,
        on_frame: OnFrame | None,
    ):
        host, port = address
        self.address = (str(host), int(port))
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.on_frame = on_frame
        self._max_frame_size = max_frame_size
        self._prefix = uuid.uuid4().hex[:16]  # ids "<prefix>:<n>": unique across clients
        self._numbers = itertools.count(1)
        self._send_lock = threading.Lock()
        self._reader = threading.Lock()
        self._lock = threading.Lock()
        self._turn = threading.Condition(self._lock)
        self._pending: dict[str, _Slot] = {}
        self._followers = 0  # callers waiting in _wait
        self._closed = threading.Event()
        self._link: _Link | None = None
        with self._send_lock:
            self._link = self._open(time.monotonic() + self.timeout)

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
        frame = pack_length(len(payload)) + payload
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
        set_send_timeout(sock, self.timeout)
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
            now = time.monotonic()
            if link is not None and not link.broken and link.closed_while_idle(now):
                self._break(link, "the server closed the connection while it was idle")
            if link is None or link.broken:
                link = self._link = self._open(deadline)
            link.sent_at = now
            slot = _Slot(ids, link)
            if ids:
                self._register(slot)
                leader = self._reader.acquire(False)
                if leader and timeout != link.read_timeout:
                    link.bound_reads(timeout)
            else:
                leader = False
            if on_frame is not None:
                notify(on_frame, "sent", payload)
            try:
                link.sock.sendall(frame)
            except OSError as exc:
                self._break(link, f"sending failed: {exc}")  # fails the calls waiting, ours too
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
                        notify(self.on_frame, "received", payload)
                    self._deliver(link, payload)
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        """Stop reading the socket (the caller is the leader); a waiting caller takes over."""
        self._reader.release()
        # A follower counts itself, then tries the reader lock, both under _lock:
        # if it counted itself too late to be seen here, it found the lock free.
        if self._followers:
            with self._lock:
                self._turn.notify_all()

    def _deliver(self, link: _Link, payload: bytes) -> None:
        """Hand the reply (or batch of replies) in ``payload`` to the callers waiting for them."""
        value = jsonrpc.decode_plain(payload)  # speed: most replies are plain: one parse, no scan
        if value is None:
            try:
                value = jsonrpc.decode(payload)
            except jsonrpc.ParseError as exc:
                self._break(link, f"the server sent a frame that is not JSON ({exc.data})")
                return
        if type(value) is dict and type(request_id := value.get("id")) is str:  # one reply
            with self._lock:
                slot = self._pending.pop(request_id, None)
                if slot is not None:
                    slot.replies[request_id] = value
                    if len(slot.replies) == len(slot.ids):
                        slot.done = True
                        if self._followers:
                            self._turn.notify_all()
            if "error" in value and over_limit(value):
                self._break(
                    link, "the server refused a call over a limit, and closes the connection"
                )
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
            # (Or a class server refused the connection, over a limit: it closes it too.)
            error = unreadable.get("error") if type(unreadable) is dict else None
            try:
                detail: object = jsonrpc.RemoteError.from_dict(error)
            except jsonrpc.InvalidResponse:
                detail = unreadable
            refused = getattr(detail, "code", None) == LIMIT_EXCEEDED
            why = "the server refused" if refused else "the server could not read a request"
            self._break(link, f"{why}: {detail}")

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
