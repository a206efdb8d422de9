"""Schema evolution across Thrift versions (rpclab.adapters.evolution, notebook 12's exercise)
and the byte key of a Thrift message (rpclab.adapters.thrift_dump)."""

from __future__ import annotations

import pytest
from thriftpy2.thrift import TApplicationException

from rpclab.adapters import evolution, thrift, thrift_dump
from rpclab.adapters.thrift_wire import MalformedMessage
from rpclab.kv import KVStore


@pytest.fixture
def server():
    store = KVStore()
    handle = thrift.serve(store, name="kv-thrift-evolution")
    yield handle, store
    handle.stop()


def test_an_old_client_calls_the_new_server_and_gets_the_defaults(server):
    handle, store = server
    old = evolution.load(evolution.KV_V1, "kv_v1")
    with evolution.connect(old.KV, handle.address) as client:
        assert [client.increment("visits"), client.increment("visits")] == [1, 2]
        client.put("greeting", "hello")
        assert client.get("greeting") == "hello"
        # The new server answers with field 1 (not_found), which version 1 does not know:
        # the old client skips it and finds no result at all.
        with pytest.raises(TApplicationException) as caught:
            client.get("no-such-key")
        assert caught.value.type == TApplicationException.MISSING_RESULT
        assert client.get("greeting") == "hello"  # the connection is still in step
    assert store.get("visits") == "2"


RIGHT = "struct Entry { 1: string key, 2: string text, 3: i64 version }"


@pytest.mark.parametrize(
    "idl",
    [
        RIGHT,
        "struct Entry {\n 1: string key,\n 2: string text,\n 7: optional i64 version = 0,\n}",
    ],
)
def test_the_evolution_check_accepts_a_compatible_version_2(idl):
    note = evolution.check_entry_v2(idl)
    assert "both versions read each other's bytes" in note


def test_the_evolution_check_says_what_the_new_program_reads_from_an_old_entry():
    with_default = "struct Entry { 1: string key, 2: string text, 3: optional i64 version = 0 }"
    assert "reads version = 0 from an old program's entry." in evolution.check_entry_v2(
        with_default
    )
    without = evolution.check_entry_v2(RIGHT)
    assert "reads version = None from an old program's entry (not set: `= 0`" in without


def test_carry_shows_a_renumbered_field_lost_between_versions():
    renumbered = "struct Entry { 1: string key, 2: i64 version, 3: string text }"
    read = evolution.carry(evolution.ENTRY_V1, renumbered, key="colour", value="blue")
    assert (read.key, read.version, read.text) == ("colour", None, None)
    back = evolution.carry(RIGHT, evolution.ENTRY_V1, key="colour", text="red", version=7)
    assert (back.key, back.value) == ("colour", "red")


@pytest.mark.parametrize(
    ("idl", "says"),
    [
        # the typical mistake: numbering fields in the new order
        (
            "struct Entry { 1: string key, 3: string text, 2: i64 version }",
            "your IDL gives number 2 to `version` (type i64). A rename keeps the number",
        ),
        (
            "struct Entry { 1: string key, 3: string text, 4: i64 version }",
            "your IDL gives number 2 to no field. A rename keeps the number",
        ),
        ("struct Entry { 1: string key, 2: string text, 3: required i64 version }", "required"),
        ("struct Entry { 4: string key, 2: string text, 3: i64 version }", "Keep `key` at 1"),
        ("struct Entry { 1: string key, 2: string value, 3: i64 version }", "named `text`"),
        ("struct Entry { 1: string key, 2: string text }", "named `version`"),
        ("struct Entry { 1: string key, 2: string text, 3: string version }", "an i64"),
        ("struct Entry { 1: string key, 2: i64 text, 3: i64 version }", "stay a string"),
        ("struct Thing { 1: string key }", "struct Entry"),
        (
            "struct Entry { 1 string key }",
            "could not read your IDL: Grammar error 'string' at line 1$",
        ),
        ("struct Entry { 1: string key,", "ended before the struct did"),
        (None, "text (a str)"),
    ],
)
def test_the_evolution_check_names_what_breaks_old_programs(idl, says):
    with pytest.raises(AssertionError) as caught:
        evolution.check_entry_v2(idl)
    said = str(caught.value)
    assert said.endswith(says[:-1]) if says.endswith("$") else says in said, said
    assert "'None'" not in said  # nothing internal leaks into the verdict


def test_the_byte_key_accounts_for_every_byte_of_a_call_and_its_reply():
    kv = thrift.kv_thrift
    call = b"".join(
        [
            b"\x80\x01\x00\x01",  # version 1, CALL
            b"\x00\x00\x00\x09increment",
            b"\x00\x00\x00\x07",  # sequence id
            b"\x0b\x00\x01\x00\x00\x00\x06visits",  # field 1, a string
            b"\x0a\x00\x02" + (5).to_bytes(8, "big"),  # field 2, an i64
            b"\x00",  # STOP
        ]
    )
    parts = thrift_dump.annotate(call, kv.KV)
    assert b"".join(part.data for part in parts) == call
    assert [part.offset for part in parts] == [0, 4, 8, 17, 21, 24, 28, 34, 37, 45]
    meanings = [part.meaning for part in parts]
    assert meanings[0] == "version 1, message type 1 (CALL)"
    assert meanings[3] == "sequence id 7"
    assert meanings[4] == "field 1 (key): type 11 (STRING)"
    assert meanings[7] == "field 2 (amount): type 10 (I64)" and meanings[8] == "5"
    reply = b"\x80\x01\x00\x02\x00\x00\x00\x04keys\x00\x00\x00\x01\x0f\x00\x00\x0b\x00\x00\x00\x01"
    reply += b"\x00\x00\x00\x01a\x00"
    text = thrift_dump.render(reply, kv.KV)
    assert "field 0 (success): type 15 (LIST)" in text and "1 elements of type 11 (STRING)" in text


def test_the_byte_key_refuses_what_is_not_a_thrift_message():
    with pytest.raises(MalformedMessage):
        thrift_dump.annotate(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(MalformedMessage):  # a string longer than the message
        thrift_dump.annotate(b"\x80\x01\x00\x01\x00\x00\x00\x03get\x00\x00\x00\x01\x0b\x00\x01\x7f")
