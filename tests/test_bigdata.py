"""Notebook 14's big-data pieces (rpclab.bigdata): the table, Arrow Flight in the background, the
table over protobuf and over JSON socket RPC, and the transfer measurement."""

from __future__ import annotations

import json
import threading

import grpc
import pyarrow as pa
import pyarrow.flight as fl
import pytest

from flightlab import Appending
from rpclab.bigdata import encodings, exercise, flight, over_grpc, over_json, transfer
from rpclab.bigdata.table import MAX_ROWS, SCHEMA, make_table, nbytes, same_rows
from rpclab.byhand import socketrpc
from rpclab.runtime import background, process

TABLE = make_table(20_000)


def test_the_table_has_two_8_byte_columns_and_the_same_seed_makes_the_same_rows():
    assert TABLE.schema == SCHEMA and TABLE.num_rows == 20_000
    assert nbytes(TABLE) == 16 * 20_000
    assert make_table(20_000).equals(TABLE) and not make_table(20_000, seed=1).equals(TABLE)
    with pytest.raises(ValueError, match="between 0 and"):
        make_table(MAX_ROWS + 1)


def test_same_rows_says_what_differs():
    same_rows(TABLE, TABLE.slice(0))
    with pytest.raises(AssertionError, match="19,999 rows arrived, not 20,000"):
        same_rows(TABLE, TABLE.slice(1))
    with pytest.raises(AssertionError, match="different values"):
        same_rows(TABLE, make_table(20_000, seed=3))


# ---------------------------------------------------------------------- Flight


def test_flight_serves_a_table_by_doget_and_takes_one_by_doput():
    server = flight.serve("flight-test", {"readings": TABLE})
    with flight.connect(server) as client:
        same_rows(TABLE, flight.get_table(client, "readings"))
        flight.put_table(client, "copy", TABLE.slice(0, 5_000), batch_rows=1_000)
        names = sorted(info.descriptor.path[0] for info in client.list_flights())
    same_rows(TABLE.slice(0, 5_000), server.service.tables["copy"])
    assert names == [b"copy", b"readings"]
    server.stop()


def test_several_endpoints_split_the_rows_and_are_read_at_once_into_the_whole_table():
    server = flight.serve("flight-test", {"readings": TABLE}, streams=3)
    with flight.connect(server) as client:
        info = client.get_flight_info(fl.FlightDescriptor.for_path("readings"))
        parts = [json.loads(e.ticket.ticket) for e in info.endpoints]
        whole = flight.get_table(client, "readings")
    assert [(p["offset"], p["count"]) for p in parts] == [(0, 6666), (6666, 6667), (13333, 6667)]
    assert info.total_records == 20_000 and info.total_bytes == nbytes(TABLE)
    same_rows(TABLE, whole)
    server.stop()


def test_flight_refuses_bad_tickets_and_unknown_tables_with_errors_that_say_why():
    server = flight.serve("flight-test", {"readings": TABLE})
    with flight.connect(server) as client:
        with pytest.raises(KeyError, match="no table named 'nope'"):
            flight.read_ticket(client, flight.ticket("nope"))
        with pytest.raises(ValueError, match="past the table's end"):
            flight.read_ticket(client, flight.ticket("readings", 19_999, 2))
        with pytest.raises(ValueError, match="must be a JSON object"):
            flight.read_ticket(client, fl.Ticket(b"readings"))
        with pytest.raises(ValueError, match="at most 1024 bytes"):
            flight.read_ticket(client, fl.Ticket(b"x" * 2000))
        # and it goes on serving
        same_rows(TABLE.slice(5, 10), flight.read_ticket(client, flight.ticket("readings", 5, 10)))
    server.stop()


def test_an_upload_over_max_rows_is_refused_and_the_table_held_stays():
    server = flight.serve("flight-test", {"readings": TABLE}, max_rows=25_000)
    with flight.connect(server) as client:
        with pytest.raises(ValueError, match="over 25,000 rows .refused after reading 6,000"):
            flight.put_table(client, "more", TABLE.slice(0, 6_000), batch_rows=1_000)
        flight.put_table(client, "readings", TABLE.slice(0, 25_000))  # replaces: 20,000 -> 20,000
    assert "more" not in server.service.tables
    same_rows(TABLE, server.service.tables["readings"])
    server.stop()


def test_uploads_at_the_same_moment_cannot_pass_max_rows_together():
    # Each of the four fits alone; before read_upload counted the rows still arriving in the
    # others, all four were taken and the server held 1,400 rows.
    watched, gate, _ = exercise._watched(Appending)
    server = flight.serve(
        "flight-test", {"readings": make_table(1_000)}, server_class=watched, max_rows=1_200
    )
    try:
        parts = [make_table(100, seed=i) for i in range(4)]
        errors = exercise._uploads_at_once(server, gate, "readings", parts)
        assert server.service.tables["readings"].num_rows == 1_200 and len(errors) == 2
        assert server.service._arriving == {}  # every upload's reservation ended with its call
        with flight.connect(server) as client:  # the rows refused are not held against others
            flight.put_table(client, "readings", make_table(0))
            with pytest.raises(ValueError, match="over 1,200 rows"):
                flight.put_table(client, "readings", make_table(1, seed=9))
    finally:
        server.stop()


def test_serving_again_replaces_the_flight_server_and_stop_all_leaves_no_thread_or_port():
    threads, ports = process.thread_names(), process.listening_ports()
    first = flight.serve("flight-test", {"readings": TABLE})
    second = flight.serve("flight-test", {"readings": TABLE})
    assert not first.running and second.running and first.port != second.port
    assert background.running() == {"flight-test": second.address}
    with flight.connect(second) as client:
        same_rows(TABLE, flight.get_table(client, "readings"))
    background.stop_all()
    assert process.thread_names() == threads and process.listening_ports() == ports


