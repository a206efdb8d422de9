"""rpclab.runtime.aio (grpc.aio servers on the running loop, by name) and
rpclab.grpcstack.aio_kv.AsyncKV, with plain asyncio.run."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from rpclab.grpcstack.aio_kv import add_async_kv
from rpclab.grpcstack.greeter import helloworld_pb2, helloworld_pb2_grpc
from rpclab.grpcstack.kv_service import kv_pb2, kv_pb2_grpc
from rpclab.kv import KVStore
from rpclab.runtime import aio, background, process


class AsyncGreeter(helloworld_pb2_grpc.GreeterServicer):
    def __init__(self, tag: str = "") -> None:
        self.tag = tag

    async def SayHello(self, request, context):
        return helloworld_pb2.HelloReply(message=f"Hello, {request.name}!{self.tag}")


def add_greeter(tag: str = ""):
    return lambda server: helloworld_pb2_grpc.add_GreeterServicer_to_server(
        AsyncGreeter(tag), server
    )


async def _hello(port: int, name: str = "Ada") -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await helloworld_pb2_grpc.GreeterStub(channel).SayHello(
            helloworld_pb2.HelloRequest(name=name), timeout=2
        )
        return reply.message


@pytest.fixture(autouse=True)
def _no_aio_servers_left():
    yield
    left = aio.running_aio()
    assert not left, f"test left aio servers running: {left}"


def test_serve_aio_serves_on_loopback_and_stops():
    async def main():
        server = await aio.serve_aio("test-aio", add_greeter())
        assert server.host == "127.0.0.1" and server.port > 0 and server.running
        assert aio.running_aio() == {"test-aio": server.address}
        assert await _hello(server.port) == "Hello, Ada!"
        assert await aio.stop_all_aio() == ["test-aio"]
        assert not server.running and aio.running_aio() == {}
        await server.stop()  # twice is harmless
        return server.port

    port = asyncio.run(main())
    assert ("127.0.0.1", port) not in (process.listening_ports() or [])
    assert not background.running()  # aio servers are not background threads


def test_serving_a_name_again_replaces_the_old_server():
    async def main():
        first = await aio.serve_aio("test-aio", add_greeter(" (1)"))
        second = await aio.serve_aio("test-aio", add_greeter(" (2)"))
        assert not first.running and second.running and list(aio.running_aio()) == ["test-aio"]
        assert await _hello(second.port) == "Hello, Ada! (2)"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await helloworld_pb2_grpc.GreeterStub(channel).SayHello(
                    helloworld_pb2.HelloRequest(name="x"), timeout=1
                )
        assert gone.value.code() is grpc.StatusCode.UNAVAILABLE
        assert await aio.stop_aio("test-aio") and not await aio.stop_aio("test-aio")

    asyncio.run(main())


def test_serve_aio_explains_bad_arguments_and_a_failing_register():
    async def main():
        with pytest.raises(TypeError, match="register must be callable"):
            await aio.serve_aio("test-aio", None)
        with pytest.raises(ValueError, match="port must be an int between"):
            await aio.serve_aio("test-aio", add_greeter(), port=70000)

        def broken(server):
            raise RuntimeError("no servicer today")

        with pytest.raises(background.BackgroundServerError, match="no servicer today"):
            await aio.serve_aio("test-aio", broken)

        async def async_register(server):
            add_greeter()(server)

        server = await aio.serve_aio("test-aio", async_register)
        try:
            with pytest.raises(background.BackgroundServerError, match="could not bind"):
                await aio.serve_aio(
                    "test-aio-2", add_greeter(), port=server.port
                )  # so_reuseport 0: no sharing
        finally:
            await aio.stop_all_aio()

    asyncio.run(main())


def test_a_server_on_another_threads_loop_is_stopped_through_that_loop():
    ready, release = threading.Event(), None
    box = {}

    def other_thread():
        async def main():
            nonlocal release
            release = asyncio.Event()
            box["server"] = await aio.serve_aio("test-aio-thread", add_greeter())
            box["loop"] = asyncio.get_running_loop()
            ready.set()
            await release.wait()

        asyncio.run(main())

    thread = threading.Thread(target=other_thread)
    thread.start()
    assert ready.wait(5)

    async def here():
        assert await _hello(box["server"].port) == "Hello, Ada!"
        await aio.stop_all_aio()  # from this loop, while the server's loop runs in the other thread

    try:
        asyncio.run(here())
    finally:
        box["loop"].call_soon_threadsafe(release.set)
        thread.join(5)
    assert not thread.is_alive() and not box["server"].running


def test_aio_channel_from_another_loop_fails_clearly():
    async def main():
        server = await aio.serve_aio("test-aio", add_greeter())
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = helloworld_pb2_grpc.GreeterStub(channel)
                errors = []

                def elsewhere():
                    async def use_it():
                        return await stub.SayHello(helloworld_pb2.HelloRequest(name="x"), timeout=1)

                    try:
                        asyncio.run(use_it())
                    except RuntimeError as exc:
                        errors.append(str(exc))

                thread = threading.Thread(target=elsewhere)
                thread.start()
                thread.join(5)
                assert errors and "attached to a different loop" in errors[0]
        finally:
            await aio.stop_all_aio()

    asyncio.run(main())


# --------------------------------------------------------------------------- AsyncKV


def test_async_kv_serves_the_store_with_its_status_codes():
    store = KVStore()

    async def main():
        server = await aio.serve_aio("test-aio-kv", lambda s: add_async_kv(s, store))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                kv = kv_pb2_grpc.KVStub(channel)
                await kv.Put(kv_pb2.PutRequest(key="k", value="v"), timeout=2)
                assert (await kv.Get(kv_pb2.GetRequest(key="k"), timeout=2)).value == "v"
                replies = await asyncio.gather(
                    *(kv.Increment(kv_pb2.IncrementRequest(key="n"), timeout=2) for _ in range(20))
                )
                assert sorted(r.value for r in replies) == list(range(1, 21))
                once = kv_pb2.IncrementRequest(key="n", amount=5, request_id="r1")
                assert [(await kv.Increment(once, timeout=2)).value for _ in range(2)] == [25, 25]
                assert (await kv.Delete(kv_pb2.DeleteRequest(key="k"), timeout=2)).existed
                codes = []
                for call in (
                    kv.Get(kv_pb2.GetRequest(key="k"), timeout=2),
                    kv.Put(kv_pb2.PutRequest(key="", value="v"), timeout=2),
                    kv.Increment(kv_pb2.IncrementRequest(key="n", amount=2**63 - 1), timeout=2),
                ):
                    with pytest.raises(grpc.aio.AioRpcError) as failed:
                        await call
                    codes.append(failed.value.code())
                assert codes == [
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.OUT_OF_RANGE,
                ]
        finally:
            await aio.stop_all_aio()

    asyncio.run(main())
    assert store.get("n") == "25"


def test_async_kv_watch_streams_changes_until_the_deadline():
    store = KVStore()

    async def main():
        server = await aio.serve_aio("test-aio-kv", lambda s: add_async_kv(s, store))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                kv = kv_pb2_grpc.KVStub(channel)
                watch = kv.Watch(kv_pb2.WatchRequest(prefix="a"), timeout=1)
                assert dict(await watch.initial_metadata())["rpclab-version"] == "0"
                for key in ("a1", "b1", "a2"):
                    await kv.Put(kv_pb2.PutRequest(key=key, value="x"), timeout=2)
                seen = []
                async for change in watch:
                    seen.append(change.key)
                    if len(seen) == 2:
                        break
                assert (
                    watch.cancel()
                )  # an aio call cancelled inside its own `async for` raises CancelledError
                assert seen == ["a1", "a2"]
                assert await watch.code() is grpc.StatusCode.CANCELLED
        finally:
            await aio.stop_all_aio()

    asyncio.run(main())


def test_two_increments_with_one_request_id_at_the_same_time_increment_once():
    # The race notebook 11 shows: with an await between "is this id new?" and "remember its
    # reply", both calls found the id new and both incremented (they returned 1 and 2).
    store = KVStore()

    async def main():
        server = await aio.serve_aio("test-aio-kv", lambda s: add_async_kv(s, store, delay=0.05))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                kv = kv_pb2_grpc.KVStub(channel)
                once = kv_pb2.IncrementRequest(key="n", request_id="same")
                replies = await asyncio.gather(*(kv.Increment(once, timeout=2) for _ in range(2)))
                other = kv_pb2.IncrementRequest(key="n", amount=5, request_id="same")
                with pytest.raises(grpc.aio.AioRpcError) as reused:
                    await kv.Increment(other, timeout=2)
                return [r.value for r in replies], reused.value.code()
        finally:
            await aio.stop_all_aio()

    values, code = asyncio.run(main())
    assert values == [1, 1] and store.get("n") == "1"
    assert code is grpc.StatusCode.INVALID_ARGUMENT
