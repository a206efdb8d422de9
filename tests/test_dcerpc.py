"""DCE/RPC by hand (rpclab.byhand.dcerpc): the bind PDU's bytes, NDR read in either byte order,
towers, and an endpoint-mapper walk against fake peers -- honest, hostile, slow and absurd.

The real peer, Samba's endpoint mapper, is in test_dcerpc_samba.py.
"""

from __future__ import annotations

import io
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from rpclab.byhand.dcerpc import epmap, pdu
from rpclab.byhand.dcerpc.client import DceRpcError, NotDceRpcError, RemoteFault
from rpclab.byhand.dcerpc.ndr import DecodeError, Reader, uuid_bytes
from rpclab.byhand.dcerpc.tower import decode_tower
from rpclab.runtime import background

LSA = pdu.SyntaxId(uuid.UUID("12345778-1234-abcd-ef00-0123456789ab"), 0, 0)
WINREG = pdu.SyntaxId(uuid.UUID("338cd001-2244-31f1-aaaa-900038001003"), 1, 0)


# --------------------------------------------------------------------------- what a peer writes


def tcp_tower(interface: pdu.SyntaxId, port: int, ip: str = "127.0.0.1") -> bytes:
    """A tower for ncacn_ip_tcp, as DCE 1.1 appendix L lays it out (lengths little-endian)."""
    floors = [
        (b"\x0d" + interface.uuid.bytes_le + struct.pack("<H", interface.major),
         struct.pack("<H", interface.minor)),
        (b"\x0d" + pdu.NDR.uuid.bytes_le + struct.pack("<H", 2), struct.pack("<H", 0)),
        (b"\x0b", struct.pack("<H", 0)),
        (b"\x07", struct.pack(">H", port)),
        (b"\x09", socket.inet_aton(ip)),
    ]  # fmt: skip
    body = b"".join(
        struct.pack("<H", len(lhs)) + lhs + struct.pack("<H", len(rhs)) + rhs for lhs, rhs in floors
    )
    return struct.pack("<H", len(floors)) + body


def pipe_tower(interface: pdu.SyntaxId, pipe: bytes) -> bytes:
    floors = [
        (b"\x0d" + interface.uuid.bytes_le + struct.pack("<H", interface.major),
         struct.pack("<H", interface.minor)),
        (b"\x0d" + pdu.NDR.uuid.bytes_le + struct.pack("<H", 2), struct.pack("<H", 0)),
        (b"\x0b", struct.pack("<H", 0)),
        (b"\x0f", pipe + b"\x00"),
        (b"\x11", b"\x00"),
    ]  # fmt: skip
    body = b"".join(
        struct.pack("<H", len(lhs)) + lhs + struct.pack("<H", len(rhs)) + rhs for lhs, rhs in floors
    )
    return struct.pack("<H", len(floors)) + body


class NdrWriter:
    """Writes NDR in one byte order, with the padding NDR puts before each value."""

    def __init__(self, order: str) -> None:
        self.order = order
        self.buf = bytearray()

    def align(self, n: int) -> None:
        self.buf += b"\x00" * (-len(self.buf) % n)

    def u32(self, value: int) -> None:
        self.align(4)
        self.buf += struct.pack(self.order + "I", value)

    def uuid(self, value: uuid.UUID) -> None:
        self.align(4)
        self.buf += uuid_bytes(value, self.order)

    def raw(self, data: bytes) -> None:
        self.buf += data


