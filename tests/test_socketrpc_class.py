"""The socket RPC as a class server: one misbehaving learner cannot break it (issue 12, items 3,
4, 5, 7, 10 and 12).

Each test names its item. A learner other than 127.0.0.1 is a socket bound to 127.0.0.2 (on
Linux, all of 127.0.0.0/8 is this machine), so per-learner limits are tested from two addresses.
"""

from __future__ import annotations

import json
import socket
import sys
import threading

import pytest

from rpclab import kv
from rpclab.byhand import framing, jsonrpc, socketrpc

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="127.0.0.2 is this machine on Linux only")


def raw_socket(address, source: str | None = None, timeout: float = 3.0) -> socket.socket:
    """A TCP connection to ``address``, from the address ``source`` if given."""
    return socket.create_connection(
        address, timeout=timeout, source_address=(source, 0) if source else None
    )


def raw_call(sock: socket.socket, message: dict | bytes) -> dict:
    payload = message if isinstance(message, bytes) else json.dumps(message).encode()
    framing.send_frame(sock, payload)
    return json.loads(framing.recv_frame(sock))


# --------------------------------------------------------------------------- item 3


LONG_ID = 1234567890123456789  # 19 digits: decode takes the standard library's exact path


@pytest.mark.parametrize(
    "frame",
    [
        # a lone surrogate in params, with a 19-digit id (the standard library's path)
        b'{"jsonrpc":"2.0","method":"put","params":["\\ud800","v"],"id":%d}' % LONG_ID,
        # ... and without one (orjson's path)
        b'{"jsonrpc":"2.0","method":"put","params":["\\ud800","v"],"id":1}',
        # a low surrogate alone, a high one before an ordinary letter
        b'{"jsonrpc":"2.0","method":"put","params":["\\udc00","v"],"id":%d}' % LONG_ID,
        b'{"jsonrpc":"2.0","method":"put","params":["\\uD800A","v"],"id":%d}' % LONG_ID,
    ],
)
def test_item_3_a_lone_surrogate_is_refused_at_decode_and_the_store_stays_whole(frame):
    store = kv.KVStore()
    with socketrpc.serve(store, name="test-surrogate") as server:
        with raw_socket(server.address) as sock:
            reply = raw_call(sock, frame)
        assert reply["error"]["code"] == jsonrpc.PARSE_ERROR, reply
        assert "lone surrogate" in reply["error"]["data"], reply
        assert store.keys() == []
        with socketrpc.connect(server.address) as other:  # everyone else: keys() still works
            other.put("fine", "yes")
            assert other.keys() == ["fine"]


@pytest.mark.parametrize(
    "data",
    [
        b'{"jsonrpc":"2.0","method":"keys","id":"\\ud800 %d"}' % LONG_ID,
        b'{"jsonrpc":"2.0","method":"keys","id":"\\ud800"}',
        b'[{"jsonrpc":"2.0","method":"keys","id":"\\udfff"}, %d]' % LONG_ID,
    ],
)
def test_item_3_a_lone_surrogate_in_the_id_gets_a_parse_error_and_handle_does_not_raise(data):
    reply = json.loads(jsonrpc.Dispatcher(kv.KVStore()).handle(data))
    assert reply["error"]["code"] == jsonrpc.PARSE_ERROR and reply["id"] is None


def test_item_3_a_surrogate_pair_is_one_character_and_is_kept():
    emoji = b'"\\ud83d\\ude00 %d"' % LONG_ID
    assert jsonrpc.decode(emoji) == f"\U0001f600 {LONG_ID}"
    assert jsonrpc.decode(b'["\\ud83d\\ude00", 1]') == ["\U0001f600", 1]
    assert jsonrpc.decode(b'["\\\\ud800", %d]' % LONG_ID) == ["\\ud800", LONG_ID]  # no escape


def test_item_3_the_store_refuses_what_no_client_could_read():
    store = kv.KVStore()
    for key, value in [("\ud800", "v"), ("k", "a\udfffb")]:
        with pytest.raises(ValueError, match="lone surrogate"):
            store.put(key, value)
    with pytest.raises(ValueError, match="lone surrogate"):
        store.increment("\ud800")
    assert store.keys() == [] and store.version == 0


def test_item_3_the_client_refuses_to_send_a_lone_surrogate_and_its_connection_goes_on():
    with socketrpc.serve(kv.KVStore(), name="test-surrogate-client") as server:
        with socketrpc.connect(server.address) as client:
            client.put("ok", "fine")
            for bad in (lambda: client.delete("\ud800"), lambda: client.put("k", "\udc00")):
                with pytest.raises(ValueError, match="lone surrogate"):
                    bad()
            assert client.keys() == ["ok"]  # nothing was sent; the connection is as it was


def test_item_3_a_reply_holding_a_lone_surrogate_is_reported_not_decoded():
    """A server that is not rpclab's may send one (json.dumps escapes it as \\ud800)."""
    reply = b'{"jsonrpc":"2.0","result":["\\ud800"],"id":"%s"}'

    def answer(sock: socket.socket) -> None:
        request = json.loads(framing.recv_frame(sock))
        framing.send_frame(sock, reply % request["id"].encode())

    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(
            target=lambda: answer(listener.accept()[0]), name="test-lenient-server"
        )
        thread.start()
        with socketrpc.connect(listener.getsockname()[:2], timeout=3.0) as client:
            with pytest.raises(socketrpc.ConnectionLost, match="lone surrogate"):
                client.keys()
        thread.join(5)
