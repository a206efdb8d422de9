"""rpclab.grpcstack.h2frames: HTTP/2 frames read off a recorded connection, both ways, in time
order, with SETTINGS, WINDOW_UPDATE and HPACK header blocks decoded."""

from __future__ import annotations

import grpc
import hpack
import pytest

from rpclab import faults
from rpclab.grpcstack import greeter, h2frames
from rpclab.runtime import background

PREFACE = h2frames.PREFACE


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    )


def settings(**values: int) -> bytes:
    ids = {name: ident for ident, name in h2frames.SETTINGS.items()}
    return b"".join(ids[k].to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in values.items())


def fed(*chunks: tuple[str, bytes], **options) -> h2frames.Conversation:
    conversation = h2frames.Conversation(**options)
    for when, (direction, data) in enumerate(chunks):
        conversation.on_chunk(direction, data, float(when))
    return conversation


def test_a_real_grpc_call_reads_as_settings_headers_data_and_trailers_in_time_order():
    server = background.serve_grpc("test-h2frames", greeter.add_greeter)
    conversation = h2frames.Conversation()
    tap = faults.serve_proxy(
        "test-h2frames-tap", server.address, mode="bytes", on_frame=conversation.on_chunk
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{tap.port}") as channel:
            stub = greeter.helloworld_pb2_grpc.GreeterStub(channel)
            for _ in range(2):
                stub.SayHello(greeter.helloworld_pb2.HelloRequest(name="Ada"), timeout=5)
    finally:
        tap.stop()
        server.stop()
    frames = conversation.frames()
    assert not conversation.errors
    first = frames[0]
    assert (first.direction, first.kind, first.stream) == ("request", "SETTINGS", 0)
    assert "INITIAL_WINDOW_SIZE" in dict(first.settings)
    requests = [f for f in frames if f.kind == "HEADERS" and f.direction == "request"]
    assert [dict(f.headers)[":path"] for f in requests] == ["/helloworld.Greeter/SayHello"] * 2
    assert requests[1].length < requests[0].length / 3  # HPACK's dynamic table at work
    trailers = [f for f in frames if f.kind == "HEADERS" and "END_STREAM" in f.flag_names]
    assert [dict(f.headers)["grpc-status"] for f in trailers] == ["0", "0"]
    times = [f.time for f in frames]
    assert times == sorted(times)
    stream1 = [f.kind for f in frames if f.stream == 1 and f.kind in ("HEADERS", "DATA")]
    assert stream1 == ["HEADERS", "DATA", "HEADERS", "DATA", "HEADERS"]


def test_chunk_boundaries_do_not_matter():
    encoder = hpack.Encoder()
    data = (
        PREFACE
        + frame(4, 0, 0, settings(INITIAL_WINDOW_SIZE=65_535, MAX_FRAME_SIZE=16_384))
        + frame(8, 0, 0, (4_128_769).to_bytes(4, "big"))
        + frame(1, 0x4, 1, encoder.encode([(":path", "/a.B/C"), ("te", "trailers")]))
        + frame(0, 0x1, 1, b"\x00\x00\x00\x00\x02\x08\x01")
    )
    whole = fed(("request", data))
    bytewise = fed(*[("request", data[i : i + 1]) for i in range(len(data))])
    assert [str(f) for f in whole.frames()] == [str(f) for f in bytewise.frames()]
    kinds = [(f.kind, f.describe()) for f in whole.frames()]
    assert kinds == [
        ("SETTINGS", "INITIAL_WINDOW_SIZE=65,535, MAX_FRAME_SIZE=16,384"),
        ("WINDOW_UPDATE", "+4,128,769"),
        ("HEADERS", ":path: /a.B/C, te: trailers"),
        ("DATA", "00 00 00 00 02 08 01"),
    ]


def test_flags_and_error_codes_have_their_rfc_names():
    conversation = fed(
        ("reply", frame(4, 0x1, 0)),
        ("reply", frame(6, 0x1, 0, bytes(8))),
        ("reply", frame(3, 0, 5, (8).to_bytes(4, "big"))),
        ("reply", frame(7, 0, 0, (7).to_bytes(4, "big") + (0).to_bytes(4, "big"))),
        ("reply", frame(0, 0x9, 3, b"\x00")),
    )
    described = [(f.kind, f.flag_names, f.error_code) for f in conversation.frames()]
    assert described == [
        ("SETTINGS", ["ACK"], None),
        ("PING", ["ACK"], None),
        ("RST_STREAM", [], "CANCEL"),
        ("GOAWAY", [], "NO_ERROR"),
        ("DATA", ["END_STREAM", "PADDED"], None),
    ]


def test_a_header_block_spread_over_continuation_frames_is_decoded_once_whole():
    block = hpack.Encoder().encode([(":status", "200"), ("grpc-status", "0"), ("x", "y" * 50)])
    padded = bytes([3]) + bytes(5) + block[:10] + bytes(3)  # PADDED and PRIORITY fields around it
    conversation = fed(
        ("reply", frame(1, 0x8 | 0x20, 1, padded)),
        ("reply", frame(9, 0, 1, block[10:20])),
        ("reply", frame(9, 0x4, 1, block[20:])),
    )
    headers, *continuations = conversation.frames()
    assert headers.headers == [(":status", "200"), ("grpc-status", "0"), ("x", "y" * 50)]
    assert [c.kind for c in continuations] == ["CONTINUATION", "CONTINUATION"]


def test_the_server_header_table_size_limits_what_the_client_decoder_accepts():
    encoder = hpack.Encoder()
    encoder.header_table_size = 8192  # a client that uses a bigger table than it was allowed
    block = encoder.encode([("a", "b")])
    refused = fed(("request", PREFACE + frame(1, 0x4, 1, block)))
    assert refused.errors and "HPACK" in refused.errors[0]
    allowed = fed(
        ("reply", frame(4, 0, 0, settings(HEADER_TABLE_SIZE=8192))),
        ("request", PREFACE + frame(1, 0x4, 1, block)),
    )
    assert not allowed.errors and allowed.frames()[1].headers == [("a", "b")]


def test_data_payloads_are_cut_to_keep_but_their_length_is_counted():
    conversation = fed(("reply", frame(0, 0, 1, bytes(5000))), keep=16)
    (data,) = conversation.frames()
    assert data.length == 5000 and len(data.payload) == 16


def test_frames_beyond_max_frames_are_counted_not_kept():
    conversation = fed(*[("reply", frame(6, 0, 0, bytes(8)))] * 5, max_frames=3)
    assert len(conversation) == 3 and conversation.dropped == 2


@pytest.mark.parametrize(
    "chunks, error",
    [
        ([("request", b"GET / HTTP/1.1\r\n\r\n")], "did not start with HTTP/2's preface"),
        ([("reply", frame(4, 0, 0, b"\x00\x04\x00"))], "multiple of 6 bytes"),
        ([("reply", b"\x20\x00\x00\x01\x04\x00\x00\x00\x01")], "non-DATA frame is too long"),
        ([("reply", frame(9, 0x4, 1, b"\x82"))], "CONTINUATION frame with no HEADERS"),
        ([("reply", frame(1, 0x4, 1, b"\xff\xff\xff\xff"))], "HPACK could not decode"),
        ([("reply", frame(1, 0x8 | 0x4, 1, b"\x09"))], "shorter than its padding"),
    ],
)
def test_bytes_that_are_not_http2_stop_that_direction_with_a_message(chunks, error):
    direction = chunks[0][0]
    conversation = fed(*chunks, (direction, frame(6, 0, 0, bytes(8))))
    assert len(conversation.errors) == 1 and error in conversation.errors[0]
    assert "PING" not in [f.kind for f in conversation.frames()]  # nothing read after the error


def test_a_direction_that_is_neither_request_nor_reply_is_refused():
    with pytest.raises(ValueError, match="'request' or 'reply'"):
        h2frames.Conversation().on_chunk("sideways", b"")


def test_parse_settings_names_grpc_own_parameters():
    assert h2frames.parse_settings(settings(GRPC_ALLOW_TRUE_BINARY_METADATA=1)) == [
        ("GRPC_ALLOW_TRUE_BINARY_METADATA", 1)
    ]
    assert h2frames.parse_settings(b"\x12\x34\x00\x00\x00\x01") == [("0x1234", 1)]
