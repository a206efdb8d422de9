"""The checks behind notebook 02's exercises: each drives the learner's function over a real
socket pair and raises AssertionError, in plain words, when it is wrong.

Notebook 02 runs them through ``rpclab.exercises.check`` (which prints the verdict and never
raises); tests/test_framing_checks.py proves each passes the notebook's solution and catches
the usual wrong answers. Every wait here is bounded, so a check ends even when the code under
test would wait for ever.

* :func:`check_read_before` -- ``read_before(sock, n, deadline)``: exactly ``n`` bytes, or
  TimeoutError once ``time.monotonic()`` passes ``deadline`` (a whole-message deadline, which a
  peer trickling one byte at a time cannot stretch, and a peer that goes quiet mid-message
  cannot outlast: each recv may wait only for the time left), or ConnectionError if the peer
  closes.
* :func:`check_read_record` -- ``read_record(sock, max_size, max_fragments)``: one ONC RPC
  record (RFC 5531 section 11), its fragments joined (also when every recv returns only a few
  bytes), every size and count bounded.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rpclab.byhand import framing
from rpclab.byhand.framing import LAST_FRAGMENT, FrameTooLarge

__all__ = ["check_read_before", "check_read_record"]

SOCKET_TIMEOUT = 2.0  # seconds any read in a check may wait, so a check always ends


@contextmanager
def _pair(*, timeout: float = SOCKET_TIMEOUT) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected (writer, reader) pair; the reader waits at most ``timeout`` per recv."""
    writer, reader = socket.socketpair()
    writer.settimeout(SOCKET_TIMEOUT)
    reader.settimeout(timeout)
    try:
        yield writer, reader
    finally:
        writer.close()
        reader.close()


