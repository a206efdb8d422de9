"""The check behind notebook 14's exercise: a Flight server whose DoPut appends and whose DoGet
filters; and the race it must survive, shown on its own.

The learner writes a subclass of :class:`rpclab.bigdata.flight.TableServer` with

* ``do_put``: the uploaded rows are *appended* to the table the descriptor names (a table that
  does not exist yet is created), also when several clients upload at the same moment, and an
  upload that would make the server hold more than ``max_rows`` rows is refused (several at
  once too: read_upload counts the rows still arriving in the others);
* ``do_get``: a ticket ``{"table": name, "min_value": x}`` returns only the rows whose
  ``value`` is at least ``x``, in the table's order.

Notebook 14 runs :func:`check_appending_server` through ``rpclab.exercises.check``, which prints
the verdict and never raises; tests/test_notebook14_exercise.py proves it passes the notebook's
solution and catches the usual wrong answers::

    exercises.check("append-and-filter", lambda: check_appending_server(AppendingServer))

:func:`upload_at_once` sends several uploads to one table at the same moment and says how many
of them the table kept: the notebook runs it on a racy append to show an upload being lost. To
make the uploads really overlap, every upload waits at the start of ``read_upload`` until all of
them have got there (for at most ``GATE_S``): a server that reads the old table *before*
reading the upload then reads it while every other upload is still under way, every time.

An exception the learner's handler raises reaches the Flight client as an error, not the
check; the check notes a blank exercise's ``NotDone`` in the handler and raises it again here.
The server is served in the background and stopped; every call has a deadline.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as fl

from rpclab.bigdata import flight
from rpclab.bigdata.table import make_table
from rpclab.exercises import NotDone, expect

__all__ = ["check_appending_server", "filter_ticket", "upload_at_once", "UploadRace"]

SERVER_NAME = "flight-exercise"
TIMEOUT = 5.0  # seconds for each call the check makes
GATE_S = 2.0  # seconds an upload waits at the gate for the others to arrive
START_ROWS = 1_000  # the table the check's server starts with


def filter_ticket(table: str, min_value: float) -> fl.Ticket:
    """The exercise's ticket: the rows of ``table`` whose value is at least ``min_value``."""
    return fl.Ticket(json.dumps({"table": table, "min_value": min_value}).encode())


def _rows(first_id: int, count: int, seed: int) -> pa.Table:
    """``count`` rows with ids ``first_id``, ``first_id + 1``, ...: every upload is told apart."""
    table = make_table(count, seed=seed)
    return table.set_column(0, "id", pa.array(range(first_id, first_id + count), pa.int64()))


# ---------------------------------------------------------------------- the watched server


class _Gate:
    """Holds each upload that reaches it until ``parties`` have arrived, or ``GATE_S`` passed;
    then it stays open. Closed only while :func:`_uploads_at_once` runs."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._parties = 0
        self._arrived = 0
        self._open = True

    def close(self, parties: int) -> None:
        with self._cond:
            self._parties, self._arrived, self._open = parties, 0, False

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def arrive(self) -> None:
        with self._cond:
            if self._open:
                return
            self._arrived += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._open or self._arrived >= self._parties, GATE_S)
            self._open = True  # all here, or some never came: let everyone through
            self._cond.notify_all()


def _watched(server_class: type) -> tuple[type, _Gate, list[BaseException]]:
    """A subclass of the learner's class that passes uploads through a gate and notes NotDone."""
    gate = _Gate()
    blank: list[BaseException] = []

    def noting(method: Callable[..., Any]) -> Callable[..., Any]:
        def handler(self: Any, *args: Any) -> Any:
            try:
                return method(self, *args)
            except NotImplementedError as exc:  # NotDone: the exercise is still blank
                blank.append(exc)
                raise

        return handler

    def read_upload(self: Any, reader: Any, **kwargs: Any) -> pa.Table:
        gate.arrive()
        return super(watched, self).read_upload(reader, **kwargs)

    watched = type(
        server_class.__name__,
        (server_class,),
        {
            "do_put": noting(server_class.do_put),
            "do_get": noting(server_class.do_get),
            "read_upload": read_upload,
        },
    )
    return watched, gate, blank


def _put(server: flight.FlightServer, name: str, table: pa.Table) -> None:
    with flight.connect(server) as client:
        flight.put_table(client, name, table, timeout=TIMEOUT)


