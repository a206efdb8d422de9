"""Notebook 03's exercise check (rpclab.byhand.marshalling_checks): the notebook's solution
passes, and the usual wrong answers are named."""

from __future__ import annotations

import json

import pytest

from rpclab import exercises
from rpclab.byhand.marshalling_checks import check_read_user


def read_user(data):  # the notebook's solution
    message = json.loads(data)
    missing = [field for field in ("id", "name") if field not in message]
    if missing:
        raise ValueError(f"not a user message: no {', '.join(missing)}")
    return {"id": message["id"], "name": message["name"], "email": message.get("email", "")}


def strict(data):  # every field of version 2, and nothing else
    message = json.loads(data)
    if set(message) != {"id", "name", "email"}:
        raise ValueError(f"unexpected fields: {sorted(message)}")
    return message


def no_default(data):
    message = json.loads(data)
    return {"id": message["id"], "name": message["name"], "email": message["email"]}


def passes_everything_on(data):
    message = json.loads(data)
    message.setdefault("email", "")
    return message


def no_required_fields(data):
    message = json.loads(data)
    return {"id": message.get("id"), "name": message.get("name"), "email": message.get("email", "")}


def lets_key_error_escape(data):  # message["name"] raises KeyError for a broken message
    message = json.loads(data)
    return {"id": message["id"], "name": message["name"], "email": message.get("email", "")}


def checks_only_the_name(data):
    message = json.loads(data)
    if "name" not in message:
        raise ValueError("no name")
    return {"id": message.get("id"), "name": message["name"], "email": message.get("email", "")}


def test_the_solution_is_right():
    verdict = exercises.check("read-user", lambda: check_read_user(read_user), show=False)
    assert verdict.ok, verdict


@pytest.mark.parametrize(
    "wrong, words",
    [
        (strict, "backward compatibility"),
        (no_default, "a version-1 message has no email"),
        (passes_everything_on, "keep only id, name and email"),
        (no_required_fields, "has no name, and it returned"),
        (lets_key_error_escape, "a KeyError ('name') escaped from your reader"),
        (checks_only_the_name, "has no id, and it returned"),
    ],
)
def test_usual_mistakes_are_named(wrong, words):
    verdict = exercises.check("read-user", lambda: check_read_user(wrong), show=False)
    assert verdict.status == "wrong" and words in verdict.message, verdict
