"""rpclab.bench: the harness measures in rounds on new connections, in every arrangement asked
for, keeps every round, and reports each figure with one meaning."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import socket
import threading
import time

import pytest

from rpclab import bench
from rpclab.bench import echo, harness, placement
from rpclab.byhand import framing
from rpclab.runtime import background, process

# A fake transport measured in this process only, nothing pinned: the harness's logic, fast.
TINY = bench.Settings(
    rounds=2,
    calls_per_round=200,
    seconds_per_round=0.1,
    connections=3,
    concurrent_calls=300,
    concurrent_seconds=0.1,
    warmup_calls=20,
    where=("kernel",),
    placements=("free",),
)

# Small enough for a test, and still every measurement once, 1 MiB echoes included.
SMOKE = bench.Settings(
    rounds=1,
    calls_per_round=200,
    seconds_per_round=0.03,
    connections=2,
    concurrent_calls=200,
    concurrent_seconds=0.03,
    warmup_calls=5,
    payload_sizes=(16, bench.MAX_PAYLOAD),
    payload_calls=2,
    payload_seconds=0.02,
    where=("kernel", "process"),
    placements=("free",),
)

CAN_PIN = placement.unavailable("two-cpus") is None


def test_time_round_trips_stops_at_the_call_limit_and_counts_the_threads_cpu():
    calls = []
    timed = bench.time_round_trips(lambda: calls.append(1), max_calls=50, max_seconds=10.0)
    assert len(timed.latencies) == len(calls) == 50
    assert all(ns >= 0 for ns in timed.latencies) and timed.seconds >= 0
    assert timed.thread_cpu_ns >= 0


def test_time_round_trips_stops_at_the_time_limit():
    def slow_call():
        time.sleep(0.01)  # a deliberate delay standing in for a slow transport

    timed = bench.time_round_trips(slow_call, max_calls=1_000_000, max_seconds=0.05)
    assert 1 <= len(timed.latencies) < 100
    assert timed.seconds < 2.0
    assert timed.thread_cpu_ns < timed.seconds * 1e9  # sleeping is not using the CPU


def test_cpu_time_is_counted_where_the_work_is_done():
    def busy_call():
        end = time.thread_time_ns() + 200_000  # 0.2 ms of CPU, in this thread
        while time.thread_time_ns() < end:
            pass

    timed = bench.time_round_trips(busy_call, max_calls=20, max_seconds=10.0)
    assert timed.thread_cpu_ns >= 20 * 200_000


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


def test_every_round_is_on_a_new_connection_and_every_round_is_kept(monkeypatch):
    log: list[str] = []
    monkeypatch.setitem(bench.TRANSPORTS, "fake", lambda: echoing_transport(log))
    settings = dataclasses.replace(TINY, payload_sizes=(16, 1024), payload_calls=7)
    fake = bench.run(["fake"], settings)["fake"]
    assert [(r.number, r.calls, r.where, r.placement) for r in fake.rounds] == [
        (1, 200, "kernel", "free"),
        (2, 200, "kernel", "free"),
    ]
    for r in fake.rounds:
        assert len(r.latencies_ns) == r.calls and 0 <= r.median_us <= r.p99_us
        assert r.cpu_us >= 0 and r.client_cpu_us >= 0 and r.server_cpu_us is None
    assert [(c.number, c.calls) for c in fake.concurrent] == [(1, 300), (2, 300)]
    assert fake.errors == [] and fake.concurrency == "connections, a thread each"
    assert [(p.size, p.calls, len(p.round_medians_us)) for p in fake.payload] == [
        (16, 14, 2),
        (1024, 14, 2),
    ]
    assert log[0] == "setup" and log[-1] == "close endpoint"
    # a check at start-up; per round: one connection, 3 at once, one per payload size
    assert log.count("connect") == log.count("close connection") == 1 + 2 * (1 + 3 + 2)


def test_run_calls_progress_once_per_measurement(monkeypatch):
    monkeypatch.setitem(bench.TRANSPORTS, "fake", lambda: echoing_transport([]))
    seen: list[tuple[int, int, str]] = []
    bench.run(["fake"], TINY, progress=lambda done, total, what: seen.append((done, total, what)))
    total = 1 + TINY.rounds * 2
    assert [s[0] for s in seen] == list(range(total)) and {s[1] for s in seen} == {total}
    assert seen[0][2] == "starting fake" and "round 2/2" in seen[-1][2]
    assert seen[-1][2].endswith("fake, 3 at once")


def test_a_custom_transport_is_measured_in_this_process_only_and_the_run_says_so(monkeypatch):
    monkeypatch.setitem(bench.TRANSPORTS, "fake", lambda: echoing_transport([]))
    notes: list[str] = []
    settings = dataclasses.replace(TINY, where=("kernel", "process"), connections=0)
    fake = bench.run(["fake"], settings, notes=notes)["fake"]
    assert {r.where for r in fake.rounds} == {"kernel"}
    assert any("fake: measured with the server in this process only" in n for n in notes)
    assert background.running() == {}


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
    assert bench.transport_names(None) == list(echo.TRANSPORTS)  # the EXTRAS only when named
    assert {"json-floor", "queue"} <= set(bench.TRANSPORTS) - set(bench.transport_names(None))


def test_the_json_floor_is_measured_when_named_here_and_in_the_server_process():
    settings = dataclasses.replace(
        TINY, where=("kernel", "process"), connections=0, rounds=1, payload_sizes=(16,)
    )
    results = bench.run("raw,json-floor", settings)
    floor = results["json-floor"]
    assert not floor.errors and {r.where for r in floor.rounds} == {"kernel", "process"}
    assert all(r.calls >= settings.min_calls and r.cpu_us > 0 for r in floor.rounds)
    assert {s.transport for s in bench.summaries(results) if s.cpu_vs_raw} == {"raw", "json-floor"}
    assert bench.choices(results) == []  # a measuring stick is never the best RPC transport
    assert background.running() == {}


def test_the_json_floor_server_drops_what_it_cannot_read_and_serves_the_others():
    endpoint = echo.in_kernel(echo.EXTRAS["json-floor"])
    try:
        good = endpoint.connect("hi")
        address = background.running()["bench-json-floor"]
        for junk in (b"not json", b'{"method": "nope", "params": [], "id": 1}', b"[1]", b'"x"'):
            with socket.create_connection(address, timeout=5) as bad:
                bad.sendall(framing.encode_frame(junk))
                assert bad.recv(100) == b""  # closed, nothing sent back
        assert good.call() == "hi"
        good.close()
    finally:
        endpoint.close()
    assert background.running() == {}


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


def test_ctrl_c_during_a_run_stops_every_server_and_the_server_process_and_exits_130(
    monkeypatch, capsys
):
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
    monkeypatch.setattr(harness, "QUICK", dataclasses.replace(TINY, where=("process", "kernel")))
    threads_before = set(threading.enumerate())
    assert bench.main(["--quick", "--transports", "socketrpc,interrupted"]) == 130
    assert "interrupted; every server it started is stopped" in capsys.readouterr().err
    assert background.running() == {}
    assert set(threading.enumerate()) <= threads_before


# --------------------------------------------------------------------------- every real transport


@pytest.fixture(scope="module")
def measured():
    """One small run of every registered transport, server here and in a process of its own."""
    threads_before = set(threading.enumerate())
    ports_before = process.listening_ports()
    results = bench.run(None, SMOKE)
    for thread in set(threading.enumerate()) - threads_before:
        # grpc.aio's poller thread ends on its own just after the last aio channel and server
        # have closed: wait for each new thread to end (bounded), then see what is left
        thread.join(5.0)
    return results, threads_before, set(threading.enumerate()), ports_before


def test_every_transport_is_measured_in_both_places_and_every_number_is_positive(measured):
    results, _, _, _ = measured
    assert list(results) == ["raw", "socketrpc", "xmlrpc", "rest", "thrift", "grpc", "grpc-aio"]
    for name, r in results.items():
        assert r.errors == [], name
        assert [(x.where, x.placement) for x in r.rounds] == [
            ("kernel", "free"),
            ("process", "free"),
        ]
        kernel, apart = r.rounds
        assert kernel.server_cpu_us is None  # the server's CPU is this process's
        assert apart.server_cpu_us is not None and apart.server_cpu_us > 0
        numbers = [x.median_us for x in r.rounds] + [x.cpu_us for x in r.rounds]
        numbers += [c.rate for c in r.concurrent] + [p.median_us for p in r.payload]
        assert all(math.isfinite(x) and x > 0 for x in numbers), (name, numbers)
        assert [p.size for p in r.payload] == [16, bench.MAX_PAYLOAD]  # 1 MiB gets through
    assert results["grpc-aio"].concurrency.startswith("calls in flight")


def test_a_run_leaves_no_server_no_process_and_no_thread_behind(measured):
    _, threads_before, threads_after, ports_before = measured
    assert background.running() == {}
    assert threads_after <= threads_before, [t.name for t in threads_after - threads_before]
    assert process.listening_ports() == ports_before


def test_the_tables_give_each_column_one_meaning(measured):
    results, _, _, _ = measured
    text = bench.format_table(results)
    heads = [line for line in text.splitlines() if line.startswith("transport ")]
    assert heads[0].split() == [
        "transport", "median", "µs", "rounds", "low-high", "p99", "µs", "CPU", "µs/call",
        "time", "÷", "raw", "CPU", "÷", "raw", "calls/s",
    ]  # fmt: skip
    assert "x raw" not in text  # ratios are of times only, named as such
    assert "server in this process" in text and "server in a process of its own" in text
    for line in text.splitlines():
        if line.startswith("raw ") and "µs" not in line and len(line.split()) == 8:
            assert line.split()[5:7] == ["1.00", "1.00"]  # raw against itself
    assert "Payload sweep" in text


def test_json_carries_every_round_and_the_summaries(measured):
    results, _, _, _ = measured
    data = json.loads(json.dumps(bench.to_json(results, SMOKE, seconds=1.5, notes=["n"])))
    assert data["rpclab_bench"] == 2 and data["seconds"] == 1.5 and data["notes"] == ["n"]
    assert {"python", "platform", "cpus", "usable_cpus"} <= set(data["machine"])
    assert data["settings"]["payload_sizes"] == [16, bench.MAX_PAYLOAD]
    rounds = data["rounds"]
    assert len(rounds) == sum(len(r.rounds) for r in results.values())
    for r in rounds:
        assert {
            "transport", "where", "placement", "number", "calls", "median_us", "p99_us",
            "cpu_us", "client_cpu_us", "server_cpu_us", "rate", "quantiles_us",
        } <= set(r)  # fmt: skip
        assert r["quantiles_us"]["0.5"] <= r["quantiles_us"]["0.99"]
        assert "latencies_ns" not in r
    assert len(data["summaries"]) == 2 * len(results)
    raw = [s for s in data["summaries"] if s["transport"] == "raw"]
    assert all(s["wall_vs_raw"] == 1.0 and s["cpu_vs_raw"] == 1.0 for s in raw)
    assert data["headline"] == bench.headline_figures(results)
    assert all(" | " in key for key in data["headline"])
    assert {c["transport"] for c in data["choices"]} <= set(results) - {"raw"}


def test_the_command_measures_only_the_transports_asked_for_and_writes_json(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(harness, "QUICK", TINY)
    path = tmp_path / "bench.json"
    args = argparse.Namespace(quick=True, json=str(path), transports="socketrpc,raw")
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "Measuring socketrpc, raw: 2 rounds (quick run)" in out and f"wrote {path}" in out
    assert "lowest latency, one call at a time: socketrpc" in out  # the only RPC transport
    data = json.loads(path.read_text())
    assert [s["transport"] for s in data["summaries"]] == ["socketrpc", "raw"]
    assert data["settings"] == json.loads(json.dumps(dataclasses.asdict(TINY)))


def test_benchmark_takes_the_commands_options_as_arguments(tmp_path):
    out, bar = io.StringIO(), io.StringIO()
    results = bench.benchmark(
        "raw", settings=TINY, json_file=str(tmp_path / "r.json"), progress=bar, out=out
    )
    assert list(results) == ["raw"] and results["raw"].rate > 0
    assert "custom run" in out.getvalue() and (tmp_path / "r.json").exists()
    assert "starting raw" in bar.getvalue()


@pytest.mark.skipif(not CAN_PIN, reason="pinning threads needs Linux and two usable CPUs")
def test_rounds_are_pinned_as_the_arrangement_says_and_the_pins_are_undone():
    before = placement.cpus_of(threading.get_native_id())
    settings = dataclasses.replace(
        TINY, where=("kernel",), placements=("one-cpu", "two-cpus"), connections=0
    )
    raw = bench.run(["raw"], settings)["raw"]
    cpus = placement.usable_cpus()
    assert [(r.placement, r.cpus) for r in raw.rounds] == [
        ("one-cpu", [cpus[0]]),
        ("two-cpus", cpus[:2]),
    ] * 2
    assert placement.cpus_of(threading.get_native_id()) == before


# --------------------------------------------------------------------------- reading results


def fake_round(name, number, median, cpu, where="kernel", place="one-cpu"):
    return bench.Round(
        name, where, place, number, calls=100, seconds=median * 100 / 1e6, median_us=median,
        p99_us=median * 2, mean_us=median, cpu_us=cpu, client_cpu_us=cpu / 2,
        server_cpu_us=None, cpus=[0], latencies_ns=[int(median * 1000)] * 100,
    )  # fmt: skip


def test_ratios_to_raw_pair_each_round_with_raws_same_round():
    raw = bench.Result("raw", headline=("kernel", "one-cpu"))
    rpc = bench.Result("rpc", headline=("kernel", "one-cpu"))
    # raw: 10, 20, 10 µs; rpc: 20, 40, 30 µs -> ratios 2, 2, 3: median 2 (not 30 / 10 = 3)
    for number, (r, t) in enumerate([(10, 20), (20, 40), (10, 30)], start=1):
        raw.rounds.append(fake_round("raw", number, r, r))
        rpc.rounds.append(fake_round("rpc", number, t, t * 1.5))
    s = bench.summary(rpc, "kernel", "one-cpu", raw)
    assert s.median_us == 30 and (s.low_us, s.high_us) == (20, 40)
    assert s.wall_vs_raw == 2.0 and (s.wall_vs_raw_low, s.wall_vs_raw_high) == (2.0, 3.0)
    assert s.cpu_vs_raw == 3.0
    assert bench.summary(rpc, "process", "one-cpu", raw) is None


def test_choices_name_the_best_rpc_transport_in_the_first_arrangement():
    results = {}
    for name, median, cpu in (("raw", 10, 10), ("a", 40, 90), ("b", 50, 60), ("c", 42, 100)):
        r = bench.Result(name, headline=("kernel", "one-cpu"))
        r.rounds = [fake_round(name, 1, median, cpu), fake_round(name, 1, 1, 1, "process")]
        results[name] = r
    picks = {c.situation: c for c in bench.choices(results)}
    assert picks["lowest latency, one call at a time"].transport == "a"
    assert picks["lowest latency, one call at a time"].runner_up == "c"
    assert picks["lowest latency, one call at a time"].close_call  # 42 / 40: within 10%
    assert picks["least CPU per call"].transport == "b"
    assert (
        str(picks["least CPU per call"])
        == "least CPU per call: b (60 µs per call; 1.50 x better than a)"
    )


def test_settings_are_checked_and_keep_every_loop_bounded():
    for bad in (
        {"rounds": 0},
        {"seconds_per_round": -1},
        {"concurrent_seconds": math.inf},
        {"connections": True},
        {"payload_sizes": (0,)},
        {"payload_sizes": (bench.MAX_PAYLOAD + 1,)},
        {"where": ("kernel", "cloud")},
        {"placements": ("three-cpus",)},
        {"placements": ()},
    ):
        with pytest.raises(ValueError):
            bench.Settings(**bad)
    with pytest.raises(TypeError):
        bench.Settings(payload_sizes=("16",))
    with pytest.raises(TypeError):
        bench.Settings(where="kernel")
    assert bench.Settings(payload_sizes=[16, 1024]).payload_sizes == (16, 1024)
    quick = bench.QUICK
    per_round = (
        quick.seconds_per_round * len(quick.placements)
        + quick.concurrent_seconds * len(set(quick.placements) & set(quick.concurrent_placements))
        + len(quick.payload_sizes) * quick.payload_seconds
    ) * len(quick.where)
    assert len(bench.TRANSPORTS) * quick.rounds * per_round < 30  # seconds measuring in --quick
    assert quick.rounds >= 5 and quick.payload_sizes == (16, 1024, 65536, 1 << 20)


def test_a_round_makes_its_minimum_of_calls_even_when_one_call_outlasts_its_seconds():
    def slow_echo(payload):
        def call():
            time.sleep(0.004)  # a slow call, longer than the round's seconds
            return payload

        return bench.Connection(call, lambda: None)

    endpoint = bench.Endpoint(slow_echo, lambda: None)
    settings = bench.Settings(
        calls_per_round=100, seconds_per_round=0.001, warmup_calls=1, min_calls=4
    )
    (only,) = bench.measure_rounds("slow", endpoint, rounds=1, settings=settings)
    assert only.calls == 4


def test_payload_connections_warm_up_before_they_are_timed():
    calls = []

    def counting_echo(payload):
        def call():
            calls.append(len(payload))
            return payload

        return bench.Connection(call, lambda: None)

    bench.register("counting", lambda: bench.Endpoint(counting_echo, lambda: None))
    try:
        settings = bench.Settings(
            rounds=1, calls_per_round=3, connections=0, warmup_calls=7, payload_sizes=(64,),
            payload_calls=5, where=("kernel",), placements=("free",),
        )  # fmt: skip
        results = bench.run(["counting"], settings)
    finally:
        del bench.TRANSPORTS["counting"], bench.DESCRIPTIONS["counting"]
    (point,) = results["counting"].payload
    assert point.calls == 5
    assert calls.count(64) == 1 + 7 + 5  # the check, the warm-up, the timed calls


def test_the_steadiest_transport_is_the_one_whose_p99_is_fewest_times_its_median():
    results = {}
    # "fast" has the lowest p99 but it is 20 x its median; "even" is slower and steady
    for name, median, p99 in (("raw", 10, 20), ("fast", 5, 100), ("even", 100, 150)):
        r = bench.Result(name, headline=("kernel", "one-cpu"))
        calls = [median * 1000] * 90 + [p99 * 1000] * 10  # ns: the p99 of the pooled calls
        r.rounds = [dataclasses.replace(fake_round(name, 1, median, 1), latencies_ns=calls)]
        results[name] = r
    picks = {c.situation.split(" (")[0]: c for c in bench.choices(results)}
    assert picks["steadiest latency"].transport == "even"
    assert picks["steadiest latency"].figure == "p99 1.5 x its median"
