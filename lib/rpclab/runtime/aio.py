"""Run grpc.aio servers on the current event loop, one per name, so that re-running a notebook cell
replaces the old one.

Taught in notebook 11 (grpc.aio in the kernel's own event loop).

An asyncio gRPC server is not a background thread: it is a set of tasks on
the event loop that started it (in a notebook, the kernel's own loop, reached
with top-level ``await``)::

    from rpclab.runtime import aio
    server = await aio.serve_aio("greeter", lambda s:
    helloworld_pb2_grpc.add_GreeterServicer_to_server(Greeter(), s))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        ...
    await aio.stop_all_aio()

Like rpclab.runtime.background, every server binds 127.0.0.1 port 0 unless told
otherwise, with ``('grpc.so_reuseport', 0)`` so that no second server can
silently share its port.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from rpclab import checks
from rpclab.runtime.background import (
    DEFAULT_HOST,
    BackgroundServerError,
    BoundServer,
    _check_host_port,
    _check_name,
)

__all__ = [
    "AioServerHandle",
    "serve_aio",
    "stop_aio",
    "stop_all_aio",
    "running_aio",
    "STOP_TIMEOUT",
]

STOP_TIMEOUT = 10.0  # seconds stop() waits for the server to end

_registry: dict[str, AioServerHandle] = {}


class AioServerHandle(BoundServer):
    """A grpc.aio server running on an event loop: its ``address``, ``server``, ``loop``, and
    ``await stop()``."""

    def __init__(
        self,
        name: str,
        server: grpc.aio.Server,
        address: tuple[str, int],
        loop: asyncio.AbstractEventLoop,
        grace: float | None,
    ):
        self.name = name
        self.server = server
        self.address = address
        self.loop = loop
        self.grace = grace
        self._stopped = False

    async def stop(self, grace: float | None = None, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server, letting calls in flight finish for ``grace`` seconds; stopping twice is
        harmless.

        Works from the loop that started the server, or from another running
        loop while the server's own loop runs in another thread. A server whose
        loop has been closed died with it; it is only forgotten.
        """
        if self._stopped:
            return
        here = asyncio.get_running_loop()
        if self.loop is not here and not self.loop.is_closed() and not self.loop.is_running():
            raise BackgroundServerError(
                f"cannot stop aio server {self.name!r}: it belongs to an event loop that is not "
                "running; "
                "stop it from that loop (aio objects belong to the loop that made them)"
            )
        self._stopped = True
        if _registry.get(self.name) is self:
            del _registry[self.name]
        grace = self.grace if grace is None else grace
        if self.loop is here:
            await asyncio.wait_for(self.server.stop(grace), timeout)
        elif self.loop.is_running():  # another thread's loop: ask it to stop its own server
            future = asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop)
            await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        # else its loop is closed: the server died with it and is only forgotten

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<grpc.aio server {self.name!r} on {self.host}:{self.port}, {state}>"


async def serve_aio(
    name: str,
    register: Callable[[grpc.aio.Server], Any],
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[Any] = (),
    credentials: grpc.ServerCredentials | None = None,
    compression: grpc.Compression | None = None,
    grace: float | None = 0.5,
) -> AioServerHandle:
    """Make a grpc.aio server on the running loop, let ``register(server)`` add servicers, bind it
    and start it.

    If a server called ``name`` is running it is stopped first. ``register``
    may be a plain function or a coroutine function. ``interceptors`` must be
    grpc.aio.ServerInterceptor objects.
    """
    name = _check_name(name)
    host, port = _check_host_port(host, port)
    checks.function("register", register, "register(aio_server)")
    loop = asyncio.get_running_loop()
    await stop_aio(name)

    opts = [("grpc.so_reuseport", 0), *[o for o in options if o[0] != "grpc.so_reuseport"]]
    server = grpc.aio.server(options=opts, interceptors=list(interceptors), compression=compression)
    try:
        added = register(server)
        if inspect.isawaitable(added):
            await added
    except Exception as exc:
        await server.stop(None)
        raise BackgroundServerError(
            f"cannot start {name!r}: register(server) raised {type(exc).__name__}: {exc}"
        ) from exc

    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = (
            server.add_secure_port(target, credentials)
            if credentials is not None
            else server.add_insecure_port(target)
        )
    except RuntimeError:
        bound = 0
    if not bound:
        await server.stop(None)
        raise BackgroundServerError(
            f"cannot start {name!r}: gRPC could not bind {host}:{port} "
            "(the port is in use, or the address is not on this machine). Use port=0 for a free "
            "port."
        )
    await server.start()
    handle = AioServerHandle(name, server, (host, bound), loop, grace)
    _registry[name] = handle
    return handle


async def stop_aio(name: str) -> bool:
    """Stop the aio server called ``name``; return whether one was running."""
    handle = _registry.get(_check_name(name))
    if handle is None:
        return False
    await handle.stop()
    return True


async def stop_all_aio() -> list[str]:
    """Stop every aio server started with serve_aio; return their names."""
    handles = list(_registry.values())
    for handle in handles:
        await handle.stop()
    return [h.name for h in handles]


def running_aio() -> dict[str, tuple[str, int]]:
    """The aio servers running now: name -> (host, port)."""
    return {name: handle.address for name, handle in _registry.items()}
