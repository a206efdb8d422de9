"""Exercises: the learner writes the code, and a check says right or wrong in plain words.

Used by every notebook with an exercise (02-15); tests/test_exercises.py runs them all.

An exercise is three cells of a notebook, tied together by cell tags (``metadata.tags``):

* ``exercise:<name>`` -- a code cell the learner edits. As the notebook ships, the part to
  write raises :class:`NotDone`::

      def recv_exactly(sock, n, deadline):
          raise NotDone("read n bytes, giving up at the deadline")   # your code here

* ``check:<name>`` -- a code cell that runs the check and prints the verdict::

      exercises.check("recv_exactly", lambda: check_recv_exactly(recv_exactly))

  The test passed to :func:`check` calls the learner's code and uses :func:`expect` (or
  ``assert``) to say what is wrong, in words a learner understands. :func:`check` never raises:
  a blank exercise prints ``Not done yet``, so the notebook runs top to bottom under nbval.

* ``solution:<name>`` -- a markdown cell with a solution the learner can reveal, the first
  fenced ``python`` block inside ``<details>``::

      <details><summary>Show a solution</summary>

      ```python
      def recv_exactly(sock, n, deadline): ...
      ```
      </details>

tests/test_exercises.py finds every exercise in every notebook, proves its check says
``Not done yet`` for the blank cell and ``Right`` for the solution (run in a fresh kernel with
the solution in place of the blank), and that every exercise has all three cells.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rpclab import checks

__all__ = [
    "NotDone",
    "Verdict",
    "check",
    "expect",
    "Exercise",
    "find",
    "solution_code",
    "with_solutions",
]

DEFAULT_TIMEOUT = 20.0  # seconds a check may take before it says the code is too slow
TAG_KINDS = ("exercise", "check", "solution")


class NotDone(NotImplementedError):
    """Raised by the part of an exercise the learner has not written yet."""


@dataclass(frozen=True)
class Verdict:
    """What a check found: ``status`` is "not done", "wrong" or "right"; ``message`` says why."""

    name: str
    status: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "right"

    def _ipython_display_(self) -> None:
        """Shown already: a check cell ending in ``exercises.check(...)`` prints it once."""

    def __str__(self) -> str:
        heading = {"not done": "Not done yet", "wrong": "Not right yet", "right": "Right"}
        text = f"{heading[self.status]} ({self.name})"
        return f"{text}: {self.message}" if self.message else f"{text}."


def expect(condition: object, message: str) -> None:
    """Fail the check with ``message`` (plain words for the learner) unless ``condition`` holds."""
    if not condition:
        raise AssertionError(message)


def _judge(name: str, test: Callable[[], object]) -> Verdict:
    try:
        note = test()
    except NotDone as exc:
        hint = f" ({exc})" if str(exc) else ""
        return Verdict(
            name, "not done", f"fill in the exercise cell above{hint}, then run it again"
        )
    except AssertionError as exc:
        return Verdict(name, "wrong", str(exc) or "a check failed (it gave no reason)")
    except Exception as exc:  # the learner's code failed: say how, never raise
        return Verdict(name, "wrong", f"your code raised {type(exc).__name__}: {exc}")
    return Verdict(name, "right", note if isinstance(note, str) else "")


def check(
    name: str,
    test: Callable[[], object],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    show: bool = True,
) -> Verdict:
    """Run ``test`` (which calls the learner's code), print the verdict, and return it.

    ``test`` returns nothing (or a short note to print after "Right"), and raises
    AssertionError with a plain message when the code is wrong. A test that takes longer than
    ``timeout`` seconds is reported as too slow (its thread is left to finish on its own: write
    tests whose waits are bounded, so this only happens to a learner's endless loop).
    """
    checks.function("test", test, "test()")
    checks.seconds("timeout", timeout, above=0)
    outcome: list[Verdict] = []
    worker = threading.Thread(
        target=lambda: outcome.append(_judge(name, test)), name=f"rpclab-check:{name}", daemon=True
    )
    worker.start()
    worker.join(timeout)
    if outcome:
        verdict = outcome[0]
    else:
        message = f"the check did not finish within {timeout:g} s: is there a loop that never ends?"
        verdict = Verdict(name, "wrong", message)
    if show:
        print(verdict)
    return verdict


# --------------------------------------------------------------------------- finding exercises


@dataclass(frozen=True)
class Exercise:
    """The cells of one exercise in a notebook: indexes into ``notebook.cells``."""

    name: str
    exercise: int | None
    check: int | None
    solution: int | None

    @property
    def complete(self) -> bool:
        return None not in (self.exercise, self.check, self.solution)


def _tags(cell: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for tag in cell.get("metadata", {}).get("tags", []):
        kind, _, name = tag.partition(":")
        if kind in TAG_KINDS and name:
            yield kind, name


def find(notebook: Mapping[str, Any]) -> dict[str, Exercise]:
    """Every exercise of a notebook (an nbformat dict), by name, in the order they appear."""
    found: dict[str, dict[str, int]] = {}
    for index, cell in enumerate(notebook["cells"]):
        for kind, name in _tags(cell):
            if kind in found.setdefault(name, {}):
                raise ValueError(
                    f"exercise {name!r} has two {kind} cells (cells {index} and "
                    f"{found[name][kind]})"
                )
            found[name][kind] = index
    return {
        name: Exercise(name, cells.get("exercise"), cells.get("check"), cells.get("solution"))
        for name, cells in found.items()
    }


_FENCE = re.compile(r"```python[ \t]*\n(.*?)```", re.S)


def solution_code(markdown: str) -> str:
    """The first fenced python block of a solution cell."""
    match = _FENCE.search(markdown)
    if match is None:
        raise ValueError("a solution cell needs a ```python fenced block")
    return match.group(1)


def with_solutions(notebook: dict[str, Any]) -> dict[str, Any]:
    """A copy of the notebook with every exercise cell's source replaced by its solution."""
    import copy

    solved = copy.deepcopy(notebook)
    for exercise in find(notebook).values():
        if not exercise.complete:
            raise ValueError(f"exercise {exercise.name!r} lacks a cell: {exercise}")
        markdown = "".join(notebook["cells"][exercise.solution]["source"])
        solved["cells"][exercise.exercise]["source"] = solution_code(markdown)
    return solved
