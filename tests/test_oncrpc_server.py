"""The store over ONC RPC (rpclab.byhand.oncrpc): every procedure works from the Python client;
every wrong call gets the reply RFC 5531 asks for; every bad record closes that connection only;
and the server goes on serving a good client after each."""

from __future__ import annotations

import select
import socket
import threading

import pytest

from rpclab.byhand import framing, oncrpc
from rpclab.byhand.oncrpc import kvx
from rpclab.byhand.oncrpc.messages import (
    NULL_AUTH,
    AuthFlavor,
    AuthSys,
    Call,
    OpaqueAuth,
    decode_reply,
    encode_call,
    encode_reply,
)
from rpclab.byhand.oncrpc.xdr import Packer, XDRError
from rpclab.kv import KeyNotFound, KVStore
from rpclab.runtime import background

KV = kvx.KV_PROG


@pytest.fixture
def store():
    return KVStore()


@pytest.fixture
def server(store):
    # A long record timeout: a bad record must close the connection by itself, not by stalling.
    handle = oncrpc.serve(store, name="oncrpc-test", record_timeout=30)
    yield handle
    handle.stop()


@pytest.fixture
def raw(server):
    sock = socket.create_connection(server.address, timeout=5)
    yield sock
    sock.close()


def call_record(
    proc: int = 0,
    args: bytes = b"",
    *,
    xid: int = 42,
    prog: int = KV,
    vers: int = 1,
    cred: OpaqueAuth = NULL_AUTH,
    verf: OpaqueAuth = NULL_AUTH,
    rpcvers: int = 2,
) -> bytes:
    return encode_call(Call(xid, prog, vers, proc, cred, verf, rpcvers), args)


def exchange(sock: socket.socket, record: bytes) -> oncrpc.Reply:
    framing.send_record(sock, record)
    return decode_reply(framing.recv_record(sock, timeout=5))


def key_args(key: str) -> bytes:
    packer = Packer()
    kvx.pack_kv_key(packer, key)
    return packer.get_buffer()


def assert_closed_by_server(sock: socket.socket, within: float = 5.0) -> None:
    """The server closes the connection: a read sees the end (or a reset) within ``within`` s."""
    ready, _, _ = select.select([sock], [], [], within)
    assert ready, "the server kept the connection open"
    try:
        data = sock.recv(65536)
        while data:  # a reply it sent before closing may come first
            data = sock.recv(65536)
    except ConnectionResetError:
        pass


def assert_serving(server) -> None:  # type: ignore[no-untyped-def]
    with oncrpc.connect(server.address, timeout=5) as kv:
        kv.put("still", "serving")
        assert kv.get("still") == "serving"


# --------------------------------------------------------------------------- the store


def test_every_procedure_works_from_the_python_client(server, store):
    with oncrpc.connect(server.address, timeout=5) as kv:
        assert kv.null() is None
        kv.put("greeting", "hello")
        assert kv.get("greeting") == "hello" == store.get("greeting")
        kv.put("ключ", "значение ✓")  # strings travel as UTF-8
        assert kv.get("ключ") == "значение ✓"
        with pytest.raises(KeyNotFound):
            kv.get("missing")
        assert kv.increment("visits") == 1
        assert kv.increment("visits", 41) == 42
        assert kv.increment("visits", -50) == -8
        assert kv.keys() == ["greeting", "visits", "ключ"]
        assert kv.delete("greeting") is True
        assert kv.delete("greeting") is False
        assert kv.keys() == ["visits", "ключ"]


def test_what_the_store_refuses_comes_back_as_kv_invalid(server, store):
    with oncrpc.connect(server.address, timeout=5) as kv:
        with pytest.raises(oncrpc.InvalidArgument):
            kv.put("", "empty key")
        with pytest.raises(oncrpc.InvalidArgument):
            kv.get("")
        assert kv.delete("") is False
        kv.put("word", "abc")
        with pytest.raises(oncrpc.InvalidArgument):
            kv.increment("word")
        kv.put("big", str(2**63 - 1))
        with pytest.raises(oncrpc.InvalidArgument):
            kv.increment("big")  # the result would not fit in a hyper
        assert store.get("big") == str(2**63 - 1)  # and the store is as it was
        with pytest.raises(XDRError):
            kv.put("k" * 257, "over MAX_KEY: refused before sending")
        assert kv.get("word") == "abc"


