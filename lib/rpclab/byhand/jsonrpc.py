"""The JSON-RPC 2.0 message model: build, decode, validate and dispatch messages. Pure: no I/O.

A JSON-RPC 2.0 message is one JSON value (https://www.jsonrpc.org/specification):

* a **request** ``{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}``
  wants a **response** ``{"jsonrpc": "2.0", "result": 19, "id": 1}`` (or one with
  ``"error": {"code": ..., "message": ..., "data": ...}`` instead of ``result``);
* a **notification** is a request without ``id``: nobody answers it;
* a **batch** is an array of those, answered by an array of responses.

This module is the runtime's message layer, the same for every transport::

    data = jsonrpc.encode(jsonrpc.request("subtract", [42, 23], id=1))   # bytes for the wire
    jsonrpc.parse(jsonrpc.decode(data))       # Request(method='subtract', params=[42, 23], id=1)
    dispatcher = jsonrpc.Dispatcher({"subtract": lambda a, b: a - b})
    dispatcher.handle(data)                   # b'{"jsonrpc":"2.0","result":19,"id":1}'

Input off the wire is decoded safely: nesting deeper than ``MAX_DEPTH``, integers
longer than ``MAX_INT_DIGITS`` digits and bytes that are not UTF-8 are parse
errors, never a RecursionError or a long stall.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

import orjson

__all__ = [
    "VERSION",
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "INTERNAL_ERROR",
    "SERVER_ERROR",
    "ERROR_MESSAGES",
    "MAX_BATCH",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "RPCError",
    "ParseError",
    "InvalidRequest",
    "MethodNotFound",
    "InvalidParams",
    "InternalError",
    "RemoteError",
    "InvalidResponse",
    "Request",
    "Notification",
    "Response",
    "request",
    "notification",
    "response",
    "error_response",
    "encode",
    "decode",
    "decode_plain",
    "plain_result",
    "NOT_PLAIN",
    "parse",
    "parse_response",
    "methods_of",
    "Dispatcher",
]

VERSION = "2.0"

PARSE_ERROR = -32700  # the bytes are not JSON
INVALID_REQUEST = -32600  # JSON, but not a request object
METHOD_NOT_FOUND = -32601  # no such method
INVALID_PARAMS = -32602  # the method exists; these params do not fit it
INTERNAL_ERROR = -32603  # the server failed around the method (e.g. its result is not JSON)
SERVER_ERROR = -32000  # the method itself raised (-32000..-32099 are for servers to define)

ERROR_MESSAGES = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
    SERVER_ERROR: "Server error",
}

MAX_BATCH = 100  # requests in one batch, unless a Dispatcher is told otherwise
MAX_DEPTH = 64  # levels of [ ] and { } nesting accepted in one message
MAX_INT_DIGITS = 4300  # digits in one integer (Python's own int-string conversion limit)

Id = str | int | float | None
Params = list | dict | None
Once = Callable[["Request", Callable[[], dict]], dict]

_ABSENT = object()


# --------------------------------------------------------------------------- errors


class RPCError(Exception):
    """A JSON-RPC error: ``code``, ``message`` and optional ``data``.

    A handler may raise one to choose the error its caller gets.
    """

    def __init__(self, code: int, message: str | None = None, data: Any = None):
        self.code = code
        self.message = message or ERROR_MESSAGES.get(code, "Server error")
        self.data = data
        super().__init__(code, self.message, data)

    def to_dict(self) -> dict[str, Any]:
        """The error object as it goes on the wire."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    def __str__(self) -> str:
        text = f"[{self.code}] {self.message}"
        data = self.data
        if isinstance(data, dict) and set(data) == {"type", "message"}:
            return f"{text}: {data['type']}: {data['message']}"
        return text if data is None else f"{text}: {data}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.message!r}, {self.data!r})"


class _StandardError(RPCError):
    code_for_class = INTERNAL_ERROR

    def __init__(self, data: Any = None, *, message: str | None = None):
        super().__init__(self.code_for_class, message, data)


class ParseError(_StandardError):
    """-32700: the message is not JSON (or is JSON this server refuses to decode)."""

    code_for_class = PARSE_ERROR


