"""nbgrader preprocessors that make ``nbgrader autograde`` hard to switch off from an answer cell.

nbgrader scores a test cell by its outputs: an error is 0 points, anything else full marks. So
a test cell that never ran its code -- emptied by an input transformer an answer cell installed,
or cut short by anything else that changes how cells run -- scores like a test that passed.
``assignments/nbgrader_config.py`` adds three steps to autograding:

* :class:`MarkTestCells` (before the notebook runs) appends to every graded test cell one line
  that prints a token made for this run; the learner never sees the token;
* :class:`CheckIntegrity` (right after it ran) takes the line out again and gives an
  ``IntegrityError`` (0 points) to every graded cell that raised nothing but did not print its
  token, and to every graded cell that a finding of ``rpclab.classroom.scan`` touches (a way
  out of the autograder in a learner's cell, or an import the assignment forbids);
* :class:`RestoreTeacherCells` replaces nbgrader's ``OverwriteCells``: it puts the teacher's
  set-up and test cells back as nbgrader does, but warns only about cells a learner really
  changed. nbgrader's own warns "Attribute 'checksum' ... has changed!" for every test cell that
  has hidden tests, because the gradebook's checksum is taken before ``generate_assignment``
  removes them (jupyter/nbgrader#1961), so its warning never means anything.

Each finding is also logged as a warning naming the student, and ``python -m
rpclab.classroom.scan`` lists them all. Built for assignments A1-A4; used nowhere else.
"""

from __future__ import annotations

import secrets

from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor, OverwriteCells

from rpclab.classroom import scan

__all__ = [
    "MarkTestCells",
    "CheckIntegrity",
    "RestoreTeacherCells",
    "without_hidden_tests",
    "integrity_error",
]

MARKS = "rpclab_marks"  # resources key: cell index -> (the cell's own source, the line it prints)
PROOF = "rpclab-autograder: {grade_id} ran to the end, {token}"
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


def without_hidden_tests(source: str) -> str:
    """A test cell's source as ``generate_assignment`` releases it: the hidden region taken out
    (the lines between and including the BEGIN/END HIDDEN TESTS markers)."""
    kept, hidden = [], False
    for line in source.split("\n"):
        if BEGIN_HIDDEN in line:
            hidden = True
        elif END_HIDDEN in line:
            hidden = False
        elif not hidden:
            kept.append(line)
    return "\n".join(kept)


def integrity_error(message: str) -> NotebookNode:
    """An error output, which nbgrader scores as 0 points for its cell."""
    return NotebookNode(
        output_type="error",
        ename="IntegrityError",
        evalue=message,
        traceback=[f"IntegrityError: {line}" for line in message.splitlines()],
    )


def _graded_tests(nb) -> list[int]:
    return [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell)
    ]


class MarkTestCells(NbGraderPreprocessor):
    """Before the notebook runs: every graded test cell gets a last line that prints a token."""

    def preprocess(self, nb, resources):
        marks = {}
        for index in _graded_tests(nb):
            cell = nb.cells[index]
            line = PROOF.format(
                grade_id=cell.metadata.nbgrader["grade_id"], token=secrets.token_hex(8)
            )
            marks[index] = (cell.source, line)
            cell.source = f"{cell.source}\nprint({line!r})"
        resources[MARKS] = marks
        return nb, resources


class CheckIntegrity(NbGraderPreprocessor):
    """Right after the notebook ran: no token, or a finding of the scan -> IntegrityError (0)."""

    def preprocess(self, nb, resources):
        student = resources.get("nbgrader", {}).get("student", "?")
        notebook = resources.get("nbgrader", {}).get("notebook", "?")
        for index, (source, line) in resources.pop(MARKS, {}).items():
            cell = nb.cells[index]
            cell.source = source
            printed = self._take_out(cell, line)
            if not printed and not any(o.output_type == "error" for o in cell.outputs):
                grade_id = cell.metadata.nbgrader["grade_id"]
                self.log.warning(
                    "%s, %s: %s raised nothing but did not run to its end",
                    student,
                    notebook,
                    grade_id,
                )
                cell.outputs.append(
                    integrity_error(
                        "this test cell raised no error, yet its code did not run to the end: "
                        "something in the notebook changed how cells run. It scores 0 until the "
                        "teacher has looked at it."
                    )
                )
        findings = scan.scan_notebook(nb, teacher=self._teacher_cells(nb, resources))
        for finding in findings:
            self.log.warning("%s, %s: %s [%s]", student, notebook, finding, finding.kind)
        for index, found in scan.cells_to_zero(nb, findings).items():
            lines = "\n".join(f"  {f}" for f in found)
            nb.cells[index].outputs.append(
                integrity_error(
                    "the autograder read the notebook's own code and found what it does not "
                    f"allow; this cell scores 0 until the teacher has looked at it:\n{lines}"
                )
            )
        return nb, resources

    @staticmethod
    def _teacher_cells(nb, resources) -> set[int]:
        """The cells whose grade_id names a locked cell in the gradebook: the teacher's, as
        restored. (A cell's own `locked` flag is the learner's to edit: not trusted.)"""
        info = resources.get("nbgrader", {})
        with Gradebook(info["db_url"]) as gradebook:
            stored = gradebook.find_notebook(info["notebook"], info["assignment"])
            locked = {cell.name for cell in stored.source_cells if cell.locked}
        return {
            i
            for i, cell in enumerate(nb.cells)
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") in locked
        }

    @staticmethod
    def _take_out(cell, line: str) -> bool:
        """Remove the token's line from the cell's printed output; was it there?

        A print may reach the notebook as several stream messages ("text", then "\\n"), so
        consecutive stdout outputs are joined first.
        """
        merged = []
        for output in cell.outputs:
            if (
                output.output_type == "stream"
                and output.name == "stdout"
                and merged
                and merged[-1].output_type == "stream"
                and merged[-1].name == "stdout"
            ):
                merged[-1].text += output.text
            else:
                merged.append(output)
        printed = False
        kept = []
        for output in merged:
            if output.output_type == "stream" and output.name == "stdout":
                if not printed and f"{line}\n" in output.text:
                    printed = True
                    output.text = output.text.replace(f"{line}\n", "", 1)
                if not output.text:
                    continue
            kept.append(output)
        cell.outputs = kept
        return printed


class RestoreTeacherCells(OverwriteCells):
    """nbgrader's OverwriteCells, warning only about the cells a learner really changed."""

    def preprocess_cell(self, cell, resources, cell_index):
        self._as_released = False
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is not None:
            try:
                source_cell = self.gradebook.find_source_cell(
                    grade_id, self.notebook_id, self.assignment_id
                )
            except MissingEntry:
                pass
            else:
                self._as_released = (
                    without_hidden_tests(source_cell.source).rstrip() == cell.source.rstrip()
                )
        return super().preprocess_cell(cell, resources, cell_index)

    def report_change(self, name, attr, old, new):
        if attr == "checksum" and self._as_released:
            self.log.debug("Cell %s: as released; its hidden tests are put back", name)
            return
        if attr == "checksum":
            self.log.warning(
                "Cell %s was changed by the learner; the teacher's version is put back", name
            )
            return
        super().report_change(name, attr, old, new)
