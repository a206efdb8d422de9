"""Notebook 14's exercise: its check says "not done yet" for the blank cell as the notebook ships
it, "Right" for the solution the notebook reveals, and "Wrong" for the usual mistakes."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rpclab.bigdata import exercise, flight

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "14-big-data-and-real-time.ipynb"


def _cell(cell_id: str) -> str:
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    return next(c.source for c in cells if c.get("id") == cell_id)


def _server_class(source: str) -> type:
    namespace: dict = {"flight": flight, "pa": pa}
    exec(compile(source, f"<notebook 14: {source[:30]!r}>", "exec"), namespace)
    return namespace["AppendingServer"]


def test_the_check_cell_runs_the_check_on_the_learners_class():
    assert _cell("exercise-check").strip() == "print(exercise.check(AppendingServer))"


def test_the_blank_exercise_is_not_done_yet_and_the_check_says_so_without_raising():
    verdict = exercise.check(_server_class(_cell("exercise-blank")))
    assert verdict.ok is None
    assert str(verdict).startswith("Not done yet")


def test_the_revealed_solution_passes_the_check():
    solution = _cell("exercise-solution")
    assert solution.lstrip().startswith("<details>")
    code = re.search(r"```python\n(.*?)```", solution, re.S).group(1)
    verdict = exercise.check(_server_class(code))
    assert verdict.ok is True, str(verdict)
    assert str(verdict).startswith("Right")


class _Appending(flight.TableServer):
    def do_put(self, context, descriptor, reader, writer):
        name = self.table_name(descriptor)
        upload = self.read_upload(reader)
        with self.lock:
            old = self.tables.get(name)
            self.tables[name] = upload if old is None else pa.concat_tables([old, upload])

    def do_get(self, context, ticket):
        fields = self.parse_ticket(ticket)
        table = self.table(fields["table"])
        return self.batches(table.filter(pc.greater_equal(table["value"], fields["min_value"])))


class _Replacing(_Appending):
    do_put = flight.TableServer.do_put


class _Unfiltered(_Appending):
    do_get = flight.TableServer.do_get


class _StrictlyGreater(_Appending):
    def do_get(self, context, ticket):
        fields = self.parse_ticket(ticket)
        table = self.table(fields["table"])
        return self.batches(table.filter(pc.greater(table["value"], fields["min_value"])))


class _PutOnlyDone(_Appending):
    def do_get(self, context, ticket):
        raise NotImplementedError("your code here")


class _NewTableForgotten(_Appending):
    def do_put(self, context, descriptor, reader, writer):
        name = self.table_name(descriptor)
        upload = self.read_upload(reader)
        with self.lock:
            if name in self.tables:
                self.tables[name] = pa.concat_tables([self.tables[name], upload])


@pytest.mark.parametrize(
    ("server_class", "says"),
    [
        (_Replacing, "replaced the table instead of appending"),
        (_Unfiltered, "returned 1,500 rows"),
        (_StrictlyGreater, "have a value of at least"),
        (_NewTableForgotten, "should create it"),
        (int, "must be a class that subclasses flight.TableServer"),
    ],
)
def test_the_check_says_wrong_and_why_for_the_usual_mistakes(server_class, says):
    verdict = exercise.check(server_class)
    assert verdict.ok is False and str(verdict).startswith("Wrong") and says in str(verdict)


def test_half_done_is_still_not_done_and_says_which_half_works():
    verdict = exercise.check(_PutOnlyDone)
    assert verdict.ok is None and "do_put works; do_get still raises" in str(verdict)
