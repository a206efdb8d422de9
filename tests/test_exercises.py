"""Exercises (rpclab.exercises): each check says "Not done yet" for the blank cell and "Right"
for the notebook's own solution, and every exercise has its three cells."""

from __future__ import annotations

import threading
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from rpclab import exercises
from rpclab.exercises import NotDone, expect

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
WITH_EXERCISES = [
    p.name
    for p in sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    if exercises.find(nbformat.read(p, as_version=4))
]


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")


def _verdicts(notebook) -> dict[str, str]:
    """Each exercise's check cell output, after running ``notebook`` in a fresh kernel."""
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
    ).execute()
    return {name: _stdout(notebook.cells[e.check]) for name, e in exercises.find(notebook).items()}


# --------------------------------------------------------------------------- the checker itself


def test_a_blank_exercise_is_not_done_and_the_check_does_not_raise(capsys):
    def blank():
        raise NotDone("write the loop")

    verdict = exercises.check("loop", blank)
    assert verdict.status == "not done" and not verdict.ok
    assert capsys.readouterr().out.startswith("Not done yet (loop): fill in the exercise cell")


def test_a_wrong_answer_is_named_in_plain_words():
    verdict = exercises.check("add", lambda: expect(1 + 1 == 3, "add(1, 1) gave 2, not 3"))
    assert (
        verdict.status == "wrong" and str(verdict) == "Not right yet (add): add(1, 1) gave 2, not 3"
    )


def test_code_that_raises_is_wrong_not_a_crash():
    verdict = exercises.check("div", lambda: 1 / 0, show=False)
    assert verdict.status == "wrong" and "ZeroDivisionError" in verdict.message


def test_a_right_answer_can_carry_a_note():
    verdict = exercises.check("ok", lambda: "3 of 3 frames read", show=False)
    assert verdict.ok and str(verdict) == "Right (ok): 3 of 3 frames read"


def test_a_check_that_never_ends_is_reported_as_too_slow():
    release = threading.Event()
    verdict = exercises.check("loop", lambda: release.wait(5), timeout=0.05, show=False)
    release.set()
    assert verdict.status == "wrong" and "did not finish within 0.05 s" in verdict.message


def test_find_ties_the_three_cells_by_tag_and_solutions_replace_the_blank():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("def f():\n    raise NotDone", metadata={"tags": ["exercise:f"]}),
        nbformat.v4.new_code_cell("exercises.check('f', f)", metadata={"tags": ["check:f"]}),
        nbformat.v4.new_markdown_cell(
            "<details><summary>Show a solution</summary>\n\n"
            "```python\ndef f():\n    return 1\n```\n</details>",
            metadata={"tags": ["solution:f"]},
        ),
    ]
    found = exercises.find(nb)
    assert found == {"f": exercises.Exercise("f", 0, 1, 2)}
    assert exercises.with_solutions(nb).cells[0].source == "def f():\n    return 1\n"
    nb.cells[1].metadata.tags = []
    with pytest.raises(ValueError, match="lacks a cell"):
        exercises.with_solutions(nb)


# --------------------------------------------------------------------------- every notebook's


@pytest.mark.notebook
@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_every_exercise_has_an_exercise_a_check_and_a_solution(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    incomplete = [e for e in exercises.find(notebook).values() if not e.complete]
    assert not incomplete, f"{name}: {incomplete}"


@pytest.mark.notebook
@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_each_check_says_not_done_for_the_blank_and_right_for_the_solution(name):
    blank = nbformat.read(NOTEBOOKS / name, as_version=4)
    solved = nbformat.from_dict(exercises.with_solutions(blank))
    for exercise, out in _verdicts(blank).items():
        assert out.startswith(f"Not done yet ({exercise})"), f"{name}, blank {exercise}: {out!r}"
    for exercise, out in _verdicts(solved).items():
        assert out.startswith(f"Right ({exercise})"), f"{name}, solved {exercise}: {out!r}"
