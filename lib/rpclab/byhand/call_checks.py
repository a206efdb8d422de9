"""The checks behind notebooks 04 and 05's exercises: a learner's stub, deadline, retries and
de-duplication table, each tried against a scripted peer that misbehaves on cue.

Each check calls the learner's code and raises AssertionError with a plain sentence when it is
wrong (rpclab.exercises.check prints it); the learner's NotDone passes straight through, so a
blank exercise reads "Not done yet". tests/test_call_checks.py proves each passes the
notebook's solution and catches the usual wrong answers. A scripted peer is a small socket
server in this kernel that reads frames and answers as its script says -- another call's reply
first, no reply at all, replies that trickle -- so each check sees the same misbehaviour every
time, and every wait is bounded::

    exercises.check("reply-id", lambda: call_checks.check_reply_ids(CheckedStub, address))

* :func:`check_reply_ids` -- 04: the stub takes only its own call's reply;
* :func:`check_deadline` -- 05: the whole call has one deadline, however the peer trickles;
* :func:`check_retries` -- 05: a timed-out call is sent again with the same id;
* :func:`check_dedup` -- 05: a repeated (client, sequence) is answered, not run again.
"""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rpclab.byhand import framing, reference
from rpclab.runtime import background

__all__ = ["check_reply_ids", "check_deadline", "check_retries", "check_dedup", "scripted_peer"]

Script = Callable[[dict, int], list[tuple[float, dict]]]  # (request, its number) -> [(wait, reply)]
PEER_READ_TIMEOUT = 5.0  # seconds a scripted peer waits for the next request


# --------------------------------------------------------------------------- scripted peers


class _PeerHandler(socketserver.BaseRequestHandler):
    server: _PeerServer

    def handle(self) -> None:
        self.request.settimeout(PEER_READ_TIMEOUT)
        while not self.server.stopping.is_set():
            try:
                request = json.loads(framing.recv_frame(self.request, 64 * 1024))
            except (OSError, ValueError):  # the caller left, stalled or sent nonsense: done
                return
            with self.server.lock:
                self.server.seen.append(request)
                number = len(self.server.seen)
            for wait, reply in self.server.script(request, number):
                if self.server.stopping.wait(wait):
                    return
                try:
                    framing.send_frame(self.request, json.dumps(reply).encode())
                except OSError:
                    return


class _PeerServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], script: Script):
        self.script = script
        self.seen: list[dict] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        super().__init__(address, _PeerHandler)


@contextlib.contextmanager
def scripted_peer(script: Script) -> Iterator[tuple[tuple[str, int], list[dict]]]:
    """A peer that answers each request as ``script(request, number)`` says; yields its address
    and the list of requests it has read (number 1 is the first)."""
    made: list[_PeerServer] = []

    def make(address: tuple[str, int]) -> _PeerServer:
        made.append(_PeerServer(address, script))
        return made[-1]

    handle = background.serve("exercise-peer", make)
    try:
        yield handle.address, made[0].seen
    finally:
        made[0].stopping.set()
        handle.stop()


def _reply(request: dict, result: Any, id: Any = None) -> dict:
    return {"jsonrpc": "2.0", "result": result, "id": request["id"] if id is None else id}


def _other_id(request_id: Any) -> Any:
    return f"{request_id}-not" if isinstance(request_id, str) else -1 - request_id


# --------------------------------------------------------------------------- 04: reply ids


def check_reply_ids(stub_class: Callable[..., Any], address: tuple[str, int]) -> str:
    """04: ``stub_class(address, timeout=...)`` takes its own call's reply and skips others.

    At ``address`` a server must offer ``add(a, b)`` and ``slow(seconds)``.
    """

    def stale_first(request: dict, number: int) -> list[tuple[float, dict]]:
        return [(0, _reply(request, "stale", _other_id(request["id"]))), (0, _reply(request, 3))]

    with scripted_peer(stale_first) as (peer, _):
        stub = stub_class(peer, timeout=2.0)
        try:
            got = stub.add(1, 2)
        finally:
            stub.close()
    assert got != "stale", (
        "a reply to another call came first, and your stub returned it ('stale'): compare each "
        "reply's id with the id of the request you sent, and skip the ones that differ"
    )
    assert got == 3, f"add(1, 2) returned {got!r}, not 3"

    stub = stub_class(address, timeout=0.4)  # slow's reply comes 0.2 s after the timeout, and
    try:  # 0.2 s before the next call's read would time out
        try:
            stub.slow(0.6)
        except TimeoutError:
            pass
        else:
            raise AssertionError("slow(0.6) with a 0.4 s timeout should have timed out")
        answers = [stub.add(1, 2), stub.add(2, 3)]
    finally:
        stub.close()
    assert answers == [3, 5], (
        f"after a timed-out slow(0.6), add(1, 2) and add(2, 3) returned {answers!r}, not [3, 5]: "
        "the late reply to slow answered the next call"
    )
    return "a late reply no longer answers the next call"


# --------------------------------------------------------------------------- 05: deadline


