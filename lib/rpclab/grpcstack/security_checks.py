"""The check behind notebook 10's exercise: authorization after authentication.

Notebook 10 runs it through ``rpclab.exercises.check`` (which prints the verdict and never
raises); tests/test_security_checks.py proves it passes the notebook's solution and catches
the usual wrong answers. :func:`check_admin_only` serves the key-value store behind TokenAuth
and the learner's interceptor, and says whether a known caller who may not delete gets
PERMISSION_DENIED (not UNAUTHENTICATED), whether the other methods stay open, and whether an
admin gets through -- twice, with different admins, so that a name written into the
interceptor instead of ``self.admins`` is caught. Every wait is bounded; the server is stopped.
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
LEARNERS = ("ada", "bob", "grace")  # each holds a token named after them
ADMIN_SETS = (("ada",), ("bob", "grace"))  # the check runs once with each
DELETE = "/rpclab.kv.KV/Delete"


def _expect(condition: object, message: str) -> None:
    if not condition:
        raise AssertionError(message)


class _Details(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


def _one_server(
    interceptor_class: Callable[[TokenAuth, Iterable[str]], grpc.ServerInterceptor],
    admins: tuple[str, ...],
) -> None:
    """Serve the store behind TokenAuth and ``interceptor_class(auth, admins)``; try everyone."""
    auth = TokenAuth({f"token-of-{name}": name for name in LEARNERS})
    interceptor = interceptor_class(auth, list(admins))
    others = [name for name in LEARNERS if name not in admins]
    # Call it once directly, so that a blank exercise (NotDone) or a crash shows up here.
    as_other = (("authorization", f"Bearer token-of-{others[0]}"),)
    interceptor.intercept_service(lambda details: None, _Details(DELETE, as_other))

    server = background.serve_grpc("exercise-admin-only", add_kv, interceptors=[auth, interceptor])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            kv = kv_pb2_grpc.KVStub(channel)

            def outcome(call: Callable[..., Any], request: Any, who: str | None) -> str:
                metadata = () if who is None else (("authorization", f"Bearer token-of-{who}"),)
                try:
                    call(request, timeout=WAIT, metadata=metadata)
                except grpc.RpcError as error:
                    return error.code().name
                return "OK"

            named = f"admins={list(admins)}"
            put = kv_pb2.PutRequest(key="report", value="draft")
            delete = kv_pb2.DeleteRequest(key="report")
            for other in others:
                _expect(
                    outcome(kv.Put, put, other) == "OK",
                    f"{other}'s Put was refused: only Delete is for admins, every other method "
                    "stays open to anyone with a valid token",
                )
                denied = outcome(kv.Delete, delete, other)
                _expect(
                    denied == "PERMISSION_DENIED",
                    f"with {named}, {other} (a valid token, not an admin) called Delete and got "
                    f"{denied}: {other} should get PERMISSION_DENIED -- the server knows who is "
                    "calling, who is just not allowed. Decide by self.admins, not by a name",
                )
                _expect(
                    outcome(kv.Get, kv_pb2.GetRequest(key="report"), admins[0]) == "OK",
                    f"{other}'s refused Delete still deleted the key: refuse before the method "
                    "runs",
                )
            nobody = outcome(kv.Delete, delete, None)
            _expect(
                nobody == "UNAUTHENTICATED",
                f"a Delete without a token got {nobody}: that is TokenAuth's UNAUTHENTICATED, "
                "which your interceptor (inside it) should never change",
            )
            for admin in admins:
                outcome(kv.Put, put, admin)
                allowed = outcome(kv.Delete, delete, admin)
                _expect(
                    allowed == "OK",
                    f"with {named}, {admin} (an admin) called Delete and got {allowed}: let "
                    "every holder in self.admins through",
                )
    finally:
        server.stop()


def check_admin_only(
    interceptor_class: Callable[[TokenAuth, Iterable[str]], grpc.ServerInterceptor],
) -> str:
    """Check an interceptor that lets only ``admins`` call KV/Delete (PERMISSION_DENIED for any
    other known caller), after TokenAuth has said who the caller is (UNAUTHENTICATED if nobody).

    It runs twice, with different admins (ada; then bob and grace), so that the interceptor must
    decide by the ``admins`` it was given, not by a name written into it.
    """
    for admins in ADMIN_SETS:
        _one_server(interceptor_class, admins)
    return (
        "non-admins: PERMISSION_DENIED, no token: UNAUTHENTICATED, admins: OK "
        "(with ada as the admin, then bob and grace)"
    )
