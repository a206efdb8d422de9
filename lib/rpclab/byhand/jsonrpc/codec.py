"""Bytes <-> JSON, bounded: what comes off the wire is decoded without recursion or long stalls.

Notebook 03 compares JSON with other encodings; notebook 04 shows why a plain ``json.loads``
is not enough (100,000 nested brackets exhaust its stack) and this decoder answering it;
13 measures it. Pure: no I/O.

::

    encode({"jsonrpc": "2.0", "result": 19, "id": 1})   # b'{"jsonrpc":"2.0","result":19,"id":1}'
    decode(b"[[[[1]]]]")                                # [[[[1]]]]
    decode(b"[" * 100_000)                              # ParseError: nested deeper than 64 levels

Nesting deeper than ``MAX_DEPTH``, integers longer than ``MAX_INT_DIGITS`` digits and text
that is not Unicode are parse errors: bytes that are not UTF-8, and a *lone surrogate* escaped as
``"\\ud800"``. JSON text is UTF-8 (RFC 8259, section 8.1), and a string holding half of a
surrogate pair has no UTF-8 form: stored, it could never be sent back (I-JSON, RFC 7493, section
2.1, forbids it). ``encode`` refuses such a string with a ValueError that says so, before
anything is sent. orjson does the parsing; the checks before it are one pass over the bytes in C
(``bytes.translate``), so they cost little next to the parse itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, is_dataclass
from typing import Any

import orjson

from rpclab.byhand.jsonrpc.errors import ParseError

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "encode", "decode"]

MAX_DEPTH = 64  # levels of [ ] and { } nesting accepted in one message
MAX_INT_DIGITS = 4300  # digits in one integer (Python's own int-string conversion limit)


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
    A string holding a lone surrogate is not Unicode: ValueError.
    """
    try:
        return orjson.dumps(message)
    except TypeError:
        text = json.dumps(
            message, default=_plain, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(_lone_surrogate(repr(exc.object[exc.start]))) from None


def _lone_surrogate(which: str) -> str:
    return (
        f"not valid Unicode: a lone surrogate {which} (half of a UTF-16 pair, with no UTF-8 "
        "form; JSON text is UTF-8: RFC 8259, section 8.1)"
    )


# One pass over the bytes for both cheap checks: each digit becomes "0", each
# opening bracket "[", everything else ".".
_SCAN = bytes(48 if 48 <= b <= 57 else 91 if b in (91, 123) else 46 for b in range(256))
_LONG = 19  # digits: an integer this long may not fit 64 bits, and orjson would round it to a float
_LONG_DIGITS = b"0" * _LONG
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b'[]{}"')
_CURLY_TO_SQUARE = bytes.maketrans(b"{}", b"[]")
_OPEN = ord("[")


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
    if scan.count(b"0") >= _LONG and _LONG_DIGITS in scan:  # (counting first is cheaper)
        return _decode_exactly(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "surrogate" in str(exc):  # orjson's own words differ by case: say it one way
            raise ParseError(_lone_surrogate(f"at character {exc.pos}")) from None
        raise ParseError(str(exc)) from None


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


def _decode_exactly(data: bytes) -> Any:
    """Decode with the standard library, which keeps long integers exact (orjson would round
    them), and which, unlike orjson, accepts a lone surrogate: look for one afterwards."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        value = json.loads(
            text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constants
        )
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        raise ParseError(str(exc)) from None
    if _SURROGATE_ESCAPE.search(text) is not None:  # (a pair is one character once decoded)
        _check_unicode(value)
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # an escape of half a UTF-16 pair


def _check_unicode(value: Any) -> None:
    """Raise ParseError if a string in ``value`` (a key or a value, at any depth) holds a lone
    surrogate; no recursion."""
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) is str:
            strings: Any = (item,)
        elif type(item) is list:
            pending.extend(item)
            continue
        elif type(item) is dict:
            pending.extend(item.values())
            strings = item.keys()
        else:
            continue
        for string in strings:
            if not string.isascii():
                try:
                    string.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise ParseError(_lone_surrogate(repr(string[exc.start]))) from None


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
