"""The key-value store as a REST/JSON resource: FastAPI on uvicorn, and a small http.client client.

Taught in notebook 12 (RPC vs REST); measured in 13; served by ``rpclab serve rest``.

Resources and verbs instead of procedures::

    GET    /keys                     {"keys": [...]}
    GET    /keys/{key}               {"key": ..., "value": ...}      404 if missing
    PUT    /keys/{key}               body {"value": "..."}            -> {"key", "value"}
    DELETE /keys/{key}               {"key": ..., "existed": true}    (idempotent: never 404)
    POST   /keys/{key}/increment     body {"amount": 3} (optional)    -> {"key", "value": 42}
    GET    /openapi.json             the interface, described by FastAPI (OpenAPI 3)

Bad input gets 422 (FastAPI's validation: a non-integer amount, a key over
256 characters...), a body that is not Unicode text (a lone surrogate such as
``"\\ud800"``) 400, increment of a non-integer value 409, a body over
``max_body_size`` 413. Keys may hold any character: the client percent-encodes them.

A server others can reach is bounded as rpclab.runtime.guard describes: a request must
arrive whole and be answered within ``request_timeout`` seconds of its first byte (else the
connection is closed, with 408 if no answer had begun), a connection idle for
``idle_timeout`` seconds is closed, ``limits`` bounds the connections per address and in all
(one over gets 503 with the reason), and ``tokens`` makes every request need
``Authorization: Bearer <token>`` (else 401). ``stop()`` closes at once a connection whose
request is still arriving; only requests already whole get the shutdown grace.

    handle = rest.serve(store)                       # background server, 127.0.0.1, a free port
    with rest.connect(handle.address) as client:
        client.put("greeting", "hello")
        client.get("missing")                        # raises rest.NotFound (a KeyError)
    handle.stop()

About 570 lines: the FastAPI app (models, routes, errors), the uvicorn server guarded for a
class (a half-sent request times out, a stop does not wait on a stalled client) and the
http.client client, one resource read side by side.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import select
import socket
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any

import uvicorn
from fastapi import Body, Depends, FastAPI, HTTPException, Path, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt, StrictStr
from uvicorn.protocols.http.h11_impl import H11Protocol

from rpclab import checks
from rpclab.kv import MAX_KEY_LENGTH, MAX_VALUE_LENGTH, KeyNotFound, KVStore
from rpclab.runtime import background
from rpclab.runtime.guard import DEFAULT_IDLE_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, ConnectionLimits
from rpclab.tokens import BearerTokens

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_RESPONSE_SIZE",
    "make_app",
    "UvicornServer",
    "serve",
    "RESTError",
    "NotFound",
    "RESTClient",
    "connect",
]

MAX_BODY_SIZE = (
    128 * 1024
)  # a request body over this gets 413: a value is at most 64 KiB characters
MAX_RESPONSE_SIZE = 16 * 1024 * 1024  # the client refuses a larger response
SHUTDOWN_GRACE = 3.0  # seconds stop() lets requests in flight finish
NOT_UNICODE = (
    "the request body is not valid Unicode text (it holds a lone surrogate such as \\ud800)"
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the application


class ValueIn(BaseModel):
    """The body of a PUT: the value to store."""

    value: StrictStr = Field(max_length=MAX_VALUE_LENGTH)


class AmountIn(BaseModel):
    """The body of an increment: how much to add (may be negative)."""

    amount: StrictInt = 1


class Entry(BaseModel):
    key: str
    value: str


class Deleted(BaseModel):
    key: str
    existed: bool


class Counter(BaseModel):
    key: str
    value: int


class KeyList(BaseModel):
    keys: list[str]


class ErrorOut(BaseModel):
    detail: str


KeyParam = Annotated[
    str, Path(min_length=1, max_length=MAX_KEY_LENGTH, description="Any string; percent-encode it")
]


def _token_check(tokens: BearerTokens) -> Any:
    """A FastAPI dependency: 401 unless the request carries a valid bearer token."""

    async def check(request: Request) -> None:
        try:
            request.state.learner = tokens.check(request.headers.get("authorization"))
        except PermissionError as exc:
            raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None

    return Depends(check)


async def _invalid_request(request: Request, exc: Exception) -> Any:
    """FastAPI's 422 for invalid input, but 400 for text that is not Unicode: its default
    handler echoes the input back, and a lone surrogate cannot be encoded (a 500 before)."""
    assert isinstance(exc, RequestValidationError)
    if any(error.get("type") == "string_unicode" for error in exc.errors()):
        return JSONResponse({"detail": NOT_UNICODE}, status_code=400)
    try:
        return await request_validation_exception_handler(request, exc)
    except UnicodeEncodeError:
        return JSONResponse({"detail": NOT_UNICODE}, status_code=400)


def make_app(
    store: KVStore,
    *,
    max_body_size: int = MAX_BODY_SIZE,
    tokens: Mapping[str, str] | None = None,
) -> FastAPI:
    """A FastAPI application serving ``store`` as the resources /keys and /keys/{key}.

    ``tokens`` (token -> holder's name) makes every request need ``Authorization: Bearer``.
    """
    app = FastAPI(
        title="RPC Lab key-value store",
        version="1.0",
        summary="The running example of RPC Lab as a REST/JSON resource.",
        max_body_size=max_body_size,
        docs_url=None,  # FastAPI's /docs and /redoc pages fetch their scripts from a CDN:
        redoc_url=None,  # RPC Lab keeps every byte on this machine. /openapi.json stays.
        dependencies=[_token_check(BearerTokens(tokens))] if tokens else None,
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    not_found = {404: {"model": ErrorOut, "description": "No such key"}}

    # The handlers are `async def`: they run on uvicorn's event loop thread (the
    # store's calls are short), so the server starts no thread pool of its own.

    @app.get("/keys", response_model=KeyList)
    async def list_keys() -> KeyList:
        """Every key, sorted."""
        return KeyList(keys=store.keys())

    @app.get("/keys/{key:path}", response_model=Entry, responses=not_found)
    async def get_value(key: KeyParam) -> Entry:
        """The value stored at a key."""
        try:
            return Entry(key=key, value=store.get(key))
        except KeyNotFound as exc:
            raise HTTPException(404, str(exc)) from None

    @app.put("/keys/{key:path}", response_model=Entry)
    async def put_value(key: KeyParam, body: ValueIn) -> Entry:
        """Store a value at a key, replacing whatever was there."""
        store.put(key, body.value)
        return Entry(key=key, value=body.value)

    @app.delete("/keys/{key:path}", response_model=Deleted)
    async def delete_key(key: KeyParam) -> Deleted:
        """Remove a key; say whether it was there. Deleting twice is not an error."""
        return Deleted(key=key, existed=store.delete(key))

    @app.post(
        "/keys/{key:path}/increment",
        response_model=Counter,
        responses={409: {"model": ErrorOut, "description": "The value is not an integer"}},
    )
    async def increment(key: KeyParam, body: Annotated[AmountIn | None, Body()] = None) -> Counter:
        """Add `amount` (1 if no body) to the integer at a key (missing counts as 0). Not
        idempotent."""
        amount = body.amount if body is not None else 1
        try:
            return Counter(key=key, value=store.increment(key, amount))
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None

    return app


# --------------------------------------------------------------------------- the server


def _raw_response(status: int, phrase: str, message: str) -> bytes:
    body = json.dumps({"detail": message}).encode()
    return (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with the bounds of rpclab.runtime.guard: connections per
    address, a deadline per request, an idle timeout (uvicorn's keep-alive timer, also armed
    before a connection's first request), and a shutdown that does not wait for a request
    still arriving. A subclass made by :meth:`bound` carries the settings."""

    limits: ConnectionLimits | None = None
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT

    @classmethod
    def bound(
        cls,
        limits: ConnectionLimits | None,
        idle_timeout: float,
        request_timeout: float,
    ) -> type[GuardedH11Protocol]:
        settings = {
            "limits": limits,
            "idle_timeout": idle_timeout,
            "request_timeout": request_timeout,
        }
        return type("BoundGuardedH11Protocol", (cls,), settings)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._admitted: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        if self.limits is not None and self.client is not None:
            address = self.client[0]
            reason = self.limits.admit(address)
            if reason is not None:
                log.info("refused a connection from %s: %s", address, reason)
                transport.write(_raw_response(503, "Service Unavailable", reason))
                transport.close()
                return
            self._admitted = address
        self.timeout_keep_alive_task = self.loop.call_later(
            self.idle_timeout, self.timeout_keep_alive_handler
        )

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._deadline = self.loop.call_later(self.request_timeout, self._too_slow)
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._cancel_deadline()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if self._admitted is not None and self.limits is not None:
            self.limits.release(self._admitted)
            self._admitted = None
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete and self.cycle.more_body:
            self.transport.close()  # its request is still arriving: nothing to finish
            return
        super().shutdown()

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            message = f"a request must arrive within {self.request_timeout:g} s of its first byte"
            self.transport.write(_raw_response(408, "Request Timeout", message))
        self.transport.close()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


class UvicornServer:
    """A uvicorn server in the shape rpclab.runtime.background runs: serve_forever, shutdown,
    server_close, server_address.

    The listening socket is made here, so the address (port 0 included) is
    known before the server runs; ``serve_forever`` runs uvicorn's event loop on
    it, ``shutdown`` asks that loop to finish and waits until it has. Connections are
    guarded by :class:`GuardedH11Protocol` with ``limits``, ``idle_timeout`` and
    ``request_timeout``.
    """

    def __init__(
        self,
        app: Any,
        address: tuple[str, int],
        *,
        grace: float = SHUTDOWN_GRACE,
        limits: ConnectionLimits | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ):
        for name, value in (("idle_timeout", idle_timeout), ("request_timeout", request_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        self.socket = _listening_socket(address)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        config = uvicorn.Config(
            app,
            log_config=None,  # leave the process's logging alone
            log_level="warning",  # no "Started server process" lines in notebooks
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http=GuardedH11Protocol.bound(limits, idle_timeout, request_timeout),
            timeout_keep_alive=idle_timeout,  # type: ignore[arg-type]  # call_later takes a float
            timeout_graceful_shutdown=grace,
        )
        self.server = uvicorn.Server(config)
        self._done = threading.Event()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until :meth:`shutdown` (uvicorn checks its flag every 0.1 s; ``poll_interval`` is
        unused)."""
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self._done.set()

    def shutdown(self, timeout: float = background.STOP_TIMEOUT) -> None:
        """Ask the server to stop and wait until its event loop has finished."""
        self.server.should_exit = True
        if not self._done.wait(timeout):
            self.server.force_exit = True
            self._done.wait(timeout)

    def server_close(self) -> None:
        self.socket.close()


def _listening_socket(address: tuple[str, int]) -> socket.socket:
    """A TCP socket listening on ``address``, made as asyncio's own servers make theirs.

    The protocol number must say TCP (socket.create_server leaves it 0): asyncio
    turns Nagle's algorithm off only on sockets that do, and with it on, uvicorn's
    two writes per response (headers, then body) wait ~40 ms for a delayed ACK.
    """
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def serve(
    store: KVStore,
    *,
    name: str = "kv-rest",
    host: str = "127.0.0.1",
    port: int = 0,
    max_body_size: int = MAX_BODY_SIZE,
    limits: ConnectionLimits | None = None,
    tokens: Mapping[str, str] | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> background.ServerHandle:
    """Serve ``store`` over REST/JSON in the background under ``name``."""
    app = make_app(store, max_body_size=max_body_size, tokens=tokens)

    def make(address: tuple[str, int]) -> UvicornServer:
        return UvicornServer(
            app,
            address,
            limits=limits,
            idle_timeout=idle_timeout,
            request_timeout=request_timeout,
        )

    return background.serve(name, make, host=host, port=port)


# --------------------------------------------------------------------------- the client


class RESTError(Exception):
    """The server answered with an error status: ``status`` and the ``detail`` it gave."""

    def __init__(self, status: int, detail: Any):
        super().__init__(status, detail)
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.detail}"


class NotFound(RESTError, KeyError):
    """404: the key is not in the store."""


class RESTClient:
    """The store's four calls over HTTP/1.1 on one kept-alive connection (thread-safe: one call at a
    time)."""

    def __init__(self, address: tuple[str, int], *, timeout: float = 5.0, token: str | None = None):
        checks.seconds("timeout", timeout, above=0)
        self.host, self.port = address
        self.timeout = timeout
        self._token = token
        self._conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        self._lock = threading.Lock()

    # -- the calls --------------------------------------------------------------

    def get(self, key: str) -> str:
        """The value at ``key``; NotFound (a KeyError) if there is none."""
        return self._call("GET", _path(key))["value"]

    def put(self, key: str, value: str) -> None:
        """Store ``value`` at ``key``."""
        self._call("PUT", _path(key), {"value": value})

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        return self._call("DELETE", _path(key))["existed"]

    def increment(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to the integer at ``key``; return the new value."""
        return self._call("POST", _path(key) + "/increment", {"amount": amount})["value"]

    def keys(self) -> list[str]:
        """Every key, sorted."""
        return self._call("GET", "/keys")["keys"]

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Any request, to look around: (status, decoded JSON body). No error is raised for a
        status."""
        with self._lock:
            return self._send(method, path, body)

    # -- plumbing -----------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        with self._lock:
            status, data = self._send(method, path, body)
        if 200 <= status < 300:
            return data
        detail = data.get("detail", data) if isinstance(data, dict) else data
        if status == 404:
            raise NotFound(status, detail)
        raise RESTError(status, detail)

    def _send(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        if payload is not None:
            headers["Content-Type"] = "application/json"
        reused = self._drop_if_closed()
        try:
            try:
                return self._exchange(method, path, payload, headers)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._conn.close()
                # The server closed the kept-alive connection just as we sent. Only an
                # idempotent request may be sent again: a POST (increment) may have run.
                if not reused or method == "POST":
                    raise
            return self._exchange(method, path, payload, headers)
        except BaseException:
            self._conn.close()  # a timeout or a bad reply leaves the connection out of step
            raise

    def _exchange(
        self, method: str, path: str, payload: bytes | None, headers: dict[str, str]
    ) -> tuple[int, Any]:
        self._conn.request(method, path, body=payload, headers=headers)
        response = self._conn.getresponse()
        if response.length is not None and response.length > MAX_RESPONSE_SIZE:
            self._conn.close()
            raise RESTError(
                response.status,
                f"response of {response.length} bytes is over the {MAX_RESPONSE_SIZE}-byte limit",
            )
        raw = response.read(MAX_RESPONSE_SIZE + 1)
        if len(raw) > MAX_RESPONSE_SIZE:
            self._conn.close()
            raise RESTError(response.status, f"response is over the {MAX_RESPONSE_SIZE}-byte limit")
        if (
            not response.isclosed()
        ):  # a chunked reply longer than announced: do not reuse the connection
            self._conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode("utf-8", "replace")
        return response.status, data

    def _drop_if_closed(self) -> bool:
        """Close our end if the server has closed its end of the idle connection; return whether one
        stays open."""
        sock = self._conn.sock
        if sock is None:
            return False
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:  # an idle HTTP connection has nothing to read unless it was closed
            self._conn.close()
            return False
        return True

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> RESTClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RESTClient http://{self.host}:{self.port}>"


def _path(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, not {type(key).__name__}")
    return "/keys/" + urllib.parse.quote(key, safe="")


def connect(
    address: tuple[str, int], *, timeout: float = 5.0, token: str | None = None
) -> RESTClient:
    """A client for the REST server at ``address``; every call gives up after ``timeout``
    seconds, and carries ``Authorization: Bearer <token>`` if ``token`` is given."""
    return RESTClient(address, timeout=timeout, token=token)