def test_many_clients_at_once_are_all_served(server, store, run_threads):
    def client(n: int) -> None:
        with oncrpc.connect(server.address, timeout=10) as kv:
            for _ in range(25):
                kv.increment("counter")

    run_threads(client, 8)
    assert store.get("counter") == "200"


def test_a_record_in_many_small_fragments_is_put_back_together(raw, store):
    packer = Packer()
    kvx.pack_put_args(packer, "fragmented", "x" * 100)
    record = call_record(kvx.KVProc.KV_PUT, packer.get_buffer())
    raw.sendall(framing.encode_record(record, fragment_size=3))
    reply = decode_reply(framing.recv_record(raw, timeout=5))
    assert reply.ok
    assert store.get("fragmented") == "x" * 100


# --------------------------------------------------------------------------- RFC 5531's replies


def auth_sys_with_bad_body() -> OpaqueAuth:
    return OpaqueAuth(AuthFlavor.AUTH_SYS, bytes.fromhex("00000001 00000fff"))


@pytest.mark.parametrize(
    "record, status",
    [
        (call_record(rpcvers=3), "MSG_DENIED RPC_MISMATCH (low 2, high 2)"),
        (call_record(rpcvers=1), "MSG_DENIED RPC_MISMATCH (low 2, high 2)"),
        (call_record(prog=KV + 1), "MSG_ACCEPTED PROG_UNAVAIL"),
        (call_record(prog=100003), "MSG_ACCEPTED PROG_UNAVAIL"),  # NFS is not served here
        (call_record(vers=2), "MSG_ACCEPTED PROG_MISMATCH (low 1, high 1)"),
        (call_record(vers=0), "MSG_ACCEPTED PROG_MISMATCH (low 1, high 1)"),
        (call_record(proc=6), "MSG_ACCEPTED PROC_UNAVAIL"),
        (call_record(proc=2**32 - 1), "MSG_ACCEPTED PROC_UNAVAIL"),
        (call_record(1, bytes.fromhex("ffffffff")), "MSG_ACCEPTED GARBAGE_ARGS"),  # 4 GiB key
        (call_record(1, bytes.fromhex("00000101") + b"k" * 260), "MSG_ACCEPTED GARBAGE_ARGS"),
        (call_record(1, bytes.fromhex("00000005") + b"ab"), "MSG_ACCEPTED GARBAGE_ARGS"),
        (call_record(1, key_args("k") + bytes(4)), "MSG_ACCEPTED GARBAGE_ARGS"),  # extra bytes
        (call_record(1), "MSG_ACCEPTED GARBAGE_ARGS"),  # no argument at all
        (
            call_record(2, key_args("k") + bytes.fromhex("00010001")),
            "MSG_ACCEPTED GARBAGE_ARGS",
        ),  # a value over MAX_VALUE
        (call_record(3, bytes.fromhex("00000002 ff fe 00 00")), "MSG_ACCEPTED GARBAGE_ARGS"),
        (call_record(0, bytes(4)), "MSG_ACCEPTED GARBAGE_ARGS"),  # KV_NULL takes nothing
        (
            call_record(cred=AuthSys(1, "box", 1000, 1000, (4, 27)).to_auth()),
            "MSG_ACCEPTED SUCCESS",
        ),
        (call_record(cred=OpaqueAuth(AuthFlavor.AUTH_NONE, b"ignored")), "MSG_ACCEPTED SUCCESS"),
        (
            call_record(cred=OpaqueAuth(AuthFlavor.AUTH_SHORT, b"1234")),
            "MSG_DENIED AUTH_ERROR AUTH_REJECTEDCRED",
        ),
        (
            call_record(cred=OpaqueAuth(AuthFlavor.AUTH_DH, b"1234")),
            "MSG_DENIED AUTH_ERROR AUTH_REJECTEDCRED",
        ),
        (
            call_record(cred=OpaqueAuth(AuthFlavor.RPCSEC_GSS, b"1234")),
            "MSG_DENIED AUTH_ERROR AUTH_REJECTEDCRED",
        ),
        (call_record(cred=OpaqueAuth(99)), "MSG_DENIED AUTH_ERROR AUTH_REJECTEDCRED"),
        (call_record(cred=auth_sys_with_bad_body()), "MSG_DENIED AUTH_ERROR AUTH_BADCRED"),
        (
            call_record(verf=OpaqueAuth(AuthFlavor.AUTH_SYS, bytes(20))),
            "MSG_DENIED AUTH_ERROR AUTH_BADVERF",
        ),
        (
            call_record()[:-8] + bytes.fromhex("00000000 00000191") + bytes(404),
            "MSG_DENIED AUTH_ERROR AUTH_BADVERF",
        ),  # a 401-byte verifier
    ],
    ids=[
        "rpc-version-3",
        "rpc-version-1",
        "another-program",
        "nfs",
        "version-2",
        "version-0",
        "procedure-6",
        "procedure-max",
        "key-4GiB",
        "key-over-MAX_KEY",
        "key-cut-short",
        "trailing-bytes",
        "no-arguments",
        "value-over-MAX_VALUE",
        "key-not-utf8",
        "null-with-arguments",
        "auth-sys",
        "auth-none-with-body",
        "auth-short",
        "auth-dh",
        "rpcsec-gss",
        "flavor-99",
        "auth-sys-malformed",
        "verifier-not-none",
        "verifier-401-bytes",
    ],
)
def test_each_wrong_call_gets_the_rfc_reply_and_the_connection_goes_on(raw, record, status):
    reply = exchange(raw, record)
    assert reply.xid == 42
    assert reply.status == status
    assert exchange(raw, call_record(xid=43)).status == "MSG_ACCEPTED SUCCESS"  # same connection


