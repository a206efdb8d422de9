"""What both ends of the socket RPC share: the frame hook, and the kernel's socket timeouts.

Part of rpclab.byhand.socketrpc (notebooks 04, 05; measured in 13). Each message is one
frame of rpclab.byhand.framing: a 4-byte big-endian length, then UTF-8 JSON.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

from rpclab.byhand import framing

log = logging.getLogger("rpclab.byhand.socketrpc")

RECV_SIZE = 64 * 1024  # bytes asked of each recv (under malloc's mmap threshold: cheap)

OnFrame = Callable[[str, bytes], Any]  # on_frame("sent" | "received", payload)

pack_length = framing.HEADER.pack  # a frame is pack_length(len(payload)) + payload


def notify(on_frame: OnFrame | None, direction: str, payload: bytes) -> None:
    """Tell an on_frame hook about a frame; a failing hook is logged, never fatal."""
    if on_frame is None:
        return
    try:
        on_frame(direction, payload)
    except Exception:
        log.exception("on_frame hook raised; the frame went on regardless")


def timeval(seconds: float) -> bytes:
    """``seconds`` as the kernel wants it for SO_RCVTIMEO / SO_SNDTIMEO (never 0, which means
    "forever")."""
    if sys.platform == "win32":
        return struct.pack("L", max(1, math.ceil(seconds * 1000)))  # a DWORD of milliseconds
    whole = int(seconds)
    return struct.pack("ll", whole, max(1 if whole == 0 else 0, int((seconds - whole) * 1_000_000)))


def set_read_timeout(sock: socket.socket, seconds: float) -> None:
    """Make each recv() on ``sock`` give up after ``seconds`` (it raises BlockingIOError)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(seconds))


def set_send_timeout(sock: socket.socket, seconds: float) -> None:
    """Make each send on ``sock`` give up after ``seconds``: a peer that stops reading cannot
    hold the sender forever."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(seconds))
