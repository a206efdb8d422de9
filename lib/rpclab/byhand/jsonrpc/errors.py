"""JSON-RPC 2.0's error codes, and the exceptions that carry them.

Built by hand in notebook 04 (its ``Fault`` and ``RemoteError``); every socket RPC failure in
05 arrives as one of these. Pure: no I/O.

The specification reserves -32768 to -32000 for itself: it defines five codes there and leaves
-32000 to -32099 to implementations, for the server's own errors. Every other integer is the
application's. So a handler's own failure (no such key, a division by zero) is reported with
APPLICATION_ERROR, outside the reserved range, and a client can tell "the procedure said no"
from "the server broke"::

    RPCError(-32601)                  # [-32601] Method not found
    InvalidParams("missing 'b'")      # the same with its code and message filled in
    RPCError(APPLICATION_ERROR)       # [1] Application error: what a handler's exception becomes
    is_reserved(-32000)               # True: the protocol's or the server's code, not the app's
    RemoteError.from_dict(error)      # what a client raises for an error read off the wire
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "INTERNAL_ERROR",
    "SERVER_ERROR",
    "APPLICATION_ERROR",
    "ERROR_MESSAGES",
    "is_reserved",
    "RPCError",
    "ParseError",
    "InvalidRequest",
    "MethodNotFound",
    "InvalidParams",
    "InternalError",
    "RemoteError",
    "InvalidResponse",
]

PARSE_ERROR = -32700  # the bytes are not JSON
INVALID_REQUEST = -32600  # JSON, but not a request object
METHOD_NOT_FOUND = -32601  # no such method
INVALID_PARAMS = -32602  # the method exists; these params do not fit it
INTERNAL_ERROR = -32603  # the server failed around the method (e.g. its result is not JSON)
SERVER_ERROR = -32000  # the server's own trouble (-32000..-32099 are for servers to define)
APPLICATION_ERROR = 1  # the method itself raised: outside the reserved range, the app's own
RESERVED = (-32768, -32000)  # the codes JSON-RPC 2.0 keeps for itself, both ends included

ERROR_MESSAGES = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
    SERVER_ERROR: "Server error",
    APPLICATION_ERROR: "Application error",
}

Id = str | int | float | None


def is_reserved(code: int) -> bool:
    """Whether JSON-RPC 2.0 reserves ``code`` (-32768 to -32000): the protocol's or the server's
    error, never the application's."""
    return RESERVED[0] <= code <= RESERVED[1]


class RPCError(Exception):
    """A JSON-RPC error: ``code``, ``message`` and optional ``data``.

    A handler may raise one to choose the error its caller gets.
    """

    def __init__(self, code: int, message: str | None = None, data: Any = None):
        self.code = code
        default = "Server error" if is_reserved(code) else "Application error"
        self.message = message or ERROR_MESSAGES.get(code, default)
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