def test_a_rejected_call_did_not_run(raw, store):
    packer = Packer()
    kvx.pack_put_args(packer, "k", "v")
    reply = exchange(raw, call_record(2, packer.get_buffer(), cred=OpaqueAuth(99)))
    assert reply.status == "MSG_DENIED AUTH_ERROR AUTH_REJECTEDCRED"
    reply = exchange(raw, call_record(2, packer.get_buffer(), vers=2))
    assert reply.status == "MSG_ACCEPTED PROG_MISMATCH (low 1, high 1)"
    assert "k" not in store


def test_the_python_client_raises_rpc_error_with_the_rfc_status(server):
    with oncrpc.Client(server.address, KV, 1, timeout=5) as client:
        client.ping()
        with pytest.raises(oncrpc.RPCError) as info:
            client.call(0, vers=9)
        assert info.value.status == "MSG_ACCEPTED PROG_MISMATCH (low 1, high 1)"
        assert info.value.reply.mismatch == (1, 1)
        with pytest.raises(oncrpc.RPCError, match="PROC_UNAVAIL"):
            client.call(17)
        client.ping()  # the connection is still good


# --------------------------------------------------------------------------- bad records


def fragment(size: int, last: bool = True) -> bytes:
    return ((framing.LAST_FRAGMENT if last else 0) | size).to_bytes(4, "big")


BAD_STREAMS = {
    "http-request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # "GET " reads as a 1.2 GB fragment
    "tls-hello": bytes.fromhex("16030100a5010000a10303") + bytes(100),
    "fragment-2GiB": fragment(0x7FFF_FFFF) + b"tiny",
    "fragment-over-limit": fragment(300 * 1024) + bytes(1024),
    "fragments-add-up-too-much": (fragment(200 * 1024, last=False) + bytes(200 * 1024)) * 2,
    "endless-empty-fragments": fragment(0, last=False) * 5000,
    "a-reply": fragment(24) + encode_reply(oncrpc.Reply.success(1))[:24],
    "header-cut-short": fragment(12) + bytes.fromhex("00000001 00000000 00000002"),
    "xid-only": fragment(4) + bytes(4),
    "empty-record": fragment(0),
}


