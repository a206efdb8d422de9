"""Notebook 09's exercise check (rpclab.grpcstack.reliability_checks): the cooperative Put
passes, and a Put that stores late, sleeps through its deadline, or waits a time of its own
instead of self.work is caught in plain words."""

from __future__ import annotations

import threading
import time

import pytest

from rpclab.exercises import NotDone
from rpclab.grpcstack.kv_service import kv_pb2, kv_pb2_grpc
from rpclab.grpcstack.reliability_checks import check_cooperative_put
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


class FixedWaitPut(_PutBase):
    """Cooperative, but waits a number of its own instead of self.work."""

    seconds = 0.15

    def Put(self, request, context):
        ended = threading.Event()
        if context.add_callback(ended.set):
            ended.wait(self.seconds)
        if context.is_active():
            self.store[request.key] = request.value
        return kv_pb2.PutReply()


class FixedLongWaitPut(FixedWaitPut):
    seconds = 1.0  # the check's default work: right for one servicer, wrong for the other


class NoWorkPut(_PutBase):
    def Put(self, request, context):
        if context.is_active():
            self.store[request.key] = request.value
        return kv_pb2.PutReply()


class BlankPut(_PutBase):
    def Put(self, request, context):
        raise NotDone("wait, then check")


def test_cooperative_put_passes_the_cooperative_handler():
    assert "stored nothing" in check_cooperative_put(CooperativePut)


def test_cooperative_put_catches_a_handler_that_stores_after_its_deadline():
    with pytest.raises(AssertionError, match="stored 'late' although its caller gave up"):
        check_cooperative_put(NaivePut, work=0.5)


def test_cooperative_put_catches_a_handler_that_sleeps_through_the_deadline():
    with pytest.raises(AssertionError, match="went on for .* context.add_callback"):
        check_cooperative_put(SleepThenCheckPut, work=0.5)


@pytest.mark.parametrize("servicer", [FixedWaitPut, FixedLongWaitPut, NoWorkPut])
def test_cooperative_put_catches_a_handler_that_does_not_work_self_work_seconds(servicer):
    with pytest.raises(AssertionError, match=r"with self\.work = .* your Put took"):
        check_cooperative_put(servicer)


def test_cooperative_put_lets_a_blank_exercise_say_not_done():
    with pytest.raises(NotDone):
        check_cooperative_put(BlankPut, work=0.5)