def _uploads_at_once(
    server: flight.FlightServer, gate: _Gate, name: str, parts: list[pa.Table]
) -> list[BaseException]:
    """Upload every part to ``name`` at the same moment, a client each; the errors they met."""
    gate.close(len(parts))
    try:
        with futures.ThreadPoolExecutor(len(parts), "rpclab-flight-upload") as pool:
            done = [pool.submit(_put, server, name, part) for part in parts]
            return [e for f in done if (e := f.exception(timeout=TIMEOUT + GATE_S)) is not None]
    finally:
        gate.open()


# ---------------------------------------------------------------------- the race, on its own


@dataclass(frozen=True)
class UploadRace:
    """What :func:`upload_at_once` found: the table's rows before and after the uploads."""

    uploads: int
    rows_each: int
    before: int
    after: int
    errors: tuple[str, ...] = ()

    @property
    def lost(self) -> int:
        """Uploads whose rows are not in the table."""
        return (self.before + self.uploads * self.rows_each - self.after) // self.rows_each

    def __str__(self) -> str:
        text = (
            f"{self.uploads} uploads of {self.rows_each:,} rows, sent at the same moment to a "
            f"table of {self.before:,} rows: it now holds {self.after:,} rows"
        )
        if self.errors:
            text += f" ({len(self.errors)} failed: {self.errors[0]})"
        lost = self.lost
        return f"{text} -- {lost} upload{'s' if lost != 1 else ''} lost" if lost else text


def upload_at_once(server_class: type, *, uploads: int = 4, rows_each: int = 100) -> UploadRace:
    """Serve ``server_class`` holding a table of 1,000 rows, send ``uploads`` uploads to it at the
    same moment, stop the server, and say how many rows the table holds."""
    if not 2 <= uploads <= 16 or not 1 <= rows_each <= 10_000:
        raise ValueError("uploads must be 2 to 16 and rows_each 1 to 10,000")
    watched, gate, _ = _watched(server_class)
    server = flight.serve(SERVER_NAME, {"readings": make_table(START_ROWS)}, server_class=watched)
    try:
        parts = [_rows(START_ROWS + i * rows_each, rows_each, i) for i in range(uploads)]
        errors = _uploads_at_once(server, gate, "readings", parts)
        after = server.service.tables["readings"].num_rows
    finally:
        server.stop()
    reasons = tuple(str(e).split("\n")[0] for e in errors)
    return UploadRace(uploads, rows_each, START_ROWS, after, reasons)


# ---------------------------------------------------------------------- the check


def _first_line(exc: BaseException) -> str:
    text = str(exc).split(". Detail:")[0].split("\n")[0]
    return f"{type(exc).__name__}: {text}"


