"""The key-value store as an asyncio gRPC service (protos/kv.proto), for grpc.aio servers started
with rpclab.runtime.aio.

Taught in notebook 11; measured in 13 (the grpc.aio transport).

Same behaviour and status codes as rpclab.grpcstack.services.KV (NOT_FOUND,
INVALID_ARGUMENT, OUT_OF_RANGE, at-most-once Increment with a request_id),
written with ``async def``: every method runs on the event loop, so the
store's quick, lock-protected calls need no threads. Watch polls the store
without blocking the loop.

One rule keeps it correct without locks: no ``await`` between a read and the write that
depends on it. Increment once broke it (it awaited the injected delay between "is this
request_id new?" and "remember its reply", so two calls with one id both incremented: they
returned 1 and 2); notebook 11 shows that race, then this fix: every await comes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from rpclab import checks
from rpclab.grpcstack.kv_service import (
    INT64_MAX,
    INT64_MIN,
    MAX_REQUEST_ID_LENGTH,
    ReplyCache,
    kv_pb2,
    kv_pb2_grpc,
)
from rpclab.kv import MAX_KEY_LENGTH, KeyNotFound, KVStore

__all__ = ["AsyncKV", "add_async_kv", "WATCH_POLL_S"]

T = TypeVar("T")

WATCH_POLL_S = 0.02  # how often a Watch looks for new changes (it never blocks the loop)


class AsyncKV(kv_pb2_grpc.KVServicer):
    """Serves a KVStore from a grpc.aio server; ``delay`` (seconds) is an injected, awaited slowness
    before each call."""

    def __init__(
        self, store: KVStore | None = None, *, delay: float = 0.0, remember: int = 10_000
    ) -> None:
        self.delay = checks.seconds("delay", delay, low=0)
        self.store = store if store is not None else KVStore()
        self.replies = ReplyCache(remember)

    async def _pause(self) -> None:
        """The injected delay, awaited: other calls run meanwhile (no thread sleeps)."""
        if self.delay > 0:
            await asyncio.sleep(self.delay)

    async def _run(
        self, context: grpc.aio.ServicerContext, work: Callable[..., T], *args: Any
    ) -> T:
        """Wait the injected delay, then do ``work(*args)``, turning the store's errors into status
        codes."""
        await self._pause()
        try:
            return work(*args)
        except KeyNotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except (ValueError, TypeError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise AssertionError("unreachable: abort() raises")

    async def Get(
        self, request: kv_pb2.GetRequest, context: grpc.aio.ServicerContext
    ) -> kv_pb2.GetReply:
        return kv_pb2.GetReply(value=await self._run(context, self.store.get, request.key))

    async def Put(
        self, request: kv_pb2.PutRequest, context: grpc.aio.ServicerContext
    ) -> kv_pb2.PutReply:
        await self._run(context, self.store.put, request.key, request.value)
        return kv_pb2.PutReply()

    async def Delete(
        self, request: kv_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> kv_pb2.DeleteReply:
        return kv_pb2.DeleteReply(existed=await self._run(context, self.store.delete, request.key))

    async def Increment(
        self, request: kv_pb2.IncrementRequest, context: grpc.aio.ServicerContext
    ) -> kv_pb2.IncrementReply:
        amount = request.amount if request.HasField("amount") else 1
        request_id = request.request_id
        if len(request_id) > MAX_REQUEST_ID_LENGTH:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request_id is {len(request_id)} characters; the limit is {MAX_REQUEST_ID_LENGTH}",
            )
        await self._pause()  # the last await before the reply: every await comes first
        # From here to the reply nothing awaits (an abort ends this call), so no other call runs
        # between reading the reply cache and writing it: two calls with one request_id cannot
        # both find it new and both increment.
        if request_id:
            saved = self.replies.get(request_id)
            if saved is not None:
                if saved.request != (request.key, amount):
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"request_id {request_id!r} was already used for another increment",
                    )
                return saved.reply
        try:
            value = self.store.increment(request.key, amount)
        except (ValueError, TypeError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not INT64_MIN <= value <= INT64_MAX:
            self.store.increment(request.key, -amount)
            await context.abort(
                grpc.StatusCode.OUT_OF_RANGE,
                f"{request.key!r} would become {value}, which does not fit in an int64",
            )
        reply = kv_pb2.IncrementReply(value=value)
        if request_id:
            self.replies.put(request_id, (request.key, amount), reply)
        return reply

    async def Watch(
        self, request: kv_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[kv_pb2.Change]:
        """Stream changes to keys under ``request.prefix`` until the client cancels or its deadline
        passes."""
        if len(request.prefix) > MAX_KEY_LENGTH:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"prefix is {len(request.prefix)} characters; the limit is {MAX_KEY_LENGTH}",
            )
        seen = request.since_version if request.HasField("since_version") else self.store.version
        await context.send_initial_metadata((("rpclab-version", str(seen)),))
        while True:  # ends when gRPC cancels this task: the client left, or its deadline passed
            for change in self.store.changes_since(seen, timeout=0):
                seen = change.version
                if change.key.startswith(request.prefix):
                    yield kv_pb2.Change(
                        version=change.version,
                        key=change.key,
                        value=change.value or "",
                        deleted=change.value is None,
                        time=change.time,
                    )
            await asyncio.sleep(WATCH_POLL_S)


def add_async_kv(
    server: grpc.aio.Server, store: KVStore | None = None, *, delay: float = 0.0
) -> AsyncKV:
    """Add an AsyncKV over ``store`` to a grpc.aio ``server``; return it (``await
    aio.serve_aio("kv", add_async_kv)``)."""
    servicer = AsyncKV(store, delay=delay)
    kv_pb2_grpc.add_KVServicer_to_server(servicer, server)
    return servicer
