"""The Node.js gRPC client (clients/node) against the kernel's gRPC KV server.

Without Node.js these tests skip, saying how to get it; with RPCLAB_REQUIRE_NODE=1
(set by .ci/run) a missing Node.js or `npm ci` is a failure instead.
"""

from __future__ import annotations

import os

import pytest

from rpclab.adapters import node_client
from rpclab.grpcstack import services as grpcservices
from rpclab.kv import KVStore
from rpclab.runtime import background


@pytest.fixture
def node():
    reason = node_client.missing_reason()
    if reason is not None:
        if os.environ.get("RPCLAB_REQUIRE_NODE") == "1":
            pytest.fail(f"RPCLAB_REQUIRE_NODE=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture
def kv_server():
    store = KVStore()
    handle = background.serve_grpc("kv-for-node", lambda server: grpcservices.add_kv(server, store))
    yield handle, store
    handle.stop()


def test_node_demo_makes_every_call_on_the_python_server(node, kv_server):
    handle, store = kv_server
    lines = node_client.run_node_client(handle.address, "demo")
    assert [line["call"] for line in lines] == [
        "put",
        "get",
        "increment",
        "increment",
        "delete",
        "get",
    ]
    assert lines[1]["value"] == "hello from Node.js"
    assert lines[3]["value"] == "42"  # int64 reaches JavaScript as a string
    assert lines[4]["existed"] is True
    assert lines[5]["error"]["code"] == "NOT_FOUND"
    assert store.get("visits") == "42" and "greeting" not in store


def test_node_and_python_share_one_store_and_one_text_encoding(node, kv_server):
    handle, store = kv_server
    assert node_client.run_node_client(handle.address, "put", "greeting", "héllo ✓ 世界") == [
        {"call": "put", "key": "greeting", "value": "héllo ✓ 世界"}
    ]
    assert store.get("greeting") == "héllo ✓ 世界"
    store.put("count", str(2**62))
    (line,) = node_client.run_node_client(handle.address, "increment", "count", "-1")
    assert line["value"] == str(2**62 - 1)  # exact: no detour through a JavaScript double


def test_node_reports_not_found_as_an_error_with_its_status(node, kv_server):
    handle, _ = kv_server
    with pytest.raises(node_client.NodeCallError) as caught:
        node_client.run_node_client(handle.address, "get", "missing")
    assert caught.value.code == "NOT_FOUND"
    assert "missing" in caught.value.details
    assert caught.value.returncode == 1
    assert "NOT_FOUND" in caught.value.stderr


def test_node_reports_a_bad_command_and_an_unreachable_server(node, kv_server):
    handle, _ = kv_server
    with pytest.raises(node_client.NodeClientError) as caught:
        node_client.run_node_client(handle.address, "increment", "n", "lots")
    assert caught.value.returncode == 2 and "AMOUNT must be a whole number" in str(caught.value)
    address = handle.address
    handle.stop()
    with pytest.raises(node_client.NodeCallError) as caught:
        node_client.run_node_client(address, "get", "a", deadline_ms=2000)
    assert caught.value.code == "UNAVAILABLE"


def test_a_missing_node_is_explained(monkeypatch):
    monkeypatch.setattr(node_client.shutil, "which", lambda name: None)
    with pytest.raises(node_client.NodeMissing) as caught:
        node_client.run_node_client(("127.0.0.1", 1), "get", "a")
    message = str(caught.value)
    assert (
        "conda install" in message
        and "apt-get install nodejs npm" in message
        and "npm ci" in message
    )
    assert node_client.node_available() is None


def test_missing_packages_are_explained(monkeypatch, tmp_path):
    monkeypatch.setattr(node_client.shutil, "which", lambda name: "/usr/bin/node")
    (tmp_path / "kv_client.js").write_text("// stand-in\n")
    monkeypatch.setattr(node_client, "CLIENT_DIR", tmp_path)
    monkeypatch.setattr(node_client, "CLIENT_SCRIPT", tmp_path / "kv_client.js")
    reason = node_client.missing_reason()
    assert reason is not None and "npm ci" in reason and str(tmp_path) in reason


def test_keys_and_values_may_look_like_options(node, kv_server):
    """Issue 12, item 14: "-h", "--help" and "--deadline-ms" were taken for options."""
    handle, store = kv_server
    assert node_client.run_node_client(handle.address, "put", "-h", "--deadline-ms") == [
        {"call": "put", "key": "-h", "value": "--deadline-ms"}
    ]
    node_client.run_node_client(handle.address, "put", "--help", "--", deadline_ms=3000)
    assert store.get("-h") == "--deadline-ms" and store.get("--help") == "--"
    assert node_client.run_node_client(handle.address, "get", "--help") == [
        {"call": "get", "key": "--help", "value": "--"}
    ]
