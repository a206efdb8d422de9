"""rpclab.byhand.framing's record marking (RFC 5531 section 11): records survive any fragmenting,
and every length, the fragment count and the time a record takes are bounded."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpclab.byhand import framing
from rpclab.byhand.framing import (
    LAST_FRAGMENT,
    ConnectionClosed,
    FrameTooLarge,
    TooManyFragments,
    encode_record,
    recv_record,
)


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    left.settimeout(5)
    right.settimeout(5)
    yield left, right
    left.close()
    right.close()


def mark(size: int, last: bool) -> bytes:
    return ((LAST_FRAGMENT if last else 0) | size).to_bytes(4, "big")


def test_a_record_is_fragments_each_with_a_mark_and_the_top_bit_on_the_last():
    assert encode_record(b"ABCDEFGHIJ", fragment_size=4) == (
        mark(4, False) + b"ABCD" + mark(4, False) + b"EFGH" + bytes.fromhex("80000002") + b"IJ"
    )
    assert encode_record(b"") == bytes.fromhex("80000000")
    assert encode_record(b"hi") == bytes.fromhex("80000002") + b"hi"


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2000), st.integers(1, 300))
def test_records_round_trip_whatever_the_fragment_size(record, fragment_size):
    left, right = socket.socketpair()
    try:
        left.settimeout(5)
        right.settimeout(5)
        framing.send_record(left, record, fragment_size)
        framing.send_record(left, b"next")
        assert recv_record(right) == record
        assert recv_record(right) == b"next"
    finally:
        left.close()
        right.close()


def test_empty_fragments_before_the_last_are_allowed(pair):
    left, right = pair
    left.sendall(mark(0, False) + mark(3, False) + b"abc" + mark(0, True))
    assert recv_record(right) == b"abc"


def test_a_fragment_over_the_limit_is_refused_before_it_is_read(pair):
    left, right = pair
    left.sendall(mark(0x7FFF_FFFF, True))  # 2 GiB declared, nothing sent
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge) as info:
            recv_record(right, max_size=1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.size == 0x7FFF_FFFF
    assert peak < 64 * 1024


def test_fragments_that_add_up_to_more_than_the_limit_are_refused(pair):
    left, right = pair
    left.sendall(mark(600, False) + b"x" * 600 + mark(600, True))
    with pytest.raises(FrameTooLarge) as info:
        recv_record(right, max_size=1000)
    assert info.value.size == 1200


def test_endless_empty_fragments_are_refused(pair):
    left, right = pair
    left.sendall(mark(0, False) * 11)
    with pytest.raises(TooManyFragments):
        recv_record(right, max_fragments=10)


def test_a_record_that_trickles_in_past_its_timeout_is_given_up(pair):
    left, right = pair
    right.settimeout(None)
    stop = threading.Event()

    def trickle() -> None:
        for byte in mark(100, True) + b"x" * 100:
            if stop.wait(0.05):
                return
            try:
                left.sendall(bytes([byte]))
            except OSError:
                return

    sender = threading.Thread(target=trickle)
    sender.start()
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            recv_record(right, timeout=0.3)
        assert time.monotonic() - start < 2.0
        assert right.gettimeout() is None  # the caller's own timeout is put back
    finally:
        stop.set()
        sender.join(5)


def test_a_peer_that_closes_mid_record_raises_connection_closed(pair):
    left, right = pair
    left.sendall(mark(10, True) + b"abc")
    left.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionClosed) as info:
        recv_record(right)
    assert info.value.partial


def test_fragment_size_must_be_one_to_two_gibibytes():
    with pytest.raises(ValueError):
        encode_record(b"x", fragment_size=0)
    with pytest.raises(ValueError):
        encode_record(b"x", fragment_size=2**31)
    with pytest.raises(TypeError):
        encode_record(b"x", fragment_size=1.5)