class InvalidRequest(_StandardError):
    """-32600: the JSON is not a valid request; ``id`` is the request's id if it could be read."""

    code_for_class = INVALID_REQUEST

    def __init__(self, data: Any = None, *, message: str | None = None, id: Id = None):
        super().__init__(data, message=message)
        self.id = id


class MethodNotFound(_StandardError):
    """-32601: there is no method of that name."""

    code_for_class = METHOD_NOT_FOUND


class InvalidParams(_StandardError):
    """-32602: the params do not fit the method's signature."""

    code_for_class = INVALID_PARAMS


class InternalError(_StandardError):
    """-32603: the server failed around the method (its result could not be encoded, say)."""

    code_for_class = INTERNAL_ERROR


class RemoteError(RPCError):
    """The error a server replied with, raised by the client: ``code``, ``message``, ``data``."""

    @classmethod
    def from_dict(cls, error: Any) -> RemoteError:
        """The RemoteError for an error object read off the wire."""
        if (
            not isinstance(error, dict)
            or type(error.get("code")) is not int
            or not isinstance(error.get("message"), str)
        ):
            raise InvalidResponse(f"malformed error object: {error!r}")
        return cls(error["code"], error["message"], error.get("data"))


class InvalidResponse(ValueError):
    """A reply that is not a valid JSON-RPC 2.0 response."""


# --------------------------------------------------------------------------- messages


@dataclass(slots=True)
class Request:
    """A call that wants an answer: ``method``, ``params`` (list, dict or None) and ``id``."""

    method: str
    params: Params = None
    id: Id = None

    def to_dict(self) -> dict[str, Any]:
        return request(self.method, self.params, id=self.id)


@dataclass(slots=True)
class Notification:
    """A call that wants no answer: a request without an ``id``."""

    method: str
    params: Params = None

    def to_dict(self) -> dict[str, Any]:
        return notification(self.method, self.params)


@dataclass(slots=True)
class Response:
    """An answer: the ``id`` it answers and either a ``result`` or an ``error``."""

    id: Id
    result: Any = None
    error: RemoteError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> Any:
        """The result, or raise the error."""
        if self.error is not None:
            raise self.error
        return self.result


def request(method: str, params: Params = None, *, id: Id = 1) -> dict[str, Any]:
    """A request object: call ``method`` with ``params``, answer quoting ``id``."""
    message: dict[str, Any] = {"jsonrpc": VERSION, "method": method}
    if params is not None:
        message["params"] = params
    message["id"] = id
    return message


def notification(method: str, params: Params = None) -> dict[str, Any]:
    """A notification object: call ``method`` with ``params``, expect no answer."""
    message: dict[str, Any] = {"jsonrpc": VERSION, "method": method}
    if params is not None:
        message["params"] = params
    return message


def response(id: Id, result: Any) -> dict[str, Any]:
    """A success response to the request ``id``."""
    return {"jsonrpc": VERSION, "result": result, "id": id}


def error_response(
    id: Id, error: RPCError | int, message: str | None = None, data: Any = None
) -> dict[str, Any]:
    """An error response to the request ``id`` (None when the id could not be read)."""
    if not isinstance(error, RPCError):
        error = RPCError(error, message, data)
    return {"jsonrpc": VERSION, "error": error.to_dict(), "id": id}


# --------------------------------------------------------------------------- bytes <-> JSON


