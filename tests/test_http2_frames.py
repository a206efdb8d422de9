"""The frames of an HTTP/2 connection, as rpclab.adapters.http2_frames lists them (notebook 12's
gRPC bytes, frame by frame): synthetic bytes with a known layout, and a real gRPC call."""

from __future__ import annotations

import grpc

from rpclab import faults
from rpclab.adapters import http2_frames
from rpclab.grpcstack import protos
from rpclab.grpcstack.services import add_kv
from rpclab.kv import KVStore
from rpclab.lab import wiretap
from rpclab.runtime import background


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    )


def test_every_byte_of_a_clients_first_call_is_accounted_for():
    message = b"\x0a\x08greeting"  # a GetRequest, as protobuf
    sent = b"".join(
        [
            http2_frames.PREFACE,
            frame(4, 0, 0, (2).to_bytes(2, "big") + (0).to_bytes(4, "big")),  # ENABLE_PUSH=0
            frame(8, 0, 0, (65_535).to_bytes(4, "big")),
            frame(1, 0x4, 1, b"\x83\x86"),  # two indexed header fields
            frame(0, 0x1, 1, b"\x00" + len(message).to_bytes(4, "big") + message),
            frame(6, 0x1, 0, bytes(8)),
            frame(3, 0, 1, (8).to_bytes(4, "big")),
        ]
    )
    frames = http2_frames.split(sent)
    assert [(f.kind, f.stream, f.size) for f in frames] == [
        ("preface", 0, 24),
        ("SETTINGS", 0, 15),
        ("WINDOW_UPDATE", 0, 13),
        ("HEADERS", 1, 11),
        ("DATA", 1, 24),
        ("PING", 0, 17),
        ("RST_STREAM", 1, 13),
    ]
    assert [f.offset for f in frames] == [0, 24, 39, 52, 63, 87, 104]
    assert sum(f.size for f in frames) == len(sent)
    notes = [f.note for f in frames]
    assert notes[1] == "ENABLE_PUSH=0"
    assert notes[2] == "you may send me 65,535 bytes more"
    assert notes[3] == "END_HEADERS; HPACK-coded headers"
    assert notes[4] == "END_STREAM; a gRPC message: 10 bytes, not compressed"
    assert notes[5] == "ACK: your 8 bytes, sent back"
    assert notes[6] == "error code 8 (CANCEL)"


def test_a_recording_cut_mid_frame_says_so_and_reads_no_further():
    whole = frame(6, 0, 0, bytes(8))
    for cut in (whole + whole[:5], whole + whole[:12]):
        frames = http2_frames.split(cut)
        assert [f.kind for f in frames] == ["PING", "(incomplete)"]
        assert frames[1].offset == 17 and frames[1].size == len(cut) - 17
        assert "the recording ends here" in frames[1].note
    # a length that claims 16 MiB more than there is
    assert http2_frames.split(b"\xff\xff\xff\x00\x00\x00\x00\x00\x01")[0].kind == "(incomplete)"


def test_a_real_grpc_call_splits_into_frames_that_cover_every_byte():
    kv_pb2, kv_pb2_grpc = protos.load("kv")
    store = KVStore()
    store.put("greeting", "hello")
    server = background.serve_grpc("kv-http2-frames", lambda s: add_kv(s, store))
    recorder = wiretap.Recorder()
    tap = faults.serve_proxy(
        "kv-http2-tap", target=server.address, mode="bytes", on_frame=recorder.on_frame
    )
    try:
        with grpc.insecure_channel(f"{tap.address[0]}:{tap.address[1]}") as channel:
            reply = kv_pb2_grpc.KVStub(channel).Get(kv_pb2.GetRequest(key="greeting"), timeout=5)
        assert reply.value == "hello"
    finally:
        tap.stop()
        server.stop()

    def sent(direction: str) -> bytes:
        return b"".join(f.payload for f in recorder.frames() if f.direction == direction)

    request, response = http2_frames.split(sent("request")), http2_frames.split(sent("reply"))
    for frames, data in ((request, sent("request")), (response, sent("reply"))):
        assert sum(f.size for f in frames) == len(data)
        assert "(incomplete)" not in [f.kind for f in frames]
    assert request[0].kind == "preface" and request[1].kind == "SETTINGS"
    request_size = len(kv_pb2.GetRequest(key="greeting").SerializeToString())
    reply_size = len(reply.SerializeToString())
    assert f"a gRPC message: {request_size} bytes, not compressed" in [
        f.note.split("; ")[-1] for f in request if f.kind == "DATA"
    ]
    assert f"a gRPC message: {reply_size} bytes, not compressed" in [
        f.note.split("; ")[-1] for f in response if f.kind == "DATA" and f.stream == 1
    ]
    # the reply ends with trailers: a HEADERS frame that ends the stream
    assert any(f.kind == "HEADERS" and "END_STREAM" in f.note for f in response)
