"""The check behind notebook 11's exercise: an async Increment that runs once per request id.

Notebook 11 runs it through ``rpclab.exercises.check`` (which prints the verdict and never
raises); tests/test_aio_checks.py proves it passes the notebook's solution and catches the
race the notebook is about. :class:`SlowStore` is the exercise's store, whose every write is
awaited like a database's; :func:`check_once_per_id` serves the learner's class in a grpc.aio
server on an event loop of its own (the notebook's loop is busy running the cell that waits for
the check) and sends the same id in turn and at once, no id, and two ids, with amounts (so that
one that always adds 1 is caught). A blank exercise's
``NotDone`` is caught in the handler and raised again here. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from rpclab.grpcstack.kv_service import kv_pb2, kv_pb2_grpc
from rpclab.runtime import aio

__all__ = ["check_once_per_id", "SlowStore"]

WAIT = 5.0  # seconds any call of the check may take


def _expect(condition: object, message: str) -> None:
    if not condition:
        raise AssertionError(message)


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

            async def increment(request_id: str, amount: int | None = None) -> int:
                request = kv_pb2.IncrementRequest(key="n", request_id=request_id, amount=amount)
                try:
                    return (await kv.Increment(request, timeout=WAIT)).value
                except grpc.aio.AioRpcError as error:
                    if errors:
                        raise errors[0] from None
                    raise AssertionError(
                        f"Increment failed with {error.code().name}: {error.details()}"
                    ) from None

            def counter() -> int | None:
                return servicer.store.values.get("n")

            first = await increment("r1", 5)
            _expect(
                first == 5,
                f"the first Increment of a new key, with amount=5, returned {first}, not 5: add "
                "request.amount (1 when it is unset)",
            )
            again = await increment("r1", 5)
            _expect(
                again == 5 and counter() == 5,
                f"a second Increment with request_id 'r1' returned {again}: it must return the "
                "saved reply of the first, and not increment again",
            )
            together = await asyncio.gather(increment("r2", 2), increment("r2", 2))
            _expect(
                list(together) == [7, 7] and counter() == 7,
                f"two Increments by 2 with request_id 'r2' arriving together, on a counter at 5, "
                f"returned {list(together)} and the counter is now {counter()}: both found the "
                "id new, because an await (the store's) lies between reading self.replies and "
                "writing it. Hold an asyncio.Lock across check, increment and save",
            )
            free = await asyncio.gather(*(increment("") for _ in range(3)))
            _expect(
                sorted(free) == [8, 9, 10],
                f"three Increments without a request_id or an amount, on a counter at 7, "
                f"returned {sorted(free)}, not [8, 9, 10]: without an id every call increments, "
                "by 1 when amount is unset",
            )
            different = await asyncio.gather(increment("r3", 1), increment("r4", 1))
            _expect(
                sorted(different) == [11, 12],
                f"Increments by 1 with two different ids, on a counter at 10, returned "
                f"{sorted(different)}: each id increments once",
            )
    finally:
        await server.stop(grace=0)


def check_once_per_id(servicer_class: Callable[[], Any]) -> str:
    """Check an aio KV servicer whose Increment (over ``self.store``, a SlowStore) runs at most
    once per request id, even for two calls with one id at the same time.

    Runs its own event loop in the calling thread: a notebook's own loop is busy running the
    cell that waits for this check.
    """
    asyncio.run(_once_per_request_id(servicer_class))
    return "one increment per request id, even for two calls at once"
