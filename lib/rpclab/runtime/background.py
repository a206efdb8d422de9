"""Run servers in background threads of this process, one per name.

Shown in notebook 00; every notebook (00-15) starts its servers with it. About 500 lines: its
two kinds of server share the one registry and the one promise (stop leaves nothing), which
most of the lines keep.

Every server in RPC Lab starts here, so that re-running a notebook cell
replaces the old server instead of failing with "address already in use",
and so that ``stop()`` really releases the port and ends the server's threads.

Two kinds of server fit:

* anything socketserver-style -- an object with ``serve_forever()``,
  ``shutdown()``, ``server_close()`` and ``server_address`` (socketserver,
  http.server and xmlrpc.server all qualify; adapters make others fit);
* gRPC servers, made here by :func:`serve_grpc`;
* a server that runs as a child process (nginx), started and stopped by the
  caller's own functions and kept here by name: :func:`serve_process`.
"""

from __future__ import annotations

import atexit
import errno
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from rpclab import checks
from rpclab.runtime.threadpool import ServerThreadPool

__all__ = [
    "BackgroundServerError",
    "ServerHandle",
    "RunningServer",
    "BoundServer",
    "SocketServerLike",
    "serve",
    "serve_grpc",
    "serve_process",
    "stop",
    "stop_all",
    "running",
]

DEFAULT_HOST = "127.0.0.1"
STOP_TIMEOUT = 10.0  # seconds stop() waits for threads before it gives up loudly
EXIT_STOP_TIMEOUT = 3.0  # seconds each server gets when the interpreter exits


class BackgroundServerError(RuntimeError):
    """A background server could not be started or stopped."""


class SocketServerLike(Protocol):
    """The four things the helper needs of a socketserver-style server."""

    server_address: Any

    def serve_forever(self, poll_interval: float = ...) -> None: ...

    def shutdown(self) -> None: ...

    def server_close(self) -> None: ...


_registry: dict[str, ServerHandle] = {}
_lock = threading.RLock()


class BoundServer:
    """What every server handle knows: where it listens, and whether it was stopped."""

    address: tuple[str, int]
    _stopped: bool

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def running(self) -> bool:
        return not self._stopped


class ServerHandle(BoundServer):
    """A running server: its ``address``, and ``stop()`` to end it for good."""

    def __init__(
        self, name: str, kind: str, address: tuple[str, int], stopper: Callable[[float], None]
    ):
        self.name = name
        self.kind = kind
        self.address = address
        self._stopper = stopper
        self._stopped = False
        self._stop_lock = threading.Lock()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server; return once its port is closed and its threads have ended.

        Stopping twice is harmless. Raises BackgroundServerError if a thread of
        the server is still alive after ``timeout`` seconds (or if another thread's
        stop of this server is still going on then).
        """
        if not self._stop_lock.acquire(timeout=timeout):
            raise BackgroundServerError(
                f"stopping {self.name!r}: another thread's stop() still running after {timeout:g}s"
            )
        try:
            if self._stopped:
                return
            self._stopped = True
            try:
                self._stopper(timeout)
            finally:
                with _lock:
                    if _registry.get(self.name) is self:
                        del _registry[self.name]
        finally:
            self._stop_lock.release()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{self.kind} server {self.name!r} on {self.host}:{self.port}, {state}>"


class RunningServer:
    """Base for objects that wrap a ServerHandle with more to say (a proxy, an RPC server...).

    Gives them the handle's ``name``, ``address``, ``host``, ``port``,
    ``running``, ``stop()`` and use in a ``with`` block; subclasses add their own.
    """

    def __init__(self, handle: ServerHandle):
        self._handle = handle

    @property
    def name(self) -> str:
        return self._handle.name

    @property
    def address(self) -> tuple[str, int]:
        return self._handle.address

    @property
    def host(self) -> str:
        return self._handle.host

    @property
    def port(self) -> int:
        return self._handle.port

    @property
    def running(self) -> bool:
        return self._handle.running

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server: its port closed, its connections closed, its threads ended."""
        self._handle.stop(timeout)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- checks


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a background server's name must be a str, not {type(name).__name__}")
    if not name.strip():
        raise ValueError("a background server's name must not be empty")
    return name


def _check_host_port(host: object, port: object) -> tuple[str, int]:
    if not isinstance(host, str) or not host:
        raise TypeError(f"host must be a non-empty str such as '127.0.0.1', not {host!r}")
    return host, checks.integer("port", port, low=0, high=65535)


def _start_error(name: str, host: str, port: int, exc: BaseException) -> BackgroundServerError:
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return BackgroundServerError(
            f"cannot start {name!r}: port {port} on {host} is already in use by another "
            f"program or server. Use port=0 to get a free port, or stop the other server "
            f"(background.running() lists the ones started here)."
        )
    return BackgroundServerError(
        f"cannot start {name!r} on {host}:{port}: {type(exc).__name__}: {exc}"
    )


def _left(deadline: float) -> float:
    """Seconds from now until ``deadline`` (a time.monotonic() value), never negative."""
    return max(deadline - time.monotonic(), 0.0)


