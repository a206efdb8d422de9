"""Scaffolding for the graded assignments: sockets fed in awkward chunks, a framed server, a framed
connection, a server that holds replies back, and protobuf contracts written as tables.

Used by the graded assignments A1-A4 (assignments/), not by the notebooks.

The assignments ask a learner to write one layer of an RPC system; these
helpers are the layers around it, so that a test can put the learner's code
on a real socket without the test itself being the hard part::

    grading.receive_from_chunks(recv_frame, [b"\\x00\\x00", b"\\x00\\x02h", b"i"])  # b"hi"
    grading.bytes_sent_by(lambda sock: send_frame(sock, b"hi"))  # b"\\x00\\x00\\x00\\x02hi"
    server = grading.serve_frames("echo", lambda payload: payload)  # a reply frame per frame
    with grading.FramedConnection(server.address) as conn:
        conn.request(b"ping")  # -> b"ping"
    server = grading.serve_held_frames("late", handle, hold=5)  # five requests, then their
                                                                 # five replies, the last first
    contract = grading.proto_file("bank.proto", "bank", messages, services)  # from tables
    grading.proto_differences(contract, descriptor)  # -> what differs, in words

Every wait is bounded: code under test that never returns makes the helper
raise :class:`TookTooLong` instead of hanging the notebook (or the autograder).

Used by assignments/source (A1-A4); the teacher's side of grading is ``rpclab.classroom``.

About 540 lines of independent scaffolds, one per kind of test an assignment needs.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from rpclab import checks
from rpclab.byhand import framing
from rpclab.runtime import background

__all__ = [
    "TookTooLong",
    "receive_from_chunks",
    "bytes_sent_by",
    "FrameServer",
    "serve_frames",
    "HeldFrameServer",
    "serve_held_frames",
    "FramedConnection",
    "proto_file",
    "proto_differences",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
CHUNK = 64 * 1024  # bytes read from a socket at a time
MAX_CAPTURE = 64 * 1024 * 1024  # bytes_sent_by keeps at most this much
JOIN_TIMEOUT = 2.0  # seconds to wait for a helper thread once its sockets are shut


class TookTooLong(AssertionError):
    """The code under test did not return in time: it waits for bytes that never come, or loops
    forever."""


def _shut(*socks: socket.socket) -> None:
    """Shut both directions (wakes a thread blocked in recv or send), then close."""
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    for sock in socks:
        sock.close()


DRAIN_POLL = 0.0005  # seconds between looks at how much the receiver has left unread


def _unread(sock: socket.socket) -> int | None:
    """Bytes waiting in ``sock``'s receive buffer, or None where the system cannot say."""
    try:
        import fcntl
        import termios

        count = bytearray(4)
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
        return int.from_bytes(count, sys.byteorder)
    except (ImportError, OSError, AttributeError):
        return None


def _drained(sock: socket.socket, stop: threading.Event) -> bool:
    """Wait until the receiver has read everything sent so far; False once ``stop`` is set."""
    while (unread := _unread(sock)) is not None and unread > 0:
        if stop.wait(DRAIN_POLL):
            return False
    return not stop.is_set()