def _plain(value: Any) -> Any:
    """What json.dumps calls for values it does not know: dataclasses become objects."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, (set, frozenset)):
        raise TypeError(f"a {type(value).__name__} is not JSON (send a list)")
    raise TypeError(f"a {type(value).__name__} is not JSON")


def encode(message: Any) -> bytes:
    """The UTF-8 JSON bytes for ``message``. Raises TypeError or ValueError if it is not JSON.

    Uses orjson; what orjson refuses (integers over 64 bits, non-str keys)
    goes through the standard library instead. NaN and infinity become null.
    """
    try:
        return orjson.dumps(message)
    except TypeError:
        text = json.dumps(
            message, default=_plain, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
        return text.encode("utf-8")


# One pass over the bytes for both cheap checks: each digit becomes "0", each
# opening bracket "[", everything else ".".
_SCAN = bytes(48 if 48 <= b <= 57 else 91 if b in (91, 123) else 46 for b in range(256))
_LONG = 19  # digits: an integer this long may not fit 64 bits, and orjson would round it to a float
_LONG_DIGITS = b"0" * _LONG
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b'[]{}"')
_CURLY_TO_SQUARE = bytes.maketrans(b"{}", b"[]")
_OPEN = ord("[")


def _check_depth(data: bytes, max_depth: int) -> None:
    """Raise ParseError if the JSON in ``data`` nests deeper than ``max_depth``; linear, no
    recursion."""
    # Drop escaped backslashes and quotes, keep only quotes and brackets, then
    # drop what is inside strings: what is left is the bracket skeleton. All of
    # that runs in C; only the skeleton is walked in Python, stopping early.
    skeleton = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_BRACKETS)
    brackets = b"".join(skeleton.split(b'"')[::2]).translate(_CURLY_TO_SQUARE)
    depth = 0
    for byte in brackets:
        if byte == _OPEN:
            depth += 1
            if depth > max_depth:
                raise ParseError(f"JSON nested deeper than {max_depth} levels")
        else:
            depth -= 1


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS + 1:
        raise ValueError(
            f"an integer of {len(digits)} digits is over the {MAX_INT_DIGITS}-digit limit"
        )
    return int(digits)


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:20]}... is too large for a float")
    return number


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(data: bytes | bytearray | memoryview | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in ``data`` (UTF-8). Raises ParseError for anything else, or anything too deep
    or too big."""
    if type(data) is not bytes:
        if isinstance(data, str):
            try:
                data = data.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ParseError(f"not valid UTF-8: {exc.reason}") from None
        else:
            data = bytes(data)
    scan = data.translate(_SCAN)
    if scan.count(b"[") > max_depth:  # else it cannot nest that deep: no need to look closer
        _check_depth(data, max_depth)
    if (
        scan.count(b"0") >= _LONG and _LONG_DIGITS in scan
    ):  # (counting first is cheaper than searching)
        return _decode_exactly(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ParseError(str(exc)) from None


# The scalars orjson decodes exactly: an integer literal too long for 64 bits
# comes out as a float, never as a wrong int.
_PLAIN = (str, int, bool, type(None))
_PLAIN_IDS = (str, int, type(None))  # (a float id may be a rounded integer)


def decode_plain(data: bytes) -> dict | None:
    """The JSON object in ``data`` if it is plain, else None (then ask decode()).

    Plain means every member is a string, an integer, true, false or null, or
    an array of those -- the shape of most requests and replies. Such a value
    is exactly what decode() would return, found without decode()'s scans of
    the bytes: nothing in it nests deeper than two levels, and none of its
    numbers can have been rounded. Anything else (a float, an object inside,
    bad JSON...) gives None, and the caller decodes it again with decode().
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict:
        return None
    for member in value.values():
        if type(member) not in _PLAIN:
            if type(member) is not list:
                return None
            for item in member:
                if type(item) not in _PLAIN:
                    return None
    return value


NOT_PLAIN = object()  # what plain_result returns when the reply is not the plain kind


def plain_result(data: bytes, id: str) -> Any:
    """The result in ``data`` if it is the plain success reply to ``id``, else NOT_PLAIN.

    That reply is ``{"jsonrpc": "2.0", "result": R, "id": id}``, with nothing
    else, where R is a string, an integer, true, false or null: what
    decode() and parse_response() would find, found with one parse and a few
    checks. Anything else (an error, another id, a list...) gives NOT_PLAIN,
    and the caller decodes it in full.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return NOT_PLAIN
    if (
        type(value) is dict
        and len(value) == 3
        and value.get("id") == id
        and type(result := value.get("result", NOT_PLAIN)) in _PLAIN
        and value.get("jsonrpc") == VERSION
    ):
        return result
    return NOT_PLAIN


def _decode_exactly(data: bytes) -> Any:
    """Decode with the standard library, which keeps long integers exact (orjson would round
    them)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(
            text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constants
        )
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        raise ParseError(str(exc)) from None


# --------------------------------------------------------------------------- validation


_ID_TYPES = (str, int, float, type(None))  # bool is not among them: type(True) is bool, not int
_PARAMS_TYPES = (list, dict)  # and None, when "params" is left out


def _parse_one(value: Any) -> Request | Notification:
    """One request object, validated; InvalidRequest says what is wrong with it."""
    if type(value) is dict and value.get("jsonrpc") == VERSION:
        method = value.get("method")
        params = value.get("params")
        id = value.get("id", _ABSENT)
        if type(method) is str and type(params) in _PARAMS_TYPES and type(id) in _ID_TYPES:
            return Request(method, params, id)  # the usual case: one test for all three
        if (
            type(method) is str
            and (type(params) in _PARAMS_TYPES or "params" not in value)
            and (id is _ABSENT or type(id) in _ID_TYPES)
        ):
            return Notification(method, params) if id is _ABSENT else Request(method, params, id)
    raise _invalid(value)


def _invalid(value: Any) -> InvalidRequest:
    """Why ``value`` is not a valid request, quoting its id when that could be read."""
    if type(value) is not dict:
        return InvalidRequest(f"a request must be a JSON object, not {_json_type(value)}")
    id = value.get("id")
    reply_id = id if type(id) in _ID_TYPES else None
    if value.get("jsonrpc") != VERSION:
        return InvalidRequest('"jsonrpc" must be exactly "2.0"', id=reply_id)
    if type(value.get("method")) is not str:
        return InvalidRequest('"method" must be a string', id=reply_id)
    if "params" in value and type(value["params"]) not in _PARAMS_TYPES:
        return InvalidRequest('"params" must be an array or an object', id=reply_id)
    return InvalidRequest('"id" must be a string, a number or null')


def _json_type(value: Any) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }
    return names.get(type(value), "a number")


def parse(
    value: Any, *, max_batch: int = MAX_BATCH
) -> Request | Notification | list[Request | Notification | InvalidRequest]:
    """Validate a decoded JSON value as a request, a notification, or a batch of them.

    Raises InvalidRequest if the whole message is invalid. In a batch, each
    invalid member is returned as an InvalidRequest (it gets its own error reply).
    """
    if type(value) is not list:
        return _parse_one(value)
    if not value:
        raise InvalidRequest("a batch must not be empty")
    if len(value) > max_batch:
        raise InvalidRequest(
            f"a batch of {len(value)} requests is over the {max_batch}-request limit"
        )
    members: list[Request | Notification | InvalidRequest] = []
    for item in value:
        try:
            members.append(_parse_one(item))
        except InvalidRequest as exc:
            members.append(exc)
    return members


def parse_response(value: Any) -> Response:
    """Validate a decoded JSON value as one response. Raises InvalidResponse if it is not one."""
    if type(value) is not dict or value.get("jsonrpc") != VERSION or "id" not in value:
        raise InvalidResponse(f"not a JSON-RPC 2.0 response: {value!r:.200}")
    has_result, has_error = "result" in value, "error" in value
    if has_result == has_error:
        raise InvalidResponse(f"a response has either a result or an error: {value!r:.200}")
    if has_result:
        return Response(value["id"], value["result"])
    return Response(value["id"], error=RemoteError.from_dict(value["error"]))


# --------------------------------------------------------------------------- dispatch


def methods_of(
    handlers: Mapping[str, Callable[..., Any]] | object,
) -> dict[str, Callable[..., Any]]:
    """The RPC methods ``handlers`` offers: a mapping name -> callable, or an object's public
    methods.

    Public means the name does not start with ``_``. Properties are not read and
    classes are not methods. Names are looked up exactly: a call to ``"a.b"``
    never walks attributes.
    """
    methods: dict[str, Callable[..., Any]] = {}
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
    """One handler and what its signature accepts, so params can be checked before the call."""

    __slots__ = ("name", "fn", "signature", "simple", "min_args", "max_args", "names", "required")

    def __init__(self, name: str, fn: Callable[..., Any]):
        self.name = name
        self.fn = fn
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have none: they check their own arguments
            self.signature = None
            self.simple = False
            return
        parameters = list(self.signature.parameters.values())
        kinds = {p.kind for p in parameters}
        # The usual case -- only positional-or-keyword parameters -- is checked by
        # counting; anything else by Signature.bind. Both give the same answer.
        self.simple = kinds <= {inspect.Parameter.POSITIONAL_OR_KEYWORD}
        self.max_args = len(parameters)
        self.min_args = sum(p.default is inspect.Parameter.empty for p in parameters)
        self.names = frozenset(p.name for p in parameters)
        self.required = frozenset(
            p.name for p in parameters if p.default is inspect.Parameter.empty
        )

    def check(self, params: Params) -> None:
        """Raise InvalidParams unless ``params`` bind to the handler's signature."""
        if self.simple:
            if type(params) is list:
                if self.min_args <= len(params) <= self.max_args:
                    return
            elif params is None:
                if self.min_args == 0:
                    return
            elif params.keys() <= self.names and self.required <= params.keys():
                return
        elif self.signature is None:
            return
        try:
            if params is None:
                self.signature.bind()
            elif type(params) is list:
                self.signature.bind(*params)
            else:
                self.signature.bind(**params)
        except TypeError as exc:
            raise InvalidParams(str(exc)) from None


def _error_reply(id: Id, exc: Exception) -> dict:
    """The error response for a handler that raised: its own RPCError, else -32000 with the type and
    message."""
    if isinstance(exc, RPCError):
        return error_response(id, exc)
    return error_response(id, SERVER_ERROR, data={"type": type(exc).__name__, "message": str(exc)})


class Dispatcher:
    """Routes JSON-RPC messages to Python callables: request bytes in, reply bytes (or None) out.

    ``handlers`` is a mapping name -> callable, or an object whose public
    methods become the RPC methods. Params may come by position (an array) or
    by name (an object). A handler's exception becomes a -32000 "Server error"
    whose data holds the exception's type and message; a handler may raise
    RPCError to choose the code itself. ``handle`` never raises for bad input.
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
        quick = self.max_depth >= 2  # (a plain message nests two levels deep)
        reply = self._quick(data) if once is None and quick else None
        if reply is None:
            # decode_plain is worth a try only if _quick has not just parsed the data.
            value = decode_plain(data) if once is not None and quick else None
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

    def _quick(self, data: bytes) -> dict | None:
        """The reply to the most common message, or None to take the general path (decode, parse,
        respond).

        The common message is one plain request -- ``{"jsonrpc": "2.0",
        "method": M, "params": [P, ...], "id": I}``, nothing else, where each P
        is a string, an integer, true, false or null and I a string, an
        integer or null -- whose params fit a plain handler's signature. One
        parse finds it (decode_plain says why no scan is needed), and it is
        run here with less work, to the same outcome.
        """
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if type(value) is not dict or len(value) != 4:
            return None
        name, params, request_id = (
            value.get("method"),
            value.get("params"),
            value.get("id", _ABSENT),
        )
        if type(name) is not str or type(params) is not list or type(request_id) not in _PLAIN_IDS:
            return None
        for param in params:
            if type(param) not in _PLAIN:
                return None
        method = self._methods.get(name)
        if (
            method is None
            or not method.simple
            or not method.min_args <= len(params) <= method.max_args
            or value.get("jsonrpc") != VERSION
        ):
            return None
        try:
            result = method.fn(*params)
        except Exception as exc:
            return _error_reply(request_id, exc)
        return {"jsonrpc": VERSION, "result": result, "id": request_id}

    def _reply(self, message: Request) -> dict:
        """Run one request; its response, success or error."""
        try:
            result = self._run(message.method, message.params)
        except Exception as exc:
            return _error_reply(message.id, exc)
        return {"jsonrpc": VERSION, "result": result, "id": message.id}

    def _run(self, name: str, params: Params) -> Any:
        """Look ``name`` up, check ``params`` against its signature, and call it."""
        method = self._methods.get(name)
        if method is None:
            raise MethodNotFound(f"no method {name!r}")
        if type(params) is list:
            if not (method.simple and method.min_args <= len(params) <= method.max_args):
                method.check(params)  # (the usual case was just checked inline: it is the hot path)
            return method.fn(*params)
        method.check(params)
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
            return error_response(reply.get("id"), InternalError(f"the result is not JSON: {exc}"))

    def __repr__(self) -> str:
        return f"<Dispatcher of {', '.join(self.names) or 'no methods'}>"