def _join_all(
    threads: Iterable[threading.Thread], deadline: float, timeout: float, what: str
) -> None:
    """Join ``threads`` until ``deadline`` in all (not each); name those still running then."""
    stuck = []
    for thread in threads:
        if thread is threading.current_thread():
            continue
        thread.join(_left(deadline))
        if thread.is_alive():
            stuck.append(thread.name)
    if stuck:
        raise BackgroundServerError(
            f"{what}: threads still running after {timeout:g}s: {', '.join(sorted(stuck))}"
        )


def _replace(name: str) -> None:
    with _lock:
        old = _registry.get(name)
    if old is not None:
        old.stop()


def _register(handle: ServerHandle) -> ServerHandle:
    with _lock:
        _registry[handle.name] = handle
    return handle


# --------------------------------------------------------------------------- socketserver-style


def serve(
    name: str,
    make_server: Callable[[tuple[str, int]], SocketServerLike],
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
) -> ServerHandle:
    """Start ``make_server((host, port))`` in a background thread under ``name``.

    If a server called ``name`` is running, it is stopped first. The server's
    connections are tracked so that ``stop()`` can close them and wait for the
    threads that serve them.
    """
    name = _check_name(name)
    host, port = _check_host_port(host, port)
    checks.function("make_server", make_server, "make_server((host, port))")
    _replace(name)

    try:
        server = make_server((host, port))
    except Exception as exc:  # the factory's own failure, explained
        raise _start_error(name, host, port, exc) from exc
    missing = [
        a
        for a in ("serve_forever", "shutdown", "server_close", "server_address")
        if not hasattr(server, a)
    ]
    if missing:
        close = getattr(server, "server_close", None)
        if callable(close):
            close()
        raise TypeError(
            f"make_server returned {type(server).__name__}, which lacks {', '.join(missing)}; "
            "it must return a socketserver-style server"
        )

    connections: weakref.WeakSet[socket.socket] = weakref.WeakSet()
    workers: set[threading.Thread] = set()
    workers_lock = threading.Lock()
    _track(server, connections, workers, workers_lock)

    started = threading.Event()

    def run() -> None:
        started.set()
        server.serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=run, name=f"rpclab-serve:{name}", daemon=True)
    thread.start()
    started.wait(STOP_TIMEOUT)

    def stopper(timeout: float) -> None:
        deadline = time.monotonic() + timeout
        server.shutdown()  # returns once serve_forever has left its loop
        thread.join(_left(deadline))
        for conn in list(connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv
            except OSError:
                pass
        with workers_lock:
            pending = list(workers)
        try:
            _join_all(pending, deadline, timeout, f"stopping {name!r}")
        finally:
            server.server_close()
        if thread.is_alive():
            raise BackgroundServerError(
                f"stopping {name!r}: serve_forever did not return within {timeout:.0f}s"
            )

    address = _address_of(server.server_address)
    return _register(ServerHandle(name, "socket", address, stopper))


def _track(
    server: Any,
    connections: weakref.WeakSet[socket.socket],
    workers: set[threading.Thread],
    workers_lock: threading.Lock,
) -> None:
    """Wrap the server's accept and per-connection hooks to remember sockets and threads."""
    get_request = getattr(server, "get_request", None)
    if callable(get_request):

        def tracked_get_request() -> Any:
            request = get_request()
            if isinstance(request, tuple) and request and isinstance(request[0], socket.socket):
                connections.add(request[0])
            return request

        server.get_request = tracked_get_request

    process_thread = getattr(server, "process_request_thread", None)
    if callable(process_thread):  # ThreadingMixIn: one thread per connection

        def tracked_process_request_thread(request: Any, client_address: Any) -> None:
            me = threading.current_thread()
            with workers_lock:
                workers.add(me)
            try:
                process_thread(request, client_address)
            finally:
                with workers_lock:
                    workers.discard(me)

        server.process_request_thread = tracked_process_request_thread


def _address_of(server_address: Any) -> tuple[str, int]:
    if isinstance(server_address, tuple) and len(server_address) >= 2:
        host = server_address[0]
        if isinstance(host, bytes):
            host = host.decode()
        return str(host), int(server_address[1])
    raise BackgroundServerError(f"server_address {server_address!r} is not a (host, port) pair")


# --------------------------------------------------------------------------- gRPC


def serve_grpc(
    name: str,
    register: Callable[[Any], None],
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    max_workers: int = 8,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[Any] = (),
    credentials: Any = None,
    compression: Any = None,
    grace: float | None = 0.5,
    maximum_concurrent_rpcs: int | None = None,
) -> ServerHandle:
    """Make a gRPC server, let ``register(server)`` add servicers, bind it and start it.

    The server is made with ``('grpc.so_reuseport', 0)``: gRPC's default lets a
    second server silently share a port and steal part of its traffic
    (grpc/grpc#16920). ``credentials`` (from ``grpc.ssl_server_credentials``)
    makes it a TLS server. ``stop()`` waits up to ``grace`` seconds for calls in
    flight, then cancels them; ``stop(timeout)`` returns within ``timeout`` seconds in all,
    raising BackgroundServerError that names any handler thread still running then (its
    threads are daemon threads: the process can still exit, see rpclab.runtime.threadpool).
    ``maximum_concurrent_rpcs`` (None: no limit) makes gRPC answer RESOURCE_EXHAUSTED at once
    to a call beyond that many in progress, instead of queueing it for a free worker.
    """
    import grpc  # imported here so that socket-only users never pay for it

    name = _check_name(name)
    host, port = _check_host_port(host, port)
    checks.function("register", register, "register(grpc_server)")
    checks.integer("max_workers", max_workers, low=1)
    if maximum_concurrent_rpcs is not None:
        checks.integer("maximum_concurrent_rpcs", maximum_concurrent_rpcs, low=1)
    _replace(name)

    opts = [("grpc.so_reuseport", 0), *[o for o in options if o[0] != "grpc.so_reuseport"]]
    pool = ServerThreadPool(max_workers, thread_name_prefix=f"rpclab-grpc:{name}")
    before = set(threading.enumerate())
    server = grpc.server(
        pool,
        options=opts,
        interceptors=list(interceptors),
        compression=compression,
        maximum_concurrent_rpcs=maximum_concurrent_rpcs,
    )

    def abandon() -> None:
        server.stop(None).wait(STOP_TIMEOUT)
        pool.shutdown(wait=True)

    try:
        register(server)
    except Exception as exc:
        abandon()
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
    except RuntimeError as exc:  # grpcio >= 1.50 raises instead of returning 0
        abandon()
        raise _grpc_bind_error(name, host, port) from exc
    if not bound:
        abandon()
        raise _grpc_bind_error(name, host, port)
    server.start()
    own_threads = set(threading.enumerate()) - before

    def stopper(timeout: float) -> None:
        deadline = time.monotonic() + timeout
        before_stop = set(threading.enumerate())
        # grpc's stop(grace) cancels the calls still running after the grace period (in a
        # thread of its own, which ends as soon as the shutdown is complete: wait for it too).
        # (grpc's stop(None) would wait for the shutdown without a limit: 0 cancels at once.)
        server.stop(min(grace or 0.0, timeout)).wait(_left(deadline))
        helpers = {
            t
            for t in set(threading.enumerate()) - before_stop
            if "cancel_all_calls_after_grace" in t.name
        }
        pool.shutdown(wait=False, cancel_futures=True)
        _join_all(
            own_threads | helpers | set(pool.threads), deadline, timeout, f"stopping {name!r}"
        )

    return _register(ServerHandle(name, "grpc", (host, bound), stopper))


def _grpc_bind_error(name: str, host: str, port: int) -> BackgroundServerError:
    return BackgroundServerError(
        f"cannot start {name!r}: gRPC could not bind {host}:{port} "
        f"(the port is in use, or the address is not on this machine). Use port=0 for a free port."
    )


# --------------------------------------------------------------------------- child processes


def serve_process(
    name: str,
    start: Callable[[], tuple[tuple[str, int], Callable[[float], None]]],
    *,
    kind: str = "process",
) -> ServerHandle:
    """Keep a server that runs in a child process (nginx, for one) under ``name``.

    If a server called ``name`` is running, it is stopped first. ``start()`` starts the
    process and returns once it accepts connections: ``(address, stopper)``, where
    ``stopper(timeout)`` ends the process and everything it started and returns once they are
    gone (raising BackgroundServerError if they are not within ``timeout`` seconds).
    """
    name = _check_name(name)
    if not callable(start):
        raise TypeError(f"start must be callable as start() -> (address, stopper), not {start!r}")
    _replace(name)
    address, stopper = start()
    return _register(ServerHandle(name, kind, _address_of(address), stopper))


# --------------------------------------------------------------------------- registry


def stop(name: str) -> bool:
    """Stop the server called ``name``; return whether one was running."""
    name = _check_name(name)
    with _lock:
        handle = _registry.get(name)
    if handle is None:
        return False
    handle.stop()
    return True


def running() -> dict[str, tuple[str, int]]:
    """The servers running now: name -> (host, port)."""
    with _lock:
        return {name: handle.address for name, handle in _registry.items()}


def stop_all(timeout: float = STOP_TIMEOUT) -> list[str]:
    """Stop every background server started in this process, giving each ``timeout`` seconds;
    return their names."""
    with _lock:
        handles = list(_registry.values())
    errors = []
    for handle in handles:
        try:
            handle.stop(timeout)
        except BackgroundServerError as exc:
            errors.append(str(exc))
    if errors:
        raise BackgroundServerError("; ".join(errors))
    return [h.name for h in handles]


def _stop_all_at_exit() -> None:
    try:
        stop_all(EXIT_STOP_TIMEOUT)
    except BackgroundServerError:
        pass  # the interpreter is leaving anyway; daemon threads end with it


atexit.register(_stop_all_at_exit)