def test_stop_gives_up_with_an_error_naming_the_cause_when_a_client_holds_a_stream_open(
    monkeypatch,
):
    monkeypatch.setattr(flight, "STOP_TIMEOUT", 0.5)
    big = make_table(4_000_000)  # 64 MB: far more than flow-control windows and sockets hold
    server = flight.serve("flight-test", {"readings": big}, batch_rows=1_000)
    with flight.connect(server) as client:
        reader = client.do_get(flight.ticket("readings"), flight.call_options(30))
        reader.read_chunk()  # the stream is open, and the client stops reading
        with pytest.raises(background.BackgroundServerError, match="stopped reading a stream"):
            server.stop()
        same_rows(big.slice(1_000), reader.read_all())  # reading on lets the server finish
    for thread in threading.enumerate():
        if thread.name in ("rpclab-serve:flight-test", "rpclab-flight-stop:flight-test"):
            thread.join(10)
            assert not thread.is_alive(), thread.name


def test_serve_refuses_a_class_that_is_not_a_table_server():
    with pytest.raises(TypeError, match="TableServer or a subclass"):
        flight.serve("flight-test", server_class=fl.FlightServerBase)
    with pytest.raises(
        background.BackgroundServerError, match="streams must be an int between 1 and 16"
    ):
        flight.serve("flight-test", streams=17)


# ---------------------------------------------------------------------- plain gRPC, JSON


def test_the_table_arrives_whole_over_grpc_as_column_chunks_and_as_rows():
    server = over_grpc.serve(TABLE)
    with grpc.insecure_channel(f"{server.host}:{server.port}") as channel:
        same_rows(TABLE, over_grpc.fetch_columns(channel, 20_000, chunk_rows=3_000))
        same_rows(TABLE.slice(100, 500), over_grpc.fetch_rows(channel, 500, offset=100))
        with pytest.raises(grpc.RpcError) as past:
            over_grpc.fetch_columns(channel, 10, offset=19_995)
        with pytest.raises(grpc.RpcError) as huge:
            over_grpc.fetch_columns(channel, 10, chunk_rows=over_grpc.MAX_CHUNK_ROWS + 1)
    assert past.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert huge.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    server.stop()


def test_the_table_arrives_whole_as_json_slices_and_one_call_for_all_is_over_the_frame_limit():
    table = make_table(60_000)  # about 1.5 MB as JSON
    server = over_json.serve(table)
    client = socketrpc.connect(server.address, timeout=10)
    try:
        same_rows(table, over_json.fetch(client, 60_000, slice_rows=25_000))
        with pytest.raises(socketrpc.RemoteError, match="over the 1048576-byte limit"):
            over_json.fetch(client, 60_000, slice_rows=60_000)
        assert client.size() == 60_000  # the connection still serves
    finally:
        client.close()
        server.stop()


# ---------------------------------------------------------------------- the measurement


def test_measure_keeps_every_round_rotates_the_order_and_checks_the_rows():
    order: list[str] = []

    def way(name: str, rows: int) -> transfer.Way:
        def move() -> pa.Table:
            order.append(name)
            return TABLE.slice(0, rows)

        return transfer.Way(name, rows, move)

    results = transfer.measure([way("a", 20_000), way("b", 1_000)], expected=TABLE, rounds=3)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then rotating rounds
    assert [len(r.seconds) for r in results.values()] == [3, 3]
    assert results["b"].nbytes == 16_000
    assert len(results["a"].mb_per_s) == 3 and "rows/s (median)" in transfer.format_table(results)

    def wrong() -> pa.Table:
        return TABLE.slice(1, 100)

    with pytest.raises(AssertionError, match="w moved the wrong rows"):
        transfer.measure([transfer.Way("w", 100, wrong)], expected=TABLE, rounds=1)
    with pytest.raises(ValueError, match="rounds must be"):
        transfer.measure([way("a", 1)], expected=TABLE, rounds=0)


def test_each_encoding_gives_the_rows_back_and_arrow_carries_16_bytes_a_row():
    found = {e.name: e for e in encodings.compare(TABLE.slice(0, 5_000), repeat=1)}
    assert list(found) == list(encodings.ENCODERS)
    arrow = found["Arrow IPC (Flight)"]
    assert 16.0 <= arrow.bytes_per_row < 16.2  # the two 8-byte columns, and a short header
    assert found["protobuf, repeated fields"].bytes_per_row < 16  # varints: small ids, fewer bytes
    assert found["JSON"].bytes_per_row > 20  # digits in decimal
    assert "bytes a row" in str(arrow)
    with pytest.raises(ValueError, match="compare takes"):
        encodings.compare(make_table(encodings.MAX_COMPARE_ROWS + 1))


def test_compare_says_clearly_faster_only_when_every_round_beat_every_round():
    def result(name: str, *seconds: float) -> transfer.Result:
        return transfer.Result(name, 1_000, 16_000, list(seconds))

    fast, slow, mixed = result("fast", 1, 1.2), result("slow", 2, 3), result("mixed", 0.9, 2.5)
    assert transfer.compare(fast, slow).startswith("fast: 2.20 x the rows a second of slow")
    assert "clearly faster" in transfer.compare(fast, slow)
    assert "clearly slower" in transfer.compare(slow, fast)
    assert "neither clearly faster nor slower" in transfer.compare(mixed, slow)
