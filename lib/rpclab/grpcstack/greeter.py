"""The Greeter of gRPC's hello-world examples (protos/helloworld.proto), served in Python.

The first service of notebook 07; used in 08, 09, 10, 11; measured in 13.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from rpclab import checks
from rpclab.grpcstack import protos

__all__ = ["Greeter", "add_greeter", "SERVICE_NAME", "helloworld_pb2", "helloworld_pb2_grpc"]

helloworld_pb2, helloworld_pb2_grpc = protos.load("helloworld")

SERVICE_NAME: str = helloworld_pb2.DESCRIPTOR.services_by_name[
    "Greeter"
].full_name  # "helloworld.Greeter"


class Greeter(helloworld_pb2_grpc.GreeterServicer):
    """Answers every name with ``Hello, <name>!``."""

    def __init__(self, replies: int = 3) -> None:
        # how many greetings SayHelloStreamReply sends
        self.replies = checks.integer("replies", replies, low=1)

    def SayHello(
        self, request: helloworld_pb2.HelloRequest, context: grpc.ServicerContext
    ) -> helloworld_pb2.HelloReply:
        """Unary: one request, one greeting."""
        return helloworld_pb2.HelloReply(message=f"Hello, {request.name}!")

    def SayHelloStreamReply(
        self, request: helloworld_pb2.HelloRequest, context: grpc.ServicerContext
    ) -> Iterator[helloworld_pb2.HelloReply]:
        """Server streaming: ``replies`` numbered greetings for one name."""
        for number in range(1, self.replies + 1):
            if not context.is_active():  # the client cancelled: stop working
                return
            yield helloworld_pb2.HelloReply(message=f"Hello number {number}, {request.name}!")

    def SayHelloBidiStream(
        self, request_iterator: Iterator[helloworld_pb2.HelloRequest], context: grpc.ServicerContext
    ) -> Iterator[helloworld_pb2.HelloReply]:
        """Bidirectional streaming: each request is answered as soon as it arrives."""
        for request in request_iterator:
            yield helloworld_pb2.HelloReply(message=f"Hello, {request.name}!")


def add_greeter(server: grpc.Server, *, replies: int = 3) -> Greeter:
    """Add a Greeter to ``server``; return it. Use as ``background.serve_grpc("greeter",
    add_greeter)``."""
    greeter = Greeter(replies)
    helloworld_pb2_grpc.add_GreeterServicer_to_server(greeter, server)
    return greeter
