"""Speed work: one call, when nobody else is using the connection, done with as little as the
rules allow.

Nothing here is needed for correctness: without it, ``Client.invoke`` would send every call
through ``SharedConnection._exchange`` (reader.py) and get the same answers. Measured in
notebook 13 and by ``rpclab bench`` (the socket RPC's goal is 0.6 x a raw socket's round
trips); profiled in rpclab.bench.profile. With the server in the same process, its thread
waits for the GIL through every line the caller runs, so every line counts.

The usual case: the caller holds the reader lock (nobody else reads), sends, makes one read,
and that read is exactly one frame holding the plain success reply to its id
(rpclab.byhand.jsonrpc.fastpath.plain_result). Anything else -- an error reply, half a frame,
a reply to another caller, a broken connection -- goes on in the general runtime from where
this left off (``_complete``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rpclab.byhand import jsonrpc
from rpclab.byhand.jsonrpc.fastpath import NOT_PLAIN, plain_result
from rpclab.byhand.socketrpc.reader import IDLE_CHECK, _Link, _Slot, over_limit, result_of
from rpclab.byhand.socketrpc.transport import RECV_SIZE, pack_length

if TYPE_CHECKING:
    from rpclab.byhand.socketrpc.reader import SharedConnection

__all__ = ["call_as_reader"]


def call_as_reader(conn: SharedConnection, request_id: str, payload: bytes, timeout: float) -> Any:
    """Send one request and return its result (or raise its error, as RemoteError).

    The caller holds ``conn._reader``; it is released before this returns.
    """
    now = time.monotonic()
    deadline = now + timeout
    chunk: bytes | OSError | None = None
    with conn._send_lock:
        link = conn._link
        tried = link is not None and not link.broken  # (if sending fails, the call was tried)
        if tried and now - link.sent_at >= IDLE_CHECK and link.closed_while_idle(now):
            conn._break(link, "the server closed the connection while it was idle")
            tried = False  # (so _exchange makes a new one)
        if tried:
            link.sent_at = now
            if timeout != link.read_timeout:
                link.bound_reads(timeout)
            try:
                link.sock.sendall(pack_length(len(payload)) + payload)
            except OSError as exc:
                conn._break(link, f"sending failed: {exc}")
                chunk = exc
    if not tried:  # no connection yet: _exchange makes one (and retries as it does for every call)
        conn._hand_over()
        return result_of(conn._exchange((request_id,), payload, timeout)[request_id])
    body = None  # the one frame that the first read holds exactly, if it does
    if chunk is None:
        try:
            chunk = link.sock.recv(RECV_SIZE)
        except OSError as exc:
            chunk = exc
        else:
            size = len(chunk) - 4
            if (
                0 < size <= conn._max_frame_size
                and int.from_bytes(chunk[:4], "big") == size
                and not link.decoder.pending
            ):
                body = chunk[4:]
                result = plain_result(body, request_id)
                if result is not NOT_PLAIN:
                    conn._hand_over()
                    return result
    return result_of(_complete(conn, request_id, payload, timeout, link, chunk, body, deadline))


def _complete(
    conn: SharedConnection,
    request_id: str,
    payload: bytes,
    timeout: float,
    link: _Link,
    chunk: bytes | OSError | None,
    body: bytes | None,
    deadline: float,
) -> dict:
    """The reply to a call sent as the reader, whose first read was not simply its plain reply.

    ``chunk`` is what that read gave (bytes, or the error it raised), or the error sending
    raised; ``body`` the one frame it held exactly, if so.
    """
    if body is not None:  # one frame, but not a plain reply: an error, a list... or not ours
        try:
            value = jsonrpc.decode(body)
        except jsonrpc.ParseError:
            value = None  # _lead reads it again, and says what is wrong
        if type(value) is dict and value.get("id") == request_id:
            conn._hand_over()
            if "error" in value and over_limit(value):  # the server closes the connection next
                conn._break(
                    link, "the server refused a call over a limit, and closed the connection"
                )
            return value
    slot = _Slot((request_id,), link)
    conn._register(slot)
    conn._lead(slot, deadline, chunk)
    return conn._exchange((request_id,), payload, timeout, sent=(slot, deadline))[request_id]
