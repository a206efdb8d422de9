"""The gRPC services over real channels: Greeter, RouteGuide, KV, health and reflection."""

from __future__ import annotations

import math
import queue
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from rpclab.grpcstack import services as grpcservices
from rpclab.grpcstack.kv_service import VERSION_METADATA_KEY, ReplyCache
from rpclab.grpcstack.protos import load
from rpclab.grpcstack.route_guide_db import PLACES
from rpclab.kv import KVStore
from rpclab.runtime import background

helloworld_pb2, helloworld_pb2_grpc = load("helloworld")
route_guide_pb2, route_guide_pb2_grpc = load("route_guide")
kv_pb2, kv_pb2_grpc = load("kv")

TIMEOUT = 5.0  # every call's deadline, so that a broken server fails a test instead of hanging it


@pytest.fixture
def store() -> KVStore:
    return KVStore()


@pytest.fixture
def server(store):
    handle = grpcservices.serve_all(name="test-grpc-services", store=store)
    yield handle
    handle.stop()


@pytest.fixture
def channel(server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"{server.host}:{server.port}") as ch:
        yield ch


def status_of(call, *args, **kwargs) -> grpc.StatusCode:
    """Make the call and return the status code it failed with."""
    kwargs.setdefault("timeout", TIMEOUT)
    with pytest.raises(grpc.RpcError) as caught:
        result = call(*args, **kwargs)
        if isinstance(result, grpc.Call) and hasattr(result, "__iter__"):
            list(result)
    return caught.value.code()


def feeder(items: queue.Queue[object]) -> Iterator[object]:
    """A request stream fed from a queue, ending at None (or after TIMEOUT without a message)."""
    while True:
        item = items.get(timeout=TIMEOUT)
        if item is None:
            return
        yield item


def point(lat: int, lon: int):
    return route_guide_pb2.Point(latitude=lat, longitude=lon)


# --------------------------------------------------------------------------- Greeter


def test_say_hello(channel):
    stub = helloworld_pb2_grpc.GreeterStub(channel)
    assert (
        stub.SayHello(helloworld_pb2.HelloRequest(name="Ada"), timeout=TIMEOUT).message
        == "Hello, Ada!"
    )


def test_say_hello_stream_reply_sends_several_greetings(channel):
    stub = helloworld_pb2_grpc.GreeterStub(channel)
    replies = [
        r.message
        for r in stub.SayHelloStreamReply(helloworld_pb2.HelloRequest(name="Ada"), timeout=TIMEOUT)
    ]
    assert replies == ["Hello number 1, Ada!", "Hello number 2, Ada!", "Hello number 3, Ada!"]


def test_say_hello_bidi_answers_each_request_as_it_arrives(channel):
    stub = helloworld_pb2_grpc.GreeterStub(channel)
    requests: queue.Queue[object] = queue.Queue()
    replies = stub.SayHelloBidiStream(feeder(requests), timeout=TIMEOUT)
    for name in ("Ada", "Grace", "Linus"):
        requests.put(helloworld_pb2.HelloRequest(name=name))
        assert (
            next(replies).message == f"Hello, {name}!"
        )  # answered before the next request is sent
    requests.put(None)
    assert list(replies) == []


def test_greeter_alone_via_background():
    with background.serve_grpc("test-greeter", grpcservices.add_greeter) as handle:
        with grpc.insecure_channel(f"{handle.host}:{handle.port}") as ch:
            reply = helloworld_pb2_grpc.GreeterStub(ch).SayHello(
                helloworld_pb2.HelloRequest(name=""), timeout=TIMEOUT
            )
    assert reply.message == "Hello, !"


# --------------------------------------------------------------------------- RouteGuide


def test_get_feature_at_a_known_place(channel):
    stub = route_guide_pb2_grpc.RouteGuideStub(channel)
    place = PLACES[3]
    feature = stub.GetFeature(point(place.latitude, place.longitude), timeout=TIMEOUT)
    assert feature.name == place.name
    assert (feature.location.latitude, feature.location.longitude) == (
        place.latitude,
        place.longitude,
    )


def test_get_feature_elsewhere_is_unnamed(channel):
    stub = route_guide_pb2_grpc.RouteGuideStub(channel)
    feature = stub.GetFeature(point(1, 2), timeout=TIMEOUT)
    assert feature.name == ""
    assert feature.HasField("location")
    assert (feature.location.latitude, feature.location.longitude) == (1, 2)


