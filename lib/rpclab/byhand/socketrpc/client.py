"""The socket RPC client: a stub whose remote methods read like local ones.

The user stub of Birrell and Nelson's picture; the RPC runtime under it is reader.py.
Notebook 04 builds the same stub in a cell (``Stub``, with ``__getattr__``;
rpclab.byhand.reference keeps it); timeouts, retries and pipelining are taught in 05;
measured in 13::

    client = connect(server.address, timeout=2.0)
    client.subtract(42, 23)                      # -> 19, as if it were local
    client.subtract(minuend=42, subtrahend=23)   # keyword arguments travel as named params
    client.notify("log", "hello")                # no reply
    batch = client.batch(); batch.sum(1, 2); batch.send()   # several calls in one frame
    client.close()

A remote error is raised as RemoteError (``code``, ``message``, ``data``); no reply within the
timeout as CallTimeout; a broken connection as ConnectionLost. With ``retries=N`` a call that
timed out or lost its connection is sent again with the SAME id (so an at-most-once server
recognises it), reconnecting if needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rpclab import checks
from rpclab.byhand import jsonrpc
from rpclab.byhand.framing import MAX_FRAME_SIZE
from rpclab.byhand.socketrpc.fastcall import call_as_reader
from rpclab.byhand.socketrpc.reader import SharedConnection, result_of
from rpclab.byhand.socketrpc.transport import OnFrame

__all__ = ["connect", "Client", "Batch"]


def connect(
    address: tuple[str, int],
    timeout: float = 2.0,
    retries: int = 0,
    backoff: float = 0.05,
    *,
    max_frame_size: int = MAX_FRAME_SIZE,
    on_frame: OnFrame | None = None,
) -> Client:
    """Connect to a socket RPC server at ``address`` (host, port) and return a Client.

    Every call waits at most ``timeout`` seconds (CallTimeout). With ``retries=N``
    a call that timed out or lost its connection is sent up to N more times,
    with the same request id, after ``backoff``, 2*``backoff``, 4*``backoff``...
    seconds, reconnecting if needed. ``on_frame(direction, payload)`` sees every
    frame ("sent" / "received").
    """
    return Client(
        address,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        max_frame_size=max_frame_size,
        on_frame=on_frame,
    )


class Client(SharedConnection):
    """A connection to a socket RPC server whose remote methods read like local ones.

    ``client.subtract(42, 23)`` calls the remote ``subtract``; ``client.call(name,
    ...)`` is the explicit form, for names the client itself uses (``call``,
    ``notify``, ``batch``, ``close``...) or that are not Python identifiers.

    Thread-safe: callers in several threads share the connection, and replies
    are matched to callers by id (reader.py says how, with no reader thread).
    """

    def __init__(
        self,
        address: tuple[str, int],
        *,
        timeout: float = 2.0,
        retries: int = 0,
        backoff: float = 0.05,
        max_frame_size: int = MAX_FRAME_SIZE,
        on_frame: OnFrame | None = None,
    ):
        checks.seconds("timeout", timeout, above=0)
        checks.integer("retries", retries, low=0)
        checks.seconds("backoff", backoff, low=0)
        checks.function("on_frame", on_frame, "on_frame(direction, payload)", optional=True)
        super().__init__(
            address,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_frame_size=max_frame_size,
            on_frame=on_frame,
        )

    # -- calls ------------------------------------------------------------------

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the remote ``method`` with positional or keyword arguments; return its result."""
        return self.invoke(method, _params(args, kwargs))

    def invoke(
        self, method: str, params: list | dict | None = None, *, timeout: float | None = None
    ) -> Any:
        """Call ``method`` with ``params`` (a list, a dict or None), waiting at most ``timeout``
        seconds; return its result, or raise its error as RemoteError."""
        if type(method) is not str:
            raise TypeError(f"method must be a str, not {method!r}")
        request_id = f"{self._prefix}:{next(self._numbers)}"
        if params is None:
            message = {"jsonrpc": "2.0", "method": method, "id": request_id}
        else:
            message = {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}
        payload = jsonrpc.encode(message)
        if timeout is None:
            timeout = self.timeout
        if (  # speed: nobody else is reading, so this caller may take the short road
            self.on_frame is None
            and len(payload) <= self._max_frame_size
            and self._reader.acquire(False)
        ):
            return call_as_reader(self, request_id, payload, timeout)  # fastcall.py
        return result_of(self._exchange((request_id,), payload, timeout)[request_id])

    def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Send a notification: the server runs ``method`` and sends nothing back."""
        self._post(jsonrpc.encode(jsonrpc.notification(method, _params(args, kwargs))))

    def batch(self) -> Batch:
        """A builder for a batch: queue calls and notifications, then ``send()`` them in one
        frame."""
        return Batch(self)

    def next_id(self) -> str:
        """A fresh request id, unique to this client: ``"<client-uuid>:<n>"``."""
        return f"{self._prefix}:{next(self._numbers)}"

    # -- lifetime -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the client has a working connection now (it reconnects on the next call if
        not)."""
        link = self._link
        return link is not None and not link.broken

    def close(self) -> None:
        """Close the connection; calls still waiting fail with ConnectionLost. Closing twice is
        harmless."""
        self._closed.set()
        with self._send_lock:
            link, self._link = self._link, None
        if link is not None:
            self._break(link, "the client was closed")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> _RemoteMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        method = self.__dict__[name] = _RemoteMethod(self, name)  # found directly next time
        return method

    def __repr__(self) -> str:
        state = (
            "closed" if self._closed.is_set() else "connected" if self.connected else "disconnected"
        )
        return f"<socketrpc client to {self.address[0]}:{self.address[1]}, {state}>"


