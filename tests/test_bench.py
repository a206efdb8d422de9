"""rpclab.bench: the measuring harness is bounded, alternates transports, and reports what it measured."""

from __future__ import annotations

import argparse
import json
import threading
import time

import pytest

from rpclab import background, bench

TINY = bench.Settings(rounds=2, calls_per_round=200, seconds_per_round=0.1, connections=3,
                      concurrent_calls=300, concurrent_seconds=0.1, warmup_calls=20)


def test_measure_round_trips_stops_at_the_call_limit():
    calls = []
    latencies, seconds = bench.measure_round_trips(lambda: calls.append(1), max_calls=50, max_seconds=10.0)
    assert len(latencies) == len(calls) == 50
    assert all(ns >= 0 for ns in latencies) and seconds >= 0


def test_measure_round_trips_stops_at_the_time_limit():
    def slow_call():
        time.sleep(0.01)  # a deliberate delay standing in for a slow transport

    latencies, seconds = bench.measure_round_trips(slow_call, max_calls=1_000_000, max_seconds=0.05)
    assert 1 <= len(latencies) < 100
    assert seconds < 2.0


def counting_transport(log: list[str]) -> bench.Endpoint:
    """A fake transport: no server, calls just count; setup and teardown are logged."""
    log.append("setup")

    def connect() -> bench.Connection:
        log.append("connect")
        return bench.Connection(lambda: log.append("call"), lambda: log.append("close connection"))

    return bench.Endpoint(connect, lambda: log.append("close endpoint"))


def test_a_registered_transport_runs_through_the_harness(monkeypatch):
    log: list[str] = []
    monkeypatch.setitem(bench.TRANSPORTS, "fake", lambda: counting_transport(log))
    results = bench.run(["fake"], TINY)
    fake = results["fake"]
    assert fake.calls == 2 * 200  # both rounds hit the call limit
    assert fake.rate > 0 and fake.median_us >= 0 and fake.p99_us >= fake.median_us
    assert fake.concurrent_calls == 2 * 3 * (300 // 3)
    assert fake.connections == 3 and fake.errors == []
    assert log[0] == "setup" and log[-1] == "close endpoint"
    assert log.count("connect") == log.count("close connection") == 1 + 2 * 3


def test_run_refuses_unknown_transports():
    with pytest.raises(ValueError, match="unknown transports"):
        bench.run(["carrier-pigeon"], TINY)


def test_a_transport_that_fails_during_the_rounds_is_reported_not_raised(monkeypatch):
    calls = [0]

    def call():
        calls[0] += 1
        if calls[0] > TINY.warmup_calls + 30:
            raise ConnectionError("the server went away")

    monkeypatch.setitem(bench.TRANSPORTS, "flaky", lambda: bench.Endpoint(
        lambda: bench.Connection(call, lambda: None), lambda: None))
    result = bench.run(["flaky"], TINY)["flaky"]
    assert result.errors and all("the server went away" in e for e in result.errors)
    assert "! flaky: ConnectionError: the server went away" in bench.format_table({"flaky": result})


def test_a_transport_that_fails_at_once_raises(monkeypatch):
    def call():
        raise ConnectionError("down")

    monkeypatch.setitem(bench.TRANSPORTS, "failing", lambda: bench.Endpoint(
        lambda: bench.Connection(call, lambda: None), lambda: None))
    with pytest.raises(ConnectionError):  # the warm-up fails loudly: there is nothing to measure
        bench.run(["failing"], TINY)


def test_raw_and_socketrpc_measured_side_by_side_leave_nothing_running():
    threads_before = set(threading.enumerate())
    results = bench.run(["raw", "socketrpc"], TINY)
    assert list(results) == ["raw", "socketrpc"]
    for result in results.values():
        assert result.errors == []
        assert result.calls > 0 and result.rate > 0 and result.concurrent_rate > 0
        assert 0 < result.median_us <= result.p99_us
    assert background.running() == {}
    assert set(threading.enumerate()) <= threads_before
    table = bench.format_table(results)
    assert table.splitlines()[0].split()[:3] == ["transport", "round", "trips/s"]
    assert any(line.startswith("raw") and " 1.00 " in line for line in table.splitlines())
    assert any(line.startswith("socketrpc") for line in table.splitlines())
    data = bench.to_json(results, TINY)
    assert data["results"]["raw"]["vs_raw"] == 1.0 and data["results"]["raw"]["median_vs_raw"] == 1.0
    assert data["results"]["socketrpc"]["median_vs_raw"] == results["raw"].median_us / results["socketrpc"].median_us
    assert data["results"]["socketrpc"]["rate"] == results["socketrpc"].rate
    assert data["settings"]["rounds"] == 2 and data["machine"]["cpus"]


def test_main_prints_a_table_and_writes_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "QUICK", TINY)
    path = tmp_path / "bench.json"
    assert bench.main(argparse.Namespace(quick=True, json=str(path))) == 0
    out = capsys.readouterr().out
    assert "round trips/s" in out and f"wrote {path}" in out
    assert "socketrpc: " in out and "x by median latency" in out
    data = json.loads(path.read_text())
    assert set(data["results"]) == {"raw", "socketrpc"}
    assert data["settings"] == json.loads(json.dumps(bench.asdict(TINY)))


def test_settings_keep_every_loop_bounded():
    for settings in (bench.QUICK, bench.NORMAL):
        assert settings.calls_per_round > 0 and settings.seconds_per_round > 0
        assert settings.concurrent_calls > 0 and settings.concurrent_seconds > 0
    assert bench.QUICK.rounds * (bench.QUICK.seconds_per_round + bench.QUICK.concurrent_seconds) * 2 < 5