@contextmanager
def _sending(
    sock: socket.socket, data: bytes, piece: int, wait_turn: Callable[[threading.Event], bool]
) -> Iterator[None]:
    """Send ``data`` ``piece`` bytes at a time from a thread, each piece once ``wait_turn(stop)``
    says True (False: give up); the thread stops when the block ends."""
    stop = threading.Event()

    def run() -> None:
        for start in range(0, len(data), piece):
            if not wait_turn(stop):
                return
            try:
                sock.sendall(data[start : start + piece])
            except OSError:
                return

    thread = threading.Thread(target=run, name="rpclab-check-sender", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(SOCKET_TIMEOUT)


def _trickling(sock: socket.socket, data: bytes, every: float, piece: int = 1):
    """Send ``data`` in pieces of ``piece`` bytes, one every ``every`` seconds."""
    return _sending(sock, data, piece, lambda stop: not stop.wait(every))


def _dripping(writer: socket.socket, reader: socket.socket, data: bytes, piece: int):
    """Send ``data`` ``piece`` bytes at a time, each piece only once the reader has taken every
    byte before it, so no ``reader.recv`` can return more than ``piece`` bytes: short reads for
    certain, however fast or slow the reader is."""

    def drained(stop: threading.Event) -> bool:  # nothing waits unread at the reader
        while not stop.is_set():
            try:
                readable, _, _ = select.select([reader], [], [], 0)
            except (OSError, ValueError):
                return False
            if not readable:
                return True
            stop.wait(0.001)  # the reader has not taken the last piece yet
        return False

    return _sending(writer, data, piece, drained)


def check_read_before(read_before: Callable[[socket.socket, int, float], bytes]) -> str:
    """Right if ``read_before(sock, n, deadline)`` reads whole messages, gives up at the
    deadline however the bytes trickle, and notices a peer that closes."""
    data = b"0123456789"
    with _pair() as (writer, reader), _trickling(writer, data, every=0.01, piece=3):
        got = read_before(reader, len(data), time.monotonic() + SOCKET_TIMEOUT)
    if got != data:
        raise AssertionError(
            f"asked for 10 bytes sent in pieces of 3, it returned {got!r}: keep calling recv "
            "until you have all n bytes"
        )

    # One byte every 0.05 s: each recv waits far less than the socket's 1 s timeout, so only a
    # deadline for the whole message stops it.
    with _pair(timeout=1.0) as (writer, reader), _trickling(writer, bytes(20), every=0.05):
        start = time.monotonic()
        try:
            got = read_before(reader, 20, start + 0.3)
        except TimeoutError:
            took = time.monotonic() - start
            if took > 0.6:
                raise AssertionError(
                    f"it raised TimeoutError, but after {took:.2f} s: the deadline was 0.3 s "
                    "from the start (set each recv's timeout to the time left)"
                ) from None
        else:
            took = time.monotonic() - start
            raise AssertionError(
                f"a peer sending one byte every 0.05 s kept it reading for {took:.2f} s: it "
                f"returned {len(got)} bytes although the deadline was 0.3 s. Raise TimeoutError "
                "once time.monotonic() passes the deadline, whatever each recv does"
            )

    # A peer that sends 2 bytes and then nothing: looking at the clock between recvs never
    # comes round again, so only a recv whose own timeout is the time left ends on time.
    with _pair(timeout=SOCKET_TIMEOUT) as (writer, reader):
        writer.sendall(b"ab")
        start = time.monotonic()
        try:
            got = read_before(reader, 10, start + 0.3)
        except TimeoutError:
            took = time.monotonic() - start
            if took > 0.6:
                raise AssertionError(
                    f"the peer sent 2 of 10 bytes and went quiet: it raised TimeoutError after "
                    f"{took:.2f} s, when the socket's own {SOCKET_TIMEOUT:g} s timeout ran out, "
                    "although the deadline was 0.3 s. Checking the clock between recvs is not "
                    "enough: before each recv, set the socket's timeout to the time left"
                ) from None
        except ConnectionError:
            raise AssertionError(
                "the peer sent 2 of 10 bytes and went quiet (it did not close): it raised "
                "ConnectionError, but that is for a peer that closed. Raise TimeoutError at "
                "the deadline"
            ) from None
        else:
            raise AssertionError(
                f"the peer sent 2 of 10 bytes and went quiet, and it returned {got!r}: raise "
                "TimeoutError at the deadline"
            )

    with _pair(timeout=1.0) as (writer, reader):
        writer.sendall(b"abc")
        writer.shutdown(socket.SHUT_WR)
        try:
            got = read_before(reader, 10, time.monotonic() + 0.5)
        except TimeoutError:
            raise AssertionError(
                "the peer closed after 3 of 10 bytes and it waited for the deadline: recv "
                "returns b'' when the peer has closed, raise ConnectionError then"
            ) from None
        except ConnectionError:
            pass
        else:
            raise AssertionError(
                f"the peer closed after 3 of 10 bytes and it returned {got!r}: raise "
                "ConnectionError when recv returns b''"
            )
    return (
        "whole messages are read, a trickling or quiet peer is cut off at the deadline, a close "
        "is noticed"
    )


def _kind(error: BaseException) -> str:
    """An exception's type as the notebook writes it: TimeoutError, struct.error,
    framing.FrameTooLarge."""
    kind = type(error)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__.rpartition('.')[2]}.{kind.__qualname__}"


def _mark(size: int, last: bool) -> bytes:
    return ((LAST_FRAGMENT if last else 0) | size).to_bytes(4, "big")


