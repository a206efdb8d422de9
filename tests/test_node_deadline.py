"""A deadline set in JavaScript (kv_client.js --deadline-ms) arrives in the Python servicer as
context.time_remaining(): the grpc-timeout header carries it across languages (notebook 12)."""

from __future__ import annotations

import os
import subprocess

import pytest

from rpclab.adapters import node_client
from rpclab.grpcstack import services
from rpclab.runtime import background


class DeadlineRecorder(services.KV):
    """The store's servicer, noting the time each Get had left when it arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.time_left: list[float] = []

    def Get(self, request, context):
        self.time_left.append(context.time_remaining())
        return super().Get(request, context)


@pytest.fixture
def node():
    reason = node_client.missing_reason()
    if reason is not None:
        if os.environ.get("RPCLAB_REQUIRE_NODE") == "1":
            pytest.fail(f"RPCLAB_REQUIRE_NODE=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture
def recorded():
    """A KV server whose Get records the time its caller left it; the servicer and the server."""
    servicer = DeadlineRecorder()
    servicer.store.put("greeting", "hello")
    handle = background.serve_grpc(
        "kv-deadline",
        lambda server: services.kv_service.kv_pb2_grpc.add_KVServicer_to_server(servicer, server),
    )
    try:
        yield servicer, handle
    finally:
        handle.stop()


def test_a_javascript_deadline_arrives_as_time_remaining(node, recorded):
    servicer, handle = recorded
    node_client.run_node_client(handle.address, "get", "greeting", deadline_ms=1500)
    node_client.run_node_client(handle.address, "get", "greeting")  # the default, 5000
    short, default = servicer.time_left
    assert 0 < short <= 1.5  # what is left of 1.5 s once the call has crossed
    assert 1.5 < default <= 5.0


def test_a_repeated_call_gets_a_fresh_deadline_on_the_same_channel(node, recorded):
    servicer, handle = recorded
    lines = node_client.run_node_client(
        handle.address, "get", "greeting", deadline_ms=1500, repeat=3
    )
    assert lines == [{"call": "get", "key": "greeting", "value": "hello"}] * 3
    assert len(servicer.time_left) == 3
    assert all(0 < left <= 1.5 for left in servicer.time_left)


@pytest.mark.parametrize("repeat", [0, 101, 2.5, True])
def test_repeat_out_of_range_is_refused_before_node_runs(repeat):
    with pytest.raises((TypeError, ValueError), match="repeat"):
        node_client.run_node_client(("127.0.0.1", 1), "get", "greeting", repeat=repeat)


@pytest.mark.parametrize("repeat", ["0", "101", "two"])
def test_the_javascript_client_refuses_a_bad_repeat_itself(node, repeat):
    done = subprocess.run(
        [node_client.require_node(), str(node_client.CLIENT_SCRIPT), "--repeat", repeat]
        + ["127.0.0.1:1", "get", "greeting"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--repeat needs a whole number from 1 to 100" in done.stderr
    assert done.stdout == ""
