"""rpclab.grpcstack (callproxy, deadlines, errors, flowcontrol), rpclab.faults.flaky and
rpclab.grpcstack.balancer with gRPC: retries, load balancing, deadline propagation, rich errors."""

from __future__ import annotations

import json

import grpc
import pytest
from google.rpc import error_details_pb2

from rpclab.faults import Faults
from rpclab.faults.flaky import Attempt, Flaky
from rpclab.grpcstack import balancer, callproxy, deadlines, errors, flowcontrol
from rpclab.grpcstack.greeter import helloworld_pb2 as pb2
from rpclab.grpcstack.greeter import helloworld_pb2_grpc as pb2_grpc
from rpclab.grpcstack.services import add_greeter
from rpclab.runtime import background

SAY_HELLO = "/helloworld.Greeter/SayHello"


def retry_config(max_attempts: int) -> str:
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": "helloworld.Greeter"}],
                    "retryPolicy": {
                        "maxAttempts": max_attempts,
                        "initialBackoff": "0.01s",
                        "maxBackoff": "0.05s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def say_hello(target: str, name: str = "Ada", options=(), timeout: float = 2.0) -> str:
    with grpc.insecure_channel(target, options=list(options)) as channel:
        return (
            pb2_grpc.GreeterStub(channel)
            .SayHello(pb2.HelloRequest(name=name), timeout=timeout)
            .message
        )


@pytest.fixture
def flaky():
    interceptor = Flaky(fail_first=2)
    handle = background.serve_grpc("flaky", add_greeter, interceptors=[interceptor])
    yield interceptor, f"127.0.0.1:{handle.port}"
    handle.stop()


# --------------------------------------------------------------------------- retries


def test_without_a_retry_policy_the_flaky_server_fails_the_call(flaky):
    interceptor, target = flaky
    with pytest.raises(grpc.RpcError) as caught:
        say_hello(target)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert interceptor.attempts == [Attempt(SAY_HELLO, 1, True)]


def test_a_retry_policy_recovers_and_the_server_sees_the_attempt_numbers(flaky):
    interceptor, target = flaky
    assert say_hello(target, options=[("grpc.service_config", retry_config(3))]) == "Hello, Ada!"
    assert [(a.number, a.failed) for a in interceptor.attempts] == [
        (1, True),
        (2, True),
        (3, False),
    ]
    # the header each retry arrived with, as gRPC's client sent it (notebook 09 prints it)
    assert [a.header for a in interceptor.attempts] == [None, "1", "2"]


def test_too_few_attempts_still_fail(flaky):
    interceptor, target = flaky
    with pytest.raises(grpc.RpcError) as caught:
        say_hello(target, options=[("grpc.service_config", retry_config(2))])
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert [a.number for a in interceptor.attempts] == [1, 2]


def test_a_seeded_fraction_fails_the_same_attempts_every_time():
    def pattern(seed: int) -> list[bool]:
        interceptor = Flaky(fail=0.5, seed=seed)
        with background.serve_grpc("flaky", add_greeter, interceptors=[interceptor]) as handle:
            for _ in range(12):
                try:
                    say_hello(f"127.0.0.1:{handle.port}")
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.UNAVAILABLE
        return [a.failed for a in interceptor.attempts]

    first = pattern(7)
    assert first == pattern(7)
    assert True in first and False in first


def test_flaky_refuses_bad_settings():
    with pytest.raises(ValueError, match="fail_first"):
        Flaky(fail_first=-1)
    with pytest.raises(ValueError, match="probability"):
        Flaky(fail=1.5)
    with pytest.raises(ValueError, match="OK"):
        Flaky(code=grpc.StatusCode.OK)
    with pytest.raises(TypeError, match="unknown fault setting fail_fraction"):
        Flaky(fail_fraction=0.5)


def test_flaky_takes_the_shared_fault_vocabulary_and_refuses_what_it_cannot_do():
    assert Flaky(Faults(fail_first=2, seed=3)).faults == Flaky(fail_first=2, seed=3).faults
    with pytest.raises(ValueError, match=r"cannot act on delay, reset: .*serve_proxy"):
        Flaky(Faults(delay=0.1, reset=0.5))
    flaky = Flaky(fail=0.3, seed=9)
    assert flaky.configure(fail_first=1) == Faults(fail=0.3, fail_first=1, seed=9)
    assert str(flaky.faults) == "fail 30%, fail the first 1 attempt (seed 9)"


# --------------------------------------------------------------------------- load balancing


@pytest.fixture
def three_servers():
    counter = callproxy.CallCounter(methods=[SAY_HELLO])
    handles = [
        background.serve_grpc(name, add_greeter, interceptors=[counter.interceptor(name)])
        for name in ("lb-1", "lb-2", "lb-3")
    ]
    yield counter, handles
    for h in handles:
        h.stop()


def calls(channel: grpc.Channel, n: int) -> None:
    stub = pb2_grpc.GreeterStub(channel)
    for _ in range(n):
        stub.SayHello(pb2.HelloRequest(name="x"), timeout=2)


def test_round_robin_reaches_all_three_servers(three_servers):
    counter, handles = three_servers
    target = "ipv4:" + ",".join(f"127.0.0.1:{h.port}" for h in handles)
    with grpc.insecure_channel(target, options=[("grpc.lb_policy_name", "round_robin")]) as channel:
        calls(channel, 30)
    counts = counter.by_server()
    assert sum(counts.values()) == 30
    assert all(counts[name] > 0 for name in ("lb-1", "lb-2", "lb-3"))


def test_pick_first_sends_every_call_to_one_server(three_servers):
    counter, handles = three_servers
    target = "ipv4:" + ",".join(f"127.0.0.1:{h.port}" for h in handles)
    with grpc.insecure_channel(target, options=[("grpc.lb_policy_name", "pick_first")]) as channel:
        calls(channel, 30)
    assert sorted(counter.by_server().values()) == [0, 0, 30]
    assert len(counter.order()) == 30


def test_an_l4_balancer_sends_every_call_of_one_connection_to_one_server(three_servers):
    counter, handles = three_servers
    with balancer.serve_balancer("lb-l4", {h.name: h for h in handles}) as lb:
        with grpc.insecure_channel(f"127.0.0.1:{lb.port}") as channel:
            calls(channel, 30)
        assert sorted(counter.by_server().values()) == [0, 0, 30]
        assert sum(lb.connections.values()) == 1
        counter.reset()
        channels = [
            grpc.insecure_channel(
                f"127.0.0.1:{lb.port}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(3)
        ]
        try:
            for channel in channels:
                calls(channel, 10)
        finally:
            for channel in channels:
                channel.close()
    assert sorted(counter.by_server().values()) == [10, 10, 10]  # three connections: one per server


def test_an_l7_proxy_spreads_the_calls_of_one_connection(three_servers):
    counter, handles = three_servers
    with callproxy.serve_call_proxy("lb-l7", {h.name: h for h in handles}) as proxy:
        assert say_hello(f"127.0.0.1:{proxy.port}", "Grace") == "Hello, Grace!"
        with grpc.insecure_channel(f"127.0.0.1:{proxy.port}") as channel:
            calls(channel, 29)
        assert proxy.calls == {"lb-1": 10, "lb-2": 10, "lb-3": 10}
    assert counter.by_server() == {"lb-1": 10, "lb-2": 10, "lb-3": 10}
    assert counter.order()[:4] == ["lb-1", "lb-2", "lb-3", "lb-1"]


def test_the_l7_proxy_passes_errors_through():
    with background.serve_grpc(
        "strict", lambda s: pb2_grpc.add_GreeterServicer_to_server(errors.CheckedGreeter(), s)
    ) as h:
        with callproxy.serve_call_proxy("lb-l7", [h]) as proxy:
            with pytest.raises(grpc.RpcError) as caught:
                say_hello(f"127.0.0.1:{proxy.port}", "")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --------------------------------------------------------------------------- deadline propagation


def chain(propagate: bool, work: float):
    log: list[deadlines.HopRecord] = []
    c = deadlines.Hop("C", work=work, propagate=propagate, log=log)
    hc = background.serve_grpc("hop-c", lambda s: pb2_grpc.add_GreeterServicer_to_server(c, s))
    b = deadlines.Hop("B", hc.address, work=work, propagate=propagate, log=log)
    hb = background.serve_grpc("hop-b", lambda s: pb2_grpc.add_GreeterServicer_to_server(b, s))
    a = deadlines.Hop("A", hb.address, work=work, propagate=propagate, log=log)
    ha = background.serve_grpc("hop-a", lambda s: pb2_grpc.add_GreeterServicer_to_server(a, s))
    return log, f"127.0.0.1:{ha.port}", (a, b, c), (ha, hb, hc)


def stop_chain(hops, handles):
    for handle in handles:
        handle.stop()
    for hop in hops:
        hop.close()


def test_each_hop_passes_on_a_shrinking_deadline():
    log, target, hops, handles = chain(propagate=True, work=0.01)
    try:
        # Under 1 s: gRPC sends a deadline as a grpc-timeout header rounded UP to its unit,
        # which is 1 ms below 1 s but 10 ms from 1 s to 10 s (enough to hide a 10 ms hop).
        reply = say_hello(target, timeout=0.9)
    finally:
        stop_chain(hops, handles)
    left = {record.hop: record.time_left for record in log}
    assert 0.9 + 0.001 >= left["A"] > left["B"] > left["C"] > 0
    assert reply.startswith("A had ") and " -> B had " in reply and " -> C had " in reply
    assert [r.outcome for r in log] == ["done", "done", "done"]


def test_without_propagation_the_downstream_hops_have_no_deadline():
    log, target, hops, handles = chain(propagate=False, work=0.01)
    try:
        say_hello(target, timeout=5.0)
    finally:
        stop_chain(hops, handles)
    left = {record.hop: record.time_left for record in log}
    assert left["A"] is not None and left["B"] is None and left["C"] is None


def test_a_deadline_too_short_for_the_chain_stops_the_work_downstream():
    log, target, hops, handles = chain(propagate=True, work=0.3)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            say_hello(target, timeout=0.5)
    finally:
        stop_chain(hops, handles)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "C" not in {r.hop for r in log}  # B gave up before it would have called C
    assert all(r.outcome != "done" for r in log)


# --------------------------------------------------------------------------- rich errors


def test_rich_error_details_round_trip():
    servicer = errors.CheckedGreeter()
    with background.serve_grpc(
        "strict", lambda s: pb2_grpc.add_GreeterServicer_to_server(servicer, s)
    ) as h:
        target = f"127.0.0.1:{h.port}"
        assert say_hello(target, "Ada") == "Hello, Ada!"
        with pytest.raises(grpc.RpcError) as caught:
            say_hello(target, "R2D2" * 20)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "the request has 2 problem(s)"
    (bad,) = errors.error_details(error)
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("name", "must be at most 40 characters, not 80"),
        ("name", "must not contain digits"),
    ]


def test_a_plain_error_has_no_details(flaky):
    _, target = flaky
    with pytest.raises(grpc.RpcError) as caught:
        say_hello(target)
    assert errors.error_details(caught.value) == []


# --------------------------------------------------------------------------- the firehose


def test_the_firehose_sends_every_reply_and_counts_them():
    firehose = flowcontrol.Firehose(size=1000, count=50)
    with background.serve_grpc(
        "firehose", lambda s: pb2_grpc.add_GreeterServicer_to_server(firehose, s)
    ) as h:
        with grpc.insecure_channel(f"127.0.0.1:{h.port}") as channel:
            replies = list(
                pb2_grpc.GreeterStub(channel).SayHelloStreamReply(
                    pb2.HelloRequest(name="x"), timeout=5
                )
            )
        assert firehose.finished.wait(5)
    assert len(replies) == 50 and all(len(r.message) == 1000 for r in replies)
    assert firehose.produced == 50


# ------------------------------------------------------------------------ a call without a deadline


def test_an_increment_with_a_request_id_and_no_deadline_runs_once():
    """Regression: grpcio reports ~9.2e18 s left for a call without a deadline, too long for
    Lock.acquire."""
    from rpclab.grpcstack import kv_service
    from rpclab.grpcstack.services import add_kv

    kv_pb2, kv_pb2_grpc = kv_service.kv_pb2, kv_service.kv_pb2_grpc
    with background.serve_grpc("kv-no-deadline", add_kv) as handle:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            stub = kv_pb2_grpc.KVStub(channel)
            request = kv_pb2.IncrementRequest(key="visits", request_id="once")
            assert [stub.Increment(request).value for _ in range(2)] == [1, 1]
