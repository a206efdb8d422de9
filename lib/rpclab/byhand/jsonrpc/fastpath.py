"""Speed work: the usual message, recognised by one parse and answered with less work.

Nothing here is needed for correctness: ``codec.decode`` + ``messages.parse`` +
``Dispatcher.respond`` answer every message. Measured in notebook 13 (the socket RPC's goal
is 0.6 x a raw socket's round trips); tests/test_jsonrpc.py proves, with Hypothesis, that each
shortcut gives what the plain path gives.

Most requests and replies are *plain*: every member is a string, an integer, true, false or
null, or an array of those. Such a value nests two levels deep at most, and orjson parses
its integers exactly (it would turn one too long for 64 bits into a float, which the type
check below sees), so the depth and long-integer scans of ``codec.decode`` can be skipped::

    decode_plain(data)            # the object, if plain; else None (then ask codec.decode)
    plain_result(data, id)        # the result of a plain success reply to id, else NOT_PLAIN
    quick_reply(methods, data)    # the reply to a plain request, run here; else None
    Counted.of(signature)         # params checked by counting instead of Signature.bind
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from rpclab.byhand.jsonrpc.messages import ABSENT, VERSION, Params, failure_response

__all__ = ["NOT_PLAIN", "decode_plain", "plain_result", "quick_reply", "Counted"]

# The scalars orjson decodes exactly: an integer literal too long for 64 bits
# comes out as a float, never as a wrong int.
_PLAIN = (str, int, bool, type(None))
_PLAIN_IDS = (str, int, type(None))  # (a float id may be a rounded integer)

NOT_PLAIN = object()  # what plain_result returns when the reply is not the plain kind


def decode_plain(data: bytes) -> dict | None:
    """The JSON object in ``data`` if it is plain, else None (then ask codec.decode()).

    Such a value is exactly what decode() would return, found without decode()'s
    scans of the bytes. Anything else (a float, an object inside, bad JSON...)
    gives None, and the caller decodes it again with decode().
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


class Counted:
    """What a handler accepts when all its parameters are positional-or-keyword: found by counting.

    For such a signature, params fit exactly when ``Signature.bind`` would say so
    (an array of between ``min_args`` and ``max_args`` values; an object whose
    names are all parameters and include every required one), at a fraction of
    bind's cost. Other signatures (``*args``, ``/``, keyword-only...) get None:
    bind checks them.
    """

    __slots__ = ("min_args", "max_args", "names", "required")

    def __init__(self, parameters: list[inspect.Parameter]):
        self.max_args = len(parameters)
        self.min_args = sum(p.default is inspect.Parameter.empty for p in parameters)
        self.names = frozenset(p.name for p in parameters)
        self.required = frozenset(
            p.name for p in parameters if p.default is inspect.Parameter.empty
        )

    @classmethod
    def of(cls, signature: inspect.Signature) -> Counted | None:
        parameters = list(signature.parameters.values())
        if all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters):
            return cls(parameters)
        return None

    def fits(self, params: Params) -> bool:
        """Whether ``params`` bind to the signature."""
        if type(params) is list:
            return self.min_args <= len(params) <= self.max_args
        if params is None:
            return self.min_args == 0
        return params.keys() <= self.names and self.required <= params.keys()


class _Handler(Protocol):
    fn: Any
    counted: Counted | None


def quick_reply(methods: Mapping[str, _Handler], data: bytes) -> dict | None:
    """The reply to the most common message, or None to take the general path (decode, parse,
    respond).

    The common message is one plain request -- ``{"jsonrpc": "2.0",
    "method": M, "params": [P, ...], "id": I}``, nothing else, where each P
    is a string, an integer, true, false or null and I a string, an
    integer or null -- whose params fit a handler's Counted signature. One
    parse finds it (decode_plain says why no scan is needed), and it is
    run here with less work, to the same outcome.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict or len(value) != 4:
        return None
    name, params, request_id = value.get("method"), value.get("params"), value.get("id", ABSENT)
    if type(name) is not str or type(params) is not list or type(request_id) not in _PLAIN_IDS:
        return None
    for param in params:
        if type(param) not in _PLAIN:
            return None
    method = methods.get(name)
    if (
        method is None
        or (counted := method.counted) is None
        or not counted.min_args <= len(params) <= counted.max_args
        or value.get("jsonrpc") != VERSION
    ):
        return None
    try:
        result = method.fn(*params)
    except Exception as exc:
        return failure_response(request_id, exc)
    return {"jsonrpc": VERSION, "result": result, "id": request_id}
