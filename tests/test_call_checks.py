"""The checks behind notebooks 04 and 05's exercises (rpclab.byhand.call_checks) pass a right
answer and name what is wrong with the typical wrong ones, in words a learner can act on.

(tests/test_exercises.py runs the notebooks' own blanks and solutions; these are the answers a
learner is likely to write instead.)
"""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest

from rpclab.byhand import call_checks, reference
from rpclab.exercises import NotDone


class CallTimeout(TimeoutError):
    pass


# --------------------------------------------------------------------------- 04: reply ids


@pytest.fixture
def hand_server():
    def slow(seconds):
        time.sleep(seconds)
        return "slow done"

    server = reference.serve({"add": lambda a, b: a + b, "slow": slow}, name="test-call-checks")
    yield server.address
    server.stop()


class NaiveStub(reference.Stub):
    """Notebook 04's stub before the exercise: it takes whatever reply comes next."""

    def call(self, method, params):
        self.send({"jsonrpc": "2.0", "method": method, "params": params, "id": next(self.ids)})
        return reference.unwrap(self.receive())


class SkipOneAfterATimeout(NaiveStub):
    """A tempting wrong fix: after a timeout, throw the next reply away."""

    skip = 0

    def call(self, method, params):
        try:
            while self.skip:
                self.receive()
                self.skip -= 1
            return super().call(method, params)
        except TimeoutError:
            self.skip += 1
            raise


def test_the_reply_id_check_passes_the_stub_that_compares_ids(hand_server):
    assert call_checks.check_reply_ids(reference.Stub, hand_server) == (
        "a late reply no longer answers the next call"
    )


@pytest.mark.parametrize("stub", [NaiveStub, SkipOneAfterATimeout])
def test_the_reply_id_check_catches_a_stub_that_takes_another_calls_reply(hand_server, stub):
    with pytest.raises(AssertionError, match="reply to another call came first"):
        call_checks.check_reply_ids(stub, hand_server)


def test_a_blank_exercise_passes_through_as_not_done(hand_server):
    class Blank(reference.Stub):
        def call(self, method, params):
            raise NotDone("compare ids")

    with pytest.raises(NotDone):
        call_checks.check_reply_ids(Blank, hand_server)


# --------------------------------------------------------------------------- 05: deadline


def await_reply(stub, request_id, deadline):
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CallTimeout(f"no reply to {request_id} in time")
        stub.sock.settimeout(remaining)
        try:
            reply = stub.receive()
        except TimeoutError:
            raise CallTimeout(f"no reply to {request_id} in time") from None
        if reply.get("id") == request_id:
            return reply


def await_reply_with_a_timeout_per_read(stub, request_id, deadline):
    stub.sock.settimeout(deadline - time.monotonic())
    while True:
        reply = stub.receive()
        if reply.get("id") == request_id:
            return reply


def test_the_deadline_check_passes_one_deadline_for_the_whole_call():
    assert "for a 0.4 s deadline" in call_checks.check_deadline(await_reply, reference.Stub)


def test_the_deadline_check_catches_a_timeout_per_read():
    with pytest.raises(AssertionError, match="kept each read short of its timeout"):
        call_checks.check_deadline(await_reply_with_a_timeout_per_read, reference.Stub)


# --------------------------------------------------------------------------- 05: retries


class Caller(reference.Stub):
    def __init__(self, address, timeout=2.0, name="test"):
        super().__init__(address, timeout=timeout)
        self.name = name

    def new_id(self):
        return f"{self.name}:{next(self.ids)}"


def call_with_retries(caller, method, params, *, timeout=0.1, tries=5):
    request = {"jsonrpc": "2.0", "method": method, "params": params, "id": caller.new_id()}
    for _ in range(tries):
        caller.send(request)
        try:
            return reference.unwrap(await_reply(caller, request["id"], time.monotonic() + timeout))
        except CallTimeout:
            continue
    raise CallTimeout(f"{tries} tries of {method} had no reply")


