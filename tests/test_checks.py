"""rpclab.checks: one way to check arguments, with errors that name the argument, the rule and the
value."""

from __future__ import annotations

import math

import pytest

from rpclab import checks


@pytest.mark.parametrize(
    "check, error, message",
    [
        (
            lambda: checks.integer("workers", -1, low=0),
            ValueError,
            "workers must be an int >= 0, not -1",
        ),
        (lambda: checks.integer("n", 0, low=1), ValueError, "n must be a positive int, not 0"),
        (
            lambda: checks.integer("n", 10_001, low=0, high=10_000),
            ValueError,
            "n must be an int between 0 and 10,000, not 10001",
        ),
        (
            lambda: checks.integer("retries", True, low=0),
            TypeError,
            "retries must be an int >= 0, not True",
        ),
        (lambda: checks.integer("size", 2.5), TypeError, "size must be an int, not 2.5"),
        (
            lambda: checks.seconds("timeout", 0, above=0),
            ValueError,
            "timeout must be a positive number of seconds, not 0",
        ),
        (
            lambda: checks.seconds("timeout", "1", above=0, optional=True),
            TypeError,
            "timeout must be a positive number of seconds or None, not '1'",
        ),
        (
            lambda: checks.seconds("delay", 31, low=0, high=30),
            ValueError,
            "delay is in seconds and must be between 0 and 30, not 31",
        ),
        (
            lambda: checks.seconds("max_seconds", 61, above=0, high=60),
            ValueError,
            "max_seconds must be a number of seconds above 0 and at most 60, not 61",
        ),
        (
            lambda: checks.number("ratio", math.inf, low=0),
            ValueError,
            "ratio must be a finite number, not inf",
        ),
        (
            lambda: checks.probability("drop", 1.5),
            ValueError,
            "drop is a probability and must be between 0 and 1, not 1.5",
        ),
        (lambda: checks.probability("drop", None), TypeError, "drop must be a number"),
        (
            lambda: checks.function("on_frame", 3, "on_frame(direction, payload)"),
            TypeError,
            "on_frame must be callable as on_frame(direction, payload), not 3",
        ),
        (
            lambda: checks.one_of("mode", "packets", ("frames", "bytes")),
            ValueError,
            "mode must be one of 'frames', 'bytes', not 'packets'",
        ),
    ],
)
def test_an_error_names_the_argument_the_rule_and_the_value(check, error, message):
    with pytest.raises(error) as caught:
        check()
    assert str(caught.value) == message or str(caught.value).startswith(message)


def test_a_value_of_the_wrong_kind_is_both_a_type_error_and_a_value_error():
    with pytest.raises(checks.ArgumentTypeError) as caught:
        checks.integer("n", "3")
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)


def test_good_values_come_back_checked():
    assert checks.integer("n", 3, low=1) == 3
    assert checks.seconds("t", 2, above=0) == 2.0 and isinstance(checks.seconds("t", 2), float)
    assert checks.seconds("t", None, optional=True) is None
    assert checks.probability("p", 1) == 1.0
    assert (
        checks.function("f", print) is print and checks.function("f", None, optional=True) is None
    )
    assert checks.one_of("mode", "bytes", ("frames", "bytes")) == "bytes"


def test_a_huge_value_is_shown_cut_short():
    with pytest.raises(TypeError) as caught:
        checks.integer("amount", "x" * 1_000_000)
    assert len(str(caught.value)) < 100 and "..." in str(caught.value)
