"""The socket RPC as a class server: one misbehaving learner cannot break it (issue 12, items 3,
4, 5, 7, 10 and 12).

Each test names its item. A learner other than 127.0.0.1 is a socket bound to 127.0.0.2 (on
Linux, all of 127.0.0.0/8 is this machine), so per-learner limits are tested from two addresses.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
import tracemalloc

import pytest

from rpclab import kv
from rpclab.byhand import framing, jsonrpc, socketrpc
from rpclab.byhand.socketrpc import DedupTable, Limits, RemoteError

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="127.0.0.2 is this machine on Linux only")


def raw_socket(address, source: str | None = None, timeout: float = 3.0) -> socket.socket:
    """A TCP connection to ``address``, from the address ``source`` if given."""
    return socket.create_connection(
        address, timeout=timeout, source_address=(source, 0) if source else None
    )


def eventually(predicate, timeout: float = 5.0) -> bool:
    """Whether ``predicate()`` comes true within ``timeout`` seconds (a server thread's doing,
    seen from outside: checked every 10 ms)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.01)
    return True


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within the socket's timeout, reading
    and dropping what comes before."""
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


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


# --------------------------------------------------------------------------- item 4


def _request(method: str, params, request_id) -> dict:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}


@linux_only
def test_item_4_two_learners_sending_the_same_ids_never_get_each_other_s_replies():
    store = kv.KVStore()
    with socketrpc.serve(store, name="test-amo-learners", at_most_once=True) as server:
        with raw_socket(server.address) as ada, raw_socket(server.address, "127.0.0.2") as bob:
            # notebook 04's stub numbers its ids from 1: both learners send id 1
            assert raw_call(ada, _request("increment", ["hits"], 1))["result"] == 1
            assert raw_call(bob, _request("put", ["bob", "here"], 1)) == {
                "jsonrpc": "2.0",
                "result": None,
                "id": 1,
            }
            # the same client id and number, from two machines: two calls
            same = _request("increment", ["hits"], "c0ffee:1")
            assert raw_call(ada, same)["result"] == 2
            assert raw_call(bob, same)["result"] == 3
    assert store.get("bob") == "here" and store.get("hits") == "3"


def test_item_4_a_numbered_id_belongs_to_its_connection_and_a_client_id_to_its_client():
    store = kv.KVStore()
    with socketrpc.serve(store, name="test-amo-callers", at_most_once=True) as server:
        with raw_socket(server.address) as first, raw_socket(server.address) as second:
            numbered = _request("increment", ["n"], 1)
            assert raw_call(first, numbered)["result"] == 1
            assert raw_call(second, numbered)["result"] == 2  # another connection, another caller
            assert raw_call(first, numbered)["result"] == 1  # a repeat on its own: replayed
            # "<client-id>:<n>", as rpclab's client sends: a retry on a new connection is known
            named = _request("increment", ["n"], "ada-laptop:1")
            assert raw_call(first, named)["result"] == 3
            assert raw_call(second, named)["result"] == 3
        assert server.dedup.replays == 2
    assert store.get("n") == "3"


def test_item_4_a_repeated_id_with_another_method_or_params_is_refused_not_replayed():
    store = kv.KVStore()
    with socketrpc.serve(store, name="test-amo-reuse", at_most_once=True) as server:
        with raw_socket(server.address) as sock:
            assert raw_call(sock, _request("increment", ["a"], "c:1"))["result"] == 1
            for other in (_request("increment", ["b"], "c:1"), _request("get", ["a"], "c:1")):
                reply = raw_call(sock, other)
                assert reply["error"]["code"] == jsonrpc.INVALID_REQUEST, reply
                assert "was used before for another call" in reply["error"]["data"]
                assert reply["id"] == "c:1"
            assert raw_call(sock, _request("increment", ["a"], "c:1"))["result"] == 1  # replayed
            # named params in another order are the same call
            by_name = _request("increment", {"key": "x", "amount": 2}, "c:2")
            assert raw_call(sock, by_name)["result"] == 2
            again = _request("increment", {"amount": 2, "key": "x"}, "c:2")
            assert raw_call(sock, again)["result"] == 2
    assert store.get("a") == "1" and store.get("x") == "2" and "b" not in store


# --------------------------------------------------------------------------- item 12


def _fill(table: DedupTable, learner: str, count: int, size: int, start: int = 0) -> None:
    for n in range(start, start + count):
        request = jsonrpc.Request("f", [n], f"{learner}:{n}")
        reply = {"jsonrpc": "2.0", "result": "x" * size, "id": request.id}
        table.once(request, lambda reply=reply: reply, caller=(learner, 1))


def test_item_12_the_at_most_once_table_is_bounded_by_bytes_as_well_as_by_count():
    table = DedupTable(max_entries=10_000, max_bytes=256 * 1024)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _fill(table, "ada", 400, 16 * 1024)  # 6.4 MB of replies, if all were kept
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert table.bytes <= 256 * 1024
    assert 10 <= len(table) < 16  # as many 16 KiB replies as 256 KiB holds, each entry counted
    assert grown < 1.5 * 256 * 1024, grown  # what it counts is what it holds
    assert "ada:399" in table and "ada:0" not in table  # the least recently used went first
    assert DedupTable().max_bytes == socketrpc.DEDUP_BYTES


def test_item_12_a_learner_who_floods_the_table_pushes_out_their_own_replies():
    table = DedupTable(max_entries=100, max_bytes=64 * 1024)
    _fill(table, "ada", 5, 10)
    _fill(table, "mallory", 1000, 10)  # over the count
    _fill(table, "mallory", 100, 2000, start=1000)  # over the bytes
    assert all(f"ada:{n}" in table for n in range(5))
    assert table.learners()["ada"][0] == 5
    assert len(table) <= 100 and table.bytes <= 64 * 1024


# --------------------------------------------------------------------------- item 5


def test_item_5_only_the_store_s_rpc_methods_are_served():
    with socketrpc.serve(kv.KVStore(), name="test-kv-methods") as server:
        with socketrpc.connect(server.address, timeout=2.0) as client:
            for name, params in [("changes_since", [10**9, None]), ("watch", [])]:
                with pytest.raises(RemoteError) as info:
                    client.call(name, *params)
                assert info.value.code == jsonrpc.METHOD_NOT_FOUND
            client.put("a", "1")
            assert client.keys() == ["a"] and client.increment("n") == 1
    assert jsonrpc.Dispatcher(kv.KVStore()).names == sorted(kv.KVStore.rpc_methods)


def test_item_5_changes_since_never_waits_forever(monkeypatch):
    monkeypatch.setattr(kv, "MAX_WAIT", 0.05)
    store = kv.KVStore()
    assert store.changes_since(10**9) == [] and store.changes_since(10**9, timeout=3600) == []
    with pytest.raises(TypeError):
        store.changes_since("1")


def test_item_5_a_stuck_handler_holds_only_its_own_thread_and_stop_releases_the_port():
    from rpclab.runtime import process
    from rpclab.runtime.background import BackgroundServerError

    entered, release = threading.Event(), threading.Event()
    received = threading.Semaphore(0)

    def stuck(value):
        entered.set()
        release.wait(60)
        return value

    server = socketrpc.serve(
        {"stuck": stuck},
        name="test-stuck",
        at_most_once=True,
        on_frame=lambda d, p: received.release() if d == "received" else None,
    )
    request = json.dumps(_request("stuck", [1], "c:1")).encode()
    try:
        with raw_socket(server.address) as first, raw_socket(server.address) as repeat:
            framing.send_frame(first, request)
            assert entered.wait(5)
            framing.send_frame(repeat, request)  # waits for the first: up to 30 s, or the stop
            assert received.acquire(timeout=5) and received.acquire(timeout=5)
            with pytest.raises(BackgroundServerError) as info:
                server.stop(2.0)  # (the repeat, released, ends well within it)
            # the first request's thread is stuck in its handler; the repeat's is not
            assert str(info.value).count("process_request_thread") == 1, info.value
            assert server.port not in [port for _, port in process.listening_ports() or []]
            with pytest.raises(ConnectionRefusedError):
                raw_socket(server.address).close()
    finally:
        release.set()


# --------------------------------------------------------------------------- item 7


@linux_only
def test_item_7_over_the_connection_limits_an_error_then_a_close_and_others_are_served():
    limits = Limits(connections_per_address=3, connections=5)
    with socketrpc.serve(kv.KVStore(), name="test-connections", limits=limits) as server:
        held = [raw_socket(server.address) for _ in range(3)]  # idle, and admitted
        with raw_socket(server.address) as refused:
            reply = json.loads(framing.recv_frame(refused))
            assert reply["error"]["code"] == socketrpc.LIMIT_EXCEEDED == -32005
            assert reply["error"]["message"] == "Limit exceeded"
            assert "127.0.0.1 already has 3 connections open" in reply["error"]["data"]
            assert closed_by_server(refused)
        with socketrpc.connect(server.address, timeout=2.0) as client:  # what rpclab's sees
            with pytest.raises(socketrpc.ConnectionLost, match="the server refused: .*-32005"):
                client.keys()
        others = [raw_socket(server.address, "127.0.0.2") for _ in range(2)]
        assert raw_call(others[0], _request("put", ["k", "v"], 1))["result"] is None
        with raw_socket(server.address, "127.0.0.3") as third:  # 5 in all: the server's limit
            reply = json.loads(framing.recv_frame(third))
            assert "the server has 5 connections open" in reply["error"]["data"], reply
        for sock in held + others:
            sock.close()
        assert eventually(lambda: server.admission.connections.open() == {})
        with socketrpc.connect(server.address, timeout=2.0) as client:
            assert client.get("k") == "v"
        assert server.admission.refused == {"127.0.0.1": 2, "127.0.0.3": 1}


@linux_only
@pytest.mark.parametrize("workers", [0, 4])
def test_item_7_calls_over_a_learner_s_limit_get_an_error_then_a_close(workers):
    entered = threading.Semaphore(0)
    release = threading.Event()

    def slow(value):
        entered.release()
        release.wait(10)
        return value

    limits = Limits(calls_per_learner=2)
    handlers = {"slow": slow, "echo": lambda x: x}
    with socketrpc.serve(handlers, name="test-calls", limits=limits, workers=workers) as server:
        busy = [raw_socket(server.address) for _ in range(2)]
        for n, sock in enumerate(busy):
            framing.send_frame(sock, json.dumps(_request("slow", [n], n)).encode())
            assert entered.acquire(timeout=5)
        with raw_socket(server.address) as third:
            reply = raw_call(third, _request("echo", ["hi"], 7))
            assert reply["error"]["code"] == -32005 and reply["id"] == 7, reply
            assert "127.0.0.1 already has 2 calls running" in reply["error"]["data"]
            assert closed_by_server(third)
        with raw_socket(server.address, "127.0.0.2") as other:  # another learner: served
            assert raw_call(other, _request("echo", ["hi"], 1))["result"] == "hi"
        release.set()
        assert [json.loads(framing.recv_frame(s))["result"] for s in busy] == [0, 1]
        assert raw_call(busy[0], _request("echo", ["again"], 2))["result"] == "again"
        for sock in busy:
            sock.close()


@pytest.mark.parametrize("fast", [True, False], ids=["one caller", "with a frame hook"])
def test_item_7_after_a_refused_call_rpclab_s_client_makes_a_new_connection_for_the_next(fast):
    entered, release = threading.Event(), threading.Event()

    def slow():
        entered.set()
        release.wait(10)
        return "slow"

    limits = Limits(calls_per_learner=1)
    handlers = {"slow": slow, "echo": lambda x: x}
    hook = None if fast else (lambda direction, payload: None)  # (the general path, reader.py)
    with socketrpc.serve(handlers, name="test-refused-call", limits=limits) as server:
        with (
            socketrpc.connect(server.address) as first,
            socketrpc.connect(server.address, on_frame=hook) as second,
        ):
            busy = threading.Thread(target=first.slow, name="test-slow-call")
            busy.start()
            assert entered.wait(5)
            with pytest.raises(RemoteError) as info:
                second.echo("refused")
            assert info.value.code == socketrpc.LIMIT_EXCEEDED
            release.set()
            busy.join(5)
            assert second.echo("next") == "next"  # not ConnectionLost: a new connection


def test_item_7_an_idle_connection_is_closed_and_a_busy_one_is_not():
    limits = Limits(idle_timeout=1.0)  # (a busy connection never waits that long, even here)
    with socketrpc.serve({"echo": lambda x: x}, name="test-idle", limits=limits) as server:
        with raw_socket(server.address) as idle, raw_socket(server.address) as busy:
            closed = threading.Event()
            watcher = threading.Thread(
                target=lambda: closed_by_server(idle) and closed.set(), name="test-idle-watch"
            )
            watcher.start()
            calls = 0
            while not closed.is_set() and calls < 100_000:  # a call at a time until idle is shut
                assert raw_call(busy, _request("echo", [calls], calls))["result"] == calls
                calls += 1
            watcher.join(5)
            assert closed.is_set()
            assert raw_call(busy, _request("echo", ["still"], 0))["result"] == "still"


def test_item_7_rpclab_s_client_notices_an_idle_close_and_reconnects_before_its_next_call(
    monkeypatch,
):
    from rpclab.byhand.socketrpc import fastcall, reader

    for module in (reader, fastcall):  # (the client checks a link unused for 1 s)
        monkeypatch.setattr(module, "IDLE_CHECK", 0.0)
    limits = Limits(connections_per_address=4, idle_timeout=0.2)
    with socketrpc.serve(kv.KVStore(), name="test-idle-client", limits=limits) as server:
        with socketrpc.connect(server.address, timeout=2.0) as client:  # retries=0
            client.put("a", "1")
            assert eventually(lambda: server.admission.connections.open() == {})
            assert client.get("a") == "1"  # not ConnectionLost: no call was lost to the close
            client.increment("n")
            assert eventually(lambda: server.admission.connections.open() == {})
            assert client.batch().send() == [] and client.increment("n") == 2


OUT_OF_DESCRIPTORS = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
from rpclab import kv
from rpclab.byhand import socketrpc
server = socketrpc.serve(kv.KVStore(), name="emfile")
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""


@pytest.mark.skipif(not LINUX, reason="reads a process's CPU time from /proc")
def test_item_7_out_of_descriptors_the_accept_loop_waits_instead_of_spinning_a_cpu():
    import os
    import subprocess

    def cpu_seconds(pid: int) -> float:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    proc = subprocess.Popen(
        [sys.executable, "-c", OUT_OF_DESCRIPTORS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    err: list[str] = []
    waiting = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:
            err.append(line)
            if "cannot accept connections" in line:
                waiting.set()

    reader = threading.Thread(target=read_stderr, name="test-emfile-stderr")
    reader.start()
    held: list[socket.socket] = []
    try:
        port = int(proc.stdout.readline())
        for _ in range(60):  # more than its 48 descriptors: the last ones wait in the backlog
            held.append(raw_socket(("127.0.0.1", port)))
        waiting.wait(10)  # it says so when it starts waiting
        start = cpu_seconds(proc.pid)
        threading.Event().wait(1.0)  # a second of the accept loop, out of descriptors
        assert cpu_seconds(proc.pid) - start < 0.3
        assert waiting.is_set(), "".join(err)
        for sock in held[:30]:
            sock.close()
        with raw_socket(("127.0.0.1", port)) as late:  # accepted once descriptors free up
            assert raw_call(late, _request("keys", [], 1))["result"] == []
    finally:
        for sock in held:
            sock.close()
        proc.stdin.close()
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join(10)
    assert proc.returncode == 0, "".join(err)
    assert "Traceback" not in "".join(err), "".join(err)


# --------------------------------------------------------------------------- item 10


@pytest.mark.parametrize("workers", [0, 2])
def test_item_10_a_reply_the_peer_does_not_take_whole_ends_its_connection(workers):
    gave_up = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record):
            if "did not go out whole" in record.getMessage():
                gave_up.set()

    logger = logging.getLogger("rpclab.byhand.socketrpc")
    handler, level = Seen(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    size = 24 * 1024 * 1024  # more than the kernel buffers both ends: sending it must wait
    handlers = {"big": lambda n: "x" * n, "echo": lambda x: x}
    try:
        with socketrpc.serve(
            handlers,
            name="test-half-reply",
            workers=workers,
            frame_timeout=0.3,
            max_frame_size=2 * size,
        ) as server:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(5.0)
            sock.connect(server.address)
            with sock:
                framing.send_frame(sock, json.dumps(_request("big", [size], 1)).encode())
                gave_up.wait(10)  # the server's send timeout passes while nothing is read (it logs)
                try:
                    framing.send_frame(sock, json.dumps(_request("echo", ["after"], 2)).encode())
                except OSError:
                    pass  # already closed
                got = bytearray()
                try:
                    while chunk := sock.recv(1 << 20):
                        got += chunk
                except ConnectionResetError:
                    pass
                except TimeoutError:
                    pytest.fail(f"the connection is still open after {len(got)} bytes")
            assert len(got) < 4 + size  # the reply did not go out whole ...
            assert b'"id":2' not in got  # ... and no frame followed part of one
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
