"""rpclab.grpcstack.exercise_checks: each check passes a right answer, names what a typical wrong
answer did, and lets a blank exercise's NotDone through (notebooks 09, 10, 11)."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest

from rpclab.exercises import NotDone
from rpclab.grpcstack import exercise_checks
from rpclab.grpcstack.handlers import run_before
from rpclab.grpcstack.kv_service import kv_pb2, kv_pb2_grpc
from rpclab.runtime import aio, background


@pytest.fixture(autouse=True)
def _nothing_left_running():
    yield
    assert background.running() == {} and aio.running_aio() == {}


# --------------------------------------------------------------------------- 09


class _PutBase(kv_pb2_grpc.KVServicer):
    def __init__(self, work=0.2):
        self.work, self.store = work, {}


class CooperativePut(_PutBase):  # the notebook's solution
    def Put(self, request, context):
        ended = threading.Event()
        if context.add_callback(ended.set):
            ended.wait(self.work)
        if context.is_active():
            self.store[request.key] = request.value
        return kv_pb2.PutReply()


class NaivePut(_PutBase):
    def Put(self, request, context):
        time.sleep(self.work)
        self.store[request.key] = request.value
        return kv_pb2.PutReply()


class SleepThenCheckPut(_PutBase):
    def Put(self, request, context):
        time.sleep(self.work)
        if context.is_active():
            self.store[request.key] = request.value
        return kv_pb2.PutReply()


class BlankPut(_PutBase):
    def Put(self, request, context):
        raise NotDone("wait, then check")


def test_cooperative_put_passes_the_cooperative_handler():
    assert "stored nothing" in exercise_checks.cooperative_put(CooperativePut)


def test_cooperative_put_catches_a_handler_that_stores_after_its_deadline():
    with pytest.raises(AssertionError, match="stored 'late' although its caller gave up"):
        exercise_checks.cooperative_put(NaivePut, work=0.5)


def test_cooperative_put_catches_a_handler_that_sleeps_through_the_deadline():
    with pytest.raises(AssertionError, match="went on for .* context.add_callback"):
        exercise_checks.cooperative_put(SleepThenCheckPut, work=0.5)


def test_cooperative_put_lets_a_blank_exercise_say_not_done():
    with pytest.raises(NotDone):
        exercise_checks.cooperative_put(BlankPut, work=0.5)


# --------------------------------------------------------------------------- 10


class AdminOnly(grpc.ServerInterceptor):  # the notebook's solution
    def __init__(self, auth, admins):
        self.auth, self.admins = auth, set(admins)

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if details.method != "/rpclab.kv.KV/Delete":
            return handler
        who = self.auth.holder(details.invocation_metadata)
        if who is None or who in self.admins:
            return handler

        def refuse(context):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{who} may not delete")

        return run_before(handler, refuse)


class UnauthenticatedForAll(AdminOnly):  # the confusion the exercise is about
    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if details.method != "/rpclab.kv.KV/Delete":
            return handler
        if self.auth.holder(details.invocation_metadata) in self.admins:
            return handler
        return run_before(
            handler, lambda context: context.abort(grpc.StatusCode.UNAUTHENTICATED, "no")
        )


class BlankAdminOnly(AdminOnly):
    def intercept_service(self, continuation, details):
        raise NotDone("refuse non-admins")


def test_admin_only_delete_passes_the_solution():
    assert "PERMISSION_DENIED" in exercise_checks.admin_only_delete(AdminOnly)


def test_admin_only_delete_says_a_known_caller_is_denied_not_unauthenticated():
    with pytest.raises(
        AssertionError, match="got UNAUTHENTICATED: he should get PERMISSION_DENIED"
    ):
        exercise_checks.admin_only_delete(UnauthenticatedForAll)


def test_admin_only_delete_lets_a_blank_exercise_say_not_done():
    with pytest.raises(NotDone):
        exercise_checks.admin_only_delete(BlankAdminOnly)


# --------------------------------------------------------------------------- 11


class LockedCounter(kv_pb2_grpc.KVServicer):  # the notebook's solution
    def __init__(self):
        self.store = exercise_checks.SlowStore()
        self.replies = {}
        self.lock = asyncio.Lock()

    async def Increment(self, request, context):
        async with self.lock:
            if request.request_id and request.request_id in self.replies:
                return self.replies[request.request_id]
            value = await self.store.increment(request.key, request.amount or 1)
            reply = kv_pb2.IncrementReply(value=value)
            if request.request_id:
                self.replies[request.request_id] = reply
            return reply


class RacyCounter(LockedCounter):
    async def Increment(self, request, context):
        if request.request_id and request.request_id in self.replies:
            return self.replies[request.request_id]
        value = await self.store.increment(request.key, request.amount or 1)
        reply = kv_pb2.IncrementReply(value=value)
        if request.request_id:
            self.replies[request.request_id] = reply
        return reply


class BlankCounter(LockedCounter):
    async def Increment(self, request, context):
        raise NotDone("check, increment, save")


def test_once_per_request_id_passes_the_locked_counter():
    assert "one increment per request id" in exercise_checks.once_per_request_id(LockedCounter)


def test_once_per_request_id_catches_the_race_between_check_and_save():
    with pytest.raises(AssertionError, match=r"arriving together returned \[2, 3\]"):
        exercise_checks.once_per_request_id(RacyCounter)


def test_once_per_request_id_lets_a_blank_exercise_say_not_done():
    with pytest.raises(NotDone):
        exercise_checks.once_per_request_id(BlankCounter)
