"""The running example: a small, thread-safe key-value store.

Used by every notebook, 01-15: local in 01, remote from 04 on.

Notebook 01 calls it as a plain local object; every later transport (socket
RPC, gRPC, XML-RPC, Thrift, REST) serves this same class. Values are strings,
as in Redis; ``increment`` reads the value as a decimal integer. ``increment``
is deliberately not idempotent: calling it twice is not calling it once, which
is how the series shows why retries need at-most-once semantics.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from rpclab import checks

__all__ = ["KVStore", "KeyNotFound", "Change", "MAX_KEY_LENGTH", "MAX_VALUE_LENGTH"]

MAX_KEY_LENGTH = 256
MAX_VALUE_LENGTH = 64 * 1024
HISTORY = 1024  # changes kept for watchers that fall behind
MAX_WAIT = 60.0  # seconds changes_since waits, at most, for a change


class KeyNotFound(KeyError):
    """The key is not in the store."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no such key: {self.key!r}"


@dataclass(frozen=True)
class Change:
    """One change to the store, numbered in the order it happened."""

    version: int
    key: str
    value: str | None  # None: the key was deleted
    time: float


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, not {type(key).__name__}")
    if not key:
        raise ValueError("key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"key is {len(key)} characters; the limit is {MAX_KEY_LENGTH}")
    if not key.isascii():
        _check_unicode("key", key)
    return key


def _check_value(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"value must be a str, not {type(value).__name__}")
    if len(value) > MAX_VALUE_LENGTH:
        raise ValueError(f"value is {len(value)} characters; the limit is {MAX_VALUE_LENGTH}")
    if not value.isascii():
        _check_unicode("value", value)
    return value


def _check_unicode(what: str, text: str) -> None:
    """Refuse a str that is not Unicode text: one holding a lone surrogate (half of a UTF-16 pair),
    which Python allows but no transport can send (each needs UTF-8), so that once stored it
    would break every call that returns it (keys(), for everyone)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} holds a lone surrogate {text[exc.start]!r} at index {exc.start}: "
            "not Unicode text, so no client could read it back"
        ) from None


class KVStore:
    """A dictionary of str -> str with get, put, delete, increment and watch.

    ``rpc_methods`` names the calls a remote client may make, each of which answers at once:
    a server that serves the store's public methods serves only these (rpclab.byhand.jsonrpc's
    ``methods_of``). ``changes_since`` and ``watch`` wait for changes: gRPC's Watch streams
    them; a remote caller of a plain call could hold a thread with them.
    """

    rpc_methods = ("get", "put", "delete", "increment", "keys")

    def __init__(self) -> None:
        self._data: dict[str, str] = {}
        self._history: deque[Change] = deque(maxlen=HISTORY)
        self._version = 0
        self._changed = threading.Condition()

    # -- the four calls -----------------------------------------------------

    def get(self, key: str) -> str:
        """The value stored at ``key``; KeyNotFound if there is none."""
        key = _check_key(key)
        with self._changed:
            try:
                return self._data[key]
            except KeyError:
                raise KeyNotFound(key) from None

    def put(self, key: str, value: str) -> None:
        """Store ``value`` at ``key``, replacing what was there."""
        key, value = _check_key(key), _check_value(value)
        with self._changed:
            self._data[key] = value
            self._record(key, value)

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        key = _check_key(key)
        with self._changed:
            if key not in self._data:
                return False
            del self._data[key]
            self._record(key, None)
            return True

    def increment(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` to the integer at ``key`` (a missing key counts as 0); return the new
        value."""
        key = _check_key(key)
        checks.integer("amount", amount)
        with self._changed:
            current = self._data.get(key, "0")
            try:
                number = int(current)
            except ValueError:
                raise ValueError(f"the value at {key!r} is {current!r}, not an integer") from None
            number += amount
            self._data[key] = str(number)
            self._record(key, str(number))
            return number

    # -- looking around -----------------------------------------------------

    def keys(self) -> list[str]:
        """Every key, sorted."""
        with self._changed:
            return sorted(self._data)

    def __len__(self) -> int:
        with self._changed:
            return len(self._data)

    def __contains__(self, key: object) -> bool:
        with self._changed:
            return key in self._data

    @property
    def version(self) -> int:
        """How many changes the store has seen."""
        with self._changed:
            return self._version

    # -- watching -------------------------------------------------------------

    def changes_since(self, version: int, timeout: float | None = None) -> list[Change]:
        """Changes numbered above ``version``, waiting up to ``timeout`` seconds for one (None,
        or more than MAX_WAIT: MAX_WAIT, so that no wait is forever).

        Returns an empty list on timeout. A watcher that fell more than
        HISTORY changes behind gets only the ones still kept.
        """
        checks.integer("version", version)
        wait = (
            MAX_WAIT
            if timeout is None
            else min(checks.seconds("timeout", timeout, low=0), MAX_WAIT)
        )
        with self._changed:
            self._changed.wait_for(lambda: self._version > version, wait)
            return [c for c in self._history if c.version > version]

    def watch(
        self, prefix: str = "", *, timeout: float = 0.5, stop: threading.Event | None = None
    ) -> Iterator[Change]:
        """Yield changes to keys starting with ``prefix`` as they happen, until ``stop`` is set."""
        seen = self.version
        while stop is None or not stop.is_set():
            for change in self.changes_since(seen, timeout):
                seen = change.version
                if change.key.startswith(prefix):
                    yield change

    def _record(self, key: str, value: str | None) -> None:
        self._version += 1
        self._history.append(Change(self._version, key, value, time.time()))
        self._changed.notify_all()

    def __repr__(self) -> str:
        return f"<KVStore with {len(self)} keys>"
