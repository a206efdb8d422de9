"""A deadline set in JavaScript (kv_client.js --deadline-ms) arrives in the Python servicer as
context.time_remaining(): the grpc-timeout header carries it across languages (notebook 12)."""

from __future__ import annotations

import os

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


def test_a_javascript_deadline_arrives_as_time_remaining(node):
    servicer = DeadlineRecorder()
    servicer.store.put("greeting", "hello")
    handle = background.serve_grpc(
        "kv-deadline",
        lambda server: services.kv_service.kv_pb2_grpc.add_KVServicer_to_server(servicer, server),
    )
    try:
        node_client.run_node_client(handle.address, "get", "greeting", deadline_ms=1500)
        node_client.run_node_client(handle.address, "get", "greeting")  # the default, 5000
    finally:
        handle.stop()
    short, default = servicer.time_left
    assert 0 < short <= 1.5  # what is left of 1.5 s once the call has crossed
    assert 1.5 < default <= 5.0
