"""Notebook 14's exercise (rpclab.bigdata.exercise): its check says "Not done yet" for the blank
cell as the notebook ships it, "Right" for the solution the notebook reveals, and what is wrong
for the usual mistakes -- a replacing DoPut, a racy append that loses uploads sent at once, an
upload over the limit taken, a filter that is off by one; and the race shown on its own."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from flightlab import Appending
from rpclab import exercises
from rpclab.bigdata import exercise, flight
from rpclab.exercises import NotDone

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "14-big-data-and-real-time.ipynb"
NAME = "append-and-filter"


def _cells() -> tuple[str, str, str]:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    found = exercises.find(notebook)[NAME]
    cells = notebook.cells
    return (
        cells[found.exercise].source,
        cells[found.check].source,
        exercises.solution_code(cells[found.solution].source),
    )


def _server_class(source: str) -> type:
    namespace: dict = {"flight": flight, "pa": pa, "pc": pc, "NotDone": NotDone}
    exec(compile(source, f"<notebook 14: {source[:30]!r}>", "exec"), namespace)
    return namespace["AppendingServer"]


def _verdict(server_class: type) -> exercises.Verdict:
    return exercises.check(NAME, lambda: exercise.check_appending_server(server_class), show=False)


def test_the_check_cell_runs_the_check_on_the_learners_class():
    assert f'exercises.check("{NAME}"' in _cells()[1]
    assert "check_appending_server(AppendingServer)" in _cells()[1]


def test_the_blank_exercise_is_not_done_yet_and_says_which_method_to_write():
    verdict = _verdict(_server_class(_cells()[0]))
    assert verdict.status == "not done", str(verdict)
    assert "do_put still raises NotDone" in verdict.message


def test_the_revealed_solution_passes_the_check():
    verdict = _verdict(_server_class(_cells()[2]))
    assert verdict.ok, str(verdict)


class _Replacing(Appending):
    do_put = flight.TableServer.do_put


class _Racy(Appending):
    """The base class's do_put with its last line made an append: the old table is read before
    the upload, under one lock, and the new one stored under another."""

    def do_put(self, context, descriptor, reader, writer):
        name = self.table_name(descriptor)
        with self.lock:
            old = self.tables.get(name)
        upload = self.read_upload(reader)
        with self.lock:
            self.tables[name] = upload if old is None else pa.concat_tables([old, upload])


class _HoldsTheLockWhileReading(Appending):
    """Correct, if slow: one upload at a time."""

    def do_put(self, context, descriptor, reader, writer):
        name = self.table_name(descriptor)
        with self.lock:
            upload = self.read_upload(reader)
            old = self.tables.get(name)
            self.tables[name] = upload if old is None else pa.concat_tables([old, upload])


class _Unbounded(Appending):
    """Reads the upload itself, so nothing bounds it."""

    def do_put(self, context, descriptor, reader, writer):
        name = self.table_name(descriptor)
        upload = reader.read_all()
        with self.lock:
            old = self.tables.get(name)
            self.tables[name] = upload if old is None else pa.concat_tables([old, upload])


class _ReplacesItsOwnCount(Appending):
    """Copies the base class's already=, which is right for a replace, not for an append."""

    def do_put(self, context, descriptor, reader, writer):
        name = self.table_name(descriptor)
        with self.lock:
            old = self.tables.get(name)
        upload = self.read_upload(reader, already=0 if old is None else old.num_rows)
        with self.lock:
            old = self.tables.get(name)
            self.tables[name] = upload if old is None else pa.concat_tables([old, upload])


class _Unfiltered(Appending):
    do_get = flight.TableServer.do_get


class _StrictlyGreater(Appending):
    def do_get(self, context, ticket):
        fields = self.parse_ticket(ticket)
        table = self.table(fields["table"])
        return self.batches(table.filter(pc.greater(table["value"], fields["min_value"])))


class _PutOnlyDone(Appending):
    def do_get(self, context, ticket):
        raise NotDone("send the rows whose value is at least min_value")


class _NewTableForgotten(Appending):
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
        (_Racy, "left it with 1,600 rows: 3 uploads were lost"),
        (_Unbounded, "with self.read_upload(reader)"),
        (_ReplacesItsOwnCount, "leave out already="),
        (_Unfiltered, "returned 1,900 rows"),
        (_StrictlyGreater, "have a value of at least"),
        (_NewTableForgotten, "should create it"),
        (int, "must be a class that subclasses flight.TableServer"),
    ],
)
def test_the_check_says_wrong_and_why_for_the_usual_mistakes(server_class, says):
    verdict = _verdict(server_class)
    assert verdict.status == "wrong" and says in verdict.message, str(verdict)


def test_a_correct_server_that_takes_one_upload_at_a_time_is_right():
    assert _verdict(_HoldsTheLockWhileReading).ok


def test_half_done_is_still_not_done_and_says_which_half_works():
    verdict = _verdict(_PutOnlyDone)
    assert verdict.status == "not done"
    assert "do_put works; do_get still raises NotDone: send the rows" in verdict.message


def test_uploads_at_once_lose_rows_on_a_racy_append_and_none_on_a_locked_one():
    racy = exercise.upload_at_once(_Racy)
    assert (racy.before, racy.after, racy.lost) == (1_000, 1_100, 3)
    assert str(racy).endswith("it now holds 1,100 rows -- 3 uploads lost")
    locked = exercise.upload_at_once(Appending)
    assert (locked.after, locked.lost) == (1_400, 0) and "lost" not in str(locked)
