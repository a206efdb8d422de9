"""Notebook 02's exercise checks (rpclab.byhand.framing_checks): the right answer passes, and
each usual wrong answer is caught with words that say what to fix."""

from __future__ import annotations

import struct
import time

import pytest

from rpclab import exercises
from rpclab.byhand import framing
from rpclab.byhand.framing_checks import check_read_before, check_read_record

# --------------------------------------------------------------------------- read_before


def read_before(sock, n, deadline):  # the notebook's solution
    data = b""
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{len(data)} of {n} bytes by the deadline")
        sock.settimeout(left)
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"peer closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def per_recv_timeout_only(sock, n, deadline):  # the usual mistake: a timeout per recv
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def one_recv(sock, n, deadline):  # forgets that recv may return fewer bytes
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    return sock.recv(n)


def ignores_close(sock, n, deadline):  # loops on b"" until the deadline
    data = b""
    while len(data) < n:
        if time.monotonic() > deadline:
            raise TimeoutError("late")
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        data += sock.recv(n - len(data))
    return data


def checks_the_clock_only(sock, n, deadline):  # never bounds a recv by the time left
    data = b""
    while len(data) < n:
        if time.monotonic() > deadline:
            raise TimeoutError("late")
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def test_the_solution_reads_in_time_and_the_check_says_right():
    verdict = exercises.check("read-before", lambda: check_read_before(read_before), show=False)
    assert verdict.ok, verdict


@pytest.mark.parametrize(
    "wrong, words",
    [
        (per_recv_timeout_only, "one byte every 0.05 s kept it reading"),
        (one_recv, "keep calling recv until you have all n bytes"),
        (ignores_close, "the peer closed after 3 of 10 bytes"),
        (checks_the_clock_only, "set the socket's timeout to the time left"),
    ],
)
def test_usual_mistakes_in_read_before_are_named(wrong, words):
    verdict = exercises.check("read-before", lambda: check_read_before(wrong), show=False)
    assert verdict.status == "wrong" and words in verdict.message, verdict


# --------------------------------------------------------------------------- read_record


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"peer closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_record(sock, max_size=1024 * 1024, max_fragments=4096):  # the notebook's solution
    parts, total = [], 0
    for _ in range(max_fragments):
        (mark,) = struct.unpack(">I", recv_exactly(sock, 4))
        size = mark & 0x7FFF_FFFF
        if total + size > max_size:
            raise framing.FrameTooLarge(total + size, max_size)
        parts.append(recv_exactly(sock, size))
        total += size
        if mark & 0x8000_0000:
            return b"".join(parts)
    raise ValueError(f"more than {max_fragments} fragments")


def first_fragment_only(sock, max_size=1024 * 1024, max_fragments=4096):
    (mark,) = struct.unpack(">I", recv_exactly(sock, 4))
    return recv_exactly(sock, mark & 0x7FFF_FFFF)


def unbounded(sock, max_size=1024 * 1024, max_fragments=4096):  # trusts every length
    parts = []
    while True:
        (mark,) = struct.unpack(">I", recv_exactly(sock, 4))
        parts.append(recv_exactly(sock, mark & 0x7FFF_FFFF))
        if mark & 0x8000_0000:
            return b"".join(parts)


def bounds_each_fragment_not_the_total(sock, max_size=1024 * 1024, max_fragments=4096):
    parts = []
    for _ in range(max_fragments):
        (mark,) = struct.unpack(">I", recv_exactly(sock, 4))
        if mark & 0x7FFF_FFFF > max_size:
            raise framing.FrameTooLarge(mark & 0x7FFF_FFFF, max_size)
        parts.append(recv_exactly(sock, mark & 0x7FFF_FFFF))
        if mark & 0x8000_0000:
            return b"".join(parts)
    raise ValueError("too many fragments")


def no_fragment_count(sock, max_size=1024 * 1024, max_fragments=4096):
    parts, total = [], 0
    while True:
        (mark,) = struct.unpack(">I", recv_exactly(sock, 4))
        size = mark & 0x7FFF_FFFF
        if total + size > max_size:
            raise framing.FrameTooLarge(total + size, max_size)
        parts.append(recv_exactly(sock, size))
        total += size
        if mark & 0x8000_0000:
            return b"".join(parts)