def check_read_record(read_record: Callable[..., bytes]) -> str:
    """Right if ``read_record(sock, max_size=..., max_fragments=...)`` joins a record's fragments
    (also when every recv returns only 3 bytes), handles the empty record, and refuses records
    too large or in too many fragments before reading them."""
    records = [(b"ABCDEFGHIJ", 4), (b"", 1), (bytes(range(256)) * 4, 100), (b"x", 1)]
    with _pair() as (writer, reader):
        for record, fragment_size in records:  # back to back on one connection
            writer.sendall(framing.encode_record(record, fragment_size))
        for record, fragment_size in records:
            shown = record if len(record) <= 12 else record[:12] + b"..."
            try:
                got = read_record(reader, max_size=4096, max_fragments=64)
            except FrameTooLarge as error:
                size = getattr(error, "size", 0)
                if LAST_FRAGMENT <= size < 2**32:
                    raise AssertionError(
                        f"the record {shown!r} in fragments of {fragment_size} bytes raised "
                        f"FrameTooLarge for {size:,} bytes. That is a whole mark, "
                        f"{size.to_bytes(4, 'big').hex(' ')}, with its top bit set (bit 31: "
                        "'the last fragment'): the length is only the low 31 bits, "
                        "mark & 0x7FFF_FFFF"
                    ) from None
                raise AssertionError(
                    f"the record {shown!r} in fragments of {fragment_size} bytes fits in "
                    f"max_size=4096, yet it raised FrameTooLarge: {error}"
                ) from None
            if got != record:
                raise AssertionError(
                    f"the record {shown!r} sent in fragments of {fragment_size} bytes came back "
                    f"as {got[:12]!r}{'...' if len(got) > 12 else ''} ({len(got)} bytes)"
                )

    # Every recv returns at most 3 bytes here, as a slow network may deliver them: a mark or a
    # fragment read with one plain recv comes back short.
    record, fragment_size, piece = b"ABCDEFGHIJ", 4, 3
    with (
        _pair(timeout=1.0) as (writer, reader),
        _dripping(writer, reader, framing.encode_record(record, fragment_size), piece),
    ):
        short_reads = (
            f"the record {record!r}, in fragments of {fragment_size} bytes, arrived {piece} "
            "bytes at a time"
        )
        advice = (
            "recv may return fewer bytes than you ask for: read each mark and each fragment "
            "with recv_exactly"
        )
        try:
            got = read_record(reader, max_size=4096, max_fragments=64)
        except NotImplementedError:  # the blank exercise (NotDone): let the check say so
            raise
        except Exception as error:  # noqa: BLE001 - whatever it raised, say what to fix
            raise AssertionError(
                f"{short_reads}, and it raised {_kind(error)}: {error}. {advice}"
            ) from None
        if got != record:
            raise AssertionError(f"{short_reads}, and it returned {got!r}: {advice}")
    with _pair() as (writer, reader):
        writer.sendall(_mark(0, False) + _mark(3, False) + b"abc" + _mark(0, True))
        got = read_record(reader, max_size=4096, max_fragments=64)
        if got != b"abc":
            raise AssertionError(f"empty fragments around b'abc' gave {got!r}, not b'abc'")

    refusals = [
        (_mark(64 * 2**20, True), "one fragment that declares 64 MiB"),
        (b"".join(_mark(600, False) + bytes(600) for _ in range(2)) + _mark(600, True),
         "three fragments of 600 bytes (1,800 in all)"),
    ]  # fmt: skip
    for stream, what in refusals:
        with _pair(timeout=1.0) as (writer, reader):
            writer.sendall(stream)
            try:
                got = read_record(reader, max_size=1024, max_fragments=64)
            except FrameTooLarge:
                continue
            except TimeoutError:
                raise AssertionError(
                    f"with max_size=1024, a record of {what} made it wait for bytes that never "
                    "came: check the total against max_size before reading a fragment, and "
                    "raise framing.FrameTooLarge"
                ) from None
            raise AssertionError(
                f"with max_size=1024, a record of {what} was accepted ({len(got)} bytes): raise "
                "framing.FrameTooLarge"
            )
    with _pair(timeout=1.0) as (writer, reader):
        writer.sendall(_mark(0, False) * 100)  # empty fragments cost the sender nothing
        try:
            read_record(reader, max_size=1024, max_fragments=64)
        except TimeoutError:
            raise AssertionError(
                "a peer sent 100 empty fragments, none of them the last, and it kept reading "
                "(max_fragments=64): stop after max_fragments with an error"
            ) from None
        except Exception:  # noqa: BLE001 - any clear error will do
            pass
        else:
            raise AssertionError(
                "a peer sent 100 empty fragments, none of them the last, and it returned a "
                "record: stop after max_fragments with an error"
            )
    return "fragments joined, the empty record read, and every size and count bounded"
