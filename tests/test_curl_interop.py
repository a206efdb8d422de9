"""curl, a client that owes nothing to Python, calling the REST and XML-RPC servers
(rpclab.adapters.curl, notebook 12).

Without curl these tests skip, saying how to install it; with RPCLAB_REQUIRE_CURL=1 (set by
.ci/run) they fail instead.
"""

from __future__ import annotations

import os
import xmlrpc.client

import pytest

from rpclab.adapters import curl, rest, xml_rpc
from rpclab.kv import KVStore


@pytest.fixture
def have_curl():
    reason = curl.missing_reason()
    if reason is not None:
        if os.environ.get("RPCLAB_REQUIRE_CURL") == "1":
            pytest.fail(f"RPCLAB_REQUIRE_CURL=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture
def servers():
    store = KVStore()
    handles = (xml_rpc.serve(store, name="curl-xmlrpc"), rest.serve(store, name="curl-rest"))
    yield store, *(f"http://{h.host}:{h.port}" for h in handles)
    for handle in handles:
        handle.stop()


def test_curl_reads_and_writes_the_store_through_rest(have_curl, servers):
    store, _, rest_url = servers
    put = curl.exchange(
        "PUT",
        f"{rest_url}/keys/greeting",
        body='{"value": "hello from curl"}',
        headers=["Content-Type: application/json"],
    )
    assert put.status == 200 and store.get("greeting") == "hello from curl"
    assert put.request_head[0] == "PUT /keys/greeting HTTP/1.1"
    assert put.sizes.request_body == len('{"value": "hello from curl"}')
    got = curl.exchange("GET", f"{rest_url}/keys/greeting")
    assert got.body == '{"key":"greeting","value":"hello from curl"}'
    assert got.sizes.response_body == len(got.body)
    assert curl.exchange("GET", f"{rest_url}/keys/nothing-here").status == 404
    shown = str(got)
    assert "> GET /keys/greeting HTTP/1.1" in shown and "< HTTP/1.1 200 OK" in shown


def test_curl_speaks_xml_rpc_by_hand(have_curl, servers):
    store, xml_url, _ = servers
    store.put("greeting", "hello")
    call = xmlrpc.client.dumps(("greeting",), methodname="get")
    seen = curl.exchange("POST", f"{xml_url}/RPC2", body=call, headers=["Content-Type: text/xml"])
    assert seen.status == 200
    assert xmlrpc.client.loads(seen.body) == (("hello",), None)


def test_pythons_xml_rpc_server_gzips_replies_over_1400_bytes_when_asked(have_curl, servers):
    store, xml_url, _ = servers
    store.put("small", "x" * 1000)
    store.put("large", "x" * 10_000)
    sizes = {}
    for key in ("small", "large"):
        call = xmlrpc.client.dumps((key,), methodname="get")
        seen = curl.exchange(
            "POST",
            f"{xml_url}/RPC2",
            body=call,
            headers=["Content-Type: text/xml"],
            compressed=True,
        )
        assert xmlrpc.client.loads(seen.body)[0] == (store.get(key),)
        sizes[key] = (seen.header("content-encoding"), seen.sizes.response_body, len(seen.body))
    assert sizes["small"][0] is None and sizes["small"][1] == sizes["small"][2]  # under 1400
    encoding, on_the_wire, decoded = sizes["large"]
    assert encoding == "gzip" and on_the_wire < decoded / 20


def test_a_server_that_is_not_there_is_a_clear_error(have_curl):
    with pytest.raises(curl.CurlError, match="curl: \\(7\\)"):
        curl.exchange("GET", "http://127.0.0.1:1/", timeout=5)
