"""Flow control made visible (notebook 08): a Greeter whose stream sends big replies as fast as gRPC
takes them, counting them."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc

from rpclab import checks
from rpclab.grpcstack.greeter import helloworld_pb2, helloworld_pb2_grpc


class Firehose(helloworld_pb2_grpc.GreeterServicer):
    """A Greeter whose SayHelloStreamReply sends ``count`` replies of ``size`` characters as fast
    as gRPC takes them.

    ``produced`` counts the replies the server has handed to gRPC so far: gRPC
    asks for the next one only when it has sent the previous one, so a client
    that reads slowly holds the server back once the flow-control windows are full.
    """

    def __init__(self, size: int = 16_000, count: int = 200) -> None:
        self.size = checks.integer("size", size, low=0, high=4_000_000)
        self.count = checks.integer("count", count, low=1, high=1_000_000)
        self.produced = 0
        self.finished = threading.Event()

    def SayHelloStreamReply(
        self, request: helloworld_pb2.HelloRequest, context: grpc.ServicerContext
    ) -> Iterator[helloworld_pb2.HelloReply]:
        self.produced = 0
        self.finished.clear()
        payload = "x" * self.size
        try:
            for _ in range(self.count):
                if not context.is_active():
                    return
                self.produced += 1
                yield helloworld_pb2.HelloReply(message=payload)
        finally:
            self.finished.set()