def _params(args: tuple, kwargs: dict) -> list | dict | None:
    if args and kwargs:
        raise TypeError("a JSON-RPC call passes its params either by position or by name, not both")
    if kwargs:
        return kwargs
    return list(args) if args else None


class _RemoteMethod:
    """A remote method as a local callable: ``client.subtract(42, 23)``."""

    __slots__ = ("_client", "_name")

    def __init__(self, client: Client, name: str):
        self._client = client
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            return self._client.invoke(self._name, _params(args, kwargs))
        return self._client.invoke(self._name, list(args) if args else None)

    def __repr__(self) -> str:
        host, port = self._client.address
        return f"<remote method {self._name!r} on {host}:{port}>"


class Batch:
    """Calls and notifications queued to go out together as one JSON-RPC batch.

    ``b = client.batch(); b.sum(1, 2, 4); b.notify("hello", 7); b.send()`` ->
    ``[7]``: one result per call, in the order queued (notifications have none).
    """

    def __init__(self, client: Client):
        self._client = client
        self._messages: list[dict] = []
        self._ids: list[str] = []

    def call(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Queue a call to ``method``."""
        request_id = self._client.next_id()
        self._messages.append(jsonrpc.request(method, _params(args, kwargs), id=request_id))
        self._ids.append(request_id)

    def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Queue a notification (no result)."""
        self._messages.append(jsonrpc.notification(method, _params(args, kwargs)))

    def send(self, *, timeout: float | None = None, raise_errors: bool = False) -> list[Any]:
        """Send the queued messages as one frame; return each call's result in order.

        A call that failed has its RemoteError in its place, or, with
        ``raise_errors=True``, the first such error is raised. The queue is
        emptied, so the builder can be used again.
        """
        messages, ids = self._messages, self._ids
        self._messages, self._ids = [], []
        if not messages:
            return []
        client = self._client
        payload = jsonrpc.encode(messages)
        if not ids:  # only notifications: the server sends nothing back
            client._post(payload)
            return []
        results: list[Any] = []
        replies = client._exchange(tuple(ids), payload, timeout)
        for reply in (replies[i] for i in ids):
            response = jsonrpc.parse_response(reply)
            if response.error is not None and raise_errors:
                raise response.error
            results.append(response.result if response.error is None else response.error)
        return results

    def __len__(self) -> int:
        return len(self._messages)

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<socketrpc batch of {len(self._messages)} messages ({len(self._ids)} calls)>"