def _call(blank: list[BaseException], what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call the server; a blank handler's NotDone comes back as NotDone, other errors as words."""
    try:
        return fn(*args)
    except Exception as exc:
        if blank:
            raise NotDone(what) from None
        raise AssertionError(f"{what} failed with {_first_line(exc)}") from None


def check_appending_server(server_class: type, *, max_rows: int = 3_000) -> str:
    """Serve ``server_class`` (holding ``max_rows`` rows at most) and check, as a client would:
    an append, a new table, four uploads at once, an upload over the limit, filtered DoGets."""
    expect(
        isinstance(server_class, type) and issubclass(server_class, flight.TableServer),
        "the server must be a class that subclasses flight.TableServer.",
    )
    watched, gate, blank = _watched(server_class)
    start = make_table(START_ROWS, seed=1)
    try:
        server = flight.serve(
            SERVER_NAME, {"readings": start}, server_class=watched, max_rows=max_rows
        )
    except Exception as exc:
        raise AssertionError(f"your server did not start: {_first_line(exc)}") from None
    try:
        with flight.connect(server) as client:
            try:
                _check_put(client, server, gate, blank, start, max_rows)
            except NotDone:
                raise NotDone(f"do_put still raises NotDone: {blank[-1]}") from None
            try:
                _check_get(client, blank, server.service.tables["readings"])
            except NotDone:
                raise NotDone(f"do_put works; do_get still raises NotDone: {blank[-1]}") from None
    finally:
        server.stop()
    return (
        "DoPut appended to an existing table and created a new one, kept all four uploads sent "
        "at once, and refused one over max_rows; DoGet returned exactly the rows at or above "
        "min_value, in order."
    )


def _check_put(
    client: fl.FlightClient,
    server: flight.FlightServer,
    gate: _Gate,
    blank: list[BaseException],
    start: pa.Table,
    max_rows: int,
) -> None:
    tables = server.service.tables
    more = _rows(START_ROWS, 500, seed=2)
    _call(blank, "uploading 500 rows to 'readings'", flight.put_table, client, "readings", more)
    held = tables.get("readings")
    expect(held is not None, "after the upload the server holds no table called 'readings'.")
    expect(
        held.num_rows != more.num_rows,
        "after uploading 500 rows to a table of 1,000, the table has 500: do_put replaced "
        "the table instead of appending (pa.concat_tables([old, new]) keeps both).",
    )
    expect(
        held.num_rows == start.num_rows + more.num_rows,
        f"after uploading 500 rows to a table of 1,000, the table has {held.num_rows:,} rows, "
        "not 1,500.",
    )
    expect(
        held.equals(pa.concat_tables([start, more])),
        "the table has 1,500 rows, but not the old 1,000 followed by the new 500, in order.",
    )
    fresh = more.slice(0, 10)
    _call(
        blank, "uploading 10 rows to a new table 'fresh'", flight.put_table, client, "fresh", fresh
    )
    made = tables.get("fresh")
    expect(
        made is not None and made.equals(fresh),
        "uploading 10 rows to a table that did not exist should create it with those rows.",
    )

    parts = [_rows(1_500 + 100 * i, 100, seed=10 + i) for i in range(4)]
    errors = _uploads_at_once(server, gate, "readings", parts)
    expect(
        not errors,
        f"four uploads sent at the same moment: {len(errors)} failed, the first with "
        f"{_first_line(errors[0]) if errors else ''}.",
    )
    after = tables["readings"]
    lost = (1_900 - after.num_rows) // 100
    expect(
        after.num_rows == 1_900,
        f"four uploads of 100 rows sent at the same moment to a table of 1,500 left it with "
        f"{after.num_rows:,} rows: {lost} upload{'s were' if lost != 1 else ' was'} lost. Each "
        "do_put read the old table before the others had stored theirs, then stored old + its "
        "own rows over them. Read the upload first, then take the old table and store the new "
        "one under one `with self.lock:`.",
    )
    added = after.slice(1_500)
    order = pc.sort_indices(added, sort_keys=[("id", "ascending")])
    expect(
        after.slice(0, 1_500).equals(held) and added.take(order).equals(pa.concat_tables(parts)),
        "after four uploads at once the table has 1,900 rows, but not the 1,500 before followed "
        "by each upload's 100 rows.",
    )

    room = max_rows - sum(t.num_rows for t in tables.values())
    each = room // 3 + 1  # each upload fits alone; four together do not
    together = [_rows(3_000 + each * i, each, seed=20 + i) for i in range(4)]
    _uploads_at_once(server, gate, "bulk", together)  # some are refused: as they should be
    held_rows = sum(t.num_rows for t in tables.values())
    expect(
        held_rows <= max_rows,
        f"four uploads of {each:,} rows sent at the same moment, each within max_rows but over it "
        f"together, left the server holding {held_rows:,} rows (its max_rows is {max_rows:,}): "
        "read each upload with self.read_upload(reader), which counts the rows of the uploads "
        "still arriving (for an append, leave out already=).",
    )

    too_many = _rows(9_000, max_rows - held_rows + 1, seed=3)
    try:
        flight.put_table(client, "readings", too_many, timeout=TIMEOUT)
    except Exception:  # refused, as it should be
        pass
    else:
        raise AssertionError(
            f"an upload of {too_many.num_rows:,} rows, which would make the server hold "
            f"{held_rows + too_many.num_rows:,} rows (its max_rows is {max_rows:,}), was taken: "
            "read uploads with self.read_upload(reader), which refuses it (for an append nothing "
            "is replaced, so leave out already=)."
        )
    expect(
        tables["readings"].equals(after),
        "an upload over max_rows was refused, but the table changed: store nothing from an "
        "upload until read_upload has read all of it.",
    )


def _check_get(client: fl.FlightClient, blank: list[BaseException], table: pa.Table) -> None:
    exact = table["value"][1_234].as_py()  # a value the table holds: ">=" keeps its row
    for min_value in (0.9, exact, 2.0):
        wanted = table.filter(pc.greater_equal(table["value"], min_value))
        got = _call(
            blank,
            f"DoGet with ticket min_value={min_value}",
            flight.read_ticket,
            client,
            filter_ticket("readings", min_value),
        )
        expect(
            got.schema == table.schema,
            f"DoGet returned columns {got.schema.names}, not {table.schema.names}.",
        )
        expect(
            got.num_rows == wanted.num_rows,
            f"DoGet with min_value={min_value} returned {got.num_rows:,} rows; "
            f"{wanted.num_rows:,} of the table's rows have a value of at least {min_value}.",
        )
        expect(
            got.equals(wanted),
            f"DoGet with min_value={min_value} returned the right number of rows, but not the "
            "right ones in the table's order.",
        )
