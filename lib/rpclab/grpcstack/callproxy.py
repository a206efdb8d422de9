"""Load balancing made visible (notebook 09): a per-server call counter and a small per-call (L7)
round-robin gRPC proxy.

* :class:`CallCounter` -- a server interceptor per server that counts the calls
  each server receives.
* :func:`serve_call_proxy` -- a small L7 (per-call) round-robin gRPC proxy, to
  compare with the L4 one in rpclab.grpcstack.balancer.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import grpc

from rpclab.runtime import background

MAX_LOG = 10_000  # entries a log keeps (the oldest are forgotten first)


class CallRecord(NamedTuple):
    """One call a server received."""

    server: str
    method: str


class CallCounter:
    """Counts the calls each server receives; give each server ``counter.interceptor(its name)``.

    ``background.serve_grpc("lb-1", add_greeter, interceptors=[counter.interceptor("lb-1")])``
    """

    def __init__(self, methods: Iterable[str] | None = None) -> None:
        self.methods = (
            None if methods is None else frozenset(methods)
        )  # count only these (None: all)
        self._log: deque[CallRecord] = deque(maxlen=MAX_LOG)
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def interceptor(self, server: str) -> grpc.ServerInterceptor:
        """A server interceptor that counts the calls of the server called ``server``."""
        counter = self
        with self._lock:
            self._counts.setdefault(server, 0)

        class _Counting(grpc.ServerInterceptor):
            def intercept_service(
                self, continuation: Callable, details: grpc.HandlerCallDetails
            ) -> Any:
                if counter.methods is None or details.method in counter.methods:
                    with counter._lock:
                        counter._counts[server] += 1
                        counter._log.append(CallRecord(server, details.method))
                return continuation(details)

        return _Counting()

    def by_server(self) -> dict[str, int]:
        """Calls counted so far, per server (every server that has an interceptor, even at 0)."""
        with self._lock:
            return dict(self._counts)

    def order(self) -> list[str]:
        """The server of each call, in the order the calls arrived (the last MAX_LOG)."""
        with self._lock:
            return [record.server for record in self._log]

    def reset(self) -> None:
        """Count from zero again."""
        with self._lock:
            self._counts = Counter({name: 0 for name in self._counts})
            self._log.clear()


class CallProxy(background.RunningServer):
    """A running per-call (L7) gRPC proxy: ``address``, ``calls`` per upstream, ``stop()``."""

    def __init__(
        self,
        handle: background.ServerHandle,
        channels: Mapping[str, grpc.Channel],
        counts: Counter[str],
        lock: threading.Lock,
    ) -> None:
        super().__init__(handle)
        self._channels = dict(channels)
        self._counts = counts
        self._lock = lock

    @property
    def calls(self) -> dict[str, int]:
        """How many calls each upstream has been given so far."""
        with self._lock:
            return dict(self._counts)

    def stop(self, timeout: float = background.STOP_TIMEOUT) -> None:
        """Stop the proxy's server and close its channels to the upstreams."""
        try:
            self._handle.stop(timeout)
        finally:
            for channel in self._channels.values():
                channel.close()


_HOP_BY_HOP = ("grpc-", ":")  # metadata gRPC itself sets on each hop; not forwarded
_NOT_FORWARDED = ("user-agent", "te", "content-type")


def serve_call_proxy(
    name: str,
    upstreams: Mapping[str, Any] | Iterable[Any],
    *,
    host: str = background.DEFAULT_HOST,
    port: int = 0,
    max_workers: int = 16,
) -> CallProxy:
    """Start a gRPC proxy that sends each unary call to the next upstream in turn, as Envoy or
    Nginx grpc_pass do.

    It decodes HTTP/2 and gRPC framing but not the messages: any method of any
    service is forwarded as bytes, with its metadata and the time left before its
    deadline. Not knowing the .proto, it treats every call as unary (one request,
    one reply), so streaming methods do not work through it.
    ``upstreams``: (host, port) pairs or server handles, or a mapping name -> one of those.
    """
    items = (
        list(upstreams.items())
        if isinstance(upstreams, Mapping)
        else [(None, u) for u in upstreams]
    )
    named: dict[str, tuple[str, int]] = {}
    for key, value in items:
        address = getattr(value, "address", value)
        if not (
            isinstance(address, (tuple, list))
            and len(address) == 2
            and isinstance(address[0], str)
            and isinstance(address[1], int)
        ):
            raise ValueError(
                f"each upstream must be a (host, port) pair or a server handle, not {value!r}"
            )
        named[str(key) if key is not None else f"{address[0]}:{address[1]}"] = (
            address[0],
            address[1],
        )
    if not named:
        raise ValueError("serve_call_proxy needs at least one upstream")
    counts: Counter[str] = Counter({n: 0 for n in named})
    lock = threading.Lock()
    turn = [0]
    channels = {n: grpc.insecure_channel(f"{h}:{p}") for n, (h, p) in named.items()}
    names = list(named)

    def forward(method: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def call(request: bytes, context: grpc.ServicerContext) -> bytes:
            with lock:
                upstream = names[turn[0] % len(names)]
                turn[0] += 1
                counts[upstream] += 1
            metadata = [
                (k, v)
                for k, v in context.invocation_metadata()
                if not k.startswith(_HOP_BY_HOP) and k not in _NOT_FORWARDED
            ]
            try:
                return channels[upstream].unary_unary(method)(
                    request, timeout=context.time_remaining(), metadata=metadata
                )
            except grpc.RpcError as error:
                context.abort(error.code(), error.details() or "")
                raise  # not reached: abort() raises

        return call

    class _Forwarding(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(forward(details.method))

    try:
        handle = background.serve_grpc(
            name,
            lambda server: server.add_generic_rpc_handlers((_Forwarding(),)),
            host=host,
            port=port,
            max_workers=max_workers,
        )
    except Exception:
        for channel in channels.values():
            channel.close()
        raise
    return CallProxy(handle, channels, counts, lock)
