"""rpclab.byhand.socketrpc: the hand-built RPC over TCP, as notebooks 04-05 use it."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from rpclab import kv
from rpclab.byhand import framing, jsonrpc, socketrpc
from rpclab.byhand.socketrpc import CallTimeout, ConnectionLost, DedupTable, RemoteError
from rpclab.runtime import process


def subtract(minuend, subtrahend):
    return minuend - subtrahend


@pytest.fixture
def server():
    handle = socketrpc.serve(
        {
            "subtract": subtract,
            "echo": lambda x: x,
            "sum": lambda *n: sum(n),
            "close": lambda: "remote close",
            "call": lambda: "remote call",
        },
        name="test-rpc",
    )
    yield handle
    handle.stop()


@pytest.fixture
def client(server):
    c = socketrpc.connect(server.address, timeout=2.0)
    yield c
    c.close()


def raw_call(sock: socket.socket, message) -> dict | list | None:
    framing.send_frame(sock, json.dumps(message).encode())
    return json.loads(framing.recv_frame(sock))


def raw_socket(address) -> socket.socket:
    sock = socket.create_connection(address, timeout=3.0)
    return sock


class Gate:
    """A handler that blocks until released: a deliberately slow call, without sleeping."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.runs = 0
        self.lock = threading.Lock()
        self.ran = threading.Condition(self.lock)

    def __call__(self, value):
        with self.lock:
            self.runs += 1
            self.ran.notify_all()
        self.entered.set()
        self.release.wait(5.0)
        return value

    def wait_for_runs(self, count, timeout=2.0):
        with self.lock:
            return self.ran.wait_for(lambda: self.runs >= count, timeout)


# --------------------------------------------------------------------------- the contract


def test_the_design_contract(server, client):
    assert server.address == (server.host, server.port)
    assert server.host == "127.0.0.1" and server.port > 0
    assert client.subtract(42, 23) == 19
    assert client.subtract(minuend=42, subtrahend=23) == 19
    with pytest.raises(RemoteError) as info:
        client.divide(1, 0)
    assert (info.value.code, info.value.message) == (-32601, "Method not found")
    assert info.value.data == "no method 'divide'"


def test_serving_the_kv_store_object(client):
    store = socketrpc.serve(kv.KVStore(), name="test-kv")
    try:
        with socketrpc.connect(store.address) as c:
            assert c.put("a", "1") is None
            assert c.get("a") == "1"
            assert c.increment("a", 41) == 42
            assert c.increment(key="b") == 1
            assert c.keys() == ["a", "b"]
            with pytest.raises(RemoteError) as info:
                c.get("missing")
            assert info.value.code == jsonrpc.APPLICATION_ERROR
            assert info.value.data == {"type": "KeyNotFound", "message": "no such key: 'missing'"}
            assert str(info.value) == "[1] Application error: KeyNotFound: no such key: 'missing'"
            with pytest.raises(RemoteError) as info:
                c.put("only-key")
            assert info.value.code == jsonrpc.INVALID_PARAMS
            with pytest.raises(RemoteError) as info:
                c.version()  # a property, not a method
            assert info.value.code == jsonrpc.METHOD_NOT_FOUND
    finally:
        store.stop()


def test_explicit_call_reaches_names_the_client_uses_itself(client):
    assert client.call("close") == "remote close"
    assert client.call("call") == "remote call"
    assert client.call("subtract", 5, 2) == 3
    assert client.invoke("subtract", {"minuend": 9, "subtrahend": 1}) == 8


def test_positional_and_keyword_arguments_cannot_be_mixed(client):
    with pytest.raises(TypeError, match="either by position or by name"):
        client.subtract(42, subtrahend=23)


def test_remote_methods_read_like_local_ones(client):
    method = client.subtract
    assert method(10, 4) == 6
    assert "remote method 'subtract'" in repr(method)
    assert "connected" in repr(client)
    with pytest.raises(AttributeError):
        client._private  # noqa: B018


@pytest.mark.parametrize(
    "value",
    [
        "x",
        "é ☃",
        "",
        0,
        -(2**63),
        2**64 - 1,
        2**64,
        -(2**63) - 1,
        10**40,
        1.5,
        True,
        False,
        None,
        [],
        [1, [2, [3]]],
        {"a": {"b": [None, 2.5]}},
        ["x" * 1000] * 50,
    ],
)
def test_every_kind_of_result_comes_back_whole(client, value):
    # Plain results take the client's quick path; the rest are decoded in full: the caller cannot
    # tell.
    result = client.echo(value)
    assert result == value and type(result) is type(value)


def test_an_error_reply_read_in_the_first_read_is_raised(client):
    with pytest.raises(RemoteError) as info:
        client.echo()
    assert info.value.code == jsonrpc.INVALID_PARAMS
    assert client.echo(1) == 1


def test_notify_runs_the_method_and_gets_nothing_back():
    seen = threading.Event()
    values = []

    def update(*numbers):
        values.extend(numbers)
        seen.set()

    with socketrpc.serve({"update": update, "echo": lambda x: x}, name="test-notify") as server:
        with socketrpc.connect(server.address) as c:
            assert c.notify("update", 1, 2, 3) is None
            assert seen.wait(2.0)
            assert values == [1, 2, 3]
            assert c.echo("still in step") == "still in step"  # no stray reply was left behind


def test_batch_returns_results_in_order_with_errors_in_place(client):
    batch = client.batch()
    batch.sum(1, 2, 4)
    batch.notify("sum", 7)
    batch.subtract(42, 23)
    batch.call("foo.get", name="myself")
    batch.echo(["hello", 5])
    assert len(batch) == 5
    results = batch.send()
    assert results[:2] == [7, 19]
    assert isinstance(results[2], RemoteError) and results[2].code == jsonrpc.METHOD_NOT_FOUND
    assert results[3] == ["hello", 5]
    assert len(batch) == 0  # emptied: the builder can be used again
    batch.subtract(1, 1)
    assert batch.send() == [0]


def test_batch_can_raise_the_first_error(client):
    batch = client.batch()
    batch.sum(1)
    batch.nope()
    with pytest.raises(RemoteError):
        batch.send(raise_errors=True)


def test_batch_of_notifications_and_empty_batch_send_without_waiting(client):
    assert client.batch().send() == []
    batch = client.batch()
    batch.notify("sum", 1)
    batch.notify("sum", 2)
    assert batch.send() == []
    assert client.sum(3) == 3


# ---------------------------------------------------------------------- timeouts, failures, retries


def test_a_call_that_takes_too_long_raises_call_timeout_and_the_connection_recovers():
    gate = Gate()
    with socketrpc.serve({"slow": gate, "echo": lambda x: x}, name="test-slow") as server:
        with socketrpc.connect(server.address, timeout=0.2) as c:
            with pytest.raises(CallTimeout) as info:
                c.slow("late")
            assert isinstance(info.value, TimeoutError)
            gate.release.set()
            assert (
                c.echo("fresh") == "fresh"
            )  # the late reply to "slow" is dropped, not mistaken for this one
            assert c.invoke("slow", ["in time"], timeout=2.0) == "in time"


def test_connection_lost_when_the_server_goes_away_then_reconnect_on_the_next_call():
    server = socketrpc.serve({"echo": lambda x: x}, name="test-restart")
    port = server.port
    c = socketrpc.connect(server.address, timeout=1.0)
    try:
        assert c.echo(1) == 1
        server.stop()
        with pytest.raises(ConnectionLost):
            c.echo(2)
        assert not c.connected
        with pytest.raises(ConnectionLost, match="cannot connect"):
            c.echo(3)  # nobody listens: the reconnect fails clearly
        server = socketrpc.serve({"echo": lambda x: x}, name="test-restart", port=port)
        assert c.echo(4) == 4  # the next call reconnects
        assert c.connected
    finally:
        c.close()
        server.stop()


def test_retries_reconnect_when_the_connection_broke():
    server = socketrpc.serve({"echo": lambda x: x}, name="test-retry-reconnect")
    port = server.port
    c = socketrpc.connect(server.address, timeout=1.0, retries=2, backoff=0.01)
    try:
        assert c.echo("before") == "before"
        server.stop()
        server = socketrpc.serve({"echo": lambda x: x}, name="test-retry-reconnect", port=port)
        assert (
            c.echo("after") == "after"
        )  # the first attempt finds the old connection dead; the retry reconnects
    finally:
        c.close()
        server.stop()


