"""Notebook 14's real-time stream (rpclab.realtime): the fixed-rate Feed and its consumer's three
policies."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest

from rpclab.realtime import consumer, feed
from rpclab.realtime.consumer import Recording


@pytest.fixture
def channel():
    server = feed.serve("feed-test")
    with grpc.insecure_channel(f"{server.host}:{server.port}") as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch
    server.stop()


def test_every_reading_arrives_in_order_due_exactly_one_period_apart(channel):
    rec = consumer.record(channel, rate_hz=1000, count=200)
    assert rec.seq.tolist() == list(range(200))
    assert set(np.diff(rec.due_ns).tolist()) == {1_000_000}
    assert (rec.sent_ns >= rec.due_ns).all() and (rec.acted_ns >= rec.sent_ns).all()
    assert rec.received == rec.acted == 200 and rec.skipped == rec.dropped == 0


def test_a_producer_held_back_by_flow_control_catches_up_or_skips_to_the_newest(channel):
    # Big readings and a slow consumer: gRPC's windows fill and the producer's sends wait.
    slow = consumer.takes(0.004)
    kept = consumer.record(channel, count=150, payload_bytes=200_000, work=slow)
    assert kept.received == 150 and kept.skipped == 0
    assert kept.held_s.max() > 0.05  # some readings left the producer long after they were due
    newest = consumer.record(channel, count=150, payload_bytes=200_000, work=slow, catch_up=False)
    assert newest.skipped > 0 and newest.received + newest.skipped == 150
    assert (np.diff(newest.seq) >= 1).all() and newest.seq[-1] == 149


def test_a_deadline_per_message_drops_stale_readings_and_acts_only_on_fresh_ones(channel):
    rec = consumer.record(
        channel, count=300, policy="deadline", budget_s=0.003, work=consumer.takes(0.002)
    )
    assert rec.dropped > 0 and rec.acted + rec.dropped == rec.received == 300
    assert rec.latency_s.max() < 0.003 + 0.001  # checked on arrival, acted on at once


def test_a_queue_of_one_keeps_only_the_newest_reading_for_a_slow_consumer(channel):
    rec = consumer.record(channel, count=300, policy="latest", work=consumer.takes(0.003))
    assert rec.dropped > 0 and rec.acted + rec.dropped == rec.received == 300
    assert (np.diff(rec.seq) >= 1).all()
    assert not [t for t in threading.enumerate() if t.name == "rpclab-realtime-reader"]


def test_an_error_in_the_consumers_work_ends_the_stream_and_reaches_the_caller(channel):
    def broken(reading):
        if reading.seq >= 5:  # a policy may skip readings: not == 5
            raise RuntimeError("work failed")

    for policy in consumer.POLICIES:
        with pytest.raises(RuntimeError, match="work failed"):
            consumer.record(channel, count=1000, policy=policy, work=broken)
    assert not [t for t in threading.enumerate() if t.name == "rpclab-realtime-reader"]


def test_work_alongside_runs_again_and_again_inside_its_block_and_its_thread_ends_with_it(channel):
    stub = feed.feed_pb2_grpc.FeedStub(channel)

    def bulk():
        list(stub.Subscribe(feed.feed_pb2.Subscription(rate_hz=50_000, count=100), timeout=5))

    with consumer.alongside(bulk) as load:
        consumer.record(channel, count=100)
    assert load.calls >= 1
    assert not [t for t in threading.enumerate() if t.name == "rpclab-realtime-alongside"]


def test_an_error_in_the_work_alongside_reaches_the_caller():
    def broken():
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"), consumer.alongside(broken):
        pass


def test_bad_subscriptions_are_refused(channel):
    stub = feed.feed_pb2_grpc.FeedStub(channel)
    for bad in (
        feed.feed_pb2.Subscription(rate_hz=0, count=1),
        feed.feed_pb2.Subscription(rate_hz=float("nan"), count=1),
        feed.feed_pb2.Subscription(rate_hz=1000, count=feed.MAX_COUNT + 1),
        feed.feed_pb2.Subscription(rate_hz=1000, count=1, payload_bytes=feed.MAX_PAYLOAD + 1),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.Subscribe(bad, timeout=5))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for kwargs in ({"policy": "sometimes"}, {"rate_hz": 0}, {"count": 0}, {"budget_s": 0}):
        with pytest.raises(ValueError):
            consumer.record(channel, **kwargs)


def test_a_recording_summarises_latency_percentiles_budget_misses_and_gaps():
    ms = 1_000_000
    seq = np.arange(5)
    due = 1_000 * ms + seq * ms
    acted = due + np.array([1, 1, 1, 1, 9]) * ms  # at 1, 2, 3, 4, 13 ms: the longest gap is 9 ms
    rec = Recording("every", 1000.0, 5, 0.002, seq, due, due, acted, received=5)
    assert rec.p50 == pytest.approx(0.001) and rec.max == pytest.approx(0.009)
    assert rec.over_budget == 1 and rec.longest_gap == pytest.approx(0.009)
    assert rec.due_s.tolist() == pytest.approx([0, 0.001, 0.002, 0.003, 0.004])
    assert "p99" in rec.summary() and "over budget" in consumer.format_table({"x": rec})


def test_the_recording_keeps_how_long_each_reading_s_work_really_took(channel):
    rec = consumer.record(channel, count=50, work=consumer.takes(0.002))
    assert rec.work_s.shape == (50,) and (rec.work_s >= 0.002).all()
    assert rec.handled_per_s < 1 / 0.002  # it cannot act faster than its work allows
    assert rec.reading_bytes > 5  # the message and gRPC's 5-byte prefix
    with pytest.raises(ValueError):
        consumer.takes(2)


def test_a_pause_runs_once_on_the_first_reading_acted_on_from_its_number_on():
    calls: list[int] = []
    pause = consumer.pause_at(10, lambda: calls.append(1))
    for seq in (3, 12, 13, 40):  # reading 10 itself never came: skipped or dropped
        pause(feed.feed_pb2.Reading(seq=seq))
    assert calls == [1] and pause.at == 12 and pause.took_s >= 0
    assert "ran at reading 12" in str(pause)
    assert "never ran" in str(consumer.pause_at(5))
    with pytest.raises(ValueError):
        consumer.pause_at(-1)


def test_a_pause_happens_under_every_policy_even_when_the_producer_skips(channel):
    for policy, catch_up in (("every", True), ("every", False), ("deadline", False)):
        pause = consumer.pause_at(100, lambda: threading.Event().wait(0.3))
        rec = consumer.record(channel, count=600, work=pause, policy=policy, catch_up=catch_up)
        assert pause.at is not None and pause.at >= 100, (policy, catch_up)
        assert rec.longest_gap >= 0.3  # the pause shows as a gap between readings acted on


def test_waiting_at_send_counts_readings_sent_and_not_yet_acted_on():
    ms = 1_000_000
    seq = np.arange(4)
    sent = np.array([0, 1, 2, 3]) * ms
    acted = np.array([5, 6, 7, 8]) * ms  # nothing acted on until all four were sent
    rec = Recording("every", 1000.0, 4, 0.002, seq, sent, sent, acted)
    assert rec.waiting_at_send.tolist() == [1, 2, 3, 4]
    assert rec.handled_per_s == pytest.approx(1000.0)