def check_deadline(await_reply: Callable[..., dict], stub_class: Callable[..., Any]) -> str:
    """05: ``await_reply(stub, request_id, deadline)`` returns its reply, skipping others, and
    raises TimeoutError once ``time.monotonic()`` passes ``deadline``, however the peer trickles."""

    def answer_after_two_others(request: dict, number: int) -> list[tuple[float, dict]]:
        other = _reply(request, "stale", _other_id(request["id"]))
        return [(0, other), (0.05, other), (0.05, _reply(request, "yours"))]

    with scripted_peer(answer_after_two_others) as (peer, _):
        stub = stub_class(peer, timeout=2.0)
        try:
            stub.send({"jsonrpc": "2.0", "method": "get", "params": ["k"], "id": 41})
            reply = await_reply(stub, 41, time.monotonic() + 2.0)
        finally:
            stub.close()
    assert isinstance(reply, dict) and reply.get("id") == 41, (
        f"await_reply returned {reply!r}: it should return the reply (a dict) whose id is 41"
    )

    def trickle(request: dict, number: int) -> list[tuple[float, dict]]:
        other = _reply(request, "stale", _other_id(request["id"]))
        return [(0.1, other)] * 25  # one stale reply every 0.1 s, for 2.5 s: never the right one

    limit = 0.4
    with scripted_peer(trickle) as (peer, _):
        stub = stub_class(peer, timeout=limit)
        try:
            stub.send({"jsonrpc": "2.0", "method": "get", "params": ["k"], "id": 42})
            start = time.monotonic()
            try:
                await_reply(stub, 42, start + limit)
            except TimeoutError:
                took = time.monotonic() - start
            else:
                raise AssertionError("await_reply returned although the reply to 42 never came")
        finally:
            stub.close()
    assert took < limit + 0.3, (
        f"with a deadline {limit} s away it gave up after {took:.1f} s: a reply to another call "
        "every 0.1 s kept each read short of its timeout. Wait only for the time left before "
        "the deadline (stub.sock.settimeout(remaining)) and give up when none is left"
    )
    return f"gave up after {took:.2f} s for a {limit} s deadline, stale replies and all"


# --------------------------------------------------------------------------- 05: retries


def check_retries(call_with_retries: Callable[..., Any], caller_class: Callable[..., Any]) -> str:
    """05: ``call_with_retries(caller, method, params, timeout=, tries=)`` sends the same
    request (the same id) again after each timeout, and gives up with TimeoutError after
    ``tries`` tries."""

    def answer_the_third(request: dict, number: int) -> list[tuple[float, dict]]:
        return [(0, _reply(request, "ran"))] if number >= 3 else []

    with scripted_peer(answer_the_third) as (peer, seen):
        caller = caller_class(peer, timeout=2.0)
        try:
            result = call_with_retries(caller, "increment", ["hits"], timeout=0.1, tries=5)
        finally:
            caller.close()
    ids = [request.get("id") for request in seen]
    assert len(ids) >= 2, f"the first try was lost, and your code sent {len(ids)} request(s)"
    assert len(set(map(json.dumps, ids))) == 1, (
        f"the tries carried the ids {ids}: a retry must send the same request, with the same id, "
        "so that a server can tell it is the same call"
    )
    assert len(ids) == 3 and result == "ran", (
        f"the peer answers the third try; your code sent {len(ids)} and returned {result!r}"
    )

    with scripted_peer(lambda request, number: []) as (peer, seen):
        caller = caller_class(peer, timeout=2.0)
        start = time.monotonic()
        try:
            call_with_retries(caller, "increment", ["hits"], timeout=0.1, tries=3)
        except TimeoutError:
            took = time.monotonic() - start
        else:
            raise AssertionError("nothing ever answered, yet call_with_retries returned")
        finally:
            caller.close()
    assert len(seen) == 3, f"with tries=3 and no answer ever, {len(seen)} requests were sent"
    assert took < 1.0, f"three tries of 0.1 s took {took:.1f} s"
    return "the same id on every try, and a clear give-up"


# --------------------------------------------------------------------------- 05: dedup


def check_dedup(
    at_most_once: Callable[[Callable[[bytes], bytes | None]], Callable[..., Any]],
) -> str:
    """05: ``at_most_once(dispatch)`` answers a repeated (client, sequence) from its table, runs
    two clients' equal sequence numbers separately, and runs a duplicate that arrives while the
    first is still running only once."""
    runs: list[str] = []
    entered = threading.Event()
    release = threading.Event()

    def increment(key: str) -> int:
        runs.append(key)
        if key == "slow":
            entered.set()
            release.wait(2.0)
        return runs.count(key)

    dispatch_once = at_most_once(reference.dispatcher({"increment": increment}))

    def call(id: str, key: str = "hits") -> dict:
        data = json.dumps({"jsonrpc": "2.0", "method": "increment", "params": [key], "id": id})
        reply = dispatch_once(data.encode())
        assert isinstance(reply, bytes), f"dispatch_once returned {reply!r}, not the reply bytes"
        return json.loads(reply)

    first, again = call("ada:1"), call("ada:1")
    assert runs.count("hits") == 1, "the same request (ada:1) sent twice ran twice"
    assert again == first, f"the repeat got {again}, not the saved reply {first}"
    call("bob:1")
    assert runs.count("hits") == 2, (
        "bob:1 did not run: two clients may use the same sequence number (1), so the table's key "
        "must hold the client too"
    )
    assert call("ada:2")["result"] == 3, "ada:2, a new call, should run"

    replies: list[dict] = []
    worker = threading.Thread(target=lambda: replies.append(call("cy:1", "slow")), daemon=True)
    worker.start()
    assert entered.wait(2.0), "the first try of cy:1 never started running"
    entered.clear()
    duplicate = threading.Thread(target=lambda: replies.append(call("cy:1", "slow")), daemon=True)
    duplicate.start()
    ran_again = entered.wait(0.3)  # give the duplicate time to start running, if it will
    release.set()
    worker.join(2.0)
    duplicate.join(2.0)
    assert not ran_again and runs.count("slow") == 1, (
        "a duplicate of cy:1 that arrived while the first was still running ran again: hold a "
        "lock while the request runs (or mark it as running and make the duplicate wait)"
    )
    assert len(replies) == 2 and replies[0] == replies[1], f"the two replies differ: {replies}"
    return "each (client, sequence) ran once, even a duplicate that came mid-run"
