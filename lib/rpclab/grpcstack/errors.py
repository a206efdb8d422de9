"""Rich errors (notebook 09): a google.rpc.BadRequest sent with the status, and read back on the
client."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from rpclab.grpcstack.greeter import helloworld_pb2, helloworld_pb2_grpc

MAX_NAME_LENGTH = 40  # CheckedGreeter's limit


class CheckedGreeter(helloworld_pb2_grpc.GreeterServicer):
    """A Greeter that checks the name and reports every problem at once, as a google.rpc.BadRequest.

    The status is INVALID_ARGUMENT; its details carry one field violation per
    problem, so a client (or a form in a browser) can show each next to its field.
    """

    def SayHello(
        self, request: helloworld_pb2.HelloRequest, context: grpc.ServicerContext
    ) -> helloworld_pb2.HelloReply:
        problems = []
        name = request.name
        if not name.strip():
            problems.append("must not be empty")
        if len(name) > MAX_NAME_LENGTH:
            problems.append(f"must be at most {MAX_NAME_LENGTH} characters, not {len(name)}")
        if any(ch.isdigit() for ch in name):
            problems.append("must not contain digits")
        if problems:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field="name", description=p)
                    for p in problems
                ]
            )
            detail = any_pb2.Any()
            detail.Pack(bad)
            status = status_pb2.Status(
                code=code_pb2.INVALID_ARGUMENT,
                message=f"the request has {len(problems)} problem(s)",
                details=[detail],
            )
            context.abort_with_status(rpc_status.to_status(status))
        return helloworld_pb2.HelloReply(message=f"Hello, {name}!")


_DETAIL_TYPES: dict[str, type[message.Message]] = {
    descriptor.full_name: getattr(error_details_pb2, name)
    for name, descriptor in error_details_pb2.DESCRIPTOR.message_types_by_name.items()
}


def error_details(error: grpc.RpcError) -> list[message.Message]:
    """The rich error details of a failed call, unpacked (google.rpc.BadRequest, RetryInfo, ...).

    Returns [] when the server sent none. A detail of a type that is not one
    of google.rpc's standard ones stays a packed google.protobuf.Any.
    """
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return []
    found: list[message.Message] = []
    for packed in status.details:
        kind = _DETAIL_TYPES.get(packed.TypeName())
        if kind is None:
            found.append(packed)
            continue
        unpacked = kind()
        packed.Unpack(unpacked)
        found.append(unpacked)
    return found
