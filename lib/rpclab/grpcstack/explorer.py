"""Call any method of any gRPC server without its .proto: discover it by server reflection, build a
request, call it.

Used in notebook 10 (the call explorer widget, reflection). About 600 lines: discovering,
converting form text to typed fields (every protobuf scalar, enums, oneofs, nested messages)
and calling (four kinds of method) are the one job of a reflection client.

This is what grpcurl, Postman or a call-explorer widget do, in four plain functions::

    methods = list_methods(channel)                       # every method the server reflects
    method = find_method(methods, "rpclab.kv.KV/Increment")
    request_fields(method)                                 # the fields a form should ask for
    request = build_request(method, {"key": "visits", "amount": "5"})   # text -> typed message
    result = call(channel, method, request, timeout=2.0)   # response(s), status, metadata, latency

Message classes are made at run time from the reflected descriptors
(google.protobuf.message_factory.GetMessageClass): nothing is generated.
"""

from __future__ import annotations

import collections
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message, message_factory
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor, MethodDescriptor
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from rpclab import checks

__all__ = [
    "Method",
    "Field",
    "CallResult",
    "RequestError",
    "list_methods",
    "find_method",
    "describe",
    "request_fields",
    "build_request",
    "call",
    "format_result",
    "MAX_RESPONSES",
]

REFLECTION_TIMEOUT = 5.0  # seconds each reflection request may take
MAX_RESPONSES = 100  # replies kept from one streaming call; then the call is cancelled
MAX_DEPTH = 3  # nested messages are flattened to fields like "lo.latitude", this deep at most

_F = FieldDescriptor
_INT_RANGES = {
    _F.TYPE_INT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1),
    _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _F.TYPE_UINT64: (0, 2**64 - 1),
    _F.TYPE_FIXED64: (0, 2**64 - 1),
}
_TYPE_NAMES = {
    _F.TYPE_DOUBLE: "double",
    _F.TYPE_FLOAT: "float",
    _F.TYPE_INT64: "int64",
    _F.TYPE_UINT64: "uint64",
    _F.TYPE_INT32: "int32",
    _F.TYPE_FIXED64: "fixed64",
    _F.TYPE_FIXED32: "fixed32",
    _F.TYPE_BOOL: "bool",
    _F.TYPE_STRING: "string",
    _F.TYPE_BYTES: "bytes",
    _F.TYPE_UINT32: "uint32",
    _F.TYPE_SFIXED32: "sfixed32",
    _F.TYPE_SFIXED64: "sfixed64",
    _F.TYPE_SINT32: "sint32",
    _F.TYPE_SINT64: "sint64",
}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class RequestError(ValueError):
    """The values given for a request do not fit its message; ``problems`` maps each field to what
    is wrong."""

    def __init__(self, type_name: str, problems: Mapping[str, str]):
        self.problems = dict(problems)
        lines = "; ".join(f"{name}: {why}" for name, why in self.problems.items())
        super().__init__(f"cannot build a {type_name}: {lines}")


# --------------------------------------------------------------------------- discovering methods


def _is_repeated(fd: FieldDescriptor) -> bool:
    repeated = getattr(fd, "is_repeated", None)
    if isinstance(repeated, bool):
        return repeated
    return fd.label == _F.LABEL_REPEATED  # protobuf < 6


@dataclass(frozen=True)
class Method:
    """A method found by reflection: its service, name, kind, and the descriptor its messages are
    made from."""

    service: str  # "helloworld.Greeter"
    name: str  # "SayHello"
    descriptor: MethodDescriptor = field(repr=False, compare=False)
    pool: Any = field(default=None, repr=False, compare=False)  # keeps the descriptors' pool alive

    @property
    def path(self) -> str:
        """The HTTP/2 path gRPC calls it by: ``/package.Service/Method``."""
        return f"/{self.service}/{self.name}"

    @property
    def kind(self) -> str:
        """ "unary", "server streaming", "client streaming" or "bidi streaming"."""
        d = self.descriptor
        return {
            (False, False): "unary",
            (False, True): "server streaming",
            (True, False): "client streaming",
            (True, True): "bidi streaming",
        }[(d.client_streaming, d.server_streaming)]

    @property
    def input_type(self) -> str:
        return self.descriptor.input_type.full_name

    @property
    def output_type(self) -> str:
        return self.descriptor.output_type.full_name

    def __str__(self) -> str:
        d = self.descriptor
        request = ("stream " if d.client_streaming else "") + self.input_type
        reply = ("stream " if d.server_streaming else "") + self.output_type
        return f"rpc {self.service}.{self.name}({request}) returns ({reply})"


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    """Call details with a timeout filled in."""


