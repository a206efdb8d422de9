"""rpclab.byhand.framing: frames survive any split of the byte stream; sizes are checked before
anything is read."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpclab.byhand import framing
from rpclab.byhand.framing import ConnectionClosed, FrameDecoder, FrameTooLarge

payloads = st.lists(st.binary(max_size=300), max_size=12)


def cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    """``stream`` split at the given offsets (any order, repeats allowed)."""
    points = sorted({min(c, len(stream)) for c in cuts})
    pieces, last = [], 0
    for point in points + [len(stream)]:
        pieces.append(stream[last:point])
        last = point
    return pieces


def decode_all(chunks: list[bytes], max_size: int = framing.MAX_FRAME_SIZE) -> list[bytes]:
    decoder = FrameDecoder(max_size)
    frames = []
    for chunk in chunks:
        frames.extend(decoder.feed(chunk))
    assert decoder.pending == 0
    return frames


# --------------------------------------------------------------------------- encode / decode


def test_encode_frame_is_a_big_endian_length_then_the_payload():
    assert framing.encode_frame(b"hello") == b"\x00\x00\x00\x05hello"
    assert framing.encode_frame(b"") == b"\x00\x00\x00\x00"
    assert framing.encode_frame(b"x" * 258)[:4] == b"\x00\x00\x01\x02"


def test_encode_frame_refuses_a_payload_over_the_limit():
    with pytest.raises(FrameTooLarge) as info:
        framing.encode_frame(b"x" * 11, max_size=10)
    assert (info.value.size, info.value.limit) == (11, 10)
    assert "11 bytes" in str(info.value) and "10-byte limit" in str(info.value)


def test_encode_frame_never_claims_more_than_four_bytes_can_say():
    class Huge(bytes):
        def __len__(self) -> int:
            return 2**32

    with pytest.raises(FrameTooLarge):
        framing.encode_frame(Huge(), max_size=2**40)


@settings(max_examples=150, deadline=None)
@given(payloads, st.lists(st.integers(min_value=0, max_value=5000), max_size=30))
def test_frames_survive_any_chunking(messages, cuts):
    stream = b"".join(framing.encode_frame(m) for m in messages)
    assert decode_all(cut(stream, cuts)) == messages


@settings(max_examples=40, deadline=None)
@given(payloads)
def test_frames_survive_one_byte_at_a_time(messages):
    stream = b"".join(framing.encode_frame(m) for m in messages)
    assert decode_all([stream[i : i + 1] for i in range(len(stream))]) == messages


@settings(max_examples=100, deadline=None)
@given(
    payloads,
    st.integers(min_value=11, max_value=2**32 - 1),
    st.binary(max_size=20),
    st.lists(st.integers(min_value=0, max_value=5000), max_size=30),
)
def test_an_oversized_header_is_refused_the_same_way_however_the_stream_is_cut(
    good, size, junk, cuts
):
    """Every frame before the bad header comes out, then FrameTooLarge, never the bytes after it."""
    good = [m[:10] for m in good]
    stream = (
        b"".join(framing.encode_frame(m, max_size=10) for m in good)
        + struct.pack(">I", size)
        + junk
    )
    decoder = FrameDecoder(max_size=10)
    frames = []
    with pytest.raises(FrameTooLarge) as info:
        for chunk in cut(stream, cuts) + [b""]:  # feed(b"") asks without waiting for more bytes
            frames.extend(decoder.feed(chunk))
    assert frames == good
    assert info.value.size == size
    with pytest.raises(FrameTooLarge):  # and it stays refused
        decoder.feed(b"more")


def test_decoder_reports_pending_bytes_of_an_incomplete_frame():
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00\x00\x05he") == []
    assert decoder.pending == 6
    assert decoder.feed(b"llo\x00\x00") == [b"hello"]
    assert decoder.pending == 2


def test_decoder_returns_several_frames_from_one_chunk():
    chunk = framing.encode_frame(b"a") + framing.encode_frame(b"") + framing.encode_frame(b"ccc")
    assert FrameDecoder().feed(chunk) == [b"a", b"", b"ccc"]


def test_decoder_checks_the_length_before_the_body_arrives():
    decoder = FrameDecoder(max_size=1024)
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(struct.pack(">I", 4 * 1024**3 - 1))  # 4 GiB declared, nothing allocated for it
    assert info.value.size == 4 * 1024**3 - 1


# --------------------------------------------------------------------------- sockets


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.settimeout(2.0)
    b.settimeout(2.0)
    yield a, b
    a.close()
    b.close()


def test_send_and_recv_frame_over_a_socket(pair):
    a, b = pair
    framing.send_frame(a, b"one")
    framing.send_frame(a, b"")
    framing.send_frame(a, b"three")
    assert [framing.recv_frame(b) for _ in range(3)] == [b"one", b"", b"three"]


@settings(max_examples=25, deadline=None)
@given(payloads, st.lists(st.integers(min_value=0, max_value=3000), max_size=20))
def test_recv_frame_reassembles_frames_sent_in_arbitrary_pieces(messages, cuts):
    a, b = socket.socketpair()
    a.settimeout(2.0)
    b.settimeout(2.0)
    try:
        stream = b"".join(framing.encode_frame(m) for m in messages)
        sender = threading.Thread(target=lambda: [a.sendall(piece) for piece in cut(stream, cuts)])
        sender.start()
        received = [framing.recv_frame(b) for _ in messages]
        sender.join(5)
        assert received == messages
    finally:
        a.close()
        b.close()


def test_recv_frame_refuses_an_oversized_length_without_reading_the_body(pair):
    a, b = pair
    a.sendall(struct.pack(">I", 2048) + b"body")
    with pytest.raises(FrameTooLarge) as info:
        framing.recv_frame(b, max_size=1024)
    assert (info.value.size, info.value.limit) == (2048, 1024)
    assert b.recv(10) == b"body"  # still unread: nothing was allocated or consumed for it


def test_recv_exactly_reports_a_close_mid_frame(pair):
    a, b = pair
    a.sendall(b"\x00\x00\x00\x0aabc")
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionClosed) as info:
        framing.recv_frame(b)
    assert info.value.partial
    assert "after 3 of 10 bytes" in str(info.value)
    assert isinstance(info.value, ConnectionError)


def test_recv_frame_reports_a_clean_close_between_frames(pair):
    a, b = pair
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionClosed) as info:
        framing.recv_frame(b)
    assert not info.value.partial
    assert "before a frame began" in str(info.value)


def test_a_stalled_peer_lets_the_socket_timeout_through(pair):
    a, b = pair
    b.settimeout(0.05)
    a.sendall(b"\x00\x00\x00\x05he")
    with pytest.raises(socket.timeout):
        framing.recv_frame(b)


# --------------------------------------------------------------------------- a whole-frame deadline


def _trickle(sock: socket.socket, data: bytes, every: float, stop: threading.Event) -> None:
    """Send ``data`` one byte at a time, a byte every ``every`` seconds, until ``stop`` is set."""
    for i in range(len(data)):
        if stop.wait(every):
            return
        try:
            sock.sendall(data[i : i + 1])
        except OSError:
            return


def test_a_trickling_peer_defeats_a_per_recv_timeout_but_not_a_frame_deadline(pair):
    a, b = pair
    frame = framing.encode_frame(b"0123456789")
    stop = threading.Event()
    writer = threading.Thread(target=_trickle, args=(a, frame * 2, 0.02, stop))
    writer.start()
    try:
        b.settimeout(0.2)  # every byte arrives well inside this: the frame is read, slowly
        assert framing.recv_frame(b) == b"0123456789"
        with pytest.raises(TimeoutError, match="not complete in time"):
            framing.recv_frame(b, timeout=0.1)  # 14 bytes at 0.02 s each take about 0.28 s
        assert b.gettimeout() == 0.2  # the socket's own timeout is put back
    finally:
        stop.set()
        writer.join()


def test_a_frame_deadline_waits_for_the_first_byte_as_the_socket_says(pair):
    a, b = pair
    b.settimeout(5)
    timer = threading.Timer(0.3, a.sendall, args=(framing.encode_frame(b"late"),))
    timer.start()
    try:
        assert framing.recv_frame(b, timeout=0.1) == b"late"  # idle 0.3 s, then whole at once
    finally:
        timer.cancel()


def test_a_frame_deadline_still_refuses_an_oversized_length_first(pair):
    a, b = pair
    a.sendall(struct.pack(">I", 2**31))
    with pytest.raises(FrameTooLarge):
        framing.recv_frame(b, max_size=1024, timeout=1.0)
    with pytest.raises(ValueError, match="above 0"):
        framing.recv_frame(b, timeout=0)
