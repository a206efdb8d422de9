"""The check of notebook 14's exercise: a Flight server whose DoPut appends and whose DoGet filters.

The learner writes a subclass of :class:`rpclab.bigdata.flight.TableServer` with

* ``do_put``: the uploaded rows are *appended* to the table the descriptor names (a table that
  does not exist yet is created);
* ``do_get``: a ticket ``{"table": name, "min_value": x}`` returns only the rows whose
  ``value`` is at least ``x``, in the table's order.

:func:`check` starts the class in the background, calls it as a client would, stops it, and
says in plain words what is right or wrong. It never raises for the learner's mistakes: a
class still raising ``NotImplementedError`` is "not done yet"::

    print(exercise.check(AppendingServer))
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as fl

from rpclab.bigdata import flight
from rpclab.bigdata.table import make_table

__all__ = ["Verdict", "check", "filter_ticket"]

SERVER_NAME = "flight-exercise"
TIMEOUT = 5.0  # seconds for each call the check makes


@dataclass(frozen=True)
class Verdict:
    """``ok`` is True (right), False (wrong) or None (not done yet); ``message`` says why."""

    ok: bool | None
    message: str

    def __str__(self) -> str:
        return self.message


def filter_ticket(table: str, min_value: float) -> fl.Ticket:
    """The exercise's ticket: the rows of ``table`` whose value is at least ``min_value``."""
    return fl.Ticket(json.dumps({"table": table, "min_value": min_value}).encode())


class _NotDone(Exception):
    pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).split(". Detail:")[0].split("\n")[0]
    return f"{type(exc).__name__}: {text}"


def _call(what: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as exc:
        raise _NotDone(what) from exc
    except Exception as exc:
        raise AssertionError(f"{what} failed with {_first_line(exc)}") from None


def check(server_class: type) -> Verdict:
    """Serve ``server_class``, upload, append, filter, and judge what came back."""
    if not (isinstance(server_class, type) and issubclass(server_class, flight.TableServer)):
        return Verdict(
            False, "Wrong: the server must be a class that subclasses flight.TableServer."
        )
    start = make_table(1_000, seed=1)
    more = make_table(500, seed=2)
    more = more.set_column(0, "id", pa.array(range(1_000, 1_500), pa.int64()))
    try:
        server = flight.serve(SERVER_NAME, {"readings": start}, server_class=server_class)
    except Exception as exc:
        return Verdict(False, f"Wrong: your server did not start: {_first_line(exc)}")
    done: list[str] = []
    try:
        with flight.connect(server) as client:
            _check_put(client, server, start, more)
            done.append("do_put")
            _check_get(client, pa.concat_tables([start, more]))
            done.append("do_get")
    except _NotDone as exc:
        todo = "do_get" if done else "do_put"
        so_far = "do_put works; " if done else ""
        return Verdict(
            None, f"Not done yet: {so_far}{todo} still raises NotImplementedError ({exc})."
        )
    except AssertionError as exc:
        return Verdict(False, f"Wrong: {exc}")
    finally:
        server.stop()
    return Verdict(
        True,
        "Right: DoPut appended 500 rows to the 1,000 already there and created a new table; "
        "DoGet returned exactly the rows at or above the ticket's min_value, in order.",
    )


def _check_put(
    client: fl.FlightClient, server: flight.FlightServer, start: pa.Table, more: pa.Table
) -> None:
    _call(
        "uploading 500 rows to 'readings'",
        flight.put_table,
        client,
        "readings",
        more,
        timeout=TIMEOUT,
    )
    held = server.service.tables.get("readings")
    if held is None:
        raise AssertionError("after the upload the server holds no table called 'readings'.")
    if held.num_rows == more.num_rows:
        raise AssertionError(
            "after uploading 500 rows to a table of 1,000, the table has 500: do_put replaced "
            "the table instead of appending (pa.concat_tables([old, new]) keeps both)."
        )
    if held.num_rows != start.num_rows + more.num_rows:
        raise AssertionError(
            f"after uploading 500 rows to a table of 1,000, the table has {held.num_rows:,} "
            "rows, not 1,500."
        )
    if not held.equals(pa.concat_tables([start, more])):
        raise AssertionError(
            "the table has 1,500 rows, but not the old 1,000 followed by the new 500, in order."
        )
    fresh = more.slice(0, 10)
    _call(
        "uploading 10 rows to a new table 'fresh'",
        flight.put_table,
        client,
        "fresh",
        fresh,
        timeout=TIMEOUT,
    )
    made = server.service.tables.get("fresh")
    if made is None or not made.equals(fresh):
        raise AssertionError(
            "uploading 10 rows to a table that did not exist should create it with those rows."
        )


def _check_get(client: fl.FlightClient, table: pa.Table) -> None:
    exact = table["value"][1_234].as_py()  # a value the table holds: ">=" keeps its row
    for min_value in (0.9, exact, 2.0):
        wanted = table.filter(pc.greater_equal(table["value"], min_value))
        got = _call(
            f"DoGet with ticket min_value={min_value}",
            flight.read_ticket,
            client,
            filter_ticket("readings", min_value),
            timeout=TIMEOUT,
        )
        if got.schema != table.schema:
            raise AssertionError(
                f"DoGet returned columns {got.schema.names}, not {table.schema.names}."
            )
        if got.num_rows != wanted.num_rows:
            raise AssertionError(
                f"DoGet with min_value={min_value} returned {got.num_rows:,} rows; "
                f"{wanted.num_rows:,} of the table's rows have a value of at least {min_value}."
            )
        if not got.equals(wanted):
            raise AssertionError(
                f"DoGet with min_value={min_value} returned the right number of rows, but not the "
                "right ones in the table's order."
            )
