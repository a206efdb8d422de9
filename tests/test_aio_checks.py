"""Notebook 11's exercise check (rpclab.grpcstack.aio_checks): a locked Increment passes, and
the race between reading the saved replies and writing them, or an Increment that ignores the
amount, is caught."""

from __future__ import annotations

import asyncio

import pytest

from rpclab.exercises import NotDone
from rpclab.grpcstack.aio_checks import SlowStore, check_once_per_id
from rpclab.grpcstack.kv_service import kv_pb2, kv_pb2_grpc
from rpclab.runtime import aio, background


@pytest.fixture(autouse=True)
def _nothing_left_running():
    yield
    assert background.running() == {} and aio.running_aio() == {}


# --------------------------------------------------------------------------- 11


class LockedCounter(kv_pb2_grpc.KVServicer):  # the notebook's solution
    def __init__(self):
        self.store = SlowStore()
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


class AlwaysOneCounter(LockedCounter):  # locked, but adds 1 whatever the amount
    async def Increment(self, request, context):
        async with self.lock:
            if request.request_id and request.request_id in self.replies:
                return self.replies[request.request_id]
            value = await self.store.increment(request.key, 1)
            reply = kv_pb2.IncrementReply(value=value)
            if request.request_id:
                self.replies[request.request_id] = reply
            return reply


class BlankCounter(LockedCounter):
    async def Increment(self, request, context):
        raise NotDone("check, increment, save")


def test_once_per_request_id_passes_the_locked_counter():
    assert "one increment per request id" in check_once_per_id(LockedCounter)


def test_once_per_request_id_catches_the_race_between_check_and_save():
    with pytest.raises(
        AssertionError, match=r"arriving together, on a counter at 5, returned \[7, 9\]"
    ):
        check_once_per_id(RacyCounter)


def test_once_per_request_id_catches_an_increment_that_ignores_the_amount():
    with pytest.raises(AssertionError, match=r"with amount=5, returned 1, not 5"):
        check_once_per_id(AlwaysOneCounter)


def test_once_per_request_id_lets_a_blank_exercise_say_not_done():
    with pytest.raises(NotDone):
        check_once_per_id(BlankCounter)
