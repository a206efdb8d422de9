"""The JSON-RPC 2.0 specification's own examples (its section 7), shared by the tests of the
message model (test_jsonrpc.py) and of every socket RPC (test_contract.py)."""

from __future__ import annotations


def subtract(minuend, subtrahend):
    return minuend - subtrahend


SPEC_HANDLERS = {
    "subtract": subtract,
    "sum": lambda *numbers: sum(numbers),
    "update": lambda *args: None,
    "notify_hello": lambda *args: None,
    "notify_sum": lambda *args: None,
    "get_data": lambda: ["hello", 5],
}

# Section 7 of https://www.jsonrpc.org/specification, every example: (name, request, expected reply
# or None).
SPEC_EXAMPLES = [
    (
        "positional params",
        '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        '{"jsonrpc": "2.0", "result": 19, "id": 1}',
    ),
    (
        "positional params, swapped",
        '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        '{"jsonrpc": "2.0", "result": -19, "id": 2}',
    ),
    (
        "named params",
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, '
        '"id": 3}',
        '{"jsonrpc": "2.0", "result": 19, "id": 3}',
    ),
    (
        "named params, reordered",
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, '
        '"id": 4}',
        '{"jsonrpc": "2.0", "result": 19, "id": 4}',
    ),
    ("notification", '{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
    ("notification of a missing method", '{"jsonrpc": "2.0", "method": "foobar"}', None),
    (
        "non-existent method",
        '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        '{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"}',
    ),
    (
        "invalid JSON",
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}',
    ),
    (
        "invalid Request object",
        '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}',
    ),
    (
        "batch, invalid JSON",
        """[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method"
     ]""",
        '{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}',
    ),
    (
        "empty array",
        "[]",
        '{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}',
    ),
    (
        "invalid batch (but not empty)",
        "[1]",
        '[{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}]',
    ),
    (
        "invalid batch",
        "[1,2,3]",
        """[
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}
     ]""",
    ),
    (
        "batch",
        """[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
     ]""",
        """[
        {"jsonrpc": "2.0", "result": 7, "id": "1"},
        {"jsonrpc": "2.0", "result": 19, "id": "2"},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
     ]""",
    ),
    (
        "batch of notifications",
        """[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
     ]""",
        None,
    ),
]


def without_data(value):
    """The reply with each error's optional "data" member removed (the spec's examples show
    none)."""
    if isinstance(value, list):
        return [without_data(v) for v in value]
    if isinstance(value, dict) and isinstance(value.get("error"), dict):
        value = {**value, "error": {k: v for k, v in value["error"].items() if k != "data"}}
    return value
