"""One way to check the arguments people pass: a clear error that names the argument, the rule
and the value given.

Used across the library wherever a learner's number becomes a size, a count, a timeout or a
probability (every notebook reaches it through some constructor). Each function returns the
value, checked (numbers as floats), or raises::

    self.timeout = checks.seconds("timeout", timeout, above=0)
    # timeout must be a positive number of seconds, not -1
    self.workers = checks.integer("workers", workers, low=0)
    # workers must be an int >= 0, not 2.5
    checks.probability("drop", 1.5)
    # drop is a probability and must be between 0 and 1, not 1.5

A value out of range raises ValueError. A value of the wrong kind raises ArgumentTypeError,
which is a TypeError (Python's own habit for the wrong kind) and a ValueError too, so a caller
that catches either finds it. ``True`` is never a number here, although Python's bool is an int:
``retries=True`` is a mistake, not 1.

(A library could do this -- pydantic's ``validate_call`` reads ranges from annotations -- but its
errors are several lines long and speak of pydantic's own types, and a learner who opens a
module should see the rule next to the argument. These few functions say it in one line.)
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Collection
from typing import Any, TypeVar

__all__ = [
    "ArgumentTypeError",
    "integer",
    "number",
    "seconds",
    "probability",
    "function",
    "one_of",
]

T = TypeVar("T")

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 40


def shown(value: object) -> str:
    """``repr(value)``, cut short: a value that came off the network may be megabytes long."""
    return _short.repr(value)


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong kind (a str where a number belongs, say)."""


def integer(name: str, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an int (not a bool) from ``low`` to ``high`` (each included, if given)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(f"{name} must be {_int_rule(low, high)}, not {shown(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_int_rule(low, high)}, not {shown(value)}")
    return value


def number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    unit: str = "",
) -> float:
    """``value`` as a float, if it is a finite int or float (not a bool) in range.

    ``low`` and ``high`` are included; ``above`` is a bound the value must exceed. ``unit``
    ("seconds", "bytes") makes the message say what the number counts.
    """
    rule = _number_rule(low, high, above, unit)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be {rule}, not {shown(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {shown(value)}")
    if (
        (low is not None and value < low)
        or (high is not None and value > high)
        or (above is not None and value <= above)
    ):
        if unit and low is not None and high is not None:
            rule = f"between {low:g} and {high:g}"
            raise ValueError(f"{name} is in {unit} and must be {rule}, not {shown(value)}")
        raise ValueError(f"{name} must be {rule}, not {shown(value)}")
    return float(value)


def seconds(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    optional: bool = False,
) -> float | None:
    """A duration: ``number(..., unit="seconds")``; with ``optional``, None is allowed too."""
    if optional and value is None:
        return None
    if optional and (isinstance(value, bool) or not isinstance(value, (int, float))):
        rule = _number_rule(low, high, above, "seconds")
        raise ArgumentTypeError(f"{name} must be {rule} or None, not {shown(value)}")
    return number(name, value, low=low, high=high, above=above, unit="seconds")


def probability(name: str, value: object) -> float:
    """``value`` as a float, if it is a number from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a number (a probability), not {shown(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {shown(value)}")
    if not 0 <= value <= 1:
        raise ValueError(f"{name} is a probability and must be between 0 and 1, not {shown(value)}")
    return float(value)


def function(name: str, value: T, usage: str = "", *, optional: bool = False) -> T:
    """``value`` if it is callable; ``usage`` shows how it is called: ``"on_frame(direction,
    payload)"``. With ``optional``, None is allowed too."""
    if (optional and value is None) or callable(value):
        return value
    how = f" as {usage}" if usage else ""
    raise TypeError(
        f"{name} must be callable{how}{', or None' if optional else ''}, not {shown(value)}"
    )


def one_of(name: str, value: T, choices: Collection[Any]) -> T:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}, not {shown(value)}")
    return value


def _int_rule(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"an int between {low:,} and {high:,}"
    if low == 1:
        return "a positive int"
    if low is not None:
        return f"an int >= {low:,}"
    if high is not None:
        return f"an int <= {high:,}"
    return "an int"


def _number_rule(low: float | None, high: float | None, above: float | None, unit: str) -> str:
    of_unit = f" of {unit}" if unit else ""
    if low is not None and high is not None:
        return f"a number{of_unit} between {low:g} and {high:g}"
    if above == 0 and high is None:
        return f"a positive number{of_unit}"
    bounds = [
        f"{word} {bound:g}"
        for word, bound in (("above", above), (">=", low), ("at most", high))
        if bound is not None
    ]
    return " ".join([f"a number{of_unit}", " and ".join(bounds)]).rstrip()
