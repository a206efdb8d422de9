"""rpclab.bench: the measuring harness is bounded, alternates transports, measures every one, and
reports what it measured."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import threading
import time

import pytest

from rpclab import bench
from rpclab.bench import echo, harness
from rpclab.runtime import background

TINY = bench.Settings(
    rounds=2,
    calls_per_round=200,
    seconds_per_round=0.1,
    connections=3,
    concurrent_calls=300,
    concurrent_seconds=0.1,
    warmup_calls=20,
)

# Small enough for a test, and still every measurement once, 1 MiB echoes included.
SMOKE = bench.Settings(
    rounds=1,
    calls_per_round=200,
    seconds_per_round=0.05,
    connections=2,
    concurrent_calls=200,
    concurrent_seconds=0.05,
    warmup_calls=5,
    payload_sizes=(16, bench.MAX_PAYLOAD),
    payload_calls=5,
    payload_seconds=0.05,
)


def test_measure_round_trips_stops_at_the_call_limit():
    calls = []
    latencies, seconds = bench.measure_round_trips(
        lambda: calls.append(1), max_calls=50, max_seconds=10.0
    )
    assert len(latencies) == len(calls) == 50
    assert all(ns >= 0 for ns in latencies) and seconds >= 0


def test_measure_round_trips_stops_at_the_time_limit():
    def slow_call():
        time.sleep(0.01)  # a deliberate delay standing in for a slow transport

    latencies, seconds = bench.measure_round_trips(slow_call, max_calls=1_000_000, max_seconds=0.05)
    assert 1 <= len(latencies) < 100
    assert seconds < 2.0


def echoing_transport(log: list[str]) -> bench.Endpoint:
    """A fake transport: no server, calls echo their payload at once; set-up and teardown are
    logged."""
    log.append("setup")

    def connect(payload: str) -> bench.Connection:
        log.append("connect")

        def call() -> str:
            log.append("call")
            return payload

        return bench.Connection(call, lambda: log.append("close connection"))

    return bench.Endpoint(connect, lambda: log.append("close endpoint"))


def test_a_registered_transport_runs_through_the_harness(monkeypatch):
    log: list[str] = []
    monkeypatch.setitem(bench.TRANSPORTS, "fake", lambda: echoing_transport(log))
    settings = bench.Settings(
        **{**dataclasses.asdict(TINY), "payload_sizes": (16, 1024), "payload_calls": 7}
    )
    fake = bench.run(["fake"], settings)["fake"]
    assert fake.calls == 2 * 200  # both rounds hit the call limit
    assert fake.rate > 0 and fake.median_us >= 0 and fake.p99_us >= fake.median_us
    assert fake.concurrent_calls == 2 * 3 * (300 // 3)
    assert (
        fake.connections == 3
        and fake.errors == []
        and fake.concurrency == "connections, a thread each"
    )
    assert [(p.size, p.calls) for p in fake.payload] == [(16, 2 * 7), (1024, 2 * 7)]  # 7 per round
    assert log[0] == "setup" and log[-1] == "close endpoint"
    # one connection for the rounds; per round, 3 at once and one per payload size: each closed
    assert log.count("connect") == log.count("close connection") == 1 + 2 * (3 + 2)


def test_run_calls_progress_once_per_measurement(monkeypatch):
    monkeypatch.setitem(bench.TRANSPORTS, "fake", lambda: echoing_transport([]))
    seen: list[tuple[int, int, str]] = []
    bench.run(["fake"], TINY, progress=lambda done, total, what: seen.append((done, total, what)))
    assert [s[0] for s in seen] == list(range(TINY.steps)) and {s[1] for s in seen} == {TINY.steps}
    assert seen[0][2] == "starting fake" and "round 2/2: fake, 3 at once" in seen[-1][2]


def test_the_progress_line_is_rewritten_in_place_and_wiped_at_the_end():
    stream = io.StringIO()
    line = bench.ProgressLine(stream, width=10)
    line(0, 4, "starting raw")
    line(2, 4, "round 1/1: raw")
    line.finish()
    text = stream.getvalue()
    assert text.count("\r") == 4 and "[#####-----] 2/4 round 1/1: raw" in text
    assert text.endswith("\r") and text.split("\r")[-2].strip() == ""


def test_unknown_transports_are_refused_with_the_names_that_exist():
    with pytest.raises(
        ValueError, match="unknown transport 'carrier-pigeon'; registered: raw, socketrpc"
    ):
        bench.run(["carrier-pigeon"], TINY)
    with pytest.raises(ValueError, match="unknown transports 'a', 'b'"):
        bench.transport_names("raw,a,b")
    with pytest.raises(ValueError, match="at least one"):
        bench.transport_names("")
    assert bench.transport_names(" raw , grpc,raw") == ["raw", "grpc"]
    assert bench.transport_names(None) == list(bench.TRANSPORTS)


def test_the_command_refuses_an_unknown_transport_with_exit_code_2(capsys):
    assert bench.main(["--transports", "raw,telegraph", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "rpclab bench: unknown transport 'telegraph'" in err and "grpc-aio" in err
    assert background.running() == {}


def test_a_transport_that_fails_during_the_rounds_is_reported_not_raised(monkeypatch):
    calls = [0]

    def call():
        calls[0] += 1
        if calls[0] > TINY.warmup_calls + 30:
            raise ConnectionError("the server went away")
        return bench.PAYLOAD

    monkeypatch.setitem(
        bench.TRANSPORTS,
        "flaky",
        lambda: bench.Endpoint(lambda payload: bench.Connection(call, lambda: None), lambda: None),
    )
    result = bench.run(["flaky"], TINY)["flaky"]
    assert result.errors and all("the server went away" in e for e in result.errors)
    assert "! flaky: ConnectionError: the server went away" in bench.format_table({"flaky": result})


def test_a_transport_that_fails_at_once_raises_and_stops_the_servers_already_started(monkeypatch):
    def call():
        raise ConnectionError("down")

    monkeypatch.setitem(
        bench.TRANSPORTS,
        "failing",
        lambda: bench.Endpoint(lambda payload: bench.Connection(call, lambda: None), lambda: None),
    )
    with pytest.raises(ConnectionError):  # nothing to measure: say so loudly
        bench.run(["raw", "failing"], TINY)
    assert background.running() == {}


def test_an_echo_that_does_not_come_back_whole_is_an_error(monkeypatch):
    monkeypatch.setitem(
        bench.TRANSPORTS,
        "lossy",
        lambda: bench.Endpoint(
            lambda payload: bench.Connection(lambda: payload[:-1], lambda: None), lambda: None
        ),
    )
    with pytest.raises(RuntimeError, match="lossy echoed 31 characters for a payload of 32"):
        bench.run(["lossy"], TINY)


def test_ctrl_c_during_a_run_stops_every_server_and_exits_130(monkeypatch, capsys):
    calls = [0]

    def interrupted_raw() -> bench.Endpoint:
        endpoint = echo.setup_raw()  # a real server, in the background

        def connect(payload: str) -> bench.Connection:
            conn = endpoint.connect(payload)

            def call():
                calls[0] += 1
                if calls[0] == 50:
                    raise KeyboardInterrupt
                return conn.call()

            return bench.Connection(call, conn.close)

        return bench.Endpoint(connect, endpoint.close)

    monkeypatch.setitem(bench.TRANSPORTS, "interrupted", interrupted_raw)
    monkeypatch.setattr(harness, "QUICK", TINY)
    threads_before = set(threading.enumerate())
    assert bench.main(["--quick", "--transports", "socketrpc,interrupted"]) == 130
    assert "interrupted; every server it started is stopped" in capsys.readouterr().err
    assert background.running() == {}
    assert set(threading.enumerate()) <= threads_before


# --------------------------------------------------------------------------- every real transport


@pytest.fixture(scope="module")
def measured():
    """One small run of every registered transport (a few seconds), shared by the tests below."""
    threads_before = set(threading.enumerate())
    results = bench.run(None, SMOKE)
    return results, threads_before, set(threading.enumerate())


def test_every_transport_is_measured_and_every_number_is_positive_and_finite(measured):
    results, _, _ = measured
    assert list(results) == ["raw", "socketrpc", "xmlrpc", "rest", "thrift", "grpc", "grpc-aio"]
    for name, r in results.items():
        assert r.errors == [], name
        numbers = [r.rate, r.concurrent_rate, r.median_us, r.p99_us] + [
            p.median_us for p in r.payload
        ]
        assert all(math.isfinite(x) and x > 0 for x in numbers), (name, numbers)
        assert r.median_us <= r.p99_us
        assert [p.size for p in r.payload] == [
            16,
            bench.MAX_PAYLOAD,
        ]  # 1 MiB gets through every stack
        assert all(p.calls >= 1 for p in r.payload)
    assert results["grpc-aio"].concurrency.startswith("calls in flight")


def test_a_run_leaves_no_server_and_no_thread_behind(measured):
    _, threads_before, threads_after = measured
    assert background.running() == {}
    assert threads_after <= threads_before, [t.name for t in threads_after - threads_before]


def test_the_tables_show_every_transport_against_raw_and_the_payload_sweep(measured):
    results, _, _ = measured
    lines = bench.format_table(results).splitlines()
    assert lines[0].split()[:3] == ["transport", "median", "µs"]
    assert any(line.startswith("raw ") and " 1.00 " in line for line in lines)
    sweep = lines[lines.index("") + 1]
    assert sweep.split()[:5] == ["echo", "of", "16", "B", "1"] and "MiB" in sweep
    for name in results:
        assert sum(line.startswith(name + " ") for line in lines) == 2  # a row in each table


def test_json_output_has_a_stable_layout(measured):
    results, _, _ = measured
    data = json.loads(json.dumps(bench.to_json(results, SMOKE, seconds=1.5)))
    assert data["rpclab_bench"] == 1 and data["seconds"] == 1.5
    assert {"python", "platform", "cpus", "one_process"} <= set(data["machine"])
    assert data["settings"]["payload_sizes"] == [16, bench.MAX_PAYLOAD]
    assert list(data["results"]) == list(results)
    for name, r in data["results"].items():
        assert {
            "transport",
            "median_us",
            "p99_us",
            "rate",
            "concurrent_rate",
            "connections",
            "concurrency",
            "vs_raw",
            "errors",
            "limit",
            "payload",
        } <= set(r)
        assert r["rate"] == results[name].rate and r["limit"] == bench.LIMITS[name]
        assert [set(p) for p in r["payload"]] == [
            {"size", "calls", "seconds", "median_us", "mib_per_second"}
        ] * 2
    assert data["results"]["raw"]["vs_raw"] == 1.0
    assert {c["transport"] for c in data["choices"]} <= set(results) - {"raw"}
    assert [set(c) for c in data["choices"]] == [
        {"situation", "transport", "figure", "runner_up", "margin"}
    ] * 4


def test_the_command_measures_only_the_transports_asked_for_and_writes_json(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(harness, "QUICK", TINY)
    path = tmp_path / "bench.json"
    args = argparse.Namespace(quick=True, json=str(path), transports="socketrpc,raw")
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert (
        "Measuring socketrpc, raw: 2 alternating rounds (quick run)" in out
        and f"wrote {path}" in out
    )
    assert "lowest latency, one call at a time: socketrpc" in out  # the only RPC transport measured
    data = json.loads(path.read_text())
    assert list(data["results"]) == ["socketrpc", "raw"]
    assert data["settings"] == json.loads(json.dumps(dataclasses.asdict(TINY)))


def test_benchmark_takes_the_commands_options_as_arguments(tmp_path):
    out, bar = io.StringIO(), io.StringIO()
    results = bench.benchmark(
        "raw", settings=TINY, json_file=str(tmp_path / "r.json"), progress=bar, out=out
    )
    assert list(results) == ["raw"] and results["raw"].rate > 0
    assert "custom run" in out.getvalue() and (tmp_path / "r.json").exists()
    assert "starting raw" in bar.getvalue()


# --------------------------------------------------------------------------- reading results


def result(name, median, p99, concurrent, big=None):
    r = bench.Result(
        name,
        calls=1000,
        seconds=median * 1000 / 1e6,
        median_us=median,
        p99_us=p99,
        concurrent_calls=int(concurrent),
        concurrent_seconds=1.0,
        connections=8,
    )
    if big is not None:
        r.payload = [
            bench.PayloadPoint(16, 10, 0.1, median),
            bench.PayloadPoint(1 << 20, 10, 0.1, big),
        ]
    return r


def test_choices_name_the_best_rpc_transport_in_each_situation_from_the_numbers():
    results = {
        r.transport: r
        for r in [
            result("raw", 10, 20, 90_000, 100),  # the baseline: never chosen
            result("a", 40, 400, 10_000, 9_000),
            result("b", 50, 100, 20_000, 3_000),
            result("c", 42, 800, 19_000, None),  # no payload sweep: not a candidate for payloads
        ]
    }
    picks = {c.situation: c for c in bench.choices(results)}
    assert picks["lowest latency, one call at a time"].transport == "a"
    assert picks["lowest latency, one call at a time"].runner_up == "c"
    assert picks["lowest latency, one call at a time"].close_call  # 42 / 40: within 10%
    assert picks["steadiest latency (lowest 99th percentile)"].transport == "b"
    assert picks["most calls per second, 8 at once"].transport == "b"
    assert picks["largest payloads (1 MiB echoed)"].transport == "b"
    assert picks["largest payloads (1 MiB echoed)"].margin == 3.0
    assert (
        str(picks["largest payloads (1 MiB echoed)"])
        == "largest payloads (1 MiB echoed): b (3.0 ms per echo; 3.00 x better than a)"
    )
    assert "a near tie" in str(picks["lowest latency, one call at a time"])


def test_choices_with_a_single_rpc_transport_have_no_runner_up():
    picks = bench.choices({"raw": result("raw", 10, 20, 90_000), "a": result("a", 40, 400, 10_000)})
    assert [c.transport for c in picks] == ["a", "a", "a"]
    assert all(c.runner_up is None and c.margin is None and not c.close_call for c in picks)
    assert bench.choices({"raw": result("raw", 10, 20, 90_000)}) == []


def test_settings_are_checked_and_keep_every_loop_bounded():
    for bad in (
        {"rounds": 0},
        {"seconds_per_round": -1},
        {"concurrent_seconds": math.inf},
        {"connections": True},
        {"payload_sizes": (0,)},
        {"payload_sizes": (bench.MAX_PAYLOAD + 1,)},
    ):
        with pytest.raises(ValueError):
            bench.Settings(**bad)
    with pytest.raises(TypeError):
        bench.Settings(payload_sizes=("16",))
    assert bench.Settings(payload_sizes=[16, 1024]).payload_sizes == (16, 1024)
    quick = bench.QUICK
    per_round = (
        quick.seconds_per_round
        + quick.concurrent_seconds
        + len(quick.payload_sizes) * quick.payload_seconds
    )
    assert (
        len(bench.TRANSPORTS) * quick.rounds * per_round < 20
    )  # seconds of measuring in --quick: well under a minute
    assert quick.payload_sizes == (16, 1024, 65536, 1 << 20) == bench.NORMAL.payload_sizes
