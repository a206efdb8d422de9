"""The JSON-RPC 2.0 message model: build, decode, validate and dispatch messages. Pure: no I/O.

Built by hand in notebook 04; used by the socket RPC in 04-05 and by every JSON-RPC example
after; measured in 13. A JSON-RPC 2.0 message is one JSON value
(https://www.jsonrpc.org/specification)::

    data = jsonrpc.encode(jsonrpc.request("subtract", [42, 23], id=1))   # bytes for the wire
    jsonrpc.parse(jsonrpc.decode(data))       # Request(method='subtract', params=[42, 23], id=1)
    dispatcher = jsonrpc.Dispatcher({"subtract": lambda a, b: a - b})
    dispatcher.handle(data)                   # b'{"jsonrpc":"2.0","result":19,"id":1}'

Read in this order (the design first, the speed work last):

* ``errors``   -- the error codes and the exceptions that carry them;
* ``messages`` -- requests, notifications, responses, batches: build them, check them;
* ``codec``    -- bytes <-> JSON, bounded: nesting deeper than ``MAX_DEPTH``, integers longer
  than ``MAX_INT_DIGITS`` digits and bytes that are not UTF-8 are parse errors, never a
  RecursionError or a long stall;
* ``dispatch`` -- the dispatcher: request bytes in, reply bytes out (the server stub);
* ``fastpath`` -- speed work: the usual message recognised by one parse; the same answers.

Every name below is importable from ``rpclab.byhand.jsonrpc`` itself.
"""

from rpclab.byhand.jsonrpc.codec import MAX_DEPTH, MAX_INT_DIGITS, decode, encode
from rpclab.byhand.jsonrpc.dispatch import Dispatcher, methods_of
from rpclab.byhand.jsonrpc.errors import (
    APPLICATION_ERROR,
    ERROR_MESSAGES,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    InternalError,
    InvalidParams,
    InvalidRequest,
    InvalidResponse,
    MethodNotFound,
    ParseError,
    RemoteError,
    RPCError,
    is_reserved,
)
from rpclab.byhand.jsonrpc.fastpath import NOT_PLAIN, decode_plain, plain_result
from rpclab.byhand.jsonrpc.messages import (
    MAX_BATCH,
    VERSION,
    Notification,
    Request,
    Response,
    error_response,
    notification,
    parse,
    parse_response,
    request,
    response,
)

__all__ = [
    "VERSION",
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "INTERNAL_ERROR",
    "SERVER_ERROR",
    "APPLICATION_ERROR",
    "ERROR_MESSAGES",
    "is_reserved",
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
