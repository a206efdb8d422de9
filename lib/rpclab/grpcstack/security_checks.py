"""The check behind notebook 10's exercise: authorization after authentication.

Notebook 10 runs it through ``rpclab.exercises.check`` (which prints the verdict and never
raises); tests/test_security_checks.py proves it passes the notebook's solution and catches
the usual wrong answers. :func:`check_admin_only` serves the key-value store behind TokenAuth
and the learner's interceptor, and says whether a known caller who may not delete gets
PERMISSION_DENIED (not UNAUTHENTICATED), whether the other methods stay open, and whether an
admin gets through. Every wait is bounded; the server is stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import grpc

from rpclab.grpcstack.interceptors import TokenAuth
from rpclab.grpcstack.kv_service import kv_pb2, kv_pb2_grpc
from rpclab.grpcstack.services import add_kv
from rpclab.runtime import background

__all__ = ["check_admin_only"]

WAIT = 5.0  # seconds any call of the check may take


def _expect(condition: object, message: str) -> None:
    if not condition:
        raise AssertionError(message)


class _Details(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


def check_admin_only(
    interceptor_class: Callable[[TokenAuth, Iterable[str]], grpc.ServerInterceptor],
) -> str:
    """Check an interceptor that lets only ``admins`` call KV/Delete (PERMISSION_DENIED for any
    other known caller), after TokenAuth has said who the caller is (UNAUTHENTICATED if nobody)."""
    tokens = {"token-of-ada": "ada", "token-of-bob": "bob"}
    auth = TokenAuth(tokens)
    interceptor = interceptor_class(auth, ["ada"])
    # Call it once directly, so that a blank exercise (NotDone) or a crash shows up here.
    as_bob = (("authorization", "Bearer token-of-bob"),)
    interceptor.intercept_service(lambda details: None, _Details("/rpclab.kv.KV/Delete", as_bob))

    server = background.serve_grpc("exercise-admin-only", add_kv, interceptors=[auth, interceptor])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            kv = kv_pb2_grpc.KVStub(channel)

            def outcome(call: Callable[..., Any], request: Any, token: str | None) -> str:
                metadata = () if token is None else (("authorization", f"Bearer {token}"),)
                try:
                    call(request, timeout=WAIT, metadata=metadata)
                except grpc.RpcError as error:
                    return error.code().name
                return "OK"

            put = kv_pb2.PutRequest(key="report", value="draft")
            delete = kv_pb2.DeleteRequest(key="report")
            _expect(
                outcome(kv.Put, put, "token-of-bob") == "OK",
                "bob's Put was refused: only Delete is for admins, every other method stays open "
                "to anyone with a valid token",
            )
            bob = outcome(kv.Delete, delete, "token-of-bob")
            _expect(
                bob == "PERMISSION_DENIED",
                f"bob (a valid token, not an admin) called Delete and got {bob}: he should get "
                "PERMISSION_DENIED -- the server knows who he is, he is just not allowed",
            )
            _expect(
                outcome(kv.Get, kv_pb2.GetRequest(key="report"), "token-of-ada") == "OK",
                "bob's refused Delete still deleted the key: refuse before the method runs",
            )
            nobody = outcome(kv.Delete, delete, None)
            _expect(
                nobody == "UNAUTHENTICATED",
                f"a Delete without a token got {nobody}: that is TokenAuth's UNAUTHENTICATED, "
                "which your interceptor (inside it) should never change",
            )
            ada = outcome(kv.Delete, delete, "token-of-ada")
            _expect(ada == "OK", f"ada (an admin) called Delete and got {ada}: let her through")
    finally:
        server.stop()
    return "bob: PERMISSION_DENIED, no token: UNAUTHENTICATED, ada: OK"