def test_a_retry_reuses_the_request_id_so_an_at_most_once_server_runs_it_once():
    gate = Gate()
    sent = []

    def on_frame(direction, payload):
        if direction == "sent":
            sent.append(json.loads(payload))
            if len(sent) == 2:
                gate.release.set()  # let the first attempt finish once the retry is on its way

    with socketrpc.serve({"slow": gate}, name="test-retry-once", at_most_once=True) as server:
        with socketrpc.connect(
            server.address, timeout=0.3, retries=3, backoff=0.01, on_frame=on_frame
        ) as c:
            assert c.slow("done") == "done"
            assert (
                c.slow("next") == "next"
            )  # answered after the duplicate: the server has handled both by now
    assert len(sent) == 3
    assert sent[0]["id"] == sent[1]["id"] != sent[2]["id"]
    assert gate.runs == 2  # "done" once, despite two requests; then "next"
    assert server.dedup is not None and server.dedup.replays == 1


def test_without_retries_a_timeout_is_raised_at_once():
    gate = Gate()
    with socketrpc.serve({"slow": gate}, name="test-no-retry") as server:
        sent = []
        with socketrpc.connect(
            server.address, timeout=0.2, on_frame=lambda d, p: sent.append(d)
        ) as c:
            with pytest.raises(CallTimeout):
                c.slow(1)
        gate.release.set()
    assert sent == ["sent"]


def test_calls_after_close_fail_clearly(server):
    c = socketrpc.connect(server.address)
    c.close()
    c.close()  # harmless
    with pytest.raises(ConnectionLost, match="closed"):
        c.echo(1)
    assert "closed" in repr(c)


def test_connecting_to_nothing_fails_clearly():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(ConnectionLost, match="cannot connect"):
            socketrpc.connect(("127.0.0.1", port), timeout=0.5)


def test_client_arguments_are_checked(server):
    with pytest.raises(ValueError):
        socketrpc.connect(server.address, timeout=0)
    with pytest.raises(ValueError):
        socketrpc.connect(server.address, retries=-1)
    with pytest.raises(TypeError):
        socketrpc.connect(server.address, on_frame="print")


# --------------------------------------------------------------------------- concurrency


def test_pipelined_calls_from_many_threads_share_one_connection(client, run_threads):
    failures = []

    def worker(n):
        for i in range(60):
            value = f"{n}-{i}"
            if client.echo(value) != value:
                failures.append(value)

    run_threads(worker, 8, timeout=20)
    assert failures == []


def test_replies_are_matched_by_id_when_they_come_back_out_of_order():
    """Two callers on one connection: whoever reads the socket hands each reply to its own
    caller."""
    gate = Gate()
    with socketrpc.serve({"slow": gate, "echo": lambda x: x}, name="test-order") as server:
        with socketrpc.connect(server.address, timeout=3.0) as c:
            result = {}
            slow = threading.Thread(target=lambda: result.setdefault("slow", c.slow("S")))
            slow.start()
            assert gate.entered.wait(2.0)
            # The server answers one connection's frames in order, so this call waits behind "slow";
            # releasing the gate lets both replies come back and each caller gets its own.
            fast = threading.Thread(target=lambda: result.setdefault("fast", c.echo("F")))
            fast.start()
            gate.release.set()
            slow.join(5)
            fast.join(5)
            assert result == {"slow": "S", "fast": "F"}


def test_with_workers_a_quick_reply_overtakes_a_slow_one_on_the_same_connection():
    gate = Gate()
    order = []
    with socketrpc.serve(
        {"slow": gate, "echo": lambda x: x}, name="test-workers", workers=4
    ) as server:
        with socketrpc.connect(server.address, timeout=3.0) as c:
            slow = threading.Thread(target=lambda: order.append(c.slow("S")))
            slow.start()
            assert gate.entered.wait(2.0)
            assert c.echo("F") == "F"  # answered while "slow" still runs
            order.append("F")
            gate.release.set()
            slow.join(5)
    assert order == ["F", "S"]


def test_with_workers_a_connection_has_at_most_that_many_requests_in_flight_and_no_more_threads():
    gate = Gate()
    with socketrpc.serve(
        {"slow": gate, "echo": lambda x: x}, name="test-workers-bound", workers=2
    ) as server:
        with socketrpc.connect(server.address, timeout=5.0) as c:
            callers = [threading.Thread(target=c.slow, args=(n,)) for n in range(5)]
            for t in callers:
                t.start()
            assert gate.wait_for_runs(2)
            # Two run; the other three wait, unread, until one finishes. Another connection has
            # threads of its own, so it is not held up:
            with socketrpc.connect(server.address, timeout=2.0) as other:
                assert other.echo("not held up") == "not held up"
            assert gate.runs == 2
            pool_threads = [
                t
                for t in threading.enumerate()
                if t.name.startswith("rpclab-socketrpc:test-workers")
            ]
            assert len(pool_threads) <= 3  # this connection's 2, and at most 1 of the other's
            gate.release.set()
            for t in callers:
                t.join(5)
            assert gate.runs == 5