def test_list_features_streams_those_inside_the_rectangle(channel):
    stub = route_guide_pb2_grpc.RouteGuideStub(channel)
    south, north, west, east = 474000000, 476000000, -1224000000, -1221000000
    expected = {
        p.name for p in PLACES if south <= p.latitude <= north and west <= p.longitude <= east
    }
    assert 3 <= len(expected) < len(PLACES)
    # corners given "the wrong way round": the server normalises them
    rectangle = route_guide_pb2.Rectangle(lo=point(north, east), hi=point(south, west))
    assert {f.name for f in stub.ListFeatures(rectangle, timeout=TIMEOUT)} == expected


def test_list_features_includes_the_edges(channel):
    stub = route_guide_pb2_grpc.RouteGuideStub(channel)
    place = PLACES[0]
    here = point(place.latitude, place.longitude)
    assert [
        f.name
        for f in stub.ListFeatures(route_guide_pb2.Rectangle(lo=here, hi=here), timeout=TIMEOUT)
    ] == [place.name]


def test_record_route_summarises_a_known_route(channel):
    stub = route_guide_pb2_grpc.RouteGuideStub(channel)
    # one degree east along the equator, then one degree north: two arcs of R * pi / 180 metres
    route = [point(0, 0), point(0, 10_000_000), point(10_000_000, 10_000_000)]
    summary = stub.RecordRoute(iter(route), timeout=TIMEOUT)
    assert summary.point_count == 3
    assert summary.feature_count == 0
    assert summary.distance == int(2 * 6371000 * math.pi / 180) == 222389
    assert summary.elapsed_time >= 0


def test_record_route_counts_features_on_the_way(channel):
    stub = route_guide_pb2_grpc.RouteGuideStub(channel)
    a, b = PLACES[0], PLACES[1]
    route = [
        point(a.latitude, a.longitude),
        point(1, 1),
        point(b.latitude, b.longitude),
        point(a.latitude, a.longitude),
    ]
    summary = stub.RecordRoute(iter(route), timeout=TIMEOUT)
    assert (summary.point_count, summary.feature_count) == (4, 3)
    assert summary.distance > 2 * 10_000_000  # out to (0, 0) and back: thousands of km


def test_record_route_of_no_points(channel):
    summary = route_guide_pb2_grpc.RouteGuideStub(channel).RecordRoute(iter([]), timeout=TIMEOUT)
    assert (summary.point_count, summary.feature_count, summary.distance) == (0, 0, 0)


def test_route_chat_answers_with_earlier_notes_at_the_same_place(channel):
    stub = route_guide_pb2_grpc.RouteGuideStub(channel)
    here, there = point(1, 1), point(2, 2)
    requests: queue.Queue[object] = queue.Queue()
    replies = stub.RouteChat(feeder(requests), timeout=TIMEOUT)

    def say(where, text: str, answers: int) -> list[str]:
        requests.put(route_guide_pb2.RouteNote(location=where, message=text))
        return [next(replies).message for _ in range(answers)]

    assert say(here, "first", 0) == []
    assert say(there, "second", 0) == []
    assert say(here, "third", 1) == ["first"]
    assert say(here, "fourth", 2) == ["first", "third"]
    assert say(there, "fifth", 1) == ["second"]
    requests.put(None)
    assert list(replies) == []


# --------------------------------------------------------------------------- KV


def test_put_get_delete(channel, store):
    stub = kv_pb2_grpc.KVStub(channel)
    assert (
        stub.Put(kv_pb2.PutRequest(key="colour", value="blue"), timeout=TIMEOUT)
        == kv_pb2.PutReply()
    )
    assert stub.Get(kv_pb2.GetRequest(key="colour"), timeout=TIMEOUT).value == "blue"
    assert store.get("colour") == "blue"  # the very store the server was given
    assert stub.Delete(kv_pb2.DeleteRequest(key="colour"), timeout=TIMEOUT).existed is True
    assert stub.Delete(kv_pb2.DeleteRequest(key="colour"), timeout=TIMEOUT).existed is False


