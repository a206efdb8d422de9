"""Wrap a gRPC method handler so that a hook runs before the method: the tool behind counting and
failing interceptors.

Used by rpclab.grpcstack.callproxy (CallCounter, notebook 09), rpclab.faults.flaky (Flaky,
notebooks 09 and 15), and notebook 10's authorization exercise (refuse before the method runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


def run_before(
    handler: grpc.RpcMethodHandler | None, hook: Callable[[grpc.ServicerContext], None]
) -> grpc.RpcMethodHandler | None:
    """The same handler, with ``hook(context)`` run in the call's thread before the method (it may
    abort)."""
    if handler is None:
        return None
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    )
    for attribute, make in kinds:
        method = getattr(handler, attribute)
        if method is not None:

            def behaviour(
                request: Any, context: grpc.ServicerContext, _method: Callable = method
            ) -> Any:
                hook(context)
                return _method(request, context)

            return make(
                behaviour,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler
