"""The checks behind the gRPC exercises: each one serves the learner's code for real, calls it,
and says in plain words what it did wrong.

Used by notebook 09 (a Put that stops when its caller has gone), 10 (authorization after
authentication) and 11 (an async Increment that runs once per request id). A notebook calls
them through rpclab.exercises::

    exercises.check("cooperative-put", lambda: exercise_checks.cooperative_put(PatientKV))

Each check raises AssertionError with the message a learner reads, and lets the learner's own
exceptions through (rpclab.exercises turns ``NotDone`` into "Not done yet", anything else into
"your code raised ..."). An exception raised inside a handler reaches gRPC, not the check, so
the checks catch it there and raise it again here. Every server they start is stopped, and
every wait is bounded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import grpc

from rpclab.grpcstack.interceptors import TokenAuth
from rpclab.grpcstack.kv_service import kv_pb2, kv_pb2_grpc
from rpclab.runtime import aio, background

__all__ = ["cooperative_put", "admin_only_delete", "once_per_request_id", "SlowStore"]

WAIT = 5.0  # seconds any single wait of a check may take


def _expect(condition: object, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# --------------------------------------------------------------------------- 09: cooperative Put


class _Watched(kv_pb2_grpc.KVServicer):
    """Runs the learner's Put, noting when each call ends and any exception it raised."""

    def __init__(self, servicer: Any) -> None:
        self.servicer = servicer
        self.started = threading.Event()
        self.ended = threading.Event()
        self.seconds: float | None = None
        self.error: BaseException | None = None

    def Put(self, request: kv_pb2.PutRequest, context: grpc.ServicerContext) -> kv_pb2.PutReply:
        start = time.monotonic()
        self.started.set()
        try:
            return self.servicer.Put(request, context)
        except NotImplementedError as exc:  # NotDone: the exercise is still blank
            self.error = exc
            raise
        finally:
            self.seconds = time.monotonic() - start
            self.ended.set()

    def reset(self) -> None:
        self.started.clear()
        self.ended.clear()
        self.seconds = self.error = None


def cooperative_put(servicer_class: Callable[..., Any], work: float = 1.0) -> str:
    """Check a KV servicer whose Put works ``work`` seconds, then stores -- unless its call has
    ended: it must store in time, store nothing late, and stop soon after its caller goes."""
    servicer = servicer_class(work=work)
    watched = _Watched(servicer)
    server = background.serve_grpc(
        "exercise-cooperative-put", lambda s: kv_pb2_grpc.add_KVServicer_to_server(watched, s)
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = kv_pb2_grpc.KVStub(channel)
            # 1. Plenty of time: the value is stored.
            try:
                stub.Put(kv_pb2.PutRequest(key="in time", value="kept"), timeout=work + 3)
            except grpc.RpcError as error:
                if watched.error is not None:
                    raise watched.error from None
                raise AssertionError(
                    f"a Put with {work + 3:g} s to spare failed with {error.code().name}: "
                    "it should work for self.work seconds and then store the value"
                ) from None
            _expect(
                servicer.store.get("in time") == "kept",
                "a Put with plenty of time did not store its value: after the wait, if the call "
                "is still active, store request.value under request.key",
            )
            # 2. The deadline passes during the work.
            watched.reset()
            deadline = 0.1
            try:
                stub.Put(kv_pb2.PutRequest(key="late", value="lost"), timeout=deadline)
            except grpc.RpcError:
                pass
            _expect(watched.ended.wait(work + WAIT), f"Put was still running {work + WAIT:g} s on")
            _expect(
                "late" not in servicer.store,
                f"your Put stored 'late' although its caller gave up after {deadline} s: "
                "check context.is_active() after the wait, and store only if it is True",
            )
            late = watched.seconds or 0.0
            _expect(
                late < deadline + work / 2,
                f"your Put went on for {late:.2f} s although its caller gave up after {deadline} "
                "s: wait on a threading.Event that context.add_callback(event.set) sets when the "
                "call ends, with a timeout of self.work, instead of sleeping",
            )
            # 3. The client cancels during the work.
            watched.reset()
            future = stub.Put.future(kv_pb2.PutRequest(key="cancelled", value="lost"), timeout=30)
            _expect(watched.started.wait(WAIT), "the cancelled Put never reached the server")
            future.cancel()
            _expect(watched.ended.wait(work + WAIT), f"Put was still running {work + WAIT:g} s on")
            _expect(
                "cancelled" not in servicer.store and (watched.seconds or 0.0) < work / 2 + 0.2,
                "a cancelled Put must stop early and store nothing, as one past its deadline does",
            )
    finally:
        server.stop()
    return f"a late Put stopped {late * 1000:.0f} ms after it began and stored nothing"


# --------------------------------------------------------------------------- 10: authorization


class _Details(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


def admin_only_delete(
    interceptor_class: Callable[[TokenAuth, Iterable[str]], grpc.ServerInterceptor],
) -> str:
    """Check an interceptor that lets only ``admins`` call KV/Delete (PERMISSION_DENIED for any
    other known caller), after TokenAuth has said who the caller is (UNAUTHENTICATED if nobody)."""
    from rpclab.grpcstack.services import add_kv

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


# --------------------------------------------------------------------------- 11: once per id


class SlowStore:
    """A key-value store of counters whose every write is awaited, like an async database's."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.values: dict[str, int] = {}
        self.writes = 0

    async def increment(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to ``key`` (0 if absent) and return the new value, after a delay."""
        await asyncio.sleep(self.delay)  # the database's round trip: other calls run meanwhile
        self.writes += 1
        self.values[key] = self.values.get(key, 0) + amount
        return self.values[key]


async def _once_per_request_id(servicer_class: Callable[[], Any]) -> None:
    servicer = servicer_class()
    errors: list[BaseException] = []

    class Watched(kv_pb2_grpc.KVServicer):
        async def Increment(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await servicer.Increment(request, context)
            except NotImplementedError as exc:  # NotDone
                errors.append(exc)
                raise

    server = await aio.serve_aio(
        "exercise-once-per-id", lambda s: kv_pb2_grpc.add_KVServicer_to_server(Watched(), s)
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            kv = kv_pb2_grpc.KVStub(channel)

            async def increment(request_id: str) -> int:
                request = kv_pb2.IncrementRequest(key="n", request_id=request_id)
                try:
                    return (await kv.Increment(request, timeout=WAIT)).value
                except grpc.aio.AioRpcError as error:
                    if errors:
                        raise errors[0] from None
                    raise AssertionError(
                        f"Increment failed with {error.code().name}: {error.details()}"
                    ) from None

            first = await increment("r1")
            _expect(first == 1, f"the first Increment of a new key returned {first}, not 1")
            again = await increment("r1")
            _expect(
                again == 1 and servicer.store.values.get("n") == 1,
                f"a second Increment with request_id 'r1' returned {again}: it must return the "
                "saved reply of the first, and not increment again",
            )
            together = await asyncio.gather(increment("r2"), increment("r2"))
            _expect(
                list(together) == [2, 2] and servicer.store.values.get("n") == 2,
                f"two Increments with request_id 'r2' arriving together returned {list(together)}"
                f" and the counter is now {servicer.store.values.get('n')}: both found the id "
                "new, because an await (the store's) lies between reading self.replies and "
                "writing it. Hold an asyncio.Lock across check, increment and save",
            )
            free = await asyncio.gather(*(increment("") for _ in range(3)))
            _expect(
                sorted(free) == [3, 4, 5],
                f"three Increments without a request_id returned {sorted(free)}, not [3, 4, 5]: "
                "without an id every call increments",
            )
            different = await asyncio.gather(increment("r3"), increment("r4"))
            _expect(
                sorted(different) == [6, 7],
                f"Increments with two different ids returned {sorted(different)}: each id "
                "increments once",
            )
    finally:
        await server.stop(grace=0)


def once_per_request_id(servicer_class: Callable[[], Any]) -> str:
    """Check an aio KV servicer whose Increment (over ``self.store``, a SlowStore) runs at most
    once per request id, even for two calls with one id at the same time.

    Runs its own event loop in the calling thread: a notebook's own loop is busy running the
    cell that waits for this check.
    """
    asyncio.run(_once_per_request_id(servicer_class))
    return "one increment per request id, even for two calls at once"