def lookup_reply(
    entries: list[tuple[bytes | None, bytes]],
    *,
    order: str = "<",
    status: int = epmap.EPT_S_NOT_REGISTERED,
    handle: tuple[int, uuid.UUID] = (0, uuid.UUID(int=0)),
    max_ents: int = epmap.MAX_ENTS,
) -> bytes:
    """An ept_lookup reply's stub: entry_handle, num_ents, entries[] (towers deferred), status."""
    w = NdrWriter(order)
    w.u32(handle[0])
    w.uuid(handle[1])
    w.u32(len(entries))
    w.u32(max_ents)  # max_count: size_is(max_ents)
    w.u32(0)  # offset
    w.u32(len(entries))  # actual_count: length_is(num_ents)
    for n, (tower, annotation) in enumerate(entries):
        w.uuid(uuid.UUID(int=0))
        w.u32(n + 1 if tower is not None else 0)
        w.u32(0)
        w.u32(len(annotation) + 1)
        w.raw(annotation + b"\x00")
    for tower, _annotation in entries:
        if tower is not None:
            w.u32(len(tower))  # max_count of the conformant twr_t
            w.u32(len(tower))  # tower_length
            w.raw(tower)
    w.u32(status)
    return bytes(w.buf)


def packet(ptype: int, body: bytes, call_id: int, order: str = "<", flags: int = 3) -> bytes:
    drep = b"\x10\x00\x00\x00" if order == "<" else b"\x00\x00\x00\x00"
    header = bytes([5, 0, ptype, flags]) + drep
    return header + struct.pack(order + "HHI", 16 + len(body), 0, call_id) + body


def bind_ack(call_id: int, order: str = "<", result: int = 0) -> bytes:
    body = struct.pack(order + "HHI", 5840, 5840, 0x1234)
    body += struct.pack(order + "H", 4) + b"135\x00" + b"\x00\x00"  # sec_addr, pad to 4
    body += bytes([1, 0, 0, 0]) + struct.pack(order + "HH", result, 0)
    body += uuid_bytes(pdu.NDR.uuid, order) + struct.pack(order + "HH", 2, 0)
    return packet(pdu.PType.BIND_ACK, body, call_id, order)


def response(stub: bytes, call_id: int, order: str = "<", flags: int = 3) -> bytes:
    return packet(
        pdu.PType.RESPONSE, struct.pack(order + "IHBB", len(stub), 0, 0, 0) + stub, call_id, order,
        flags,
    )  # fmt: skip


