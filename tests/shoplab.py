"""The capstone's shop for a test: its services started with given work times, and a gateway stub.

Used by tests/test_capstone.py and tests/test_capstone_failure.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from rpclab.capstone import shop
from rpclab.capstone.shop import shop_pb2_grpc


@contextmanager
def open_shop(work: dict[str, float]) -> Iterator[tuple[shop.Shop, shop_pb2_grpc.GatewayStub]]:
    """The four services running (each taking ``work`` seconds a call), and a gateway stub;
    the channel closed and every service stopped when the block ends."""
    services = shop.start(work=work)
    channel = grpc.insecure_channel(f"127.0.0.1:{services.port}")
    try:
        yield services, shop_pb2_grpc.GatewayStub(channel)
    finally:
        channel.close()
        services.stop()