def test_with_workers_every_reply_reaches_its_caller_under_load(run_threads):
    with socketrpc.serve({"echo": lambda x: x}, name="test-workers-load", workers=4) as server:
        failures = []

        def worker(n):
            with socketrpc.connect(server.address, timeout=5.0) as c:
                for i in range(100):
                    b = c.batch()
                    b.echo(i)
                    b.echo(-i)
                    if c.echo(f"{n}-{i}") != f"{n}-{i}" or b.send() != [i, -i]:
                        failures.append((n, i))

        run_threads(worker, 8, timeout=30)
        assert failures == []


def test_with_workers_stop_waits_for_calls_in_flight_and_leaves_no_thread():
    gate = Gate()
    server = socketrpc.serve({"slow": gate}, name="test-workers-stop", workers=3)
    c = socketrpc.connect(server.address, timeout=3.0)
    outcome = []

    def call():
        try:
            outcome.append(c.slow(1))
        except ConnectionLost as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert gate.entered.wait(2.0)
    threading.Timer(0.2, gate.release.set).start()
    server.stop()  # closes the connection, waits for the running call, then for the pool's threads
    assert gate.runs == 1
    caller.join(5)
    c.close()
    assert len(outcome) == 1 and isinstance(
        outcome[0], ConnectionLost
    )  # its connection was closed under it
    assert {t for t in threading.enumerate() if t.name.startswith("rpclab-socketrpc")} == set()
    assert not server.running


def test_workers_must_be_a_count():
    for bad in (-1, 1.5, True, "4"):
        with pytest.raises(ValueError, match="workers"):
            socketrpc.serve({"echo": lambda x: x}, name="test-workers-bad", workers=bad)


def test_the_client_starts_no_threads(server):
    before = set(threading.enumerate())
    with socketrpc.connect(server.address) as c:
        for i in range(20):
            c.echo(i)
        new = set(threading.enumerate()) - before
    assert [
        t.name for t in new if "process_request_thread" not in t.name
    ] == []  # only the server's own


# --------------------------------------------------------------------------- at-most-once


def test_the_same_id_twice_runs_the_handler_once_and_replays_the_reply():
    counter = {"runs": 0}

    def increment():
        counter["runs"] += 1
        return counter["runs"]

    with socketrpc.serve({"increment": increment}, name="test-dedup", at_most_once=True) as server:
        request = {"jsonrpc": "2.0", "method": "increment", "id": "client-1:1"}
        with raw_socket(server.address) as a, raw_socket(server.address) as b:
            first = raw_call(a, request)
            again = raw_call(a, request)
            elsewhere = raw_call(b, request)  # a retry on a new connection is recognised too
            other = raw_call(a, {**request, "id": "client-1:2"})
        assert first == again == elsewhere == {"jsonrpc": "2.0", "result": 1, "id": "client-1:1"}
        assert other["result"] == 2
        assert counter["runs"] == 2
        assert server.dedup.replays == 2
        assert "client-1:1" in server.dedup and len(server.dedup) == 2


def test_a_duplicate_that_arrives_while_the_first_still_runs_waits_for_it():
    gate = Gate()
    second_run = threading.Event()
    received = []
    duplicate_in = threading.Event()

    def handler(value):
        if gate.runs >= 1:
            second_run.set()
        return gate(value)

    def on_frame(direction, payload):
        if direction == "received":
            received.append(payload)
            if len(received) == 2:
                duplicate_in.set()

    with socketrpc.serve(
        {"slow": handler}, name="test-dedup-inflight", at_most_once=True, on_frame=on_frame
    ) as server:
        request = {"jsonrpc": "2.0", "method": "slow", "params": ["once"], "id": "c:7"}
        with raw_socket(server.address) as a, raw_socket(server.address) as b:
            framing.send_frame(a, json.dumps(request).encode())
            assert gate.entered.wait(2.0)
            framing.send_frame(
                b, json.dumps(request).encode()
            )  # the duplicate, while the first is running
            assert duplicate_in.wait(2.0)
            assert not second_run.wait(
                0.3
            )  # it waits for the first instead of running the handler again
            gate.release.set()
            replies = [json.loads(framing.recv_frame(s)) for s in (a, b)]
    assert replies[0] == replies[1] == {"jsonrpc": "2.0", "result": "once", "id": "c:7"}
    assert gate.runs == 1


