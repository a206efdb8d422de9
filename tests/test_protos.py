"""rpclab.grpcstack.protos: compiling .proto files in the process, and the three protos of the
series."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest

from rpclab.grpcstack import protos

REPO_PROTOS = Path(__file__).resolve().parents[1] / "protos"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Compile into this test's own temporary folder, so scratch protos do not pile up in the real
    cache."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def scratch_proto(folder: Path, body: str = "string text = 1;") -> Path:
    """A .proto with a name and package used nowhere else in this process (protobuf's pool is
    global)."""
    tag = uuid.uuid4().hex[:12]
    path = folder / f"scratch_{tag}.proto"
    path.write_text(
        f'syntax = "proto3";\npackage scratch{tag};\n'
        f"message Note {{ {body} }}\n"
        "service Echo { rpc Say(Note) returns (Note); }\n"
    )
    return path


# --------------------------------------------------------------------------- loading


def test_load_returns_messages_and_stubs():
    helloworld_pb2, helloworld_pb2_grpc = protos.load("helloworld")
    assert helloworld_pb2.HelloRequest(name="Ada").name == "Ada"
    assert hasattr(helloworld_pb2_grpc, "GreeterStub")
    assert hasattr(helloworld_pb2_grpc, "GreeterServicer")
    assert hasattr(helloworld_pb2_grpc, "add_GreeterServicer_to_server")


def test_loading_twice_returns_the_same_modules():
    first = protos.load("kv")
    assert protos.load("kv") == first
    assert protos.load("kv.proto")[0] is first[0]
    assert protos.load(REPO_PROTOS / "kv.proto")[1] is first[1]


def test_different_protos_do_not_collide():
    modules = [protos.load(name) for name in ("helloworld", "route_guide", "kv")]
    names = {m.__name__ for pair in modules for m in pair}
    assert len(names) == 6
    kv_pb2, kv_pb2_grpc = modules[2]
    assert kv_pb2_grpc.kv__pb2 is kv_pb2  # the stubs use this very message module
    assert not any(p.suffix == ".py" for p in REPO_PROTOS.iterdir()), (
        "generated code must not land in protos/"
    )


def test_available_lists_the_series_protos():
    assert {"helloworld", "route_guide", "kv"} <= set(protos.available())


def test_missing_proto_is_a_clear_error():
    with pytest.raises(protos.ProtoError, match=r"no such proto file: .*nope\.proto.*helloworld"):
        protos.load("nope")


def test_not_a_proto_file_is_refused(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(protos.ProtoError, match="not a .proto file"):
        protos.load(text)


def test_rpclab_protos_env_var_changes_the_folder(tmp_path, monkeypatch):
    tmp_path = tmp_path / "protos"
    tmp_path.mkdir()
    path = scratch_proto(tmp_path)
    monkeypatch.setenv(protos.ENV_VAR, str(tmp_path))
    assert protos.protos_dir() == tmp_path.resolve()
    assert protos.available() == [path.stem]
    pb2, _ = protos.load(path.stem)
    assert pb2.Note(text="hi").SerializeToString() == b"\n\x02hi"


def test_generated_code_is_cached_by_content(private_cache, tmp_path):
    path = scratch_proto(tmp_path)
    protos.load(path)
    (folder,) = private_cache.glob(f"rpclab-protos-*/{path.stem}-*")  # <name>-<hash of content>
    assert sorted(p.name for p in folder.glob("*.py")) == [
        "__init__.py",
        f"{path.stem}_pb2.py",
        f"{path.stem}_pb2_grpc.py",
    ]


def test_changed_proto_gives_a_clear_error(tmp_path):
    path = scratch_proto(tmp_path)
    pb2, _ = protos.load(path)
    path.write_text(
        path.read_text().replace("string text = 1;", "string text = 1; int32 size = 2;")
    )
    with pytest.raises(protos.ProtoError) as caught:
        protos.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path.name} changed since it was loaded in this kernel")
    assert "descriptor pool refuses a second file of the same name" in message
    assert "restart the kernel" in message
    path.write_text(path.read_text().replace(" int32 size = 2;", ""))
    assert protos.load(path)[0] is pb2  # back to what was loaded: fine again


def test_another_file_of_the_same_name_gives_a_clear_error(tmp_path):
    original = scratch_proto(tmp_path)
    protos.load(original)
    other = tmp_path / "other" / original.name
    other.parent.mkdir()
    other.write_text(original.read_text().replace("string text = 1;", "bytes text = 1;"))
    with pytest.raises(
        protos.ProtoError, match=r"a different scratch_\w+\.proto \(from .*\) was loaded"
    ):
        protos.load(other)


def test_same_package_under_another_file_name_gives_a_clear_error(tmp_path):
    original = scratch_proto(tmp_path)
    protos.load(original)
    twin = tmp_path / f"twin_{original.name}"
    twin.write_text(original.read_text())
    with pytest.raises(
        protos.ProtoError, match="descriptor pool already holds a different definition"
    ):
        protos.load(twin)


def test_syntax_error_carries_protocs_message(tmp_path):
    path = tmp_path / f"broken_{uuid.uuid4().hex[:8]}.proto"
    path.write_text('syntax = "proto3";\nmessage Broken {\n  strng name = 1;\n}\n')
    with pytest.raises(protos.ProtoError) as caught:
        protos.load(path)
    message = str(caught.value)
    assert f"protoc could not compile {path.name}" in message
    assert f"{path}:3:3:" in message  # protoc's own file:line:column, naming the learner's file
    assert '"strng" is not defined' in message


def test_well_known_types_can_be_imported(tmp_path):
    tag = uuid.uuid4().hex[:12]
    path = tmp_path / f"stamped_{tag}.proto"
    path.write_text(
        f'syntax = "proto3";\npackage stamped{tag};\nimport "google/protobuf/timestamp.proto";\n'
        "message Event { google.protobuf.Timestamp at = 1; }\n"
    )
    pb2, _ = protos.load(path)
    event = pb2.Event()
    event.at.FromSeconds(60)
    assert event.at.seconds == 60


def test_importing_another_local_proto_is_explained(tmp_path):
    base = scratch_proto(tmp_path)
    tag = uuid.uuid4().hex[:12]
    user = tmp_path / f"user_{tag}.proto"
    package = base.read_text().split("package ")[1].split(";")[0]
    user.write_text(
        f'syntax = "proto3";\npackage user{tag};\nimport "{base.name}";\n'
        f"message Wrapper {{ {package}.Note note = 1; }}\n"
    )
    with pytest.raises(protos.ProtoError, match="imports of other protos do not"):
        protos.load(user)


# --------------------------------------------------------------------------- generate


def test_generate_writes_protocs_files_unchanged(tmp_path):
    written = protos.generate("kv", tmp_path / "generated")
    assert [p.name for p in written] == ["kv_pb2.py", "kv_pb2.pyi", "kv_pb2_grpc.py"]
    stubs = (tmp_path / "generated" / "kv_pb2_grpc.py").read_text()
    assert "class KVStub" in stubs and "class KVServicer" in stubs
    assert "import kv_pb2 as kv__pb2" in stubs  # as protoc wrote it, for the learner to read
    assert "class IncrementRequest" in (tmp_path / "generated" / "kv_pb2.pyi").read_text()


def test_generate_reports_syntax_errors(tmp_path):
    path = tmp_path / "oops.proto"
    path.write_text('syntax = "proto3";\nmessage Oops { string a = 1 }\n')
    with pytest.raises(protos.ProtoError, match=r"oops\.proto:2:\d+: Expected \";\""):
        protos.generate(path, tmp_path / "out")


# --------------------------------------------------------------------------- the series' protos


def _fields(message_descriptor) -> dict[str, tuple[int, str]]:
    return {f.name: (f.number, f.type) for f in message_descriptor.fields}


def _methods(file_descriptor, service: str) -> dict[str, tuple[str, str, bool, bool]]:
    s = file_descriptor.services_by_name[service]
    return {
        m.name: (
            m.input_type.full_name,
            m.output_type.full_name,
            m.client_streaming,
            m.server_streaming,
        )
        for m in s.methods
    }


def test_helloworld_matches_the_canonical_interface():
    pb2, _ = protos.load("helloworld")
    fd = pb2.DESCRIPTOR
    assert fd.package == "helloworld"
    assert _methods(fd, "Greeter") == {
        "SayHello": ("helloworld.HelloRequest", "helloworld.HelloReply", False, False),
        "SayHelloStreamReply": ("helloworld.HelloRequest", "helloworld.HelloReply", False, True),
        "SayHelloBidiStream": ("helloworld.HelloRequest", "helloworld.HelloReply", True, True),
    }
    string = pb2.DESCRIPTOR.message_types_by_name["HelloRequest"].fields[0].TYPE_STRING
    assert _fields(fd.message_types_by_name["HelloRequest"]) == {"name": (1, string)}
    assert _fields(fd.message_types_by_name["HelloReply"]) == {"message": (1, string)}
    assert (
        pb2.HelloRequest(name="x").SerializeToString() == b"\x0a\x01x"
    )  # field 1, length-delimited


def test_route_guide_matches_the_canonical_interface():
    pb2, _ = protos.load("route_guide")
    fd = pb2.DESCRIPTOR
    assert fd.package == "routeguide"
    rg = "routeguide."
    assert _methods(fd, "RouteGuide") == {
        "GetFeature": (rg + "Point", rg + "Feature", False, False),
        "ListFeatures": (rg + "Rectangle", rg + "Feature", False, True),
        "RecordRoute": (rg + "Point", rg + "RouteSummary", True, False),
        "RouteChat": (rg + "RouteNote", rg + "RouteNote", True, True),
    }
    f = fd.message_types_by_name["Point"].fields[0]
    int32, string, message = f.TYPE_INT32, f.TYPE_STRING, f.TYPE_MESSAGE
    assert _fields(fd.message_types_by_name["Point"]) == {
        "latitude": (1, int32),
        "longitude": (2, int32),
    }
    assert _fields(fd.message_types_by_name["Rectangle"]) == {
        "lo": (1, message),
        "hi": (2, message),
    }
    assert _fields(fd.message_types_by_name["Feature"]) == {
        "name": (1, string),
        "location": (2, message),
    }
    assert _fields(fd.message_types_by_name["RouteNote"]) == {
        "location": (1, message),
        "message": (2, string),
    }
    assert _fields(fd.message_types_by_name["RouteSummary"]) == {
        "point_count": (1, int32),
        "feature_count": (2, int32),
        "distance": (3, int32),
        "elapsed_time": (4, int32),
    }


def test_kv_proto_offers_the_store_calls():
    pb2, _ = protos.load("kv")
    fd = pb2.DESCRIPTOR
    assert fd.package == "rpclab.kv"
    methods = _methods(fd, "KV")
    assert set(methods) == {"Get", "Put", "Delete", "Increment", "Watch"}
    assert methods["Watch"][2:] == (False, True)  # server streaming
    assert all(m[2:] == (False, False) for name, m in methods.items() if name != "Watch")
    increment = fd.message_types_by_name["IncrementRequest"].fields_by_name
    assert increment["amount"].has_presence  # "not sent" (add 1) differs from "sent as 0"
    assert "request_id" in increment
    assert "prefix" in fd.message_types_by_name["WatchRequest"].fields_by_name


def test_describe_reads_proto_text_without_loading_it_and_says_what_protoc_said():
    file = protos.describe(
        'syntax = "proto3"; package draft; message A { int64 id = 1; repeated string tags = 2; }'
        " service S { rpc M(stream A) returns (A); }",
        "draft.proto",
    )
    assert file.package == "draft" and [f.name for f in file.message_type[0].field] == [
        "id",
        "tags",
    ]
    assert file.service[0].method[0].client_streaming
    with pytest.raises(protos.ProtoError, match=r'draft\.proto:1:\d+: Expected ";"'):
        protos.describe(
            'syntax = "proto3"; package draft; message A { int64 id = 1 }', "draft.proto"
        )
    with pytest.raises(protos.ProtoError, match="name.proto"):
        protos.describe("", "../escape.proto")


def test_load_descriptor_generates_code_for_a_descriptor_built_in_python():
    from google.protobuf import descriptor_pb2

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="built_here.proto", package="built", syntax="proto3"
    )
    message = file.message_type.add(name="Ping")
    message.field.add(name="n", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL, json_name="n")
    file.service.add(name="Echo").method.add(
        name="Call", input_type=".built.Ping", output_type=".built.Ping"
    )
    pb2, pb2_grpc = protos.load_descriptor(file)
    assert pb2.Ping(n=3).n == 3 and hasattr(pb2_grpc, "EchoStub")
    assert protos.load_descriptor(file)[0] is pb2, "the same descriptor loads once"
    changed = descriptor_pb2.FileDescriptorProto()
    changed.CopyFrom(file)
    changed.message_type[0].field[0].name = "m"
    with pytest.raises(protos.ProtoError, match="restart the kernel"):
        protos.load_descriptor(changed)