def read_pdu(sock: socket.socket) -> tuple[pdu.Header, bytes]:
    head = b""
    while len(head) < 16:
        chunk = sock.recv(16 - len(head))
        if not chunk:
            raise EOFError
        head += chunk
    header = pdu.parse_header(head)
    data = head
    while len(data) < header.frag_length:
        chunk = sock.recv(header.frag_length - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return header, data


def _serve(name: str, behaviour: Callable[[socket.socket], None]) -> background.ServerHandle:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                behaviour(self.request)
            except (EOFError, OSError):
                pass  # the client went away: the end of this conversation

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    return background.serve(name, lambda address: Server(address, Handler))


@pytest.fixture
def serve():
    """``serve(name, behaviour)``: a TCP peer that runs ``behaviour(sock)`` per connection;
    stopped after the test."""
    started: list[background.ServerHandle] = []

    def start(name: str, behaviour: Callable[[socket.socket], None]) -> background.ServerHandle:
        started.append(_serve(name, behaviour))
        return started[-1]

    yield start
    for handle in started:
        handle.stop()


def fake_epm(
    replies: list[bytes], order: str = "<", seen: list[bytes] | None = None
) -> Callable[[socket.socket], None]:
    """An endpoint mapper that accepts the bind, then answers each request with the next reply
    (a stub; or a whole PDU, which starts with version 5 and goes as it is)."""

    def behaviour(sock: socket.socket) -> None:
        header, _ = read_pdu(sock)
        sock.sendall(bind_ack(header.call_id, order))
        for reply in replies:
            header, data = read_pdu(sock)
            if seen is not None:
                seen.append(data)
            sock.sendall(reply if reply[:1] == b"\x05" else response(reply, header.call_id, order))
        sock.recv(1)

    return behaviour


# --------------------------------------------------------------------------- the bind PDU


def test_the_bind_pdu_to_the_endpoint_mapper_is_the_72_bytes_the_spec_lays_out():
    data = pdu.build_bind(pdu.EPM, call_id=1)
    assert len(data) == 72
    assert data[:16] == bytes.fromhex("05000b03 10000000 4800 0000 01000000")
    assert data[16:28] == bytes.fromhex("d016 d016 00000000 01000000")  # 5840, 5840, group 0
    assert data[28:32] == bytes.fromhex("0000 01 00")  # context 0, one transfer syntax
    assert data[32:48] == bytes.fromhex(
        "0883afe11f5dc91191a408002b14a0fa"
    )  # epm, NDR's UUID layout
    assert data[48:52] == bytes.fromhex("03000000")  # v3.0
    assert data[52:68] == bytes.fromhex("045d888aeb1cc9119fe808002b104860")  # NDR
    assert data[68:72] == bytes.fromhex("02000000")  # v2.0


def test_explain_shows_every_byte_of_the_bind_pdu_once_with_its_field():
    fields = pdu.bind_fields(pdu.EPM)
    text = pdu.explain(fields)
    hex_in_text = "".join(line[6:29].replace(" ", "") for line in text.splitlines())
    assert bytes.fromhex(hex_in_text) == pdu.build_bind(pdu.EPM)
    assert "abstract_syntax.uuid" in text and "e1af8308-5d1f-11c9-91a4-08002b14a0fa" in text
    assert "drep" in text and "little-endian" in text


def test_the_ept_lookup_arguments_are_40_bytes_with_a_null_entry_handle_first():
    stub = b"".join(f.raw for f in epmap.lookup_stub_fields())
    assert len(stub) == 40
    assert stub[16:36] == b"\x00" * 20
    assert struct.unpack("<I", stub[36:])[0] == epmap.MAX_ENTS


# --------------------------------------------------------------------------- reading


def test_a_header_in_big_endian_is_read_right():
    header = pdu.parse_header(packet(pdu.PType.RESPONSE, b"x" * 8, 7, order=">")[:16])
    assert header.order == ">" and header.frag_length == 24 and header.call_id == 7


@pytest.mark.parametrize(
    ("first16", "says"),
    [
        (b"HTTP/1.1 400 Bad", "not DCE/RPC"),
        (bytes.fromhex("05000c03 01000000 4800 0000 01000000"), "EBCDIC"),
        (bytes.fromhex("05000c03 10000000 0800 0000 01000000"), "shorter than the header"),
        (bytes.fromhex("05000c03 10000000 2000 ff00 01000000"), "auth_length"),
    ],
)
def test_a_header_that_is_not_dce_rpc_is_refused(first16, says):
    with pytest.raises(DecodeError, match=says):
        pdu.parse_header(first16)


def test_a_reader_never_reads_past_the_end():
    r = Reader(b"\x01\x00\x00", "<")
    with pytest.raises(DecodeError, match="needs 4 bytes, 3 left"):
        r.u32("count")


def test_a_tcp_tower_decodes_to_its_string_binding():
    tower = decode_tower(tcp_tower(LSA, 49152))
    assert tower.binding == "ncacn_ip_tcp:127.0.0.1[49152]"
    assert tower.interface == LSA and tower.transfer == pdu.NDR


def test_a_named_pipe_tower_decodes_to_its_pipe():
    tower = decode_tower(pipe_tower(WINREG, b"\\PIPE\\winreg"))
    assert tower.binding == "ncacn_np:[\\PIPE\\winreg]"


@pytest.mark.parametrize(
    ("octets", "says"),
    [
        (b"\x00\x00", "0 floors"),
        (b"\x60\xea", "60000 floors"),
        (b"\x01\x00\xff\xff\x0d", "needs 65535 bytes"),
        (tcp_tower(LSA, 135)[:-3], "needs 4 bytes"),
    ],
)
def test_a_malformed_tower_is_refused(octets, says):
    with pytest.raises(DecodeError, match=says):
        decode_tower(octets)


def test_a_lookup_reply_decodes_with_deferred_towers():
    stub = lookup_reply([(tcp_tower(LSA, 49152), b"lsarpc"), (None, b"no tower")])
    handle, entries, status = epmap.decode_lookup_reply(stub, "<")
    assert handle.is_null and status == epmap.EPT_S_NOT_REGISTERED
    assert entries[0].tower.binding == "ncacn_ip_tcp:127.0.0.1[49152]"
    assert entries[0].annotation == "lsarpc" and entries[1].tower is None


def _patched(stub: bytes, offset: int, value: int) -> bytes:
    return stub[:offset] + struct.pack("<I", value) + stub[offset + 4 :]


# Offsets in a one-entry reply: handle 0-19, num_ents 20, max_count 24, offset 28, actual 32,
# entry: object 36-51, tower pointer 52, annotation offset 56, length 60, text 64-70 "lsarpc\0",
# pad to 72, tower max_count 72, tower_length 76, tower 80...
@pytest.mark.parametrize(
    ("offset", "value", "says"),
    [
        (20, 0xFFFFFFFF, "num_ents .* over the limit"),
        (24, 0xFFFFFFFF, "max_count .* over the limit"),
        (32, 0xFFFFFFFF, "actual_count .* over the limit"),
        (60, 1_000_000_000, "annotation length .* over the limit"),
        (72, 0xFFFFFFF0, "tower max_count .* over the limit"),
        (76, 4000, "tower_length .* over the limit"),
        (28, 5, "offset 0"),
    ],
)
def test_absurd_counts_and_lengths_in_a_lookup_reply_are_refused(offset, value, says):
    stub = lookup_reply([(tcp_tower(LSA, 49152), b"lsarpc")])
    with pytest.raises(DecodeError, match=says):
        epmap.decode_lookup_reply(_patched(stub, offset, value), "<")


def test_a_tower_longer_than_the_reply_is_refused():
    stub = lookup_reply([(tcp_tower(LSA, 49152), b"lsarpc")])
    stub = _patched(_patched(stub, 72, 4000), 76, 4000)
    with pytest.raises(DecodeError, match="needs 4000 bytes"):
        epmap.decode_lookup_reply(stub, "<")


def test_control_characters_from_the_peer_never_reach_the_terminal():
    stub = lookup_reply([(pipe_tower(LSA, b"\\pipe\\\x1b[2Jx"), b"evil\x1b]0;title\x07")])
    _, entries, _ = epmap.decode_lookup_reply(stub, "<")
    line = epmap.describe(entries[0])
    assert "\x1b" not in line and "\x07" not in line and "evil?]0;title?" in line


# --------------------------------------------------------------------------- against fake peers


def test_a_fake_endpoint_mapper_is_walked_with_the_entry_handle_it_gives(serve):
    handle = (0, uuid.UUID("11111111-2222-3333-4444-555555555555"))
    first = lookup_reply([(tcp_tower(LSA, 49152), b"lsarpc")], status=0, handle=handle)
    last = lookup_reply([(tcp_tower(WINREG, 49153), b"winreg")])
    seen: list[bytes] = []
    server = serve("fake-epm", fake_epm([first, last], seen=seen))
    entries = epmap.lookup(*server.address, timeout=5)
    assert [e.tower.binding for e in entries] == [
        "ncacn_ip_tcp:127.0.0.1[49152]",
        "ncacn_ip_tcp:127.0.0.1[49153]",
    ]
    assert [e.interface for e in entries] == [LSA, WINREG]
    # the second request carries the handle the first reply gave (24 = request header size)
    assert seen[0][24 + 16 : 24 + 36] == b"\x00" * 20
    assert seen[1][24 + 16 : 24 + 36] == b"\x00" * 4 + handle[1].bytes_le
    assert {p[2] for p in (s[:16] for s in seen)} == {pdu.PType.REQUEST}
    assert {struct.unpack("<H", s[22:24])[0] for s in seen} == {epmap.EPT_LOOKUP}


def test_receiver_makes_right_a_big_endian_endpoint_mapper_reads_the_same(serve):
    reply = lookup_reply([(tcp_tower(LSA, 49152), b"lsarpc")], order=">")
    server = serve("fake-epm-be", fake_epm([reply], order=">"))
    entries = epmap.lookup(*server.address, timeout=5)
    assert [(e.interface, e.tower.binding, e.annotation) for e in entries] == [
        (LSA, "ncacn_ip_tcp:127.0.0.1[49152]", "lsarpc")
    ]


def test_a_reply_in_several_fragments_is_joined(serve):
    stub = lookup_reply([(tcp_tower(LSA, 49152), b"lsarpc")])

    def behaviour(sock: socket.socket) -> None:
        header, _ = read_pdu(sock)
        sock.sendall(bind_ack(header.call_id))
        header, _ = read_pdu(sock)
        cut = 30
        sock.sendall(response(stub[:cut], header.call_id, flags=pdu.PFC_FIRST_FRAG))
        sock.sendall(response(stub[cut:], header.call_id, flags=pdu.PFC_LAST_FRAG))
        sock.recv(1)

    server = serve("fake-epm-frag", behaviour)
    assert [e.annotation for e in epmap.lookup(*server.address, timeout=5)] == ["lsarpc"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_closed_port_is_a_one_line_error_at_once():
    port = _closed_port()
    start = time.monotonic()
    with pytest.raises(DceRpcError, match=f"nothing listens on 127.0.0.1:{port}"):
        epmap.lookup("127.0.0.1", port, timeout=5)
    assert time.monotonic() - start < 1


def test_an_http_server_is_not_dce_rpc(serve):
    def http(sock: socket.socket) -> None:
        sock.recv(1024)
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    server = serve("fake-http", http)
    with pytest.raises(NotDceRpcError, match=r"not a DCE/RPC server: it answered b'HTTP/1.1 400"):
        epmap.lookup(*server.address, timeout=5)


def test_a_peer_that_closes_at_once_is_not_dce_rpc(serve):
    server = serve("fake-closer", lambda sock: None)
    with pytest.raises(NotDceRpcError, match="closed the connection without answering"):
        epmap.lookup(*server.address, timeout=5)


def test_a_peer_that_stalls_is_given_up_on_at_the_deadline(serve):
    server = serve(
        "fake-staller", lambda sock: sock.recv(1) and sock.recv(1 << 16) and sock.recv(1)
    )
    start = time.monotonic()
    with pytest.raises(DceRpcError, match="did not answer in time"):
        epmap.lookup(*server.address, timeout=0.5)
    assert time.monotonic() - start < 2


def test_a_peer_that_drips_bytes_cannot_hold_the_walk_past_the_deadline(serve):
    stop = threading.Event()

    def drip(sock: socket.socket) -> None:
        read_pdu(sock)
        for byte in bind_ack(1):
            sock.sendall(bytes([byte]))
            if stop.wait(0.05):
                return

    server = serve("fake-drip", drip)
    start = time.monotonic()
    try:
        with pytest.raises(DceRpcError, match="did not answer in time"):
            epmap.lookup(*server.address, timeout=0.5)
        assert time.monotonic() - start < 2
    finally:
        stop.set()


def test_a_header_that_promises_more_than_it_sends_times_out(serve):
    def liar(sock: socket.socket) -> None:
        header, _ = read_pdu(sock)
        sock.sendall(bind_ack(header.call_id)[:8] + struct.pack("<HHI", 65535, 0, 1) + b"abcd")
        sock.recv(1)

    server = serve("fake-liar", liar)
    with pytest.raises(DceRpcError, match="stalls after 20 bytes"):
        epmap.lookup(*server.address, timeout=0.5)


def test_absurd_lengths_from_a_live_peer_are_one_line_errors(serve):
    reply = _patched(lookup_reply([(tcp_tower(LSA, 49152), b"lsarpc")]), 20, 0xFFFFFFFF)
    server = serve("fake-absurd", fake_epm([reply]))
    with pytest.raises(DceRpcError, match="malformed ept_lookup reply: num_ents"):
        epmap.lookup(*server.address, timeout=5)


def test_a_fault_is_reported_with_its_name(serve):
    fault = packet(pdu.PType.FAULT, struct.pack("<IHBBII", 32, 0, 0, 0, 0x1C010002, 0), 2)
    server = serve("fake-fault", fake_epm([fault]))
    with pytest.raises(RemoteFault, match="0x1c010002, nca_s_op_rng_error") as caught:
        epmap.lookup(*server.address, timeout=5)
    assert caught.value.status == 0x1C010002


def test_a_bind_refused_is_reported(serve):
    def nak(sock: socket.socket) -> None:
        header, _ = read_pdu(sock)
        sock.sendall(packet(pdu.PType.BIND_NAK, struct.pack("<H", 4) + b"\x00" * 2, 1))
        sock.recv(1)

    server = serve("fake-nak", nak)
    with pytest.raises(DceRpcError, match="refused the bind: 4, protocol version not supported"):
        epmap.lookup(*server.address, timeout=5)


def test_a_bind_ack_that_rejects_the_interface_is_reported(serve):
    def reject(sock: socket.socket) -> None:
        header, _ = read_pdu(sock)
        sock.sendall(bind_ack(header.call_id, result=2))
        sock.recv(1)

    server = serve("fake-reject", reject)
    with pytest.raises(DceRpcError, match=r"does not serve e1af8308.* \(provider rejection"):
        epmap.lookup(*server.address, timeout=5)


def test_a_reply_to_another_call_is_refused(serve):
    stub = lookup_reply([])

    def wrong(sock: socket.socket) -> None:
        header, _ = read_pdu(sock)
        sock.sendall(bind_ack(header.call_id))
        header, _ = read_pdu(sock)
        sock.sendall(response(stub, header.call_id + 5))
        sock.recv(1)

    server = serve("fake-wrong-call", wrong)
    with pytest.raises(DceRpcError, match="answered call 7, not 2"):
        epmap.lookup(*server.address, timeout=5)


def test_an_empty_map_is_an_empty_list(serve):
    server = serve("fake-empty", fake_epm([lookup_reply([])]))
    assert epmap.lookup(*server.address, timeout=5) == []


# --------------------------------------------------------------------------- for people


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("127.0.0.1", ("127.0.0.1", 135)),
        ("host.example:1135", ("host.example", 1135)),
        ("[::1]:135", ("::1", 135)),
        ("::1", ("::1", 135)),
    ],
)
def test_a_target_is_host_and_port_135_unless_given(text, target):
    assert epmap.parse_target(text) == target