def test_without_at_most_once_a_repeated_id_runs_again():
    counter = {"runs": 0}

    def increment():
        counter["runs"] += 1
        return counter["runs"]

    with socketrpc.serve({"increment": increment}, name="test-no-dedup") as server:
        assert server.dedup is None
        with raw_socket(server.address) as a:
            request = {"jsonrpc": "2.0", "method": "increment", "id": 1}
            assert [raw_call(a, request)["result"] for _ in range(2)] == [1, 2]


def test_dedup_table_is_bounded_and_forgets_the_least_recently_used():
    table = DedupTable(max_entries=3)
    runs = []

    def run_for(request_id):
        request = jsonrpc.Request("f", None, request_id)
        return table.once(
            request, lambda: runs.append(request_id) or {"id": request_id, "n": len(runs)}
        )

    for request_id in ["a", "b", "c"]:
        run_for(request_id)
    run_for("a")  # a replay: "a" becomes the most recently used
    run_for("d")  # over the bound: "b", the least recently used, goes
    assert len(table) == 3
    assert "b" not in table and "a" in table
    run_for("b")  # forgotten, so it runs again
    assert runs == ["a", "b", "c", "d", "b"]
    assert table.replays == 1
    with pytest.raises(ValueError):
        DedupTable(0)


def test_dedup_table_keys_ids_by_type():
    table = DedupTable()
    table.once(jsonrpc.Request("f", None, 1), lambda: {"n": 1})
    assert table.once(jsonrpc.Request("f", None, "1"), lambda: {"n": 2}) == {"n": 2}


# ------------------------------------------------------------------- observing frames and lifecycle


def test_on_frame_hooks_see_every_frame_both_ways():
    client_frames, server_frames = [], []
    with socketrpc.serve(
        {"echo": lambda x: x},
        name="test-frames",
        on_frame=lambda d, p: server_frames.append((d, json.loads(p))),
    ) as server:
        with socketrpc.connect(
            server.address, on_frame=lambda d, p: client_frames.append((d, json.loads(p)))
        ) as c:
            c.echo("hi")
            c.notify("echo", "note")
            c.echo("bye")  # the server has answered this, so it has seen the notification before it
    assert [d for d, _ in client_frames] == ["sent", "received", "sent", "sent", "received"]
    assert client_frames[0][1]["method"] == "echo" and client_frames[1][1]["result"] == "hi"
    assert [d for d, _ in server_frames] == ["received", "sent", "received", "received", "sent"]
    assert client_frames[0][1] == server_frames[0][1]


def test_a_failing_on_frame_hook_does_not_break_calls(server, caplog):
    def broken(direction, payload):
        raise RuntimeError("hook bug")

    with socketrpc.connect(server.address, on_frame=broken) as c:
        assert c.echo(5) == 5
    assert "on_frame hook raised" in caplog.text


def test_stop_leaves_no_thread_and_no_listening_port():
    threads_before = set(threading.enumerate())
    server = socketrpc.serve({"echo": lambda x: x}, name="test-stop")
    clients = [socketrpc.connect(server.address) for _ in range(3)]
    for c in clients:
        assert c.echo(1) == 1
    assert (server.host, server.port) in (process.listening_ports() or [(server.host, server.port)])
    server.stop()
    assert not server.running
    assert set(threading.enumerate()) <= threads_before
    listening = process.listening_ports()
    if listening is not None:
        assert (server.host, server.port) not in listening
    for c in clients:
        c.close()


def test_serving_under_the_same_name_replaces_and_different_names_coexist():
    first = socketrpc.serve({"who": lambda: "first"}, name="test-name-a")
    second = socketrpc.serve({"who": lambda: "second"}, name="test-name-b")
    assert first.running and second.running
    third = socketrpc.serve({"who": lambda: "third"}, name="test-name-a")
    assert not first.running
    with socketrpc.connect(third.address) as c:
        assert c.who() == "third"
    assert "test-name-a" in repr(third)
    second.stop()
    third.stop()


def test_serve_checks_its_arguments():
    with pytest.raises(ValueError):
        socketrpc.serve({}, name="test-bad", max_frame_size=0)
    with pytest.raises(ValueError):
        socketrpc.serve({}, name="test-bad", frame_timeout=0)
    with pytest.raises(TypeError):
        socketrpc.serve({"x": 1}, name="test-bad")
