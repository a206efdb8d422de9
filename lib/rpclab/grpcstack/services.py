"""gRPC servers for RPC Lab: the Greeter, the RouteGuide and the key-value store.

Used in notebooks 07, 08, 09, 10, 11 and 12; served by ``rpclab serve grpc``.

``serve_all()`` runs all three in one background server, with gRPC's standard
health service and server reflection::

    from rpclab.grpcstack import services as grpcservices
    handle = grpcservices.serve_all()       # listening on 127.0.0.1, a free port
    handle.address                          # ('127.0.0.1', 50123)
    handle.stop()

The ``add_*`` helpers each add one service, to build a server of your own with
rpclab.runtime.background::

    background.serve_grpc("greeter", grpcservices.add_greeter)

Importing this package compiles protos/helloworld.proto, route_guide.proto and
kv.proto with rpclab.grpcstack.protos (cached on disk after the first time).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import grpc

from rpclab.grpcstack import greeter, kv_service, route_guide
from rpclab.grpcstack.greeter import Greeter, add_greeter
from rpclab.grpcstack.kv_service import KV, add_kv
from rpclab.grpcstack.route_guide import RouteGuide, add_route_guide
from rpclab.kv import KVStore
from rpclab.runtime import background

if TYPE_CHECKING:
    from grpc_health.v1.health import HealthServicer

__all__ = [
    "serve_all",
    "register_all",
    "add_greeter",
    "add_route_guide",
    "add_kv",
    "add_health",
    "add_reflection",
    "Greeter",
    "RouteGuide",
    "KV",
    "SERVICE_NAMES",
]

# The full names of the services serve_all offers (health and reflection aside).
SERVICE_NAMES: tuple[str, ...] = (
    greeter.SERVICE_NAME,
    route_guide.SERVICE_NAME,
    kv_service.SERVICE_NAME,
)


def add_health(server: grpc.Server, services: Iterable[str] = SERVICE_NAMES) -> HealthServicer:
    """Add gRPC's standard health service, reporting SERVING for the server ("") and each of
    ``services``.

    Returns the servicer: its ``set(name, status)`` reports another status, e.g.
    ``health_pb2.HealthCheckResponse.NOT_SERVING`` (from grpc_health.v1).
    """
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    servicer = health.HealthServicer()
    for name in ("", *services):
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer


def add_reflection(server: grpc.Server, services: Iterable[str] = SERVICE_NAMES) -> None:
    """Add server reflection, so tools (grpcurl, Postman, a reflection client) can list
    ``services``."""
    from grpc_health.v1 import health
    from grpc_reflection.v1alpha import reflection

    names = dict.fromkeys([*services, health.SERVICE_NAME, reflection.SERVICE_NAME])
    reflection.enable_server_reflection(list(names), server)


def register_all(server: grpc.Server, store: KVStore | None = None) -> KV:
    """Add Greeter, RouteGuide, KV (over ``store``), health and reflection to ``server``; return the
    KV servicer."""
    add_greeter(server)
    add_route_guide(server)
    kv = add_kv(server, store)
    add_health(server)
    add_reflection(server)
    return kv


def serve_all(
    host: str = background.DEFAULT_HOST,
    port: int = 0,
    name: str = "rpclab-grpc",
    *,
    store: KVStore | None = None,
    max_workers: int = 16,
) -> background.ServerHandle:
    """Serve Greeter, RouteGuide, KV, health and reflection in the background; return the handle.

    ``store`` is the KVStore to serve (a new, empty one if None). Each open
    streaming call (a Watch, say) holds one of the ``max_workers`` threads.
    """
    return background.serve_grpc(
        name,
        lambda server: register_all(server, store),
        host=host,
        port=port,
        max_workers=max_workers,
    )