class _DefaultTimeout(grpc.StreamStreamClientInterceptor):
    """Gives every reflection call a deadline (grpcio-reflection's client sets none, so a stuck
    server would hang it)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def intercept_stream_stream(
        self, continuation: Any, details: grpc.ClientCallDetails, request_iterator: Any
    ) -> Any:
        if details.timeout is None:
            details = _Details(
                details.method,
                self.timeout,
                details.metadata,
                details.credentials,
                getattr(details, "wait_for_ready", None),
                getattr(details, "compression", None),
            )
        return continuation(details, request_iterator)


def list_methods(
    channel: grpc.Channel, *, timeout: float = REFLECTION_TIMEOUT, skip: Iterable[str] = ()
) -> list[Method]:
    """Every method of every service the server at ``channel`` lists by reflection, sorted by
    service.

    Services whose names start with one of ``skip`` are left out. Raises
    grpc.RpcError if the server cannot be reached or has no reflection
    (UNIMPLEMENTED), and each reflection request gives up after ``timeout`` seconds.
    """
    database = ProtoReflectionDescriptorDatabase(
        grpc.intercept_channel(channel, _DefaultTimeout(timeout))
    )
    pool = descriptor_pool.DescriptorPool(database)
    skip = tuple(skip)
    methods = []
    for service_name in sorted(database.get_services()):
        if skip and service_name.startswith(skip):
            continue
        service = pool.FindServiceByName(service_name)
        methods.extend(Method(service_name, m.name, m, pool) for m in service.methods)
    return methods


def find_method(methods: Sequence[Method], name: str) -> Method:
    """The method called ``name``: "Service/Method", "package.Service/Method",
    "/package.Service/Method" or "package.Service.Method"."""
    wanted = name.strip().lstrip("/")
    for m in methods:
        if wanted in (
            f"{m.service}/{m.name}",
            f"{m.service}.{m.name}",
            f"{m.service.rsplit('.', 1)[-1]}/{m.name}",
        ):
            return m
    known = ", ".join(f"{m.service}/{m.name}" for m in methods) or "none"
    raise KeyError(f"no method {name!r}; the server has: {known}")


# --------------------------------------------------------------------------- describing messages


def _type_name(fd: FieldDescriptor) -> str:
    if fd.type == _F.TYPE_ENUM:
        return fd.enum_type.full_name
    if fd.type in (_F.TYPE_MESSAGE, _F.TYPE_GROUP):
        return fd.message_type.full_name
    return _TYPE_NAMES[fd.type]


def _real_oneof(fd: FieldDescriptor) -> Any:
    """The oneof ``fd`` belongs to, or None (proto3 ``optional`` makes a one-field "synthetic"
    oneof: not a real one)."""
    oneof = fd.containing_oneof
    if oneof is None or (len(oneof.fields) == 1 and oneof.name == "_" + fd.name):
        return None
    return oneof


def _outermost(descriptor: Any) -> Any:
    """The top-level message or enum that ``descriptor`` is (or is nested in)."""
    while descriptor.containing_type is not None:
        descriptor = descriptor.containing_type
    return descriptor


def _syntax(file: Any) -> str:
    """ "proto2", "proto3" or "editions" (only a descriptor's proto form says which)."""
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    return proto.syntax or "proto2"


def _is_map(fd: FieldDescriptor) -> bool:
    return fd.type == _F.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry


class _ProtoWriter:
    """Writes what one method needs from its .proto file back as .proto text protoc accepts."""

    def __init__(self, method: Method) -> None:
        self.method = method.descriptor
        self.service = self.method.containing_service
        self.file = self.service.file
        self.package = self.file.package
        self.syntax = _syntax(self.file)
        self.proto2 = self.syntax != "proto3"  # proto2, or an Editions file written as one
        self.imports: set[str] = set()
        self.wanted: set[str] = set()  # full names of the top-level types to write
        for message_type in (self.method.input_type, self.method.output_type):
            self._need(message_type)

    def _need(self, descriptor: Any) -> None:
        top = _outermost(descriptor)
        if top.file.name != self.file.name:
            self.imports.add(top.file.name)  # another file: import it, as the original did
            return
        if top.full_name in self.wanted:
            return
        self.wanted.add(top.full_name)
        if hasattr(top, "fields"):  # a message: everything it and its nested types use
            self._need_fields(top)

    def _need_fields(self, message_type: Any) -> None:
        for fd in message_type.fields:
            if fd.message_type is not None:
                self._need(fd.message_type)
            if fd.enum_type is not None:
                self._need(fd.enum_type)
        for nested in message_type.nested_types:
            self._need_fields(nested)

    def type_name(self, fd: FieldDescriptor) -> str:
        if fd.type == _F.TYPE_ENUM:
            return self.name_of(fd.enum_type)
        if fd.type in (_F.TYPE_MESSAGE, _F.TYPE_GROUP):
            return self.name_of(fd.message_type)
        return _TYPE_NAMES[fd.type]

    def name_of(self, descriptor: Any) -> str:
        """A type's name as the text refers to it: short within the file's package, else fully
        qualified with a leading dot."""
        if self.package and descriptor.full_name.startswith(self.package + "."):
            return descriptor.full_name[len(self.package) + 1 :]
        return "." + descriptor.full_name

    def field_line(self, fd: FieldDescriptor, indent: str) -> str:
        if _is_map(fd):
            entry = fd.message_type.fields_by_name
            kind = f"map<{self.type_name(entry['key'])}, {self.type_name(entry['value'])}>"
            return f"{indent}{kind} {fd.name} = {fd.number};"
        label = ""
        if _is_repeated(fd):
            label = "repeated "
        elif _real_oneof(fd) is not None:
            label = ""
        elif self.proto2:
            label = "required " if fd.label == _F.LABEL_REQUIRED else "optional "
        elif fd.has_presence and fd.type not in (_F.TYPE_MESSAGE, _F.TYPE_GROUP):
            label = "optional "
        return f"{indent}{label}{self.type_name(fd)} {fd.name} = {fd.number};"

    def enum_lines(self, enum: EnumDescriptor, indent: str) -> list[str]:
        lines = [f"{indent}enum {enum.name} {{"]
        lines += [f"{indent}  {value.name} = {value.number};" for value in enum.values]
        return [*lines, f"{indent}}}"]

    def message_lines(self, descriptor: Any, indent: str) -> list[str]:
        lines = [f"{indent}message {descriptor.name} {{"]
        inner = indent + "  "
        for nested in descriptor.nested_types:
            if not nested.GetOptions().map_entry:  # a map's entry type is written as map<K, V>
                lines += self.message_lines(nested, inner)
        for enum in descriptor.enum_types:
            lines += self.enum_lines(enum, inner)
        done: set[str] = set()
        for fd in descriptor.fields:
            oneof = _real_oneof(fd)
            if oneof is None:
                lines.append(self.field_line(fd, inner))
            elif oneof.name not in done:
                done.add(oneof.name)
                lines.append(f"{inner}oneof {oneof.name} {{")
                lines += [self.field_line(member, inner + "  ") for member in oneof.fields]
                lines.append(f"{inner}}}")
        return [*lines, f"{indent}}}"]

    def text(self) -> str:
        m = self.method
        header = ['syntax = "proto2";' if self.proto2 else 'syntax = "proto3";']
        if self.syntax not in ("proto2", "proto3"):
            header.insert(0, f"// {self.file.name} uses Editions; written here in proto2 form")
        if self.package:
            header.append(f"package {self.package};")
        blocks = ["\n".join(header)]
        if self.imports:
            blocks.append("\n".join(f'import "{name}";' for name in sorted(self.imports)))
        request = ("stream " if m.client_streaming else "") + self.name_of(m.input_type)
        reply = ("stream " if m.server_streaming else "") + self.name_of(m.output_type)
        rpc = f"  rpc {m.name}({request}) returns ({reply});"
        blocks.append(f"service {self.service.name} {{\n{rpc}\n}}")
        for top in self.file.message_types_by_name.values():  # in the file's own order
            if top.full_name in self.wanted:
                blocks.append("\n".join(self.message_lines(top, "")))
        for top in self.file.enum_types_by_name.values():
            if top.full_name in self.wanted:
                blocks.append("\n".join(self.enum_lines(top, "")))
        return "\n\n".join(blocks) + "\n"


def describe(method: Method) -> str:
    """The method written back as a .proto file that protoc accepts, from what reflection told us.

    The file holds the method's service with this one ``rpc``, and every message and enum of
    its file that the request and reply need; types from other files are imported by file
    name (protoc then needs those files too, as it did for the original). Comments and
    options do not travel in the descriptors this is written from.
    """
    return _ProtoWriter(method).text()


@dataclass(frozen=True)
class Field:
    """One field a request form asks for: its dotted path, proto type, and whether it can be left
    unset."""

    path: str  # "name", or "lo.latitude" inside a nested message
    type: str  # "string", "int64", "bool", an enum's full name, ...
    optional: bool  # has presence: leaving it empty sends nothing (the server can tell)
    choices: tuple[str, ...] = ()  # an enum's value names
    oneof: str | None = (
        None  # the oneof it belongs to (through a parent message, maybe): fill one member only
    )
    member: str | None = None  # the path of that oneof's member this field is, or lies inside

    def __str__(self) -> str:
        return f"{self.path} ({'optional ' if self.optional else ''}{self.type})"


def _scalar_fields(
    descriptor: Any, prefix: str, depth: int, inside: tuple[str, str] | None = None
) -> list[Field]:
    fields = []
    for fd in descriptor.fields:
        if _is_repeated(fd):
            continue  # lists and maps have no single text box
        path = prefix + fd.name
        oneof = _real_oneof(fd)
        within = (
            inside if inside is not None else (None if oneof is None else (oneof.full_name, path))
        )
        if fd.type in (_F.TYPE_MESSAGE, _F.TYPE_GROUP):
            if depth < MAX_DEPTH:
                fields.extend(_scalar_fields(fd.message_type, path + ".", depth + 1, within))
            continue
        choices = tuple(v.name for v in fd.enum_type.values) if fd.type == _F.TYPE_ENUM else ()
        fields.append(
            Field(
                path,
                _type_name(fd),
                bool(fd.has_presence),
                choices,
                *(within if within is not None else (None, None)),
            )
        )
    return fields


def request_fields(method: Method) -> list[Field]:
    """The scalar fields of the method's request, nested messages flattened to dotted paths
    (repeated fields left out)."""
    return _scalar_fields(method.descriptor.input_type, "", 1)


# --------------------------------------------------------------------------- building a request


def _convert(fd: FieldDescriptor, text: str) -> Any:
    """The typed value of ``text`` for field ``fd``; ValueError saying what was expected."""
    kind = fd.type
    if kind == _F.TYPE_STRING:
        return text
    if kind == _F.TYPE_BYTES:
        return text.encode("utf-8")
    word = text.strip()
    if kind == _F.TYPE_BOOL:
        if word.lower() in _TRUE:
            return True
        if word.lower() in _FALSE:
            return False
        raise ValueError(f"wants true or false, not {text!r}")
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        try:
            number = int(word)
        except ValueError:
            raise ValueError(f"wants a whole number ({_TYPE_NAMES[kind]}), not {text!r}") from None
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range for {_TYPE_NAMES[kind]} ({low} to {high})")
        return number
    if kind in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        try:
            number = float(word)
        except ValueError:
            raise ValueError(f"wants a number ({_TYPE_NAMES[kind]}), not {text!r}") from None
        if kind == _F.TYPE_FLOAT and math.isfinite(number) and abs(number) > 3.4028234663852886e38:
            raise ValueError(f"{number} is too large for a float")
        return number
    if kind == _F.TYPE_ENUM:
        enum: EnumDescriptor = fd.enum_type
        if word in enum.values_by_name:
            return enum.values_by_name[word].number
        try:
            number = int(word)
        except ValueError:
            names = ", ".join(enum.values_by_name)
            raise ValueError(f"wants one of {names}, not {text!r}") from None
        if not -(2**31) <= number <= 2**31 - 1:
            raise ValueError(f"{number} is out of range for an enum")
        return number
    raise ValueError(f"cannot be typed as text ({_type_name(fd)})")


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else str(value)


def build_request(method: Method, values: Mapping[str, object]) -> message.Message:
    """The method's request message with ``values`` (field path -> text, as typed in a form)
    converted and set.

    An empty text (or None) leaves the field unset. Raises RequestError naming
    every field that is unknown, not convertible, or in a oneof with another filled field.
    """
    input_type = method.descriptor.input_type
    request = message_factory.GetMessageClass(input_type)()
    fields = {f.path: f for f in request_fields(method)}
    problems: dict[str, str] = {}
    oneofs: dict[str, str | None] = {}  # oneof -> the member filled
    for path, raw in values.items():
        if path not in fields:
            known = ", ".join(fields) or "none"
            problems[str(path)] = f"no such field in {input_type.full_name} (its fields: {known})"
            continue
        text = _as_text(raw)
        if not text:
            continue  # empty: leave the field unset
        oneof, member = fields[path].oneof, fields[path].member
        if oneof is not None:
            if oneofs.setdefault(oneof, member) != member:
                problems[path] = (
                    f"is in oneof {oneof.rsplit('.', 1)[-1]!r} with {oneofs[oneof]!r}; "
                    "fill only one of them"
                )
                continue
        *parents, leaf = path.split(".")
        target = request
        for part in parents:
            target = getattr(target, part)
        fd = target.DESCRIPTOR.fields_by_name[leaf]
        try:
            setattr(target, leaf, _convert(fd, text))
        except ValueError as exc:
            problems[path] = str(exc)
    if problems:
        raise RequestError(input_type.full_name, problems)
    return request


# --------------------------------------------------------------------------- calling


@dataclass
class CallResult:
    """How one call went: status code and details, the replies, both sets of metadata, and the
    latency."""

    method: str  # the path called
    code: str  # "OK", "NOT_FOUND", ...
    details: str
    responses: list[message.Message]
    initial_metadata: tuple[tuple[str, str], ...]
    trailing_metadata: tuple[tuple[str, str], ...]
    seconds: float
    truncated: bool = False  # more replies came than were kept, and the call was cancelled
    streams_replies: bool = False  # the method replies with a stream (its replies show as a list)

    @property
    def ok(self) -> bool:
        return self.code == "OK"

    @property
    def response(self) -> message.Message | None:
        """The reply (the first, for a stream), or None if none came."""
        return self.responses[0] if self.responses else None

    def as_dicts(self) -> list[dict[str, Any]]:
        """The replies as JSON-ready dicts (proto3 JSON mapping, field names as in the .proto,
        defaults shown)."""
        return [
            json_format.MessageToDict(
                r, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            for r in self.responses
        ]

    def json(self) -> str:
        """The reply (or, for a stream, the list of replies) as indented JSON."""
        return _to_json(self)


def _to_json(result: CallResult) -> str:
    dicts = result.as_dicts()
    value: Any = dicts if result.streams_replies else (dicts[0] if dicts else None)
    return json.dumps(value, indent=2, ensure_ascii=False)


def _metadata(items: Any) -> tuple[tuple[str, str], ...]:
    pairs = []
    for key, value in items or ():
        if isinstance(value, bytes):
            value = value.hex() if key.endswith("-bin") else value.decode("utf-8", errors="replace")
        pairs.append((str(key), str(value)))
    return tuple(pairs)


def _safe(getter: Any) -> Any:
    try:
        return getter()
    except Exception:  # a call that never started has no metadata to give
        return None


def call(
    channel: grpc.Channel,
    method: Method,
    request: message.Message,
    timeout: float | None = 2.0,
    *,
    metadata: Sequence[tuple[str, str]] | None = None,
    max_responses: int = MAX_RESPONSES,
) -> CallResult:
    """Call ``method`` with ``request`` over ``channel`` and return how it went (a failed call is a
    result too).

    Streaming requests send the one ``request`` as a stream of one message.
    Streaming replies are collected until the stream ends, or until
    ``max_responses`` have arrived, when the call is cancelled (``truncated``).
    """
    checks.seconds("timeout", timeout, above=0, optional=True)
    checks.integer("max_responses", max_responses, low=1)
    d = method.descriptor
    if request.DESCRIPTOR.full_name != d.input_type.full_name:
        raise TypeError(
            f"{method.path} takes a {d.input_type.full_name}, not a {request.DESCRIPTOR.full_name}"
        )
    reply_class = message_factory.GetMessageClass(d.output_type)
    codec = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": reply_class.FromString,
    }
    options = {"timeout": timeout, "metadata": metadata}
    responses: list[message.Message] = []
    truncated = False
    start = time.perf_counter()
    try:
        if not d.server_streaming:
            if d.client_streaming:
                reply, outcome = channel.stream_unary(method.path, **codec).with_call(
                    iter([request]), **options
                )
            else:
                reply, outcome = channel.unary_unary(method.path, **codec).with_call(
                    request, **options
                )
            responses.append(reply)
        else:
            if d.client_streaming:
                outcome = channel.stream_stream(method.path, **codec)(iter([request]), **options)
            else:
                outcome = channel.unary_stream(method.path, **codec)(request, **options)
            try:
                for reply in outcome:
                    responses.append(reply)
                    if len(responses) >= max_responses:
                        truncated = True
                        outcome.cancel()
                        break
            except grpc.RpcError:
                pass  # the status below says how the stream ended
        seconds = time.perf_counter() - start
    except grpc.RpcError as error:
        seconds = time.perf_counter() - start
        outcome = error
    code = _safe(outcome.code)
    result = CallResult(
        method=method.path,
        code=code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN",
        details=_safe(outcome.details) or "",
        responses=responses,
        initial_metadata=_metadata(_safe(outcome.initial_metadata)),
        trailing_metadata=_metadata(_safe(outcome.trailing_metadata)),
        seconds=seconds,
        truncated=truncated,
        streams_replies=d.server_streaming,
    )
    return result


def format_result(result: CallResult) -> str:
    """A call's outcome as text: status and latency, the reply as JSON, then both sets of
    metadata."""
    head = f"{result.code} in {result.seconds * 1000:.2f} ms"
    if result.details:
        head += f": {result.details}"
    lines = [head]
    if result.truncated:
        lines.append(
            f"(stopped reading after {len(result.responses)} replies and cancelled the call)"
        )
    if result.responses:
        count = len(result.responses)
        lines.append(
            "reply:"
            if not result.streams_replies
            else f"{count} repl{'y' if count == 1 else 'ies'}:"
        )
        lines.append(result.json())
    else:
        lines.append("no reply")

    def meta(name: str, pairs: tuple[tuple[str, str], ...]) -> str:
        return f"{name}: " + (", ".join(f"{k}: {v}" for k, v in pairs) if pairs else "(none)")

    lines.append(meta("initial metadata", result.initial_metadata))
    lines.append(meta("trailing metadata", result.trailing_metadata))
    return "\n".join(lines)