@pytest.mark.parametrize("stream", BAD_STREAMS.values(), ids=BAD_STREAMS.keys())
def test_a_bad_record_closes_that_connection_and_others_are_still_served(server, raw, stream):
    bystander = oncrpc.connect(server.address, timeout=5)
    try:
        bystander.put("before", "1")
        try:
            raw.sendall(stream)
        except OSError:
            pass  # the server may close before taking everything
        assert_closed_by_server(raw)
        assert bystander.get("before") == "1"  # a connection opened before is untouched
        assert_serving(server)
    finally:
        bystander.close()


def test_a_record_cut_short_by_a_stall_is_dropped_after_the_record_timeout(store):
    handle = oncrpc.serve(store, name="oncrpc-short-wait", record_timeout=0.5)
    try:
        with socket.create_connection(handle.address, timeout=5) as stalled:
            stalled.sendall(fragment(100) + b"only part of it")
            assert_closed_by_server(stalled, within=5.0)
        assert_serving(handle)
    finally:
        handle.stop()


def test_a_stalled_client_does_not_hold_up_the_others(store):
    handle = oncrpc.serve(store, name="oncrpc-stall", record_timeout=30)
    stalled = socket.create_connection(handle.address, timeout=5)
    try:
        stalled.sendall(fragment(100) + b"part")  # holds its own thread for 30 s
        with oncrpc.connect(handle.address, timeout=2) as kv:
            kv.put("a", "b")
            assert kv.get("a") == "b"
    finally:
        stalled.close()
        handle.stop()


def test_an_idle_connection_is_closed_and_the_client_connects_again(store):
    handle = oncrpc.serve(store, name="oncrpc-idle", idle_timeout=0.2)
    try:
        with oncrpc.connect(handle.address, timeout=5) as kv:
            kv.put("k", "1")
            sock = kv.rpc._sock
            assert sock is not None
            ready, _, _ = select.select([sock], [], [], 5)  # the server closes it when idle
            assert ready and sock.recv(1) == b""
            assert kv.get("k") == "1"  # a new connection, made by the call
            assert kv.rpc._sock is not sock
    finally:
        handle.stop()


# --------------------------------------------------------------------------- the client's side


def test_a_client_given_a_bad_answer_raises_and_connects_again_for_the_next_call(store):
    listener = socket.create_server(("127.0.0.1", 0))
    real = oncrpc.serve(store, name="oncrpc-behind")
    answers = [b"not a reply at all", None]
    done = threading.Event()

    def fake() -> None:  # first connection: garbage; second: pass to the real server
        for answer in answers:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                record = framing.recv_record(conn)
                if answer is None:
                    with socket.create_connection(real.address, timeout=5) as upstream:
                        framing.send_record(upstream, record)
                        answer = framing.recv_record(upstream, timeout=5)
                framing.send_record(conn, answer)
        done.set()

    thread = threading.Thread(target=fake)
    thread.start()
    try:
        with oncrpc.connect(listener.getsockname(), timeout=5) as kv:
            with pytest.raises(oncrpc.ProtocolError):
                kv.null()
            assert kv.rpc._sock is None  # closed: a late answer cannot be taken for another's
            kv.null()
        assert done.wait(5)
    finally:
        thread.join(5)
        listener.close()
        real.stop()


# --------------------------------------------------------------------------- lifecycle


def test_serving_again_under_a_name_replaces_the_server_and_stop_leaves_nothing(store):
    first = oncrpc.serve(store, name="oncrpc-twice")
    connected = socket.create_connection(first.address, timeout=5)
    second = oncrpc.serve(store, name="oncrpc-twice")
    try:
        assert not first.running
        assert_closed_by_server(connected)  # the old server closed its connections
        with pytest.raises(OSError):
            socket.create_connection(first.address, timeout=1).close()
        assert_serving(second)
    finally:
        connected.close()
        second.stop()
    assert "oncrpc-twice" not in background.running()
    assert not [t for t in threading.enumerate() if "oncrpc-twice" in t.name]


def test_serve_checks_its_arguments(store):
    with pytest.raises(TypeError):
        oncrpc.serve({"not": "a store"})
    with pytest.raises(ValueError):
        oncrpc.serve(store, record_timeout=0)
    with pytest.raises(ValueError):
        oncrpc.connect(("127.0.0.1", 1), timeout=-1)