def test_get_missing_key_is_not_found(channel):
    stub = kv_pb2_grpc.KVStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Get(kv_pb2.GetRequest(key="ghost"), timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "no such key: 'ghost'"


@pytest.mark.parametrize(
    "method, request_",
    [
        ("Get", kv_pb2.GetRequest(key="")),
        ("Put", kv_pb2.PutRequest(key="", value="x")),
        ("Put", kv_pb2.PutRequest(key="k" * 257, value="x")),
        ("Put", kv_pb2.PutRequest(key="k", value="v" * (64 * 1024 + 1))),
        ("Delete", kv_pb2.DeleteRequest(key="")),
        ("Increment", kv_pb2.IncrementRequest(key="")),
        ("Increment", kv_pb2.IncrementRequest(key="k", request_id="r" * 129)),
        ("Watch", kv_pb2.WatchRequest(prefix="p" * 257)),
    ],
)
def test_bad_input_is_invalid_argument(channel, method, request_):
    assert (
        status_of(getattr(kv_pb2_grpc.KVStub(channel), method), request_)
        == grpc.StatusCode.INVALID_ARGUMENT
    )


def test_increment(channel):
    stub = kv_pb2_grpc.KVStub(channel)
    assert (
        stub.Increment(kv_pb2.IncrementRequest(key="n"), timeout=TIMEOUT).value == 1
    )  # missing key: 0, amount: 1
    assert stub.Increment(kv_pb2.IncrementRequest(key="n", amount=41), timeout=TIMEOUT).value == 42
    assert (
        stub.Increment(kv_pb2.IncrementRequest(key="n", amount=0), timeout=TIMEOUT).value == 42
    )  # sent as 0
    assert stub.Increment(kv_pb2.IncrementRequest(key="n", amount=-50), timeout=TIMEOUT).value == -8
    assert stub.Get(kv_pb2.GetRequest(key="n"), timeout=TIMEOUT).value == "-8"


def test_increment_of_a_non_integer_is_invalid_argument(channel, store):
    store.put("name", "Ada")
    stub = kv_pb2_grpc.KVStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Increment(kv_pb2.IncrementRequest(key="name"), timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not an integer" in caught.value.details()
    assert store.get("name") == "Ada"


def test_increment_beyond_int64_is_out_of_range_and_changes_nothing(channel, store):
    store.put("big", str(2**63 - 1))
    assert status_of(kv_pb2_grpc.KVStub(channel).Increment, kv_pb2.IncrementRequest(key="big")) == (
        grpc.StatusCode.OUT_OF_RANGE
    )
    assert store.get("big") == str(2**63 - 1)


def test_increment_without_request_id_runs_every_time(channel, store):
    stub = kv_pb2_grpc.KVStub(channel)
    request = kv_pb2.IncrementRequest(key="hits", amount=5)
    stub.Increment(request, timeout=TIMEOUT)
    stub.Increment(request, timeout=TIMEOUT)  # a "retry" without an id
    assert store.get("hits") == "10"


def test_increment_with_request_id_runs_at_most_once(channel, store):
    stub = kv_pb2_grpc.KVStub(channel)
    request = kv_pb2.IncrementRequest(key="hits", amount=5, request_id="3f1c-retry-me")
    first = stub.Increment(request, timeout=TIMEOUT)
    again = stub.Increment(
        request, timeout=TIMEOUT
    )  # a retry: the saved reply, no second increment
    assert first.value == again.value == 5
    assert store.get("hits") == "5"
    fresh = stub.Increment(
        kv_pb2.IncrementRequest(key="hits", amount=5, request_id="another"), timeout=TIMEOUT
    )
    assert fresh.value == 10


def test_concurrent_retries_with_one_request_id_increment_once(channel, store):
    stub = kv_pb2_grpc.KVStub(channel)
    request = kv_pb2.IncrementRequest(key="hits", request_id="same-id")
    futures = [stub.Increment.future(request, timeout=TIMEOUT) for _ in range(8)]
    assert {f.result().value for f in futures} == {1}
    assert store.get("hits") == "1"


def test_request_id_reused_for_another_increment_is_invalid_argument(channel, store):
    stub = kv_pb2_grpc.KVStub(channel)
    stub.Increment(kv_pb2.IncrementRequest(key="a", request_id="id-1"), timeout=TIMEOUT)
    code = status_of(stub.Increment, kv_pb2.IncrementRequest(key="b", request_id="id-1"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "b" not in store


def test_failed_increment_is_not_remembered(channel, store):
    stub = kv_pb2_grpc.KVStub(channel)
    store.put("n", "not a number")
    request = kv_pb2.IncrementRequest(key="n", request_id="try-again")
    assert status_of(stub.Increment, request) == grpc.StatusCode.INVALID_ARGUMENT
    store.put("n", "1")
    assert (
        stub.Increment(request, timeout=TIMEOUT).value == 2
    )  # the retry runs: nothing had happened


def test_reply_cache_forgets_the_oldest_beyond_capacity():
    cache = ReplyCache(capacity=2)
    for n in range(3):
        cache.put(f"id-{n}", ("k", 1), kv_pb2.IncrementReply(value=n))
    assert len(cache) == 2
    assert cache.get("id-0") is None
    assert cache.get("id-2").reply.value == 2
    with pytest.raises(ValueError):
        ReplyCache(capacity=0)


def test_slow_call_past_its_deadline_is_deadline_exceeded_and_does_no_work(store):
    with background.serve_grpc(
        "test-slow-kv", lambda s: grpcservices.add_kv(s, store, delay=10.0)
    ) as handle:
        with grpc.insecure_channel(f"{handle.host}:{handle.port}") as ch:
            stub = kv_pb2_grpc.KVStub(ch)
            code = status_of(stub.Put, kv_pb2.PutRequest(key="late", value="x"), timeout=0.3)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "late" not in store  # the server noticed the deadline and gave up before the work


def test_unknown_method_is_unimplemented(channel):
    call = channel.unary_unary("/rpclab.kv.KV/Rename")
    assert status_of(call, b"") == grpc.StatusCode.UNIMPLEMENTED
    assert status_of(channel.unary_unary("/no.Such/Service"), b"") == grpc.StatusCode.UNIMPLEMENTED


# --------------------------------------------------------------------------- Watch


def start_watch(stub, **fields):
    """Open a Watch and return it once the server has it in place (its initial metadata arrived)."""
    call = stub.Watch(kv_pb2.WatchRequest(**fields), timeout=TIMEOUT)
    metadata = dict(call.initial_metadata())
    return call, int(metadata[VERSION_METADATA_KEY])


def test_watch_streams_changes_under_the_prefix(channel, store):
    store.put("user/old", "before the watch")
    stub = kv_pb2_grpc.KVStub(channel)
    call, since = start_watch(stub, prefix="user/")
    assert since == store.version == 1
    store.put("user/ada", "Ada")
    store.put("other", "ignored")
    stub.Increment(kv_pb2.IncrementRequest(key="user/visits"), timeout=TIMEOUT)
    store.delete("user/ada")
    seen = [next(call) for _ in range(3)]
    call.cancel()
    assert [(c.version, c.key, c.value, c.deleted) for c in seen] == [
        (2, "user/ada", "Ada", False),
        (4, "user/visits", "1", False),
        (5, "user/ada", "", True),
    ]
    assert all(c.time > 0 for c in seen)
    with pytest.raises(grpc.RpcError) as caught:
        next(call)
    assert caught.value.code() == grpc.StatusCode.CANCELLED


def test_watch_since_version_replays_remembered_changes(channel, store):
    for n in range(3):
        store.put(f"k{n}", str(n))
    call, since = start_watch(kv_pb2_grpc.KVStub(channel), since_version=1)
    assert since == 1
    assert [next(call).key for _ in range(2)] == ["k1", "k2"]
    call.cancel()


def test_watch_ends_with_deadline_exceeded(channel):
    call = kv_pb2_grpc.KVStub(channel).Watch(kv_pb2.WatchRequest(), timeout=0.3)
    with pytest.raises(grpc.RpcError) as caught:
        list(call)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_stopping_the_server_ends_open_watches(store):
    handle = grpcservices.serve_all(name="test-grpc-stop", store=store)
    with grpc.insecure_channel(f"{handle.host}:{handle.port}") as ch:
        call, _ = start_watch(kv_pb2_grpc.KVStub(ch))
        handle.stop()  # raises if the Watch's thread did not end
        assert not handle.running
        with pytest.raises(grpc.RpcError) as caught:
            next(call)
        assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def test_many_watchers_cancel_cleanly(channel, store):
    stub = kv_pb2_grpc.KVStub(channel)
    calls = [start_watch(stub, prefix="x")[0] for _ in range(4)]
    store.put("x", "1")
    assert [next(c).value for c in calls] == ["1"] * 4
    for c in calls:
        c.cancel()
    # the server fixture's stop() then fails the test if any Watch thread is still running


# --------------------------------------------------------------------------- health and reflection


def test_health_reports_every_service_serving(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", *grpcservices.SERVICE_NAMES):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
    assert (
        status_of(stub.Check, health_pb2.HealthCheckRequest(service="no.Such"))
        == grpc.StatusCode.NOT_FOUND
    )


def test_health_status_can_be_changed():
    health_servicer = {}

    def register(server):
        grpcservices.add_greeter(server)
        health_servicer["it"] = grpcservices.add_health(server, ["helloworld.Greeter"])

    with background.serve_grpc("test-health", register) as handle:
        health_servicer["it"].set("helloworld.Greeter", health_pb2.HealthCheckResponse.NOT_SERVING)
        with grpc.insecure_channel(f"{handle.host}:{handle.port}") as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="helloworld.Greeter"), timeout=TIMEOUT
            )
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_reflection_lists_the_services(channel):
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert services >= {
        "helloworld.Greeter",
        "routeguide.RouteGuide",
        "rpclab.kv.KV",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    assert database.FindFileContainingSymbol("rpclab.kv.KV").name == "kv.proto"
