"""The check behind notebook 03's exercise: a reader that is backward and forward compatible.

Version 2 of a user message is the JSON object ``{"id": int, "name": str, "email": str}``.
Version 1 had no ``email``; version 3 adds fields version 2 does not know. The learner writes
``read_user(data: bytes) -> dict`` for version 2, and :func:`check_read_user` raises
AssertionError, in plain words, unless it

* reads version-1 bytes, filling in ``email=""`` (*backward* compatibility: new code, old data),
* reads version-3 bytes, ignoring the fields it does not know (*forward* compatibility: old
  code, new data), returning exactly the three fields of version 2, and
* refuses a message without ``id`` or without ``name`` with ValueError (that one is broken,
  not old; ValueError is also what ``json.loads`` raises for bytes that are not JSON, so a
  caller catches one kind of error for every bad message, while a KeyError escaping from
  ``message["name"]`` looks like a bug in the reader).

Notebook 03 runs it through ``rpclab.exercises.check``; tests/test_marshalling_checks.py
proves it passes the notebook's solution and catches the usual wrong answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["VERSIONS", "check_read_user"]

VERSIONS = {
    1: {"id": 41, "name": "Ada"},
    2: {"id": 42, "name": "Grace", "email": "grace@example.org"},
    3: {
        "id": 43,
        "name": "Edsger",
        "email": "ewd@example.org",
        "phone": "+31 40",
        "pronouns": "he",
    },
}


def _shown(message: dict[str, Any]) -> str:
    return json.dumps(message)


def check_read_user(read_user: Callable[[bytes], dict[str, Any]]) -> str:
    """Right if ``read_user`` reads versions 1, 2 and 3 as version 2 and refuses a broken one."""
    expected = {
        1: {"id": 41, "name": "Ada", "email": ""},
        2: dict(VERSIONS[2]),
        3: {"id": 43, "name": "Edsger", "email": "ewd@example.org"},
    }
    for version in (2, 1, 3):
        message = VERSIONS[version]
        try:
            got = read_user(json.dumps(message).encode())
        except (KeyError, ValueError) as error:
            what = {
                1: "a version-1 message has no email: use the default '' (new code must read "
                "old data: backward compatibility)",
                2: "a version-2 message must read as it is",
                3: "a version-3 message has fields version 2 does not know: ignore them (old "
                "code must read new data: forward compatibility)",
            }[version]
            raise AssertionError(
                f"{_shown(message)} raised {type(error).__name__}: {error}. {what}"
            ) from None
        if not isinstance(got, dict):
            raise AssertionError(f"it returned {got!r}: return a dict")
        if got != expected[version]:
            hint = {
                1: "fill in the missing email with ''",
                2: "return the three fields as they are",
                3: "keep only id, name and email: a version-2 reader passes on only what it knows",
            }[version]
            raise AssertionError(
                f"version {version}, {_shown(message)}, came back as {got!r}, not "
                f"{expected[version]!r}: {hint}"
            )
    broken = [
        ({"id": 44, "email": "nobody@example.org"}, "name"),
        ({"name": "Nobody", "email": "nobody@example.org"}, "id"),
    ]
    for message, missing in broken:
        try:
            got = read_user(json.dumps(message).encode())
        except ValueError:
            continue
        except KeyError as error:
            raise AssertionError(
                f"{_shown(message)} has no {missing}, and a KeyError ({error}) escaped from "
                "your reader. Check for the required fields yourself and raise ValueError, "
                "saying which is missing: json.loads raises ValueError for bytes that are not "
                "JSON, so a caller catches one kind of error for every bad message"
            ) from None
        raise AssertionError(
            f"{_shown(message)} has no {missing}, and it returned {got!r}: a message without "
            "a required field is broken, not old; raise ValueError"
        )
    return "old messages get defaults, new fields are ignored, broken ones are refused"
