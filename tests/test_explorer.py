"""rpclab.grpcstack.explorer (reflection, requests built from text, dynamic calls) and the call-
explorer widget, against real servers."""

from __future__ import annotations

import grpc
import pytest

from rpclab.grpcstack import explorer, protos
from rpclab.grpcstack.services import add_greeter, serve_all
from rpclab.kv import KVStore
from rpclab.runtime import background
from rpclab.widgets.call_explorer import CallExplorer


@pytest.fixture()
def store() -> KVStore:
    return KVStore()


@pytest.fixture()
def channel(store):
    with serve_all(name="test-explorer", store=store) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
            yield ch


@pytest.fixture()
def methods(channel) -> list[explorer.Method]:
    return explorer.list_methods(channel)


def test_reflection_lists_every_method_with_its_kind(methods):
    names = {f"{m.service}/{m.name}": m.kind for m in methods}
    assert names["helloworld.Greeter/SayHello"] == "unary"
    assert names["helloworld.Greeter/SayHelloStreamReply"] == "server streaming"
    assert names["routeguide.RouteGuide/RecordRoute"] == "client streaming"
    assert names["routeguide.RouteGuide/RouteChat"] == "bidi streaming"
    assert "rpclab.kv.KV/Watch" in names and "grpc.health.v1.Health/Check" in names
    increment = explorer.find_method(methods, "KV/Increment")
    assert increment.path == "/rpclab.kv.KV/Increment"
    assert (
        str(increment) == "rpc rpclab.kv.KV.Increment(rpclab.kv.IncrementRequest) returns "
        "(rpclab.kv.IncrementReply)"
    )
    with pytest.raises(KeyError, match="no method 'KV/Nope'"):
        explorer.find_method(methods, "KV/Nope")


def test_list_methods_can_skip_services(channel):
    services = {m.service for m in explorer.list_methods(channel, skip=("grpc.",))}
    assert services == {"helloworld.Greeter", "routeguide.RouteGuide", "rpclab.kv.KV"}


def test_describe_writes_the_messages_back_as_proto_text(methods):
    text = explorer.describe(explorer.find_method(methods, "KV/Increment"))
    assert text.startswith('syntax = "proto3";\npackage rpclab.kv;\n')
    assert "service KV {\n  rpc Increment(IncrementRequest) returns (IncrementReply);\n}" in text
    assert "message IncrementRequest {" in text
    assert "  optional int64 amount = 2;" in text and "  string request_id = 3;" in text
    reflection = explorer.describe(
        explorer.find_method(methods, "ServerReflection/ServerReflectionInfo")
    )
    assert (
        "  oneof message_request {" in reflection and "    string list_services = 7;" in reflection
    )
    assert "returns (stream ServerReflectionResponse)" in reflection


def _fields(message_proto) -> list[tuple[str, int, int, int, str]]:
    return [(f.name, f.number, f.type, f.label, f.type_name) for f in message_proto.field]


def test_describe_is_a_proto_file_protoc_compiles_to_the_same_messages(methods):
    # For every method of every service: protoc accepts the text, and the messages it compiles
    # have the reflected messages' fields (names, numbers, types, labels, type references).
    from google.protobuf import descriptor_pb2

    for method in methods:
        compiled = protos.describe(explorer.describe(method))
        (service,) = compiled.service
        assert [m.name for m in service.method] == [method.name]
        rpc = service.method[0]
        assert (rpc.client_streaming, rpc.server_streaming) == (
            method.descriptor.client_streaming,
            method.descriptor.server_streaming,
        )
        by_name = {f"{compiled.package}.{m.name}": m for m in compiled.message_type}
        for message_type in (method.descriptor.input_type, method.descriptor.output_type):
            original = descriptor_pb2.DescriptorProto()
            message_type.CopyToProto(original)
            assert _fields(by_name[message_type.full_name]) == _fields(original), method


