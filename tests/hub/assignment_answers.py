"""The answers the hub suite's learners hand in, read in one place.

The right answer is the solution in the assignment's source notebook (its answer cells with the
solution markers taken out); a wrong answer is an entry of assignments/tests_data/<assignment>.yml,
in the format tests/test_assignments.py reads (answer cells under `answers:`, other edited cells
under `edits:`, the graded cells it must lose under `loses:`). If that format grows, this file
is the one to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

COURSE = Path(__file__).resolve().parents[2] / "assignments"
SOLUTION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION")


@dataclass(frozen=True)
class Answer:
    """A learner's hand-in: the new source of some cells (by grade id), and what it must lose."""

    name: str
    cells: dict[str, str]
    loses: frozenset[str]

    def fill(self, notebook: dict) -> dict:
        """The student version `notebook` (nbformat JSON) with this answer's cells written in."""
        filled = nbformat.from_dict(notebook)
        missing = set(self.cells) - {_meta(c).get("grade_id") for c in filled.cells}
        assert not missing, f"{self.name}: the released notebook has no cells {sorted(missing)}"
        for cell in filled.cells:
            grade_id = _meta(cell).get("grade_id")
            if grade_id in self.cells:
                cell.source = self.cells[grade_id]
        return filled


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def source_notebook(assignment: str):
    return nbformat.read(COURSE / "source" / assignment / f"{assignment}.ipynb", as_version=4)


def points(assignment: str) -> dict[str, float]:
    """Every graded cell's points, by grade id."""
    return {
        _meta(c)["grade_id"]: float(_meta(c)["points"])
        for c in source_notebook(assignment).cells
        if _meta(c).get("grade")
    }


def right_answer(assignment: str) -> Answer:
    cells = {
        _meta(c)["grade_id"]: "\n".join(
            line
            for line in c.source.splitlines()
            if not any(marker in line for marker in SOLUTION_MARKERS)
        )
        for c in source_notebook(assignment).cells
        if _meta(c).get("solution")
    }
    return Answer("solution", cells, frozenset())


def wrong_answer(assignment: str, name: str | None = None) -> Answer:
    """The entry `name` of the assignment's wrong answers (the first one if None), with the
    solution in every answer cell it leaves alone."""
    entries = yaml.safe_load((COURSE / "tests_data" / f"{assignment}.yml").read_text())
    name = name or next(iter(entries))
    entry = entries[name]
    cells = {
        **right_answer(assignment).cells,
        **entry.get("answers", {}),
        **entry.get("edits", {}),
    }
    return Answer(name, {k: v.rstrip("\n") for k, v in cells.items()}, frozenset(entry["loses"]))
