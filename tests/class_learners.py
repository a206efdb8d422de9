"""Two learners of a lab class, as programs: an honest one who calls the class servers, and a
hostile one who tries every attack of issue 12 on them at once.

Run inside a learner's network namespace by tests/test_class_lab_netns.py (and, for the socket
stack, tests/test_class_lab_netns_socket.py)::

    python tests/class_learners.py honest  CONFIG --seconds 8
    python tests/class_learners.py hostile CONFIG --seconds 30

CONFIG is a JSON object with one entry per stack served: ``{"grpc": {"target": "10.213.0.1:
50051", "token": "...", "ca": "/path/ca.pem"}, "thrift": {"address": ["10.213.0.1", 9090]},
"xmlrpc": {"address": [...], "token": "..."}, "rest": {...}, "socket": {"address": [...]}}``
("socket-flood", with the socket server's address, is one more attack on it: 300 connections
held, from a learner of its own). A stack that is not in CONFIG
is neither called nor attacked, so another stack's tests add an entry to ``HONEST`` and
functions to ``ATTACKS`` for their stack and reuse the rest.

The honest learner prints one JSON line: its calls, the failures and the slowest call. The
hostile one prints ``attacking`` once every attack is under way (streams held, connections
open), then, when its time is up or it gets SIGTERM, one JSON line of what it saw. Every loop
here is bounded in time, and every wait has a timeout.
"""

from __future__ import annotations

import argparse
import gzip
import json
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

CALL_TIMEOUT = 2.0  # seconds an honest call may take: "within a second or two"

# --------------------------------------------------------------------------- honest calls


def _honest_grpc(config: dict) -> Callable[[int], None]:
    import grpc

    from rpclab.grpcstack import kv_service

    kv_pb2, kv_pb2_grpc = kv_service.kv_pb2, kv_service.kv_pb2_grpc
    credentials = grpc.ssl_channel_credentials(open(config["ca"], "rb").read())
    if config.get("token"):
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(config["token"])
        )
    stub = kv_pb2_grpc.KVStub(grpc.secure_channel(config["target"], credentials))

    def call(n: int) -> None:
        stub.Put(kv_pb2.PutRequest(key="honest", value=str(n)), timeout=CALL_TIMEOUT)
        got = stub.Get(kv_pb2.GetRequest(key="honest"), timeout=CALL_TIMEOUT).value
        assert got == str(n), got

    return call


def _honest_thrift(config: dict) -> Callable[[int], None]:
    from rpclab.adapters import thrift

    client: list[Any] = []

    def call(n: int) -> None:
        if not client:
            client.append(thrift.connect(tuple(config["address"]), timeout=CALL_TIMEOUT))
        try:
            client[0].put("honest", str(n))
            assert client[0].get("honest") == str(n)
        except Exception:
            client.pop().close()  # a fresh connection for the next call
            raise

    return call


def _honest_xmlrpc(config: dict) -> Callable[[int], None]:
    from rpclab.adapters import xml_rpc

    proxy = xml_rpc.connect(
        tuple(config["address"]), timeout=CALL_TIMEOUT, token=config.get("token")
    )

    def call(n: int) -> None:
        proxy.put("honest", str(n))
        assert proxy.get("honest") == str(n)

    return call


def _honest_rest(config: dict) -> Callable[[int], None]:
    from rpclab.adapters import rest

    client = rest.connect(tuple(config["address"]), timeout=CALL_TIMEOUT, token=config.get("token"))

    def call(n: int) -> None:
        client.put("honest", str(n))
        assert client.get("honest") == str(n)

    return call


