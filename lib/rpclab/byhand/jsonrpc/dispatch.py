"""The dispatcher: request bytes in, reply bytes out. The server stub of Birrell and Nelson.

Built by hand in notebook 04 (``run``, ``respond``, ``dispatch``); behind every socket RPC
server in 04-05; measured in 13. Pure: no I/O, so it can be tried without a network::

    dispatcher = Dispatcher({"subtract": lambda a, b: a - b})
    dispatcher.handle(b'{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}')
    # b'{"jsonrpc":"2.0","result":19,"id":1}'

Reading order: ``handle`` (bytes -> value -> reply -> bytes), ``handle_value`` (a request or a
batch), ``respond`` (one request), ``_run`` (find, check, call). The one shortcut, for the
usual request, is ``fastpath.quick_reply``; without it every answer would be the same.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from rpclab.byhand.jsonrpc import fastpath
from rpclab.byhand.jsonrpc.codec import MAX_DEPTH, decode, encode
from rpclab.byhand.jsonrpc.errors import (
    InternalError,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    ParseError,
)
from rpclab.byhand.jsonrpc.messages import (
    MAX_BATCH,
    VERSION,
    Notification,
    Params,
    Request,
    error_response,
    failure_response,
    parse,
)

__all__ = ["methods_of", "Dispatcher", "Once"]

Once = Callable[[Request, Callable[[], dict]], dict]


def methods_of(
    handlers: Mapping[str, Callable[..., Any]] | object,
) -> dict[str, Callable[..., Any]]:
    """The RPC methods ``handlers`` offers: a mapping name -> callable, or an object's public
    methods -- only those it names in ``rpc_methods``, if it has that.

    Public means the name does not start with ``_``. Properties are not read and
    classes are not methods. Names are looked up exactly: a call to ``"a.b"``
    never walks attributes. An object lists its ``rpc_methods`` when some of its public
    methods are not for remote callers (KVStore's ``changes_since`` waits for a change
    that may never come; its ``watch`` is a generator, not JSON).
    """
    methods: dict[str, Callable[..., Any]] = {}
    listed = None if isinstance(handlers, Mapping) else getattr(handlers, "rpc_methods", None)
    if listed is not None:
        if isinstance(listed, str) or not all(isinstance(n, str) for n in listed):
            raise TypeError(f"rpc_methods must be a sequence of method names, not {listed!r}")
        handlers = {name: getattr(handlers, name) for name in listed}
    if isinstance(handlers, Mapping):
        for name, fn in handlers.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"method names must be non-empty strings, not {name!r}")
            if not callable(fn):
                raise TypeError(f"the handler for {name!r} is not callable: {fn!r}")
            methods[name] = fn
    else:
        for name in dir(handlers):
            if name.startswith("_"):
                continue
            if isinstance(inspect.getattr_static(handlers, name, None), property):
                continue  # reading a property could run code; it is not a method anyway
            fn = getattr(handlers, name, None)
            if callable(fn) and not isinstance(fn, type):
                methods[name] = fn
    reserved = [name for name in methods if name.startswith("rpc.")]
    if reserved:
        raise ValueError(
            f"method names starting with 'rpc.' are reserved by JSON-RPC 2.0: {reserved}"
        )
    return methods


class _Method:
    """One handler and what its signature accepts, so params can be checked before the call.

    Why check first: a TypeError raised *inside* a correct call must be the handler's own
    error (APPLICATION_ERROR), not "Invalid params" (-32602).
    """

    __slots__ = ("name", "fn", "signature", "positional_only", "counted")

    def __init__(self, name: str, fn: Callable[..., Any]):
        self.name = name
        self.fn = fn
        self.counted: fastpath.Counted | None = None
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have none: they check their own arguments
            self.signature = None
            self.positional_only: frozenset[str] = frozenset()
            return
        self.positional_only = frozenset(
            p.name
            for p in self.signature.parameters.values()
            if p.kind is inspect.Parameter.POSITIONAL_ONLY
        )
        self.counted = fastpath.Counted.of(self.signature)  # speed: counting, where it is exact

    def check(self, params: Params) -> None:
        """Raise InvalidParams unless ``params`` bind to the handler's signature."""
        if self.counted is not None and self.counted.fits(params):
            return
        if self.signature is None:
            return
        if type(params) is dict and not self.positional_only.isdisjoint(params):
            # JSON-RPC names params by the method's parameter names; a positional-only one has
            # no name a caller may use. (Signature.bind says so up to Python 3.12; 3.13.0-3.13.2
            # binds such a name into **kwargs instead, CPython gh-130164: decide it here.)
            names = ", ".join(repr(n) for n in sorted(self.positional_only & params.keys()))
            raise InvalidParams(
                f"{names}: positional-only argument passed by name (send params as an array)"
            )
        try:
            if params is None:
                self.signature.bind()
            elif type(params) is list:
                self.signature.bind(*params)
            else:
                self.signature.bind(**params)
        except TypeError as exc:
            raise InvalidParams(str(exc)) from None


