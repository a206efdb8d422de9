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
256 characters...), increment of a non-integer value 409, a body over
``max_body_size`` 413. Keys may hold any character: the client percent-encodes them.

    handle = rest.serve(store)                       # background server, 127.0.0.1, a free port
    with rest.connect(handle.address) as client:
        client.put("greeting", "hello")
        client.get("missing")                        # raises rest.NotFound (a KeyError)
    handle.stop()
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import urllib.parse
from typing import Annotated, Any

import uvicorn
from fastapi import Body, FastAPI, HTTPException, Path
from pydantic import BaseModel, Field, StrictInt, StrictStr

from rpclab import checks
from rpclab.kv import MAX_KEY_LENGTH, MAX_VALUE_LENGTH, KeyNotFound, KVStore
from rpclab.runtime import background

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


def make_app(store: KVStore, *, max_body_size: int = MAX_BODY_SIZE) -> FastAPI:
    """A FastAPI application serving ``store`` as the resources /keys and /keys/{key}."""
    app = FastAPI(
        title="RPC Lab key-value store",
        version="1.0",
        summary="The running example of RPC Lab as a REST/JSON resource.",
        max_body_size=max_body_size,
        docs_url=None,  # FastAPI's /docs and /redoc pages fetch their scripts from a CDN:
        redoc_url=None,  # RPC Lab keeps every byte on this machine. /openapi.json stays.
    )
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


class UvicornServer:
    """A uvicorn server in the shape rpclab.runtime.background runs: serve_forever, shutdown,
    server_close, server_address.

    The listening socket is made here, so the address (port 0 included) is
    known before the server runs; ``serve_forever`` runs uvicorn's event loop on
    it, ``shutdown`` asks that loop to finish and waits until it has.
    """

    def __init__(self, app: Any, address: tuple[str, int], *, grace: float = SHUTDOWN_GRACE):
        self.socket = _listening_socket(address)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        config = uvicorn.Config(
            app,
            log_config=None,  # leave the process's logging alone
            log_level="warning",  # no "Started server process" lines in notebooks
            access_log=False,
            lifespan="off",
            loop="asyncio",
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
) -> background.ServerHandle:
    """Serve ``store`` over REST/JSON in the background under ``name``."""
    app = make_app(store, max_body_size=max_body_size)
    return background.serve(name, lambda address: UvicornServer(app, address), host=host, port=port)


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

    def __init__(self, address: tuple[str, int], *, timeout: float = 5.0):
        checks.seconds("timeout", timeout, above=0)
        self.host, self.port = address
        self.timeout = timeout
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


def connect(address: tuple[str, int], *, timeout: float = 5.0) -> RESTClient:
    """A client for the REST server at ``address``; every call gives up after ``timeout``
    seconds."""
    return RESTClient(address, timeout=timeout)