@pytest.mark.parametrize("text", ["", "host:0", "host:70000", "host:http"])
def test_a_bad_target_is_refused(text):
    with pytest.raises(ValueError):
        epmap.parse_target(text)


def test_show_on_a_closed_port_says_nothing_listens_and_how_to_see_a_real_one():
    out = io.StringIO()
    assert epmap.show(f"127.0.0.1:{_closed_port()}", out=out) is False
    text = out.getvalue()
    assert "nothing listens on 127.0.0.1:" in text
    assert "on Windows" in text and "samba-dcerpcd" in text


def test_show_lists_a_map_one_line_an_entry(serve):
    reply = lookup_reply([(tcp_tower(LSA, 49152), b"lsarpc"), (tcp_tower(WINREG, 7), b"winreg")])
    server = serve("fake-epm-show", fake_epm([reply]))
    out = io.StringIO()
    assert epmap.show(f"127.0.0.1:{server.port}", out=out) is True
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("12345778-1234-abcd-ef00-0123456789ab v0.0")
    assert "ncacn_ip_tcp:127.0.0.1[49152]" in lines[0] and "(LSA, " in lines[0]
    assert lines[-1] == f"2 endpoints registered at 127.0.0.1:{server.port}"


def test_the_command_on_a_closed_port_prints_one_line_and_exits_1_quickly():
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "rpclab.cli", "epmap", f"127.0.0.1:{_closed_port()}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "nothing listens on" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - start < 10  # mostly Python starting


def test_the_command_on_a_silent_port_gives_up_at_its_timeout(serve):
    server = serve("fake-silent", lambda sock: sock.recv(1 << 16) and sock.recv(1))
    done = subprocess.run(
        [sys.executable, "-m", "rpclab.cli", "epmap", f"127.0.0.1:{server.port}", "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1 and "did not answer in time" in done.stderr
    assert "Traceback" not in done.stderr