class Dispatcher:
    """Routes JSON-RPC messages to Python callables: request bytes in, reply bytes (or None) out.

    ``handlers`` is a mapping name -> callable, or an object whose public
    methods become the RPC methods. Params may come by position (an array) or
    by name (an object). A handler's exception becomes an APPLICATION_ERROR (1,
    "Application error", outside the codes JSON-RPC reserves) whose data holds the
    exception's type and message; a handler may raise RPCError to choose the code
    itself. ``handle`` never raises for bad input.
    """

    def __init__(
        self,
        handlers: Mapping[str, Callable[..., Any]] | object,
        *,
        max_batch: int = MAX_BATCH,
        max_depth: int = MAX_DEPTH,
        max_reply_size: int | None = None,
    ):
        self._methods = {name: _Method(name, fn) for name, fn in methods_of(handlers).items()}
        self.max_batch = max_batch
        self.max_depth = max_depth
        self.max_reply_size = max_reply_size

    @property
    def names(self) -> list[str]:
        """The method names, sorted."""
        return sorted(self._methods)

    def handle(self, data: bytes, *, once: Once | None = None) -> bytes | None:
        """The reply bytes for the message in ``data``; None when nothing is to be sent back.

        ``once(request, run)``, if given, is how each request that has an id is
        run: it returns ``run()``'s reply dict, or a saved one (at-most-once).
        """
        plain = self.max_depth >= 2  # (a plain message nests two levels deep: fastpath.py)
        reply = fastpath.quick_reply(self._methods, data) if plain and once is None else None
        if reply is None:
            # decode_plain is worth a try only if quick_reply has not just parsed the data.
            value = fastpath.decode_plain(data) if plain and once is not None else None
            if value is None:
                try:
                    value = decode(data, max_depth=self.max_depth)
                except ParseError as exc:
                    return encode(error_response(None, exc))
            reply = self.handle_value(value, once=once)
            if reply is None:
                return None
        try:
            data = orjson.dumps(reply)
        except TypeError:
            return self._encode_reply(reply)
        if self.max_reply_size is not None and len(data) > self.max_reply_size:
            return self._encode_reply(reply)
        return data

    def handle_value(self, value: Any, *, once: Once | None = None) -> dict | list | None:
        """The reply value (a dict, a list, or None) for a decoded JSON message."""
        try:
            message = parse(value, max_batch=self.max_batch)
        except InvalidRequest as exc:
            return error_response(exc.id, exc)
        if type(message) is not list:
            return self.respond(message, once=once)
        replies = [
            reply for member in message if (reply := self.respond(member, once=once)) is not None
        ]
        return replies or None  # a batch of notifications gets no reply at all

    def respond(
        self, message: Request | Notification | InvalidRequest, *, once: Once | None = None
    ) -> dict | None:
        """The reply dict for one parsed message; None for a notification."""
        if type(message) is Request:
            if once is None or message.id is None:
                return self._reply(message)
            try:
                return once(message, lambda: self._reply(message))
            except Exception as exc:
                return error_response(message.id, InternalError(f"{type(exc).__name__}: {exc}"))
        if isinstance(message, InvalidRequest):
            return error_response(message.id, message)
        try:
            self._run(message.method, message.params)
        except Exception:  # nobody is listening for a notification's outcome
            pass
        return None

    def _reply(self, message: Request) -> dict:
        """Run one request; its response, success or error."""
        try:
            result = self._run(message.method, message.params)
        except Exception as exc:
            return failure_response(message.id, exc)
        return {"jsonrpc": VERSION, "result": result, "id": message.id}

    def _run(self, name: str, params: Params) -> Any:
        """Look ``name`` up, check ``params`` against its signature, and call it."""
        method = self._methods.get(name)
        if method is None:
            raise MethodNotFound(f"no method {name!r}")
        method.check(params)
        if type(params) is list:
            return method.fn(*params)
        return method.fn() if params is None else method.fn(**params)

    def _encode_reply(self, reply: dict | list) -> bytes:
        """Encode; a result that is not JSON, or a reply over max_reply_size, becomes an internal
        error."""
        try:
            data = encode(reply)
        except (TypeError, ValueError):
            if type(reply) is list:
                return self._encode_reply([self._encodable(member) for member in reply])
            data = encode(self._encodable(reply))
        limit = self.max_reply_size
        if limit is not None and len(data) > limit:
            problem = InternalError(
                f"the reply of {len(data)} bytes is over the {limit}-byte limit"
            )
            members = reply if type(reply) is list else [reply]
            shrunk = [error_response(m.get("id"), problem) for m in members]
            data = encode(shrunk if type(reply) is list else shrunk[0])
        return data

    @staticmethod
    def _encodable(reply: dict) -> dict:
        try:
            encode(reply)
            return reply
        except (TypeError, ValueError) as exc:
            error = error_response(reply.get("id"), InternalError(f"the result is not JSON: {exc}"))
        try:  # (an id off the wire always encodes; one a caller of handle_value gave may not)
            encode(error)
        except (TypeError, ValueError):
            error["id"] = None
        return error

    def __repr__(self) -> str:
        return f"<Dispatcher of {', '.join(self.names) or 'no methods'}>"