def _honest_socket(config: dict) -> Callable[[int], None]:
    """rpclab's client (ids "<client-id>:<n>"), and notebook 04's stub on a connection of its
    own, numbering its ids 1, 2, 3... as the hostile learner does too."""
    import itertools

    from rpclab.byhand import socketrpc

    address = tuple(config["address"])
    client: list[Any] = []
    stub: list[Any] = []

    def call(n: int) -> None:
        if not client:
            client.append(socketrpc.connect(address, timeout=CALL_TIMEOUT))
        try:
            client[0].put("honest", str(n))
            assert client[0].get("honest") == str(n)
            assert "honest" in client[0].keys()  # what the hostile learner stored breaks nothing
        except Exception:
            client.pop().close()  # a fresh connection for the next call
            raise
        if not stub:
            stub.append(
                (socket.create_connection(address, timeout=CALL_TIMEOUT), itertools.count(1))
            )
        sock, ids = stub[0]
        try:
            request_id = next(ids)
            request = {
                "jsonrpc": "2.0",
                "method": "put",
                "params": ["stub", str(n)],
                "id": request_id,
            }
            reply = _socket_call(sock, request)
            assert reply == {"jsonrpc": "2.0", "result": None, "id": request_id}, reply
        except Exception:
            stub.pop()[0].close()
            raise

    return call


def _socket_call(sock: socket.socket, message: dict | bytes) -> dict:
    from rpclab.byhand import framing

    framing.send_frame(
        sock, message if isinstance(message, bytes) else json.dumps(message).encode()
    )
    return json.loads(framing.recv_frame(sock))


HONEST: dict[str, Callable[[dict], Callable[[int], None]]] = {
    "socket": _honest_socket,
    "grpc": _honest_grpc,
    "thrift": _honest_thrift,
    "xmlrpc": _honest_xmlrpc,
    "rest": _honest_rest,
}


def honest(config: dict, seconds: float, max_rounds: int = 10_000) -> dict:
    """Call every configured stack in turn, for ``seconds`` (at most ``max_rounds`` rounds)."""
    calls = {stack: HONEST[stack](config[stack]) for stack in HONEST if stack in config}
    made, failures, slowest = Counter(), [], {stack: 0.0 for stack in calls}
    deadline = time.monotonic() + seconds
    for n in range(max_rounds):
        if time.monotonic() > deadline:
            break
        for stack, call in calls.items():
            started = time.monotonic()
            try:
                call(n)
            except Exception as exc:  # reported, not raised: the test says what failed
                failures.append(f"{stack}: {type(exc).__name__}: {exc}"[:300])
            took = time.monotonic() - started
            slowest[stack] = max(slowest[stack], took)
            made[stack] += 1
    return {"calls": dict(made), "failures": failures[:20], "slowest": slowest}


# --------------------------------------------------------------------------- the attacks


class Attack:
    """What every attack shares: the time it must stop, and what it saw."""

    def __init__(self, stop: threading.Event, deadline: float) -> None:
        self.stop = stop
        self.deadline = deadline
        self.seen: Counter[str] = Counter()
        self.ready = threading.Event()  # set once the attack is under way

    def going(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def pause(self, seconds: float) -> None:
        self.stop.wait(max(0.0, min(seconds, self.deadline - time.monotonic())))


def _grpc_channel(config: dict, token: bool) -> Any:
    import grpc

    credentials = grpc.ssl_channel_credentials(open(config["ca"], "rb").read())
    if token and config.get("token"):
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(config["token"])
        )
    return grpc.secure_channel(config["target"], credentials)


