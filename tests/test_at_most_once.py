"""Retries over a lossy network: naive retries count wrong, retries with request ids and server
de-dup count right.

The KV store's ``increment`` is not idempotent. Through a proxy that drops 20%
of the frames both ways, a call whose *reply* was lost has already run on the
server; retrying it runs it again unless the server recognises the request id.
"""

from __future__ import annotations

import pytest

from rpclab import faults, kv
from rpclab.byhand import socketrpc
from rpclab.faults import Faults

CALLS = 100
LOSSY = Faults(drop=0.2, seed=2024)  # 20% of frames lost, both ways, the same ones every run


def increments_through_a_lossy_proxy(at_most_once: bool) -> tuple[int, faults.ProxyStats, int]:
    """Increment a counter CALLS times through the lossy proxy; return the counter, the proxy's
    stats, replays."""
    store = kv.KVStore()
    server = socketrpc.serve(store, name="kv", at_most_once=at_most_once)
    proxy = faults.serve_proxy("lossy", server, LOSSY)
    try:
        with socketrpc.connect(proxy.address, timeout=0.05, retries=30, backoff=0.001) as client:
            for _ in range(CALLS):
                client.increment(
                    "hits"
                )  # retried with the same request id until a reply gets through
        replays = server.dedup.replays if server.dedup is not None else 0
        return int(store.get("hits")), proxy.stats, replays
    finally:
        proxy.stop()
        server.stop()


def test_retries_without_server_dedup_count_wrong():
    counted, stats, _ = increments_through_a_lossy_proxy(at_most_once=False)
    assert stats.reply.dropped > 0  # some calls ran but their answers were lost...
    assert counted > CALLS  # ...so their retries ran them again


def test_retries_with_request_ids_and_server_dedup_count_exactly():
    counted, stats, replays = increments_through_a_lossy_proxy(at_most_once=True)
    assert stats.request.dropped > 0 and stats.reply.dropped > 0  # the network really was lossy
    assert replays > 0  # the server answered repeats from its table instead of running them
    assert counted == CALLS


def test_a_new_id_for_each_try_counts_wrong_even_with_server_dedup():
    store = kv.KVStore()
    server = socketrpc.serve(store, name="kv", at_most_once=True)
    proxy = faults.serve_proxy("lossy", server, LOSSY)
    try:
        with socketrpc.connect(proxy.address, timeout=0.05, retries=0) as client:
            for _ in range(CALLS):
                for _attempt in range(
                    30
                ):  # a hand-written retry loop: each try is a new call, with a new id
                    try:
                        client.increment("hits")
                        break
                    except socketrpc.CallTimeout:
                        continue
                else:
                    pytest.fail("30 tries in a row were lost")
        assert int(store.get("hits")) > CALLS
    finally:
        proxy.stop()
        server.stop()