def test_describe_writes_maps_nested_types_enums_and_imports():
    file_text = """
syntax = "proto3";
package shapes;
import "google/protobuf/timestamp.proto";
service Drawing { rpc Draw(stream Shape) returns (Canvas); }
message Shape {
  enum Kind { KIND_UNSPECIFIED = 0; CIRCLE = 1; }
  message Point { sint32 x = 1; sint32 y = 2; }
  Kind kind = 1;
  repeated Point points = 2;
  map<string, Colour> fills = 3;
  google.protobuf.Timestamp drawn = 4;
  oneof size { double radius = 5; uint32 side = 6; }
}
enum Colour { COLOUR_UNSPECIFIED = 0; RED = 1; }
message Canvas { repeated Shape shapes = 1; }
"""
    from google.protobuf import descriptor_pb2, descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    for dependency in ("google/protobuf/timestamp.proto",):
        from google.protobuf import timestamp_pb2

        file = descriptor_pb2.FileDescriptorProto()
        timestamp_pb2.DESCRIPTOR.CopyToProto(file)
        assert file.name == dependency
        pool.Add(file)
    pool.Add(protos.describe(file_text, "shapes.proto"))
    draw = pool.FindServiceByName("shapes.Drawing").methods_by_name["Draw"]
    text = explorer.describe(explorer.Method("shapes.Drawing", "Draw", draw, pool))
    assert 'import "google/protobuf/timestamp.proto";' in text
    assert "rpc Draw(stream Shape) returns (Canvas);" in text
    assert "  map<string, Colour> fills = 3;" in text and "MapEntry" not in text
    assert "  message Point {\n    sint32 x = 1;" in text and "  Shape.Kind kind = 1;" in text
    assert "  .google.protobuf.Timestamp drawn = 4;" in text
    assert "enum Colour {\n  COLOUR_UNSPECIFIED = 0;\n  RED = 1;\n}" in text
    compiled = protos.describe(text, "shapes.proto")
    assert [m.name for m in compiled.message_type] == ["Shape", "Canvas"]


def test_request_fields_flatten_nested_messages(methods):
    fields = explorer.request_fields(explorer.find_method(methods, "RouteGuide/ListFeatures"))
    assert [(f.path, f.type) for f in fields] == [
        ("lo.latitude", "int32"),
        ("lo.longitude", "int32"),
        ("hi.latitude", "int32"),
        ("hi.longitude", "int32"),
    ]
    increment = {
        f.path: f for f in explorer.request_fields(explorer.find_method(methods, "KV/Increment"))
    }
    assert increment["amount"].optional and not increment["key"].optional
    assert str(increment["amount"]) == "amount (optional int64)"


def test_build_request_converts_text_and_leaves_empty_fields_unset(methods):
    increment = explorer.find_method(methods, "KV/Increment")
    request = explorer.build_request(
        increment, {"key": "visits", "amount": " -5 ", "request_id": ""}
    )
    assert (request.key, request.amount, request.HasField("amount")) == ("visits", -5, True)
    assert not explorer.build_request(increment, {"key": "visits", "amount": ""}).HasField("amount")
    box = explorer.build_request(
        explorer.find_method(methods, "RouteGuide/ListFeatures"),
        {"lo.latitude": "1", "hi.longitude": 2},
    )
    assert (box.lo.latitude, box.hi.longitude) == (1, 2)


def test_build_request_names_every_bad_field(methods):
    increment = explorer.find_method(methods, "KV/Increment")
    with pytest.raises(explorer.RequestError) as bad:
        explorer.build_request(increment, {"key": "k", "amount": "lots", "colour": "red"})
    assert set(bad.value.problems) == {"amount", "colour"}
    assert "whole number (int64)" in bad.value.problems["amount"]
    assert "its fields: key, amount, request_id" in bad.value.problems["colour"]
    point = explorer.find_method(methods, "RouteGuide/GetFeature")
    with pytest.raises(explorer.RequestError, match="out of range for int32"):
        explorer.build_request(point, {"latitude": str(2**31)})
    health = explorer.find_method(methods, "Health/Check")
    assert (
        explorer.build_request(health, {"service": "helloworld.Greeter"}).service
        == "helloworld.Greeter"
    )
    reflection = explorer.find_method(methods, "ServerReflection/ServerReflectionInfo")
    with pytest.raises(explorer.RequestError, match="fill only one of them"):
        explorer.build_request(
            reflection, {"list_services": "*", "file_containing_extension.containing_type": "x"}
        )


def test_call_a_unary_method_by_reflection(channel, methods, store):
    increment = explorer.find_method(methods, "KV/Increment")
    result = explorer.call(
        channel, increment, explorer.build_request(increment, {"key": "visits", "amount": "5"})
    )
    assert result.ok and result.code == "OK" and store.get("visits") == "5"
    assert result.as_dicts() == [{"value": "5"}]  # proto3 JSON writes int64 as a string
    assert result.seconds > 0 and not result.streams_replies
    text = explorer.format_result(result)
    assert (
        text.startswith("OK in ") and '"value": "5"' in text and "trailing metadata: (none)" in text
    )