def grpc_without_token(config: dict, attack: Attack) -> None:
    """Item 1: reflection streams and health calls without a token, held open."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel = _grpc_channel(config, token=False)
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    while attack.going():
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        streams = [reflection.ServerReflectionInfo(iter([ask]), timeout=30) for _ in range(8)]
        streams += [health.Watch(health_pb2.HealthCheckRequest(), timeout=30) for _ in range(8)]
        for stream in streams:
            try:
                next(stream)
                attack.seen["opened without a token"] += 1
            except Exception as exc:
                attack.seen[_code(exc)] += 1
        attack.ready.set()
        attack.pause(0.5)
        for stream in streams:
            stream.cancel()
    channel.close()


def grpc_hold_streams(config: dict, attack: Attack) -> None:
    """Item 2: 16 Watch and 16 RecordRoute streams with the hostile learner's own token."""
    from rpclab.grpcstack import kv_service, route_guide

    channel = _grpc_channel(config, token=True)
    kv = kv_service.kv_pb2_grpc.KVStub(channel)
    record = route_guide.route_guide_pb2_grpc.RouteGuideStub(channel).RecordRoute

    def nothing_until_stopped() -> Any:
        attack.stop.wait(max(0.0, attack.deadline - time.monotonic()))
        return
        yield

    held = []
    for _ in range(16):
        watch = kv.Watch(kv_service.kv_pb2.WatchRequest(), timeout=60)
        if any(key == "rpclab-version" for key, _ in watch.initial_metadata()):
            attack.seen["Watch held"] += 1
        else:
            attack.seen[f"Watch {watch.code().name}"] += 1
        held.append(watch)
    routes = [record.future(nothing_until_stopped(), timeout=60) for _ in range(16)]
    for route in routes:
        try:
            route.result(timeout=1.0)
        except Exception as exc:
            attack.seen[f"RecordRoute {_code(exc)}"] += 1
    attack.ready.set()
    attack.pause(attack.deadline)
    for call in held + routes:
        call.cancel()
    channel.close()


def grpc_call_flood(config: dict, attack: Attack) -> None:
    """Item 2: as many calls at once as the learner can make, again and again."""
    from rpclab.grpcstack import kv_service

    channel = _grpc_channel(config, token=True)
    get = kv_service.kv_pb2_grpc.KVStub(channel).Get
    attack.ready.set()
    while attack.going():
        futures = [get.future(kv_service.kv_pb2.GetRequest(key="x"), timeout=5) for _ in range(32)]
        for future in futures:
            try:
                future.result()
            except Exception as exc:
                attack.seen[_code(exc)] += 1
        attack.pause(0.05)
    channel.close()