def call_with_new_ids(caller, method, params, *, timeout=0.1, tries=5):
    for _ in range(tries):
        request = {"jsonrpc": "2.0", "method": method, "params": params, "id": caller.new_id()}
        caller.send(request)
        try:
            return reference.unwrap(await_reply(caller, request["id"], time.monotonic() + timeout))
        except CallTimeout:
            continue
    raise CallTimeout("gave up")


def call_once(caller, method, params, *, timeout=0.1, tries=5):
    request = {"jsonrpc": "2.0", "method": method, "params": params, "id": caller.new_id()}
    caller.send(request)
    return reference.unwrap(await_reply(caller, request["id"], time.monotonic() + timeout))


def test_the_retries_check_passes_the_same_id_on_every_try():
    assert call_checks.check_retries(call_with_retries, Caller) == (
        "the same id on every try, and a clear give-up"
    )


def test_the_retries_check_catches_a_new_id_for_each_try():
    with pytest.raises(AssertionError, match="must send the same request, with the same id"):
        call_checks.check_retries(call_with_new_ids, Caller)


def test_the_retries_check_catches_no_retry_at_all():
    with pytest.raises(TimeoutError):  # the check lets it through: exercises.check says so
        call_checks.check_retries(call_once, Caller)


# --------------------------------------------------------------------------- 05: dedup


def call_key(data):
    try:
        client, _, sequence = json.loads(data)["id"].rpartition(":")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return (client, sequence) if client else None


def at_most_once(dispatch):
    table, lock = {}, threading.Lock()

    def dispatch_once(data):
        key = call_key(data)
        if key is None:
            return dispatch(data)
        with lock:
            if key not in table:
                table[key] = dispatch(data)
            return table[key]

    return dispatch_once


def by_id_alone(dispatch):
    table, lock = {}, threading.Lock()

    def dispatch_once(data):
        request_id = json.loads(data)["id"]
        with lock:
            if request_id not in table:
                table[request_id] = dispatch(data)
            return table[request_id]

    return dispatch_once


def by_sequence_alone(dispatch):
    table, lock = {}, threading.Lock()

    def dispatch_once(data):
        sequence = json.loads(data)["id"].rpartition(":")[2]
        with lock:
            if sequence not in table:
                table[sequence] = dispatch(data)
            return table[sequence]

    return dispatch_once


def without_a_lock(dispatch):
    table = {}

    def dispatch_once(data):
        key = call_key(data)
        if key not in table:
            table[key] = dispatch(data)
        return table[key]

    return dispatch_once


def test_the_dedup_check_passes_a_table_keyed_by_client_and_sequence():
    assert call_checks.check_dedup(at_most_once).startswith("each (client, sequence) ran once")


def test_the_dedup_check_catches_a_table_that_forgets_the_client():
    with pytest.raises(AssertionError, match="bob:1 did not run"):
        call_checks.check_dedup(by_sequence_alone)


def test_the_dedup_check_catches_a_duplicate_that_runs_while_the_first_is_running():
    with pytest.raises(AssertionError, match="arrived while the first was still running"):
        call_checks.check_dedup(without_a_lock)


def test_a_table_keyed_by_the_whole_id_passes_because_the_id_names_the_client():
    # "ada:1" and "bob:1" differ, so the id alone works for these callers; the notebook shows
    # where it does not: 04's stub numbers its ids 1, 2, 3... with no client in them.
    assert call_checks.check_dedup(by_id_alone)


def test_the_scripted_peer_answers_as_told_and_records_what_it_read():
    script = itertools.cycle([[(0, {"jsonrpc": "2.0", "result": "x", "id": 1})]])
    with call_checks.scripted_peer(lambda request, number: next(script)) as (address, seen):
        stub = reference.Stub(address, timeout=2.0)
        assert stub.ping() == "x"
        stub.close()
    assert [r["method"] for r in seen] == ["ping"]
