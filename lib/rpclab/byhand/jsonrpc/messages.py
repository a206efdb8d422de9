"""The JSON-RPC 2.0 messages: build them, and check that a decoded value is one. Pure: no I/O.

Built by hand in notebook 04 (the envelope); the wire inspector shows them in 04 and 05.
A message is one JSON value (https://www.jsonrpc.org/specification):

* a **request** ``{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}``
  wants a **response** ``{"jsonrpc": "2.0", "result": 19, "id": 1}`` (or one with
  ``"error": {"code": ..., "message": ..., "data": ...}`` instead of ``result``);
* a **notification** is a request without ``id``: nobody answers it;
* a **batch** is an array of those, answered by an array of responses.

::

    request("subtract", [42, 23], id=1)   # the dict that goes on the wire
    parse(value)                          # Request(method='subtract', params=[42, 23], id=1)
    parse_response(value).unwrap()        # 19, or the RemoteError raised
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rpclab.byhand.jsonrpc.errors import (
    APPLICATION_ERROR,
    Id,
    InvalidRequest,
    InvalidResponse,
    RemoteError,
    RPCError,
)

__all__ = [
    "VERSION",
    "MAX_BATCH",
    "Request",
    "Notification",
    "Response",
    "request",
    "notification",
    "response",
    "error_response",
    "parse",
    "parse_response",
]

VERSION = "2.0"
MAX_BATCH = 100  # requests in one batch, unless a Dispatcher is told otherwise

Params = list | dict | None

ABSENT = object()  # what value.get("id", ABSENT) gives for a message without an id

ID_TYPES = (str, int, float, type(None))  # bool is not among them: type(True) is bool, not int
PARAMS_TYPES = (list, dict)  # and None, when "params" is left out


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


def failure_response(id: Id, exc: Exception) -> dict[str, Any]:
    """The error response for a handler that raised ``exc``: its own RPCError, else
    APPLICATION_ERROR (1, "Application error") whose data holds the exception's type and message.
    """
    if isinstance(exc, RPCError):
        return error_response(id, exc)
    data = {"type": type(exc).__name__, "message": str(exc)}
    return error_response(id, APPLICATION_ERROR, data=data)


# --------------------------------------------------------------------------- checking


def parse(
    value: Any, *, max_batch: int = MAX_BATCH
) -> Request | Notification | list[Request | Notification | InvalidRequest]:
    """Validate a decoded JSON value as a request, a notification, or a batch of them.

    Raises InvalidRequest if the whole message is invalid. In a batch, each
    invalid member is returned as an InvalidRequest (it gets its own error reply).
    """
    if type(value) is not list:
        return parse_one(value)
    if not value:
        raise InvalidRequest("a batch must not be empty")
    if len(value) > max_batch:
        raise InvalidRequest(
            f"a batch of {len(value)} requests is over the {max_batch}-request limit"
        )
    members: list[Request | Notification | InvalidRequest] = []
    for item in value:
        try:
            members.append(parse_one(item))
        except InvalidRequest as exc:
            members.append(exc)
    return members


def parse_one(value: Any) -> Request | Notification:
    """One request object, validated; InvalidRequest says what is wrong with it."""
    if type(value) is dict and value.get("jsonrpc") == VERSION:
        method = value.get("method")
        params = value.get("params")
        id = value.get("id", ABSENT)
        if type(method) is str and type(params) in PARAMS_TYPES and type(id) in ID_TYPES:
            return Request(method, params, id)  # the usual case: one test for all three
        if (
            type(method) is str
            and (type(params) in PARAMS_TYPES or "params" not in value)
            and (id is ABSENT or type(id) in ID_TYPES)
        ):
            return Notification(method, params) if id is ABSENT else Request(method, params, id)
    raise _invalid(value)


def _invalid(value: Any) -> InvalidRequest:
    """Why ``value`` is not a valid request, quoting its id when that could be read."""
    if type(value) is not dict:
        return InvalidRequest(f"a request must be a JSON object, not {_json_type(value)}")
    id = value.get("id")
    reply_id = id if type(id) in ID_TYPES else None
    if value.get("jsonrpc") != VERSION:
        return InvalidRequest('"jsonrpc" must be exactly "2.0"', id=reply_id)
    if type(value.get("method")) is not str:
        return InvalidRequest('"method" must be a string', id=reply_id)
    if "params" in value and type(value["params"]) not in PARAMS_TYPES:
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