def receive_from_chunks(
    receive: Callable[[socket.socket], T],
    chunks: Iterable[bytes],
    *,
    close: bool = True,
    timeout: float = 2.0,
    pause: float = 0.002,
) -> T:
    """Call ``receive(sock)`` while a thread sends ``chunks`` one by one on the other end of a
    socket pair.

    Before each chunk after the first, the sender waits until the receiver has read every byte
    sent so far (the socket's FIONREAD count drops to 0, where the system offers it), then
    ``pause`` seconds more: so each chunk arrives as a separate ``recv`` result however busy
    the machine is, as long as the receiver keeps reading. Then, with
    ``close``, shuts its side as a peer that hangs up does. Returns what
    ``receive`` returns and raises what it raises; raises TookTooLong if it
    has not returned after ``timeout`` seconds.
    """
    pieces = [bytes(c) for c in chunks]
    ours, theirs = socket.socketpair()
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            for i, piece in enumerate(pieces):
                if i and (not _drained(ours, stop) or (pause and stop.wait(pause))):
                    return
                theirs.sendall(piece)
            if close:
                theirs.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the receiver finished (or was stopped) before everything was sent

    def run() -> None:
        try:
            outcome["value"] = receive(ours)
        except BaseException as exc:  # handed back to the caller below
            outcome["error"] = exc

    sender = threading.Thread(target=send, name="rpclab-grading:sender", daemon=True)
    worker = threading.Thread(target=run, name="rpclab-grading:receiver", daemon=True)
    sender.start()
    worker.start()
    worker.join(timeout)
    hung = worker.is_alive()
    stop.set()
    _shut(ours, theirs)  # a receiver still inside recv() now gets an error and ends
    worker.join(JOIN_TIMEOUT)
    sender.join(JOIN_TIMEOUT)
    if hung:
        total = sum(len(p) for p in pieces)
        then = "then closed its end" if close else "then kept its end open"
        name = getattr(receive, "__name__", "<lambda>")
        what = f"{name}()" if name != "<lambda>" else "the receiving code"
        raise TookTooLong(
            f"{what} did not return within {timeout:g} s. The peer sent "
            f"{total} bytes in {len(pieces)} chunks, {then}. A receiver that keeps calling recv() "
            "after it "
            "returned b'' (the peer closed) never ends; one that asks for more bytes than were "
            "sent waits forever."
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def bytes_sent_by(send: Callable[[socket.socket], object], *, timeout: float = 2.0) -> bytes:
    """Call ``send(sock)``; return every byte that reached the other end of the socket pair.

    The socket has a timeout, which makes the kernel accept only part of a
    large ``sock.send(data)``: code that ignores what ``send`` returns loses
    the rest, and this shows it.
    """
    ours, theirs = socket.socketpair()
    ours.settimeout(timeout)
    received = bytearray()

    def read() -> None:
        try:
            while len(received) <= MAX_CAPTURE:
                data = theirs.recv(CHUNK)
                if not data:
                    return
                received.extend(data)
        except OSError:
            pass

    reader = threading.Thread(target=read, name="rpclab-grading:reader", daemon=True)
    reader.start()
    try:
        send(ours)
        try:
            ours.shutdown(socket.SHUT_WR)  # the reader sees the end of what was sent
        except OSError:
            pass
        reader.join(timeout)
    finally:
        _shut(ours, theirs)
        reader.join(JOIN_TIMEOUT)
    return bytes(received)


# --------------------------------------------------------------------------- a framed server


class _FrameHandler(socketserver.BaseRequestHandler):
    """One connection: read a frame, answer it with handle(payload), until the client leaves."""

    server: FrameServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        server = self.server
        while True:
            try:
                payload = framing.recv_frame(sock, server.max_size)
            except framing.FrameTooLarge as exc:
                log.warning("%s: %s; closing the connection", server.name, exc)
                return
            except OSError:  # the client closed, or the server is stopping
                return
            try:
                reply = server.handle_frame(payload)
            except Exception:
                log.exception("%s: handle(payload) raised; closing the connection", server.name)
                return
            if reply is None:
                continue
            try:
                framing.send_frame(sock, bytes(reply), server.max_size)
            except framing.FrameTooLarge as exc:
                log.warning("%s: reply not sent: %s; closing the connection", server.name, exc)
                return
            except OSError:
                return


class FrameServer(socketserver.ThreadingTCPServer):
    """A TCP server that answers each frame with ``handle(payload)`` (None: no answer); a thread per
    connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handle: Callable[[bytes], bytes | None],
        *,
        name: str = "frames",
        max_size: int = framing.MAX_FRAME_SIZE,
    ):
        checks.function("handle", handle, "handle(payload) -> bytes or None")
        self.handle_frame = handle
        self.name = name
        self.max_size = max_size
        super().__init__(address, _FrameHandler)


def serve_frames(
    name: str,
    handle: Callable[[bytes], bytes | None],
    *,
    host: str = background.DEFAULT_HOST,
    port: int = 0,
    max_size: int = framing.MAX_FRAME_SIZE,
) -> background.ServerHandle:
    """Serve ``handle`` over TCP in the background under ``name``: each frame in,
    ``handle(payload)`` out.

    ``handle`` returning None sends nothing back (a notification). If it
    raises, the server logs the traceback and closes that connection.
    """
    return background.serve(
        name,
        lambda address: FrameServer(address, handle, name=name, max_size=max_size),
        host=host,
        port=port,
    )


class _HeldHandler(socketserver.BaseRequestHandler):
    """One connection: collect ``hold`` request frames, then answer them all, the last first."""

    server: HeldFrameServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        server = self.server
        held: list[bytes] = []
        while True:
            try:
                held.append(framing.recv_frame(sock, server.max_size))
            except (framing.FrameTooLarge, OSError):
                return
            if len(held) < server.hold:
                continue
            replies = [server.handle_frame(payload) for payload in held]
            held.clear()
            try:
                for reply in reversed(replies):
                    if reply is not None:
                        framing.send_frame(sock, bytes(reply), server.max_size)
            except (framing.FrameTooLarge, OSError):
                return


class HeldFrameServer(FrameServer):
    """A FrameServer that answers nothing until ``hold`` requests of a connection are in, then
    answers them all, the last first: a client that waits for each reply before it sends the next
    request never hears back; one that pipelines and matches replies by id does."""

    def __init__(self, address, handle, *, hold: int, **kwargs: Any):
        if not isinstance(hold, int) or not 1 <= hold <= 10_000:
            raise ValueError(f"hold must be an int from 1 to 10000, not {hold!r}")
        self.hold = hold
        super().__init__(address, handle, **kwargs)
        self.RequestHandlerClass = _HeldHandler


def serve_held_frames(
    name: str,
    handle: Callable[[bytes], bytes | None],
    *,
    hold: int,
    host: str = background.DEFAULT_HOST,
    port: int = 0,
    max_size: int = framing.MAX_FRAME_SIZE,
) -> background.ServerHandle:
    """Serve ``handle`` in the background, ``hold`` requests at a time (see HeldFrameServer)."""
    return background.serve(
        name,
        lambda address: HeldFrameServer(address, handle, hold=hold, name=name, max_size=max_size),
        host=host,
        port=port,
    )


# --------------------------------------------------------------------------- a framed connection


class FramedConnection:
    """A client's TCP connection that sends and receives frames, with a timeout on every wait.

    Frames that arrive are buffered whole, so a ``recv`` that times out never
    leaves half a frame behind to confuse the next one.
    """

    def __init__(
        self,
        address: tuple[str, int],
        *,
        timeout: float = 2.0,
        max_size: int = framing.MAX_FRAME_SIZE,
    ):
        self.address = tuple(address)
        self.timeout = timeout
        self.max_size = max_size
        self.sock = socket.create_connection(self.address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._decoder = framing.FrameDecoder(max_size)
        self._ready: deque[bytes] = deque()

    def send(self, payload: bytes) -> None:
        """Send one frame (waits at most ``timeout`` seconds for the network to take it)."""
        self.sock.settimeout(self.timeout)
        framing.send_frame(self.sock, bytes(payload), self.max_size)

    def recv(self, timeout: float) -> bytes:
        """The next frame's payload; TimeoutError if none is complete within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no reply within {timeout:g} s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(CHUNK)
            except TimeoutError:
                raise TimeoutError(f"no reply within {timeout:g} s") from None
            if not chunk:
                where = (
                    "in the middle of a frame"
                    if self._decoder.pending
                    else "before sending a reply"
                )
                raise ConnectionError(f"the server closed the connection {where}")
            self._ready.extend(self._decoder.feed(chunk))
        return self._ready.popleft()

    def request(self, payload: bytes, timeout: float | None = None) -> bytes:
        """Send one frame and return the next one received (a ``transport(bytes) -> bytes``
        function)."""
        self.send(payload)
        return self.recv(self.timeout if timeout is None else timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> FramedConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FramedConnection to {self.address[0]}:{self.address[1]}>"


# --------------------------------------------------------------------------- protobuf contracts

_TYPES = {
    "double": 1,
    "float": 2,
    "int64": 3,
    "uint64": 4,
    "int32": 5,
    "bool": 8,
    "string": 9,
    "bytes": 12,
    "uint32": 13,
    "sint32": 17,
    "sint64": 18,
}


def proto_file(
    file_name: str,
    package: str,
    messages: dict[str, list[tuple]],
    services: dict[str, list[tuple]],
):
    """A proto3 ``FileDescriptorProto`` written as tables, the way an assignment states a contract.

    ``messages``: name -> fields ``(name, number, type)`` or ``(name, number, type, "repeated")``,
    where type is a scalar (``"int64"``, ``"string"``, ...) or another message of the file.
    ``services``: name -> methods ``(name, request, response, client_streams, server_streams)``.
    """
    from google.protobuf import descriptor_pb2

    F = descriptor_pb2.FieldDescriptorProto
    out = descriptor_pb2.FileDescriptorProto(name=file_name, package=package, syntax="proto3")
    for message_name, fields in messages.items():
        message = out.message_type.add(name=message_name)
        for name, number, type_name, *label in fields:
            field = message.field.add(name=name, number=number, json_name=_json_name(name))
            field.label = F.LABEL_REPEATED if label == ["repeated"] else F.LABEL_OPTIONAL
            if type_name in _TYPES:
                field.type = _TYPES[type_name]
            elif type_name in messages:
                field.type = F.TYPE_MESSAGE
                field.type_name = f".{package}.{type_name}"
            else:
                raise ValueError(f"{message_name}.{name}: unknown type {type_name!r}")
    for service_name, methods in services.items():
        service = out.service.add(name=service_name)
        for name, request, response, client_streams, server_streams in methods:
            for message_name in (request, response):
                if message_name not in messages:
                    raise ValueError(f"{service_name}.{name}: unknown message {message_name!r}")
            service.method.add(
                name=name,
                input_type=f".{package}.{request}",
                output_type=f".{package}.{response}",
                client_streaming=client_streams,
                server_streaming=server_streams,
            )
    return out


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def proto_differences(expected, got) -> list[str]:
    """How descriptor ``got`` differs from ``expected``, one sentence each; [] if it matches.

    Compared: the package; every message with its fields' names, numbers, types and labels;
    every service with its methods' request and response types and streaming. What ``got`` has
    beyond the contract (comments, options, extra messages) is not a difference.
    """
    from google.protobuf import descriptor_pb2

    F = descriptor_pb2.FieldDescriptorProto
    type_names = {number: name.lower() for name, number in F.Type.items()}
    differences = []
    if got.package != expected.package:
        differences.append(f"the package is {got.package!r}, not {expected.package!r}")
    messages = {m.name: m for m in got.message_type}
    for message in expected.message_type:
        mine = messages.get(message.name)
        if mine is None:
            differences.append(f"there is no message {message.name}")
            continue
        fields = {f.name: f for f in mine.field}
        for field in message.field:
            have = fields.get(field.name)
            if have is None:
                differences.append(f"{message.name} has no field {field.name}")
                continue
            if have.number != field.number:
                differences.append(
                    f"{message.name}.{field.name} is field {have.number}, not {field.number}"
                )
            have_type = have.type_name.split(".")[-1] or type_names[have.type][5:]
            want_type = field.type_name.split(".")[-1] or type_names[field.type][5:]
            if have.type != field.type or have_type != want_type:
                differences.append(f"{message.name}.{field.name} is {have_type}, not {want_type}")
            if (have.label == F.LABEL_REPEATED) != (field.label == F.LABEL_REPEATED):
                want = "repeated" if field.label == F.LABEL_REPEATED else "not repeated"
                differences.append(f"{message.name}.{field.name} must be {want}")
        for extra in set(fields) - {f.name for f in message.field}:
            differences.append(f"{message.name} has a field {extra} the contract does not")
    services = {s.name: s for s in got.service}
    for service in expected.service:
        mine = services.get(service.name)
        if mine is None:
            differences.append(f"there is no service {service.name}")
            continue
        methods = {m.name: m for m in mine.method}
        for method in service.method:
            have = methods.get(method.name)
            if have is None:
                differences.append(f"service {service.name} has no method {method.name}")
                continue
            for part in ("input_type", "output_type"):
                a, b = getattr(have, part).split(".")[-1], getattr(method, part).split(".")[-1]
                if a != b:
                    what = "takes" if part == "input_type" else "returns"
                    differences.append(f"{method.name} {what} {a}, not {b}")
            for part, word in (("client_streaming", "request"), ("server_streaming", "response")):
                if getattr(have, part) != getattr(method, part):
                    want = "a stream" if getattr(method, part) else "one message"
                    differences.append(f"{method.name}'s {word} must be {want}")
        for extra in set(methods) - {m.name for m in service.method}:
            differences.append(f"service {service.name} has a method {extra} the contract does not")
    return differences