def plain_recv(sock, max_size=1024 * 1024, max_fragments=4096):  # trusts one recv per read
    parts, total = [], 0
    for _ in range(max_fragments):
        (mark,) = struct.unpack(">I", sock.recv(4))
        size = mark & 0x7FFF_FFFF
        if total + size > max_size:
            raise framing.FrameTooLarge(total + size, max_size)
        parts.append(sock.recv(size) if size else b"")
        total += size
        if mark & 0x8000_0000:
            return b"".join(parts)
    raise ValueError("too many fragments")


def plain_recv_for_fragments(sock, max_size=1024 * 1024, max_fragments=4096):
    parts, total = [], 0
    for _ in range(max_fragments):
        (mark,) = struct.unpack(">I", recv_exactly(sock, 4))
        size = mark & 0x7FFF_FFFF
        if total + size > max_size:
            raise framing.FrameTooLarge(total + size, max_size)
        parts.append(sock.recv(size) if size else b"")
        total += size
        if mark & 0x8000_0000:
            return b"".join(parts)
    raise ValueError("too many fragments")


def unmasked_length(sock, max_size=1024 * 1024, max_fragments=4096):  # bit 31 read as length
    parts, total = [], 0
    for _ in range(max_fragments):
        (mark,) = struct.unpack(">I", recv_exactly(sock, 4))
        if total + mark > max_size:
            raise framing.FrameTooLarge(total + mark, max_size)
        parts.append(recv_exactly(sock, mark))
        total += mark
        if mark & 0x8000_0000:
            return b"".join(parts)
    raise ValueError("too many fragments")


def test_the_record_solution_passes():
    verdict = exercises.check("read-record", lambda: check_read_record(read_record), show=False)
    assert verdict.ok, verdict


@pytest.mark.parametrize(
    "wrong, words",
    [
        (first_fragment_only, "sent in fragments of 4 bytes came back as b'ABCD'"),
        (unbounded, "one fragment that declares 64 MiB made it wait"),
        (bounds_each_fragment_not_the_total, "three fragments of 600 bytes"),
        (no_fragment_count, "100 empty fragments"),
        (plain_recv, "arrived 3 bytes at a time, and it raised struct.error"),
        (
            plain_recv_for_fragments,
            "arrived 3 bytes at a time, and it raised framing.FrameTooLarge",
        ),
        (unmasked_length, "the length is only the low 31 bits"),
    ],
)
def test_usual_mistakes_in_read_record_are_named(wrong, words):
    verdict = exercises.check("read-record", lambda: check_read_record(wrong), show=False)
    assert verdict.status == "wrong" and words in verdict.message, verdict


def test_dripping_makes_every_recv_short():
    """The read-record check's peer: no recv returns more than a piece, however slow the
    reader is (here it waits before every recv, so a plain sender would have sent it all)."""
    from rpclab.byhand.framing_checks import _dripping, _pair

    data = bytes(range(40))
    sizes, got = [], b""
    with _pair() as (writer, reader), _dripping(writer, reader, data, piece=3):
        while len(got) < len(data):
            time.sleep(0.005)  # a slow reader: the bytes have every chance to pile up
            chunk = reader.recv(64)
            sizes.append(len(chunk))
            got += chunk
    assert got == data and max(sizes) <= 3, sizes


def test_a_blank_exercise_is_not_done():
    def blank(*args, **kwargs):
        raise exercises.NotDone("read the fragments")

    for check in (check_read_before, check_read_record):
        verdict = exercises.check("blank", lambda check=check: check(blank), show=False)
        assert verdict.status == "not done"


def test_the_checks_leave_no_socket_or_thread_behind():
    import threading

    from rpclab.runtime import process

    threads, fds = threading.active_count(), process.open_fd_count()
    check_read_before(read_before)
    check_read_record(read_record)
    assert threading.active_count() == threads and process.open_fd_count() == fds
