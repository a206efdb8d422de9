"""rpclab.byhand.jsonrpc: the JSON-RPC 2.0 message model, checked against the specification's own
examples."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsonrpc_spec import SPEC_EXAMPLES, SPEC_HANDLERS, subtract, without_data
from rpclab.byhand import jsonrpc
from rpclab.byhand.jsonrpc import Dispatcher, Notification, Request, fastpath


@pytest.mark.parametrize(
    "name, request_text, expected", SPEC_EXAMPLES, ids=[e[0] for e in SPEC_EXAMPLES]
)
def test_specification_examples(name, request_text, expected):
    reply = Dispatcher(SPEC_HANDLERS).handle(request_text.encode())
    if expected is None:
        assert reply is None
    else:
        assert reply is not None
        assert without_data(json.loads(reply)) == json.loads(expected)


def test_errors_explain_themselves_in_data():
    reply = json.loads(
        Dispatcher(SPEC_HANDLERS).handle(b'{"jsonrpc": "2.0", "method": 1, "id": 7}')
    )
    assert reply["error"]["code"] == jsonrpc.INVALID_REQUEST
    assert reply["error"]["data"] == '"method" must be a string'
    assert reply["id"] == 7  # the id could be read, so the reply quotes it


# --------------------------------------------------------------------------- building messages


def test_builders_make_the_wire_objects():
    assert jsonrpc.request("subtract", [42, 23], id=1) == {
        "jsonrpc": "2.0",
        "method": "subtract",
        "params": [42, 23],
        "id": 1,
    }
    assert jsonrpc.request("get_data", id="a") == {
        "jsonrpc": "2.0",
        "method": "get_data",
        "id": "a",
    }
    assert jsonrpc.notification("update", [1]) == {
        "jsonrpc": "2.0",
        "method": "update",
        "params": [1],
    }
    assert jsonrpc.response(1, 19) == {"jsonrpc": "2.0", "result": 19, "id": 1}
    assert jsonrpc.error_response(None, jsonrpc.PARSE_ERROR) == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }
    assert jsonrpc.error_response(3, jsonrpc.InvalidParams("missing b")) == {
        "jsonrpc": "2.0",
        "error": {"code": -32602, "message": "Invalid params", "data": "missing b"},
        "id": 3,
    }


def test_message_objects_round_trip_through_parse():
    assert jsonrpc.parse(Request("subtract", [42, 23], 1).to_dict()) == Request(
        "subtract", [42, 23], 1
    )
    assert jsonrpc.parse(Notification("update", {"a": 1}).to_dict()) == Notification(
        "update", {"a": 1}
    )


def test_encode_is_compact_utf8_json():
    assert jsonrpc.encode({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode()


def test_encode_keeps_integers_beyond_64_bits_exact():
    assert jsonrpc.decode(jsonrpc.encode({"n": 2**70})) == {"n": 2**70}


def test_encode_turns_dataclasses_into_objects_and_refuses_what_is_not_json():
    @dataclass
    class Point:
        x: int
        y: int

    assert json.loads(jsonrpc.encode([Point(1, 2)])) == [{"x": 1, "y": 2}]
    with pytest.raises(TypeError):
        jsonrpc.encode({"s": {1, 2}})


# --------------------------------------------------------------------------- decoding safely


def test_decode_accepts_bytes_and_str():
    assert jsonrpc.decode(b'{"a": [1, 2.5, null, true]}') == {"a": [1, 2.5, None, True]}
    assert jsonrpc.decode('"é"') == "é"
    assert jsonrpc.decode(bytearray(b"[1]")) == [1]


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"[" * 100_000, "deeper than 64"),
        (b"[" * 65 + b"]" * 65, "deeper than 64"),
        (b'{"a":' * 200 + b"1" + b"}" * 200, "deeper than 64"),
        (b"1" * 100_000, "4300-digit limit"),
        (b'{"n": ' + b"9" * 5000 + b"}", "4300-digit limit"),
        (b"1e999", "infinity"),
        (b'["\xff"]', "UTF-8"),
        (b"\xef\xbb\xbf[]", "BOM"),
        (b"NaN", ""),
        (b"", ""),
        (b"[1, 2", ""),
    ],
)
def test_decode_refuses_with_parse_error(data, fragment):
    with pytest.raises(jsonrpc.ParseError) as info:
        jsonrpc.decode(data)
    assert info.value.code == jsonrpc.PARSE_ERROR
    assert fragment in str(info.value.data)


def test_decode_allows_nesting_up_to_the_limit_and_counts_brackets_only_outside_strings():
    assert jsonrpc.decode(b"[" * 64 + b"]" * 64) is not None
    wide = b"[" + b",".join([b"[1]"] * 500) + b"]"  # many brackets, but only two levels
    assert len(jsonrpc.decode(wide)) == 500
    in_strings = b'["' + b"[" * 500 + b'", "\\"' + b"{" * 500 + b'"]'
    assert jsonrpc.decode(in_strings) == ["[" * 500, '"' + "{" * 500]
    with pytest.raises(jsonrpc.ParseError):
        jsonrpc.decode(b"[" * 11 + b"]" * 11, max_depth=10)


def test_decode_keeps_long_integers_exact():
    assert jsonrpc.decode(b"[123456789012345678901234567890, -9223372036854775809]") == [
        123456789012345678901234567890,
        -9223372036854775809,
    ]
    assert jsonrpc.decode(b'["1234567890123456789012345"]') == ["1234567890123456789012345"]


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(st.text(max_size=6), _JSON, max_size=5))
def test_decode_plain_gives_what_decode_gives_or_nothing(value):
    data = json.dumps(value).encode()
    plain = jsonrpc.decode_plain(data)
    if plain is not None:
        assert plain == jsonrpc.decode(data) == value
        assert json.dumps(plain) == json.dumps(value)  # the same types too: no int became a float


@settings(max_examples=100, deadline=None)
@given(
    value=st.dictionaries(
        st.text(max_size=6),
        st.one_of(
            st.none(),
            st.booleans(),
            st.text(),
            st.integers(min_value=-(2**63), max_value=2**64 - 1),
            st.lists(
                st.one_of(
                    st.none(),
                    st.booleans(),
                    st.text(),
                    st.integers(min_value=-(2**63), max_value=2**63),
                )
            ),
        ),
    )
)
def test_decode_plain_takes_every_plain_object(value):
    assert jsonrpc.decode_plain(json.dumps(value).encode()) == value


@pytest.mark.parametrize(
    "data",
    [
        b'{"id": 123456789012345678901234567890}',  # orjson would round it to a float
        b'{"params": [-9223372036854775809]}',
        b'{"result": 1.5}',
        b'{"result": {"a": 1}}',
        b'{"params": [[1]]}',
        b"[1, 2]",
        b'{"a": "\xff"}',  # not UTF-8
        b'{"a": 1',
        b"",
    ],
)
def test_decode_plain_leaves_everything_else_to_decode(data):
    assert jsonrpc.decode_plain(data) is None


@pytest.mark.parametrize(
    "data, expected",
    [
        (b'{"jsonrpc": "2.0", "result": "x", "id": "c:1"}', "x"),
        (b'{"id": "c:1", "result": null, "jsonrpc": "2.0"}', None),
        (b'{"jsonrpc": "2.0", "result": 18446744073709551615, "id": "c:1"}', 18446744073709551615),
        (
            b'{"jsonrpc": "2.0", "result": 123456789012345678901234567890, "id": "c:1"}',
            jsonrpc.NOT_PLAIN,
        ),
        (b'{"jsonrpc": "2.0", "result": 1.5, "id": "c:1"}', jsonrpc.NOT_PLAIN),
        (b'{"jsonrpc": "2.0", "result": [1], "id": "c:1"}', jsonrpc.NOT_PLAIN),
        (b'{"jsonrpc": "2.0", "result": "x", "id": "c:2"}', jsonrpc.NOT_PLAIN),
        (b'{"jsonrpc": "2.0", "result": "x", "id": "c:1", "extra": [[[]]]}', jsonrpc.NOT_PLAIN),
        (
            b'{"jsonrpc": "2.0", "error": {"code": 1, "message": "no"}, "id": "c:1"}',
            jsonrpc.NOT_PLAIN,
        ),
        (b'{"jsonrpc": "1.0", "result": "x", "id": "c:1"}', jsonrpc.NOT_PLAIN),
        (b'{"jsonrpc": "2.0", "result": "x", "id": "c:1"', jsonrpc.NOT_PLAIN),
    ],
)
def test_plain_result_finds_only_a_plain_success_reply_to_the_id(data, expected):
    assert jsonrpc.plain_result(data, "c:1") == expected


@settings(max_examples=300, deadline=None)
@given(
    reply=st.fixed_dictionaries(
        {"jsonrpc": st.sampled_from(["2.0", "1.0"]), "id": st.sampled_from(["c:1", "c:2", 1])},
        optional={"result": _JSON, "error": st.just({"code": 1, "message": "no"}), "x": _JSON},
    )
)
def test_plain_result_gives_what_decode_and_parse_response_give_or_nothing(reply):
    data = json.dumps(reply).encode()
    found = jsonrpc.plain_result(data, "c:1")
    if found is not jsonrpc.NOT_PLAIN:
        response = jsonrpc.parse_response(jsonrpc.decode(data))
        assert response.id == "c:1" and response.error is None
        assert json.dumps(found) == json.dumps(response.result)  # the same value, the same types


_NAMES = st.sampled_from(["a", "b", "c", "d"])


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(_NAMES, unique=True, max_size=4),
    defaults=st.integers(min_value=0, max_value=4),
    params=st.one_of(
        st.none(),
        st.lists(st.integers(), max_size=5),
        st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(), max_size=5),
    ),
)
def test_counting_params_gives_what_signature_bind_gives(names, defaults, params):
    """The fast check (fastpath.Counted) agrees with Signature.bind, both ways."""
    parameters = [
        inspect.Parameter(
            name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=0 if i >= len(names) - defaults else inspect.Parameter.empty,
        )
        for i, name in enumerate(names)
    ]
    signature = inspect.Signature(parameters)
    try:
        if params is None:
            signature.bind()
        elif isinstance(params, list):
            signature.bind(*params)
        else:
            signature.bind(**params)
        binds = True
    except TypeError:
        binds = False
    assert fastpath.Counted.of(signature).fits(params) == binds


_PARAM = st.one_of(
    _SCALARS,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.none(), max_size=1),
)


@settings(max_examples=300, deadline=None)
@given(
    params=st.lists(_PARAM, max_size=3),
    request_id=st.one_of(
        st.text(max_size=4),
        st.integers(min_value=-(10**25), max_value=10**25),
        st.none(),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    extra=st.booleans(),
)
def test_the_dispatchers_quick_path_answers_as_the_general_path_does(params, request_id, extra):
    dispatcher = Dispatcher({"echo": lambda *args: list(args), "two": lambda a, b=0: [a, b]})
    for method in ("echo", "two", "missing"):
        message = {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}
        if extra:
            message["extra"] = [[1]]
        data = json.dumps(message).encode()
        general = dispatcher.handle_value(jsonrpc.decode(data))
        assert json.loads(dispatcher.handle(data)) == json.loads(jsonrpc.encode(general))


def test_dispatcher_answers_hostile_input_with_error_replies():
    dispatcher = Dispatcher(SPEC_HANDLERS)
    for data, code in [
        (b"[" * 100_000, -32700),
        (b"1" * 100_000, -32700),
        (b"\xff\xfe", -32700),
        (b'"just a string"', -32600),
        (b"null", -32600),
    ]:
        reply = json.loads(dispatcher.handle(data))
        assert reply["error"]["code"] == code and reply["id"] is None


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "message, reason",
    [
        ({"method": "a", "id": 1}, '"jsonrpc" must be exactly "2.0"'),
        ({"jsonrpc": "1.0", "method": "a", "id": 1}, '"jsonrpc" must be exactly "2.0"'),
        ({"jsonrpc": "2.0", "id": 1}, '"method" must be a string'),
        (
            {"jsonrpc": "2.0", "method": "a", "params": 3, "id": 1},
            '"params" must be an array or an object',
        ),
        (
            {"jsonrpc": "2.0", "method": "a", "params": None, "id": 1},
            '"params" must be an array or an object',
        ),
        ({"jsonrpc": "2.0", "method": "a", "id": [1]}, '"id" must be a string, a number or null'),
        ({"jsonrpc": "2.0", "method": "a", "id": True}, '"id" must be a string, a number or null'),
    ],
)
def test_parse_refuses_invalid_requests(message, reason):
    with pytest.raises(jsonrpc.InvalidRequest) as info:
        jsonrpc.parse(message)
    assert info.value.data == reason


def test_parse_tells_requests_from_notifications():
    assert jsonrpc.parse({"jsonrpc": "2.0", "method": "a", "id": None}) == Request("a", None, None)
    assert jsonrpc.parse({"jsonrpc": "2.0", "method": "a"}) == Notification("a")


def test_parse_bounds_batches():
    one = {"jsonrpc": "2.0", "method": "a", "id": 1}
    assert len(jsonrpc.parse([one] * 100)) == 100
    with pytest.raises(jsonrpc.InvalidRequest, match="101 requests is over the 100-request limit"):
        jsonrpc.parse([one] * 101)
    with pytest.raises(jsonrpc.InvalidRequest):
        jsonrpc.parse([one] * 3, max_batch=2)


def test_an_oversized_batch_gets_one_invalid_request_reply():
    batch = json.dumps(
        [{"jsonrpc": "2.0", "method": "sum", "params": [1], "id": i} for i in range(150)]
    )
    reply = json.loads(Dispatcher(SPEC_HANDLERS).handle(batch.encode()))
    assert reply["error"]["code"] == jsonrpc.INVALID_REQUEST and reply["id"] is None
    small = Dispatcher(SPEC_HANDLERS, max_batch=2)
    assert json.loads(small.handle(batch.encode()))["error"]["code"] == jsonrpc.INVALID_REQUEST


def test_parse_response():
    assert jsonrpc.parse_response({"jsonrpc": "2.0", "result": 19, "id": 1}).unwrap() == 19
    failed = jsonrpc.parse_response(
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": 1}
    )
    assert not failed.ok
    with pytest.raises(jsonrpc.RemoteError) as info:
        failed.unwrap()
    assert (info.value.code, info.value.message, info.value.data) == (
        -32601,
        "Method not found",
        None,
    )
    for bad in [
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "result": 1, "error": {}, "id": 1},
        {"result": 1, "id": 1},
        {"jsonrpc": "2.0", "error": {"code": "x"}, "id": 1},
        [1],
    ]:
        with pytest.raises(jsonrpc.InvalidResponse):
            jsonrpc.parse_response(bad)


def test_remote_error_reads_well():
    error = jsonrpc.RemoteError(
        1, "Application error", {"type": "KeyNotFound", "message": "no such key: 'x'"}
    )
    assert str(error) == "[1] Application error: KeyNotFound: no such key: 'x'"
    assert (
        repr(jsonrpc.RemoteError(-32601, "Method not found"))
        == "RemoteError(-32601, 'Method not found', None)"
    )
    assert isinstance(error, jsonrpc.RPCError)


# --------------------------------------------------------------------------- dispatching


def call(dispatcher: Dispatcher, method: str, params=None, id=1) -> dict:
    return json.loads(dispatcher.handle(jsonrpc.encode(jsonrpc.request(method, params, id=id))))


class Calculator:
    """An object whose public methods become RPC methods."""

    def __init__(self):
        self.reads = 0
        self.helper = Calculator.Helper

    def add(self, a, b=0):
        return a + b

    def _secret(self):
        return "hidden"

    @property
    def total(self):
        self.reads += 1
        return 42

    @staticmethod
    def double(x):
        return 2 * x

    class Helper:
        pass


def test_an_object_offers_its_public_methods_only():
    calc = Calculator()
    dispatcher = Dispatcher(calc)
    assert dispatcher.names == ["add", "double"]
    assert calc.reads == 0  # the property was not read to find out
    assert call(dispatcher, "add", [2, 3])["result"] == 5
    assert call(dispatcher, "double", {"x": 4})["result"] == 8
    for name in [
        "_secret",
        "total",
        "Helper",
        "helper",
        "__init__",
        "__class__",
        "add.__globals__",
    ]:
        assert call(dispatcher, name)["error"]["code"] == jsonrpc.METHOD_NOT_FOUND, name


def test_method_names_are_looked_up_exactly_never_walked():
    dispatcher = Dispatcher({"foo.get": lambda: "dotted", "foo": lambda: "plain"})
    assert call(dispatcher, "foo.get")["result"] == "dotted"
    assert call(dispatcher, "foo.__class__")["error"]["code"] == jsonrpc.METHOD_NOT_FOUND


def test_registration_checks_handlers():
    with pytest.raises(TypeError):
        Dispatcher({"a": 3})
    with pytest.raises(TypeError):
        Dispatcher({1: len})
    with pytest.raises(ValueError, match="reserved"):
        Dispatcher({"rpc.discover": lambda: None})


@pytest.mark.parametrize(
    "params, expected",
    [
        ([42, 23], 19),
        ({"minuend": 42, "subtrahend": 23}, 19),
        ({"subtrahend": 23, "minuend": 42}, 19),
    ],
)
def test_params_by_position_or_by_name(params, expected):
    assert call(Dispatcher({"subtract": subtract}), "subtract", params)["result"] == expected


@pytest.mark.parametrize(
    "params", [[1], [1, 2, 3], {"minuend": 1}, {"minuend": 1, "subtrahend": 2, "extra": 3}, None]
)
def test_params_that_do_not_bind_are_invalid_params(params):
    reply = call(Dispatcher({"subtract": subtract}), "subtract", params)
    assert reply["error"]["code"] == jsonrpc.INVALID_PARAMS
    assert reply["error"]["message"] == "Invalid params"
    assert "argument" in reply["error"]["data"]


def test_params_are_checked_against_every_kind_of_signature():
    def kinds(a, /, b, *rest, c, d=4, **more):
        return [a, b, list(rest), c, d, more]

    dispatcher = Dispatcher({"kinds": kinds, "opt": lambda a=1: a})
    assert (
        call(dispatcher, "kinds", [1, 2, 3])["error"]["code"] == jsonrpc.INVALID_PARAMS
    )  # c is keyword-only
    assert (
        call(dispatcher, "kinds", {"a": 1, "b": 2, "c": 3})["error"]["code"]
        == jsonrpc.INVALID_PARAMS
    )  # a is positional-only
    assert call(dispatcher, "opt")["result"] == 1
    assert call(dispatcher, "opt", [5])["result"] == 5
    assert call(dispatcher, "opt", {"a": 6})["result"] == 6
    assert call(dispatcher, "opt", {"b": 6})["error"]["code"] == jsonrpc.INVALID_PARAMS


def test_a_positional_only_parameter_cannot_be_named_on_any_python():
    """JSON-RPC names params by the method's parameter names; a positional-only one has none a
    caller may use. Signature.bind agreed up to Python 3.12; from 3.13 (CPython gh-87106, and its
    regression gh-130164 in 3.13.0-3.13.2) it puts such a name into **kwargs instead."""

    def kinds(a, /, b, *rest, c, d=4, **more):
        return [a, b, list(rest), c, d, more]

    def defaulted(a=1, /, **more):
        return [a, more]

    dispatcher = Dispatcher({"kinds": kinds, "defaulted": defaulted})
    for method, params in [("kinds", {"a": 1, "b": 2, "c": 3}), ("defaulted", {"a": 5})]:
        error = call(dispatcher, method, params)["error"]
        assert error["code"] == jsonrpc.INVALID_PARAMS
        assert "'a': positional-only" in error["data"]
    assert call(dispatcher, "kinds", {"b": 2, "c": 3})["error"]["code"] == jsonrpc.INVALID_PARAMS
    assert call(dispatcher, "defaulted", {"z": 5})["result"] == [1, {"z": 5}]
    assert call(dispatcher, "defaulted", [5])["result"] == [5, {}]


def test_a_type_error_inside_the_handler_is_an_application_error_not_invalid_params():
    def broken(x):
        return len(x)  # TypeError for an int, raised inside the handler

    reply = call(Dispatcher({"broken": broken}), "broken", [5])
    assert reply["error"]["code"] == jsonrpc.APPLICATION_ERROR
    assert reply["error"]["data"]["type"] == "TypeError"


def test_a_handler_exception_becomes_an_application_error_with_its_type_and_message():
    def fail():
        raise KeyError("nope")

    reply = call(Dispatcher({"fail": fail}), "fail", id="x")
    assert reply == {
        "jsonrpc": "2.0",
        "id": "x",
        "error": {
            "code": 1,
            "message": "Application error",
            "data": {"type": "KeyError", "message": "'nope'"},
        },
    }
    plain = Dispatcher({"fail": fail}).handle(
        b'{"jsonrpc":"2.0","method":"fail","params":[],"id":7}'
    )
    assert jsonrpc.decode(plain)["error"]["code"] == 1  # the fast path says the same


def test_only_the_protocol_and_the_server_use_the_reserved_codes():
    reserved = [jsonrpc.PARSE_ERROR, jsonrpc.INVALID_REQUEST, jsonrpc.METHOD_NOT_FOUND]
    reserved += [jsonrpc.INVALID_PARAMS, jsonrpc.INTERNAL_ERROR, jsonrpc.SERVER_ERROR, -32099]
    assert all(jsonrpc.is_reserved(code) for code in reserved + [-32768])
    assert not any(jsonrpc.is_reserved(code) for code in [jsonrpc.APPLICATION_ERROR, -32769, -1])
    assert jsonrpc.RPCError(-32050).message == "Server error"
    assert jsonrpc.RPCError(4001).message == "Application error"


def test_a_handler_may_choose_its_error():
    def refuse(amount):
        raise jsonrpc.RPCError(4001, "Insufficient funds", {"amount": amount})

    def picky(x):
        raise jsonrpc.InvalidParams("x must be positive")

    dispatcher = Dispatcher({"refuse": refuse, "picky": picky})
    assert call(dispatcher, "refuse", [3])["error"] == {
        "code": 4001,
        "message": "Insufficient funds",
        "data": {"amount": 3},
    }
    assert call(dispatcher, "picky", [-1])["error"] == {
        "code": -32602,
        "message": "Invalid params",
        "data": "x must be positive",
    }


def test_a_result_that_is_not_json_is_an_internal_error():
    dispatcher = Dispatcher({"gen": lambda: (i for i in range(3)), "ok": lambda: 1})
    reply = call(dispatcher, "gen")
    assert reply["error"]["code"] == jsonrpc.INTERNAL_ERROR and reply["id"] == 1
    batch = jsonrpc.encode([jsonrpc.request("ok", id=1), jsonrpc.request("gen", id=2)])
    replies = json.loads(dispatcher.handle(batch))
    assert replies[0] == {"jsonrpc": "2.0", "result": 1, "id": 1}
    assert replies[1]["error"]["code"] == jsonrpc.INTERNAL_ERROR and replies[1]["id"] == 2


def test_a_reply_over_the_size_limit_becomes_an_internal_error():
    dispatcher = Dispatcher({"big": lambda: "x" * 1000}, max_reply_size=200)
    reply = call(dispatcher, "big", id=9)
    assert reply["error"]["code"] == jsonrpc.INTERNAL_ERROR and reply["id"] == 9
    assert "over the 200-byte limit" in reply["error"]["data"]


def test_notifications_run_but_get_no_reply_even_when_they_fail():
    seen = []

    def record(x):
        seen.append(x)
        raise RuntimeError("ignored")

    dispatcher = Dispatcher({"record": record})
    assert dispatcher.handle(jsonrpc.encode(jsonrpc.notification("record", [1]))) is None
    assert dispatcher.handle(jsonrpc.encode(jsonrpc.notification("missing"))) is None
    assert seen == [1]


def test_once_hook_runs_each_request_through_it():
    runs = []

    def once(request, run):
        runs.append(request.id)
        return run()

    dispatcher = Dispatcher({"sum": lambda *n: sum(n)})
    batch = jsonrpc.encode(
        [
            jsonrpc.request("sum", [1, 2], id="a"),
            jsonrpc.notification("sum", [1]),
            jsonrpc.request("sum", [3], id=None),
        ]
    )
    replies = json.loads(dispatcher.handle(batch, once=once))
    assert [r["result"] for r in replies] == [3, 3]
    assert runs == ["a"]  # notifications and null ids have nothing to de-duplicate by


def test_handle_value_takes_decoded_json():
    dispatcher = Dispatcher({"sum": lambda *n: sum(n)})
    assert dispatcher.handle_value(
        {"jsonrpc": "2.0", "method": "sum", "params": [1, 2], "id": 1}
    ) == {"jsonrpc": "2.0", "result": 3, "id": 1}
    assert repr(dispatcher) == "<Dispatcher of sum>"