def _code(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            return code().name
        except Exception:
            pass
    return type(exc).__name__


def _thrift_call(name: bytes, fields: bytes) -> bytes:
    return struct.pack(">Ii", 0x80010001, len(name)) + name + struct.pack(">i", 1) + fields


def thrift_skip_bomb(config: dict, attack: Attack) -> None:
    """Item 8: 28 bytes that made thriftpy2 loop two billion times."""
    bomb = _thrift_call(b"get", struct.pack(">bhbi", 15, 99, 1, 2**31 - 1))
    frame = struct.pack(">I", len(bomb)) + bomb
    attack.ready.set()
    while attack.going():
        attack.seen[_send_and_see(tuple(config["address"]), frame)] += 1
        attack.pause(0.1)


def _send_and_see(address: tuple, data: bytes) -> str:
    try:
        with socket.create_connection(address, timeout=3) as conn:
            conn.sendall(data)
            reply = conn.recv(200)
    except TimeoutError:
        return "no answer in 3 s"
    except OSError as exc:
        return type(exc).__name__
    if not reply:
        return "closed"
    return reply.split(b"\r\n", 1)[0].decode("latin-1")[:60]


HALF_REQUESTS = {
    "socket": struct.pack(">I", 100) + b'{"jsonrpc": "2.0", "met',
    "thrift": struct.pack(">I", 100) + _thrift_call(b"get", b"")[:6],
    "xmlrpc": b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<?xml",
    "rest": b"PUT /keys/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
}


def _hold_half_requests(stack: str, count: int = 24) -> Callable[[dict, Attack], None]:
    """Items 7 and 11: ``count`` connections, each with half a request, reopened as they close."""

    def attack_it(config: dict, attack: Attack) -> None:
        address = tuple(config["address"])
        held: list[socket.socket] = []
        while attack.going():
            while len(held) < count and attack.going():
                try:
                    conn = socket.create_connection(address, timeout=3)
                    conn.sendall(HALF_REQUESTS[stack])
                    conn.setblocking(False)
                    held.append(conn)
                    attack.seen["opened"] += 1
                except OSError as exc:
                    attack.seen[type(exc).__name__] += 1
                    break
            attack.ready.set()
            attack.pause(0.5)
            for conn in list(held):  # the server writes only as it closes (408, 503 or nothing)
                try:
                    conn.recv(200)
                except BlockingIOError:
                    continue  # still open
                except OSError:
                    pass
                held.remove(conn)
                conn.close()
                attack.seen["closed by the server"] += 1
        for conn in held:
            conn.close()

    return attack_it


def xmlrpc_bad_lengths(config: dict, attack: Attack) -> None:
    """Item 9: Content-Length -1 and abc, and a gzip bomb."""
    address = tuple(config["address"])
    auth = f"Authorization: Bearer {config.get('token', '')}\r\n".encode()
    body = b"<?xml version='1.0'?><methodCall><methodName>keys</methodName></methodCall>"
    bomb = gzip.compress(b" " * (4 * 1024 * 1024))
    requests = [
        b"POST /RPC2 HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: -1\r\n\r\n" + body,
        b"POST /RPC2 HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: abc\r\n\r\n" + body,
        b"POST /RPC2 HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"Content-Encoding: gzip\r\nContent-Length: "
        + str(len(bomb)).encode()
        + b"\r\n\r\n"
        + bomb,
    ]
    attack.ready.set()
    while attack.going():
        for request in requests:
            attack.seen[_send_and_see(address, request)] += 1
        attack.pause(0.2)


def rest_surrogates(config: dict, attack: Attack) -> None:
    """Item 13: bodies holding lone surrogates."""
    address = tuple(config["address"])
    auth = f"Authorization: Bearer {config.get('token', '')}\r\n".encode()
    body = b'{"value": "\\ud800"}'
    request = (
        b"PUT /keys/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + auth
        + b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    attack.ready.set()
    while attack.going():
        attack.seen[_send_and_see(address, request)] += 1
        attack.pause(0.1)


# --------------------------------------------------------------------------- the socket RPC

LONG_ID = 1234567890123456789  # 19 digits: the server decodes with the standard library's parser


class _Ended(Exception):
    """The connection ended (the server closed it, or refused it): ``outcome`` says how."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def _socket_outcome(sock: socket.socket, message: dict | bytes) -> str:
    """What one call got: "ok" or an error's code; _Ended if the connection ended (after a
    -32005 refusal, or without a word)."""
    try:
        reply = _socket_call(sock, message)
    except (ConnectionError, EOFError, TimeoutError) as exc:
        raise _Ended(type(exc).__name__) from None
    except Exception as exc:
        return f"unreadable: {type(exc).__name__}: {exc}"[:80]
    if type(reply) is dict and "error" in reply:
        code = reply["error"]["code"]
        if code == -32005:  # over a limit: the server closes the connection next
            raise _Ended("-32005")
        return str(code)
    return "ok"


def _socket_attack(config: dict, attack: Attack, calls: Callable[[socket.socket], None]) -> None:
    """Run ``calls(sock)`` on a new connection at a time while the attack goes on."""
    while attack.going():
        try:
            with socket.create_connection(tuple(config["address"]), timeout=3) as sock:
                calls(sock)
        except _Ended as end:
            attack.seen[end.outcome] += 1
        except OSError as exc:
            attack.seen[type(exc).__name__] += 1
        attack.ready.set()
        attack.pause(0.1)


def socket_poison(config: dict, attack: Attack) -> None:
    """Item 3: lone surrogates, behind 19-digit ids (the standard library's path) and in ids."""
    frames = [
        b'{"jsonrpc":"2.0","method":"put","params":["\\ud800","x"],"id":%d}' % LONG_ID,
        b'{"jsonrpc":"2.0","method":"put","params":["k","\\udc00"],"id":%d}' % LONG_ID,
        b'{"jsonrpc":"2.0","method":"keys","id":"\\ud800 %d"}' % LONG_ID,
        b'[{"jsonrpc":"2.0","method":"keys","id":"\\udfff"},%d]' % LONG_ID,
    ]

    def calls(sock: socket.socket) -> None:
        for frame in frames:
            attack.seen[_socket_outcome(sock, frame)] += 1
        keys = _socket_call(sock, {"jsonrpc": "2.0", "method": "keys", "id": 1})
        attack.seen["keys ok" if type(keys.get("result")) is list else f"keys {keys}"[:80]] += 1

    _socket_attack(config, attack, calls)


def socket_reuse_ids(config: dict, attack: Attack) -> None:
    """Item 4: ids 1, 2, 3... on every new connection (as the honest learner's stub sends them),
    each id sent again with other params: no reply may be another call's."""

    def calls(sock: socket.socket) -> None:
        for n in range(1, 21):
            ask = {"jsonrpc": "2.0", "method": "increment", "params": ["mallory"], "id": n}
            reply = _socket_call(sock, ask)
            ran = type(reply.get("result")) is int and reply.get("id") == n
            attack.seen["ran" if ran else f"not mine: {reply}"[:80]] += 1
            other = {"jsonrpc": "2.0", "method": "put", "params": ["stub", "mallory"], "id": n}
            attack.seen[f"reused id: {_socket_outcome(sock, other)}"] += 1

    _socket_attack(config, attack, calls)


def socket_wait_forever(config: dict, attack: Attack) -> None:
    """Item 5: changes_since([1e9, null]) and watch, which would hold a thread forever."""

    def calls(sock: socket.socket) -> None:
        for n, (method, params) in enumerate((("changes_since", [1e9, None]), ("watch", []))):
            ask = {"jsonrpc": "2.0", "method": method, "params": params, "id": n}
            attack.seen[f"{method}: {_socket_outcome(sock, ask)}"] += 1

    _socket_attack(config, attack, calls)


def socket_no_read(config: dict, attack: Attack) -> None:
    """Item 10: requests for a 64 KiB value, sent and sent, their replies never read: the server
    gives up on a reply after its request timeout and closes the connection."""
    big = {"jsonrpc": "2.0", "method": "put", "params": ["big", "x" * 65536], "id": "m:big"}
    frame = b""
    while attack.going():
        try:
            with socket.create_connection(tuple(config["address"]), timeout=3) as sock:
                attack.seen[f"put: {_socket_outcome(sock, big)}"] += 1  # (the store's own limit)
                from rpclab.byhand import framing

                ask = {"jsonrpc": "2.0", "method": "get", "params": ["big"], "id": 0}
                frame = framing.encode_frame(json.dumps(ask).encode())
                sock.settimeout(0.5)
                attack.ready.set()
                while attack.going():  # until sending fails: the server closed it
                    try:
                        sock.sendall(frame)
                    except TimeoutError:
                        continue  # its buffers are full: it is not reading either
                attack.seen["stopped"] += 1
        except _Ended as end:
            attack.seen[end.outcome] += 1
        except OSError as exc:
            attack.seen[f"closed by the server ({type(exc).__name__})"] += 1
        attack.ready.set()
        attack.pause(0.1)


def socket_call_flood(config: dict, attack: Attack) -> None:
    """Item 7: calls from four connections at once, 16 in flight on each, again and again."""
    from rpclab.byhand import framing

    def flood(n: int) -> None:
        ask = [
            framing.encode_frame(
                json.dumps({"jsonrpc": "2.0", "method": "get", "params": ["big"], "id": i}).encode()
            )
            for i in range(16)
        ]
        while attack.going():
            try:
                with socket.create_connection(tuple(config["address"]), timeout=3) as sock:
                    while attack.going():
                        sock.sendall(b"".join(ask))
                        for _ in ask:
                            reply = json.loads(framing.recv_frame(sock))
                            code = reply["error"]["code"] if "error" in reply else "ok"
                            attack.seen[str(code)] += 1
            except (OSError, EOFError) as exc:
                attack.seen[type(exc).__name__] += 1
            attack.pause(0.05)

    threads = [threading.Thread(target=flood, args=(n,), daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    attack.ready.set()
    for thread in threads:
        thread.join(max(0.0, attack.deadline - time.monotonic()) + 5)


def socket_fill_the_table(config: dict, attack: Attack) -> None:
    """Item 12: a new id for every call, each answered with 64 KiB the at-most-once table keeps."""
    numbers = iter(range(10**9))

    def calls(sock: socket.socket) -> None:
        for _ in range(200):
            ask = {"jsonrpc": "2.0", "method": "get", "params": ["big"], "id": f"m:{next(numbers)}"}
            attack.seen[_socket_outcome(sock, ask)] += 1
            if not attack.going():
                return

    _socket_attack(config, attack, calls)


def socket_connection_flood(config: dict, attack: Attack) -> None:
    """Item 7: 300 connections, held idle (the teacher's server has 256 descriptors)."""
    from rpclab.byhand import framing

    held: list[socket.socket] = []
    for _ in range(300):
        if not attack.going():
            break
        try:
            held.append(socket.create_connection(tuple(config["address"]), timeout=3))
        except OSError as exc:
            attack.seen[f"connect: {type(exc).__name__}"] += 1
    for sock in held:  # a refused connection has its answer (a -32005 frame) by now
        sock.settimeout(1.0)
        try:
            code = json.loads(framing.recv_frame(sock))["error"]["code"]
            attack.seen[f"refused: {code}"] += 1
        except TimeoutError:
            attack.seen["held"] += 1
        except (OSError, EOFError, ValueError, KeyError) as exc:
            attack.seen[type(exc).__name__] += 1
    attack.ready.set()
    attack.pause(attack.deadline)
    for sock in held:
        sock.close()


ATTACKS: dict[str, list[Callable[[dict, Attack], None]]] = {
    "socket": [
        socket_poison,
        socket_reuse_ids,
        socket_wait_forever,
        socket_no_read,
        socket_call_flood,
        socket_fill_the_table,
        _hold_half_requests("socket", count=4),
    ],
    "socket-flood": [socket_connection_flood],
    "grpc": [grpc_without_token, grpc_hold_streams, grpc_call_flood],
    "thrift": [thrift_skip_bomb, _hold_half_requests("thrift")],
    "xmlrpc": [xmlrpc_bad_lengths, _hold_half_requests("xmlrpc")],
    "rest": [rest_surrogates, _hold_half_requests("rest")],
}


def hostile(config: dict, seconds: float) -> dict:
    """Every attack on every configured stack at once, for ``seconds`` or until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    deadline = time.monotonic() + seconds
    running: list[tuple[str, Attack, threading.Thread]] = []
    errors: list[str] = []
    for stack, attacks in ATTACKS.items():
        if stack not in config:
            continue
        for attack_fn in attacks:
            attack = Attack(stop, deadline)
            name = f"{stack}:{attack_fn.__name__}"

            def run(fn=attack_fn, a=attack, n=name, c=config[stack]) -> None:
                try:
                    fn(c, a)
                except Exception as exc:  # reported in the summary
                    errors.append(f"{n}: {type(exc).__name__}: {exc}"[:300])
                finally:
                    a.ready.set()

            thread = threading.Thread(target=run, name=name, daemon=True)
            thread.start()
            running.append((name, attack, thread))
    for _, attack, _ in running:
        attack.ready.wait(max(0.0, deadline - time.monotonic()))
    print("attacking", flush=True)
    stop.wait(max(0.0, deadline - time.monotonic()))
    stop.set()
    for _, _, thread in running:
        thread.join(10)
    return {
        "seen": {name: dict(attack.seen) for name, attack, _ in running},
        "errors": errors,
        "still running": [name for name, _, thread in running if thread.is_alive()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("who", choices=["honest", "hostile"])
    parser.add_argument("config", help="the JSON object described above")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    config = json.loads(args.config)
    report = honest(config, args.seconds) if args.who == "honest" else hostile(config, args.seconds)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
