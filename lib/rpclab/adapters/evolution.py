"""Schema evolution, tried rather than told: an old program's Thrift bytes read by a new one, and
back, and old clients calling the store's server.

Used in notebook 12 (schema evolution across the stacks, and its exercise).

Thrift, like protobuf, puts a field's *number* on the wire, never its name; a program skips a
field whose number it does not know, and gives a missing optional field its default. So::

    old = evolution.load(KV_V1, "kv_v1")             # version 1 of the service, from IDL text
    with evolution.connect(old.KV, server.address) as client:
        client.increment("visits")                    # sends no `amount`: the server adds 1

:func:`carry` writes an Entry with one version of the IDL and reads the bytes with another
(thriftpy2's binary protocol, the bytes a client and a server would exchange)::

    carry(ENTRY_V1, "struct Entry { 1: string key, 2: i64 version, 3: string text }",
          key="colour", value="blue")
    # Entry(key='colour', version=None, text=None): field 2 came as a string, and was skipped

:func:`check_entry_v2` is the exercise's check: it carries an Entry from :data:`ENTRY_V1` to the
learner's version 2 and back, and says in plain words what went wrong.
"""

from __future__ import annotations

import io
import itertools
import re
from types import ModuleType
from typing import Any

import thriftpy2
from thriftpy2.protocol import TBinaryProtocolFactory
from thriftpy2.rpc import make_client
from thriftpy2.thrift import TClient, TType
from thriftpy2.transport import TFramedTransportFactory
from thriftpy2.utils import deserialize, serialize

from rpclab import checks

__all__ = ["ENTRY_V1", "KV_V1", "load", "connect", "carry", "check_entry_v2"]

# Version 1 of the store's service: no `amount` (increment always added one), no `keys`,
# and `get` declared no exception.
KV_V1 = """
service KV {
  string get(1: string key),
  void put(1: string key, 2: string value),
  i64 increment(1: string key),
}
"""

# The exercise's starting point: an entry as version 1 of some program writes it.
ENTRY_V1 = """
struct Entry {
  1: string key,
  2: string value,
}
"""

_modules = itertools.count(1)
_PROTOCOL = TBinaryProtocolFactory()
_TYPE_NAMES = {  # as the IDL spells them
    TType.BOOL: "bool",
    TType.BYTE: "byte",
    TType.I16: "i16",
    TType.I32: "i32",
    TType.I64: "i64",
    TType.DOUBLE: "double",
    TType.STRING: "string",
    TType.STRUCT: "a struct",
    TType.MAP: "map",
    TType.SET: "set",
    TType.LIST: "list",
}


def load(idl: str, name: str = "schema") -> ModuleType:
    """The thriftpy2 module for IDL text (its structs, services and exceptions as attributes)."""
    if not isinstance(idl, str):
        raise TypeError(f"idl must be IDL text (a str), not {type(idl).__name__}")
    # thriftpy2 wants a module name ending in _thrift; a fresh one each time, so two versions
    # of a schema live side by side.
    return thriftpy2.load_fp(io.StringIO(idl), module_name=f"{name}_{next(_modules)}_thrift")


class _Client(TClient):
    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect(service: Any, address: tuple[str, int], *, timeout: float = 5.0) -> _Client:
    """A client for ``service`` (from :func:`load`) to a binary, framed Thrift server."""
    checks.seconds("timeout", timeout, above=0)
    host, port = address
    client = make_client(
        service,
        host,
        port,
        trans_factory=TFramedTransportFactory(),
        timeout=timeout * 1000,
    )
    client.__class__ = _Client  # the same client, usable in a with block
    return client


def carry(writer: str | ModuleType, reader: str | ModuleType, **values: Any) -> Any:
    """An Entry with ``values``, written by the ``writer`` version of the IDL (text, or a module
    from :func:`load`) and read back by the ``reader`` version: what the reader makes of it."""
    writer, reader = (load(v, "entry") if isinstance(v, str) else v for v in (writer, reader))
    sent = serialize(writer.Entry(**values), _PROTOCOL)
    return deserialize(reader.Entry(), sent, _PROTOCOL)


# --------------------------------------------------------------------------- the exercise


def _fields(struct: type) -> dict[str, tuple[int, int, bool]]:
    """name -> (field id, type, required) for a thriftpy2 struct class."""
    return {
        spec[1]: (field_id, spec[0], bool(spec[-1]))
        for field_id, spec in struct.thrift_spec.items()
    }


def _expect(condition: object, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def check_entry_v2(idl: object) -> str:
    """The exercise's test: ``idl`` is version 2 of :data:`ENTRY_V1` with ``value`` renamed
    ``text`` and a new i64 ``version``, and programs of either version read each other's bytes.

    Raises AssertionError with a plain message when it is not; returns a short note when it is.
    """
    _expect(isinstance(idl, str), f"the IDL should be text (a str), not {type(idl).__name__}")
    try:
        new = load(idl, "entry_v2")
    except Exception as exc:  # thriftpy2's parser says what it could not read
        raise AssertionError(f"Thrift could not read your IDL: {_parser_said(exc)}") from None
    _expect(hasattr(new, "Entry"), "your IDL should declare `struct Entry { ... }`")
    old = load(ENTRY_V1, "entry_v1")
    fields = _fields(new.Entry)
    for name, ttype, kind in (("key", TType.STRING, "string"), ("text", TType.STRING, "string")):
        _expect(name in fields, f"Entry version 2 needs a field named `{name}`")
        _expect(fields[name][1] == ttype, f"`{name}` should stay a {kind}")
    _expect("version" in fields, "Entry version 2 needs a new field named `version`")
    _expect(fields["version"][1] == TType.I64, "`version` should be an i64")
    _expect("value" not in fields, "`value` is renamed `text`: version 2 has no field `value`")
    _expect(
        not fields["version"][2],
        "`version` is required, but a version-1 program never sends it: every message from an "
        "old program would be refused. Leave it optional (no `required`).",
    )

    read_by_new = carry(old, new, key="colour", value="blue")
    _expect(
        read_by_new.key == "colour",
        "a version-1 program sends the key as field 1; your version 2 lost it. Keep `key` at 1.",
    )
    _expect(
        read_by_new.text == "blue",
        "a version-1 program sends its value as field 2, and your version 2 read no `text` "
        f"from it: {_number_2(fields)}. A rename keeps the number: the name never travels.",
    )

    read_by_old = carry(new, old, key="colour", text="red", version=7)
    _expect(
        read_by_old.value == "red",
        "a version-1 program reading your version 2's bytes found no value in field 2.",
    )
    _expect(
        fields["version"][0] not in (1, 2),
        "`version` reuses a number version 1 gives to another field: give it a new one.",
    )
    number, version = fields["version"][0], read_by_new.version
    unset = " (not set: `= 0` after the name would give it a default)" if version is None else ""
    return (
        f"programs of both versions read each other's bytes. A version-1 program skips field "
        f"{number} (`version`); yours reads version = {version!r} from an old program's "
        f"entry{unset}."
    )


def _number_2(fields: dict[str, tuple[int, int, bool]]) -> str:
    for name, (number, ttype, _) in fields.items():
        if number == 2:
            return f"your IDL gives number 2 to `{name}` (type {_TYPE_NAMES.get(ttype, ttype)})"
    return "your IDL gives number 2 to no field"


def _parser_said(exc: Exception) -> str:
    """thriftpy2's parser message, without the file name it does not have ("of the file 'None'")."""
    said = re.sub(r" of the file '[^']*'", "", str(exc))
    if said.startswith("Grammar error at EOF"):
        return "the text ended before the struct did (is a `}` missing?)"
    return said
