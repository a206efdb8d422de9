"""A right answer to notebook 14's exercise, for a test: a Flight table server whose DoPut appends
and whose DoGet filters by ``min_value``.

Used by tests/test_notebook14_exercise.py (its wrong answers are subclasses of it) and
tests/test_bigdata.py (uploads at once against max_rows).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from rpclab.bigdata import flight


class Appending(flight.TableServer):
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