def test_a_failed_call_is_a_result_with_its_status(channel, methods):
    get = explorer.find_method(methods, "KV/Get")
    result = explorer.call(channel, get, explorer.build_request(get, {"key": "missing"}))
    assert (result.ok, result.code, result.responses) == (False, "NOT_FOUND", [])
    assert "missing" in result.details and "no reply" in explorer.format_result(result)


def test_streams_are_collected_and_bounded(channel, methods, store):
    stream = explorer.find_method(methods, "Greeter/SayHelloStreamReply")
    result = explorer.call(channel, stream, explorer.build_request(stream, {"name": "Ada"}))
    assert result.ok and [d["message"] for d in result.as_dicts()] == [
        f"Hello number {i}, Ada!" for i in (1, 2, 3)
    ]
    cut = explorer.call(
        channel, stream, explorer.build_request(stream, {"name": "Ada"}), max_responses=2
    )
    assert (
        cut.truncated
        and len(cut.responses) == 2
        and "stopped reading after 2" in explorer.format_result(cut)
    )
    chat = explorer.find_method(methods, "Greeter/SayHelloBidiStream")
    assert explorer.call(
        channel, chat, explorer.build_request(chat, {"name": "Bo"})
    ).as_dicts() == [{"message": "Hello, Bo!"}]
    store.put("seen", "yes")
    watch = explorer.find_method(methods, "KV/Watch")
    ended = explorer.call(
        channel, watch, explorer.build_request(watch, {"since_version": "0"}), timeout=0.3
    )
    assert ended.code == "DEADLINE_EXCEEDED" and ended.as_dicts()[0]["key"] == "seen"
    assert ended.initial_metadata == (("rpclab-version", "0"),)


def test_call_checks_its_arguments(channel, methods):
    get, put = explorer.find_method(methods, "KV/Get"), explorer.find_method(methods, "KV/Put")
    with pytest.raises(TypeError, match="takes a rpclab.kv.GetRequest"):
        explorer.call(channel, get, explorer.build_request(put, {"key": "k"}))
    with pytest.raises(ValueError, match="timeout"):
        explorer.call(channel, get, explorer.build_request(get, {}), timeout=0)


def test_a_server_without_reflection_says_unimplemented():
    with background.serve_grpc("test-no-reflection", add_greeter) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.RpcError) as failed:
                explorer.list_methods(channel)
    assert failed.value.code() is grpc.StatusCode.UNIMPLEMENTED


# --------------------------------------------------------------------------- the widget


def test_widget_lists_methods_and_calls_the_one_picked(channel, store):
    panel = CallExplorer(channel)
    assert (
        "grpc.reflection.v1alpha.ServerReflection" not in panel.service.options
    )  # skipped by default
    assert panel.service.value == "helloworld.Greeter"  # the first service that is not gRPC's own
    assert panel.selected.name == "SayHello" and list(panel.fields) == ["name"]
    panel.service.value = "rpclab.kv.KV"
    assert panel.selected.name == "Get" and list(panel.fields) == ["key"]
    labels = [label for label, _ in panel.method.options]
    assert "Increment  (unary)" in labels and "Watch  (server streaming)" in labels
    panel.method.value = dict(panel.method.options)["Increment  (unary)"]
    assert list(panel.fields) == ["key", "amount", "request_id"]
    assert "optional int64 amount" in panel.signature.value
    before = panel.output.value
    panel.fields["key"].value = "clicks"
    panel.fields["amount"].value = "3"
    panel.button.click()
    assert (
        panel.output.value != before
        and "OK in" in panel.output.value
        and "&quot;value&quot;: &quot;3&quot;" in panel.output.value
    )
    assert store.get("clicks") == "3" and panel.last_result.ok


def test_widget_shows_bad_input_and_failed_calls(channel):
    panel = CallExplorer(channel)
    panel.service.value = "rpclab.kv.KV"
    panel.method.value = dict(panel.method.options)["Increment  (unary)"]
    panel.fields["amount"].value = "many"
    panel.button.click()
    assert "amount: wants a whole number" in panel.output.value and panel.last_result is None
    panel.method.value = dict(panel.method.options)["Get  (unary)"]
    assert list(panel.fields) == ["key"]
    panel.fields["key"].value = "nothing-here"
    panel.button.click()
    assert "NOT_FOUND" in panel.output.value and not panel.last_result.ok


def test_widget_reports_a_server_without_reflection():
    with background.serve_grpc("test-no-reflection", add_greeter) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            panel = CallExplorer(channel)
    assert panel.methods == [] and "reflection failed: UNIMPLEMENTED" in panel.output.value
    assert panel.call() is None
