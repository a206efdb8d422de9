"""rpclab.bench.load: an open loop keeps its schedule and counts the wait for a free caller, a
closed loop's rate follows its latency, and Little's law holds for what was measured."""

from __future__ import annotations

import threading
import time

import pytest

from rpclab import bench
from rpclab.bench import load

SERVICE = 0.004  # seconds each call of the fake server takes, one call at a time


def one_at_a_time_server(service: float = SERVICE):
    """A fake transport: one call at a time, each ``service`` seconds long (a sleep standing in
    for the server's work); ``hold(seconds)`` stalls it, as a paused process would."""
    busy = threading.Lock()

    def connect(payload: str) -> bench.Connection:
        def call() -> str:
            with busy:
                time.sleep(service)  # the server's work
            return payload

        return bench.Connection(call, lambda: None)

    def hold(seconds: float) -> None:
        with busy:
            time.sleep(seconds)  # the server stalls

    return bench.Endpoint(connect, lambda: None), hold


def test_a_poisson_schedule_is_seeded_bounded_and_has_the_rate_asked_for():
    first = load.poisson_schedule(1000, 2.0, seed=7)
    assert first == load.poisson_schedule(1000, 2.0, seed=7) != load.poisson_schedule(1000, 2.0)
    assert first == sorted(first) and 0 < first[0] and first[-1] < 2e9
    assert 1800 < len(first) < 2200  # about rate x seconds
    with pytest.raises(ValueError, match="over 200,000 calls"):
        load.poisson_schedule(150_000, 2.0)
    with pytest.raises(ValueError):
        load.poisson_schedule(0, 1.0)


def test_below_capacity_an_open_loop_gets_the_rate_it_offers():
    endpoint, _ = one_at_a_time_server()
    run = load.open_loop(endpoint, rate=50, seconds=1.0, callers=4)  # 20% of the 250/s capacity
    assert run.errors == [] and run.unserved == 0 and run.calls == run.scheduled
    assert 0.8 < run.achieved_rate / 50 < 1.25
    assert run.percentile_us(0.5) < 5 * SERVICE * 1e6


def test_above_capacity_latency_from_when_calls_were_due_keeps_growing():
    endpoint, _ = one_at_a_time_server()
    run = load.open_loop(endpoint, rate=500, seconds=0.5, callers=4)  # twice the capacity
    assert run.achieved_rate < 300  # the server cannot go faster than 250 calls/s
    # calls queue behind each other: those due late in the run waited longest
    assert run.percentile_us(0.99) > 20 * SERVICE * 1e6
    assert run.percentile_us(0.99) > 2 * run.percentile_us(0.99, from_start=True)


def test_calls_not_started_by_the_end_of_the_drain_are_counted_unserved():
    endpoint, _ = one_at_a_time_server()
    run = load.open_loop(endpoint, rate=1000, seconds=0.2, callers=2, drain=0.0)
    assert run.unserved > 0 and run.calls + run.unserved == run.scheduled


def test_a_stall_shows_from_when_calls_were_due_and_hides_from_when_they_started():
    endpoint, hold = one_at_a_time_server(service=0.0005)
    run = load.open_loop(
        endpoint, rate=400, seconds=1.0, callers=1, disturb=(0.4, lambda: hold(0.15))
    )
    # one caller waits through the stall: the calls due meanwhile start late, and only the first
    # of them *takes* long -- coordinated omission
    from_start = sorted(run.latencies_us(from_start=True))
    from_due = sorted(run.latencies_us())
    assert from_start[-1] > 100_000 and from_due[-1] > 100_000
    slow_from_start = sum(v > 50_000 for v in from_start)
    slow_from_due = sum(v > 50_000 for v in from_due)
    assert slow_from_start <= 2 and slow_from_due >= 10


def test_littles_law_holds_for_what_an_open_loop_measured():
    endpoint, _ = one_at_a_time_server()
    run = load.open_loop(endpoint, rate=180, seconds=1.5, callers=8)  # 70% busy: a queue forms
    level, rate, wait, product = run.little()
    assert level > 0.5 and rate > 0 and wait > SERVICE
    assert 0.7 < level / product < 1.4


def test_a_closed_loops_rate_is_its_callers_over_their_mean_latency():
    endpoint, _ = one_at_a_time_server()
    run = load.closed_loop(endpoint, callers=4, seconds=0.5)
    assert run.errors == [] and run.offered_rate is None and run.calls > 20
    # each of 4 callers waits for the 3 others: about 4 service times per call
    assert run.mean_us() > 2.5 * SERVICE * 1e6
    assert 0.8 < run.achieved_rate / (4 / (run.mean_us() / 1e6)) < 1.25


def test_errors_are_counted_and_the_run_ends():
    def connect(payload: str) -> bench.Connection:
        def call() -> str:
            raise ConnectionError("gone")

        return bench.Connection(call, lambda: None)

    calls = [0]

    def first_ok_then_fail(payload: str) -> bench.Connection:
        calls[0] += 1
        if calls[0] == 1:  # the check call open_connection makes
            return bench.Connection(lambda: payload, lambda: None)
        return connect(payload)

    endpoint = bench.Endpoint(first_ok_then_fail, lambda: None)
    with pytest.raises(ConnectionError):
        load.open_loop(endpoint, rate=100, seconds=0.1, callers=2)  # the second connection fails
    ok_once = [True]

    def flaky(payload: str) -> bench.Connection:
        def call() -> str:
            if ok_once[0]:
                ok_once[0] = False
                return payload
            raise ConnectionError("gone")

        return bench.Connection(call, lambda: None)

    run = load.open_loop(bench.Endpoint(flaky, lambda: None), rate=100, seconds=0.2, callers=1)
    assert run.errors == ["ConnectionError: gone"] and run.calls == 0


def test_the_md1_prediction_is_the_service_time_at_no_load_and_has_no_limit_at_capacity():
    assert load.md1_mean_s(0, 0.002) == 0.002
    assert load.md1_mean_s(250, 0.002) == pytest.approx(0.002 + 0.5 * 0.002 / (2 * 0.5))
    assert load.md1_mean_s(500, 0.002) is None and load.md1_mean_s(900, 0.002) is None
    with pytest.raises(ValueError):
        load.md1_mean_s(100, 0)
