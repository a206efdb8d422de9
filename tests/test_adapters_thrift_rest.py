"""The key-value store over Apache Thrift (thriftpy2) and REST/JSON (FastAPI on uvicorn), end to end
over loopback."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
import thriftpy2
from thriftpy2.thrift import TApplicationException, TClient
from thriftpy2.transport import TTransportException

from rpclab.adapters import rest, thrift
from rpclab.byhand import framing
from rpclab.kv import MAX_VALUE_LENGTH, KVStore
from rpclab.runtime import process


def _closed_by_peer(conn: socket.socket) -> bool:
    """Whether the server closed this connection (waits up to the socket's timeout)."""
    try:
        return conn.recv(100) == b""
    except ConnectionResetError:
        return True


def _assert_stopped(handle) -> None:
    assert handle.address not in (process.listening_ports() or []), "the port is still listening"
    assert not [n for n in process.thread_names() if handle.name in n], process.thread_names()


# --------------------------------------------------------------------------- Thrift


def test_kv_over_thrift():
    store = KVStore()
    with thrift.serve(store) as handle, thrift.connect(handle.address, timeout=2) as client:
        assert client.put("greeting", "héllo ✓") is None
        assert client.get("greeting") == "héllo ✓"
        assert client.increment("visits") == 1  # the IDL's default amount
        assert client.increment("visits", 41) == 42
        assert client.increment("visits", -2) == 40
        assert client.remove("greeting") is True
        assert client.remove("greeting") is False
        assert client.keys() == ["visits"]
        with pytest.raises(thrift.NotFound) as caught:
            client.get("greeting")
        assert caught.value.key == "greeting" and "no such key" in caught.value.message
        with pytest.raises(thrift.InvalidArgument, match="must not be empty"):
            client.put("", "x")
        client.put("word", "abc")
        with pytest.raises(thrift.InvalidArgument, match="not an integer"):
            client.increment("word")
        with pytest.raises(thrift.InvalidArgument, match="i64"):
            client.increment("visits", 2**63 - 1)
        assert client.get("visits") == "40"  # the refused increment left no trace
    assert store.get("visits") == "40"


def test_thrift_refuses_an_oversized_message_and_keeps_serving():
    with thrift.serve(KVStore(), max_message_size=1024) as handle:
        with socket.create_connection(handle.address, timeout=2) as conn:
            conn.sendall(
                struct.pack(">I", 2**31 - 1)
            )  # declares 2 GiB: refused before anything is read
            assert _closed_by_peer(conn)
        with thrift.connect(handle.address, timeout=2) as client:
            with pytest.raises((TTransportException, ConnectionError)):
                client.put(
                    "big", "x" * 2000
                )  # over this server's 1 KiB limit: the connection is closed
        with thrift.connect(handle.address, timeout=2) as client:
            client.put("small", "x" * 500)
            assert client.get("small") == "x" * 500


def test_thrift_closes_a_connection_that_sends_a_malformed_message():
    with thrift.serve(KVStore()) as handle:
        with socket.create_connection(handle.address, timeout=2) as conn:
            conn.sendall(framing.encode_frame(b"\x00garbage, not thrift"))
            assert _closed_by_peer(conn)
        # A well-formed call header whose key claims to be 2 GiB long, in a 40-byte message.
        header = (
            struct.pack(">iI", -2147418112 | 1, 3) + b"get" + struct.pack(">i", 0)
        )  # version 1, CALL, "get", seqid 0
        lying_key = (
            struct.pack(">bhi", 11, 1, 2**31 - 1) + b"abc"
        )  # field 1, STRING, length 2**31-1
        with socket.create_connection(handle.address, timeout=2) as conn:
            conn.sendall(framing.encode_frame(header + lying_key))
            assert _closed_by_peer(conn)
        with thrift.connect(handle.address, timeout=2) as client:
            assert client.increment("n") == 1


def test_thrift_answers_an_unknown_method_with_an_application_exception(tmp_path):
    other_idl = tmp_path / "other.thrift"
    other_idl.write_text("service Other { string nope(1: string key) }\n")
    other = thriftpy2.load(str(other_idl), module_name="other_thrift")  # a method the server lacks
    with thrift.serve(KVStore()) as handle, thrift.connect(handle.address, timeout=2) as client:
        stranger = TClient(
            other.Other, client._iprot
        )  # the same connection, another service's client
        with pytest.raises(TApplicationException) as caught:
            stranger.nope("a")
        assert caught.value.type == TApplicationException.UNKNOWN_METHOD
        assert client.increment("n") == 1  # the connection is still in step


def test_a_stalled_thrift_client_does_not_block_others():
    with thrift.serve(KVStore()) as handle:
        with socket.create_connection(handle.address, timeout=2) as stalled:
            stalled.sendall(b"\x00\x00")  # half a frame header, then nothing
            with thrift.connect(handle.address, timeout=2) as client:
                client.put("a", "1")
                assert client.get("a") == "1"


def test_thrift_client_times_out():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        with thrift.connect(silent.getsockname(), timeout=0.2) as client:
            with pytest.raises(TimeoutError):
                client.get("a")


def test_thrift_connect_to_nothing_fails_clearly():
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        address = placeholder.getsockname()
    with pytest.raises(TTransportException, match="Could not connect"):
        thrift.connect(address, timeout=1)


# --------------------------------------------------------------------------- REST


def test_kv_over_rest():
    store = KVStore()
    with rest.serve(store) as handle, rest.connect(handle.address, timeout=2) as client:
        assert client.put("greeting", "héllo ✓") is None
        assert client.get("greeting") == "héllo ✓"
        assert client.increment("visits") == 1
        assert client.increment("visits", 41) == 42
        assert client.request("POST", "/keys/visits/increment") == (
            200,
            {"key": "visits", "value": 43},
        )  # no body: 1
        assert client.delete("greeting") is True
        assert client.delete("greeting") is False  # DELETE is idempotent: no 404 the second time
        with pytest.raises(rest.NotFound) as caught:
            client.get("greeting")
        assert isinstance(caught.value, KeyError) and caught.value.status == 404
        assert "no such key" in str(caught.value)
        client.put("a/b c?%#", "odd key")  # percent-encoded by the client
        assert client.get("a/b c?%#") == "odd key"
        assert client.keys() == ["a/b c?%#", "visits"]
    assert store.get("visits") == "43"


def test_rest_rejects_bad_input_with_4xx():
    store = KVStore()
    with rest.serve(store) as handle, rest.connect(handle.address, timeout=2) as client:
        for amount in (1.5, "3", True, None):
            status, body = client.request("POST", "/keys/n/increment", {"amount": amount})
            assert status == 422, (amount, body)
            assert body["detail"][0]["loc"] == ["body", "amount"]
        status, body = client.request("PUT", "/keys/k", {"value": 7})
        assert status == 422
        status, _ = client.request("PUT", "/keys/" + "k" * 300, {"value": "x"})
        assert status == 422
        with pytest.raises(rest.RESTError) as caught:
            client.put("k", "x" * (MAX_VALUE_LENGTH + 1))
        assert caught.value.status == 422
        client.put("word", "abc")
        with pytest.raises(rest.RESTError) as caught:
            client.increment("word")
        assert caught.value.status == 409 and "not an integer" in caught.value.detail
        assert client.increment("n") == 1  # nothing above reached the store
    assert store.keys() == ["n", "word"]


def test_rest_refuses_an_oversized_body_and_keeps_serving():
    with rest.serve(KVStore(), max_body_size=1000) as handle:
        with socket.create_connection(handle.address, timeout=2) as conn:
            conn.sendall(
                b"PUT /keys/a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 999999999\r\n\r\n"
            )
            assert conn.recv(200).startswith(b"HTTP/1.1 413")
        with rest.connect(handle.address, timeout=2) as client:
            with pytest.raises(rest.RESTError) as caught:
                client.put("a", "x" * 2000)
            assert caught.value.status == 413
            client.put("a", "x" * 500)
            assert client.get("a") == "x" * 500


def test_rest_describes_itself_with_openapi():
    with rest.serve(KVStore()) as handle, rest.connect(handle.address, timeout=2) as client:
        status, schema = client.request("GET", "/openapi.json")
    assert status == 200 and schema["openapi"].startswith("3.")
    assert set(schema["paths"]["/keys/{key}"]) == {"get", "put", "delete"}
    increment = schema["paths"]["/keys/{key}/increment"]["post"]
    assert "409" in increment["responses"]
    assert schema["components"]["schemas"]["AmountIn"]["properties"]["amount"]["type"] == "integer"


def test_rest_client_reconnects_when_the_server_is_replaced():
    store = KVStore()
    handle = rest.serve(store, name="kv-rest-replaced")
    client = rest.connect(handle.address, timeout=2)
    try:
        assert client.increment("n") == 1  # the connection is now kept alive
        port = handle.port
        handle = rest.serve(
            store, name="kv-rest-replaced", port=port
        )  # replaces the old one, same port
        assert client.increment("n") == 2  # a POST on a fresh connection, sent exactly once
        assert client.get("n") == "2"
    finally:
        client.close()
        handle.stop()


def test_rest_listening_socket_says_tcp_so_asyncio_turns_nagle_off():
    # asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; without it
    # each response (headers, then body: two writes) waits ~40 ms for a delayed ACK.
    server = rest.UvicornServer(rest.make_app(KVStore()), ("127.0.0.1", 0))
    try:
        assert server.socket.proto == socket.IPPROTO_TCP
        assert server.server_address[1] > 0
    finally:
        server.server_close()


def test_rest_client_times_out():
    with socket.create_server(("127.0.0.1", 0)) as silent:
        with rest.connect(silent.getsockname(), timeout=0.2) as client:
            with pytest.raises(TimeoutError):
                client.get("a")


def test_rest_server_does_not_block_on_a_slow_client():
    with rest.serve(KVStore()) as handle:
        with socket.create_connection(handle.address, timeout=2) as slow:
            slow.sendall(
                b"PUT /keys/a HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{"
            )  # body never finished
            with rest.connect(handle.address, timeout=2) as client:
                client.put("b", "2")
                assert client.get("b") == "2"


# --------------------------------------------------------------------------- both


@pytest.mark.parametrize("adapter", [thrift, rest], ids=["thrift", "rest"])
def test_stop_releases_the_port_and_ends_every_thread_even_with_a_client_connected(adapter):
    threads_before = set(threading.enumerate())
    handle = adapter.serve(KVStore(), name=f"kv-{adapter.__name__.rsplit('.', 1)[-1]}-stop")
    client = adapter.connect(handle.address, timeout=2)
    try:
        client.put("a", "1")  # a kept-alive connection, open while the server stops
        assert handle.address in process.listening_ports()
        handle.stop()
        _assert_stopped(handle)
        assert set(threading.enumerate()) <= threads_before
    finally:
        client.close()
        handle.stop()


def test_thrift_and_rest_serve_one_store_together():
    store = KVStore()
    with thrift.serve(store) as t, rest.serve(store) as r:
        with thrift.connect(t.address, timeout=2) as tc, rest.connect(r.address, timeout=2) as rc:
            tc.put("shared", "from thrift")
            assert rc.get("shared") == "from thrift"
            assert rc.increment("count", 5) == 5
            assert tc.increment("count") == 6
    assert store.keys() == ["count", "shared"]
