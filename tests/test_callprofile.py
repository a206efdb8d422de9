"""rpclab.bench.profile: a profile of many calls, summed by category per thread, and the measured
cost of a hand-off."""

from __future__ import annotations

import math
import os
import threading

import pytest

from rpclab.bench import profile as callprofile
from rpclab.runtime import background

SOCKET, CODEC, LOCKS, REST = callprofile.CATEGORIES


@pytest.mark.parametrize(
    "func, expected",
    [
        (("~", 0, "<method 'sendall' of '_socket.socket' objects>"), SOCKET),
        (("~", 0, "<method 'recv_into' of '_socket.socket' objects>"), SOCKET),
        (("~", 0, "<built-in method select.select>"), SOCKET),
        (("/usr/lib/python3.11/socket.py", 494, "create_connection"), SOCKET),
        (("~", 0, "<orjson.loads>"), CODEC),
        (("~", 0, "<built-in method _json.encode_basestring_ascii>"), CODEC),
        (("/usr/lib/python3.11/json/decoder.py", 332, "decode"), CODEC),
        (("/work/main/lib/rpclab/byhand/jsonrpc/codec.py", 62, "decode"), CODEC),
        (("/work/main/lib/rpclab/byhand/jsonrpc/fastpath.py", 40, "decode_plain"), CODEC),
        (("/work/main/lib/rpclab/byhand/jsonrpc/dispatch.py", 155, "handle"), REST),  # not encoding
        (("~", 0, "<method 'Parse' of 'pyexpat.xmlparser' objects>"), CODEC),
        (("/usr/lib/python3.11/xmlrpc/client.py", 970, "dumps"), CODEC),
        (("/usr/lib/python3.11/xmlrpc/client.py", 1130, "single_request"), REST),  # HTTP, not XML
        (("/x/site-packages/thriftpy2/protocol/binary.py", 200, "write_val"), CODEC),
        (("~", 0, "<method 'SerializeToString' of 'google._upb._message.Message' objects>"), CODEC),
        (("~", 0, "<method 'acquire' of '_thread.lock' objects>"), LOCKS),
        (("~", 0, "<method '__exit__' of '_thread.RLock' objects>"), LOCKS),
        (("/usr/lib/python3.11/threading.py", 288, "wait"), LOCKS),
        (("/usr/lib/python3.11/queue.py", 154, "get"), LOCKS),
        (("/work/main/lib/rpclab/byhand/socketrpc/reader.py", 180, "_send"), REST),
        (("~", 0, "<built-in method builtins.len>"), REST),
    ],
)
def test_each_function_falls_in_one_category(func, expected):
    assert callprofile.category(func) == expected


def test_function_names_read_like_python():
    assert (
        callprofile.function_name(("~", 0, "<method 'sendall' of '_socket.socket' objects>"))
        == "_socket.socket.sendall"
    )
    assert (
        callprofile.function_name(("~", 0, "<built-in method time.monotonic>")) == "time.monotonic"
    )
    assert callprofile.function_name(("~", 0, "<orjson.loads>")) == "orjson.loads"
    assert (
        callprofile.function_name(("/x/lib/rpclab/byhand/socketrpc/reader.py", 180, "_send"))
        == "reader._send"
    )


@pytest.mark.parametrize("transport", ["socketrpc", "raw"])
def test_a_profile_splits_each_threads_time_per_call_into_the_categories(transport):
    threads_before = set(threading.enumerate())
    profile = callprofile.profile_calls(transport, calls=300, max_seconds=2.0)
    assert profile.transport == transport and 1 <= profile.calls <= 300
    assert (
        profile.seconds_per_call > 0 and profile.unprofiled > 0 and math.isfinite(profile.overhead)
    )
    expected = (
        ["client thread", "server thread"]
        if callprofile.PER_THREAD
        else ["client and server threads"]
    )
    assert [part.label for part in profile.parts] == expected
    for part in profile.parts:
        assert list(part.seconds) == list(callprofile.CATEGORIES)
        assert part.seconds[SOCKET] > 0 and part.total > 0  # every call sends and receives
        assert part.top and all(t >= 0 for _, t in part.top)
    if transport == "raw":  # nothing to encode in a raw ping-pong
        assert all(part.seconds[CODEC] == 0 for part in profile.parts)
    else:
        assert all(part.seconds[CODEC] > 0 for part in profile.parts)
    assert background.running() == {}
    assert set(threading.enumerate()) <= threads_before
    assert threading.getprofile() is None  # the hook for new threads is gone


def test_threads_can_be_added_together_and_the_table_shows_every_row():
    together = callprofile.profile_calls("raw", calls=200, separate_threads=False)
    assert [part.label for part in together.parts] == ["client and server threads"]
    rows = callprofile.breakdown_rows([together])
    assert list(rows) == ["raw, client and server threads"] and list(
        rows["raw, client and server threads"]
    ) == list(callprofile.CATEGORIES)
    table = callprofile.format_profiles([together])
    assert table.splitlines()[0].split()[:3] == ["µs", "per", "call"]
    assert "raw, client and server threads" in table and "µs per call under the profiler" in table


def test_bad_arguments_are_refused_before_any_server_starts():
    with pytest.raises(ValueError, match="unknown transport"):
        callprofile.profile_calls("smoke-signals")
    with pytest.raises(ValueError, match="calls"):
        callprofile.profile_calls("raw", calls=0)
    if not callprofile.PER_THREAD:
        with pytest.raises(ValueError, match="separately"):
            callprofile.profile_calls("raw", separate_threads=True)
    assert background.running() == {}


def test_a_thread_hand_off_is_measured_against_the_same_queue_work_in_one_thread():
    threads_before = set(threading.enumerate())
    handoff = callprofile.thread_handoff(round_trips=200, max_seconds=1.0)
    assert 1 <= handoff.round_trips <= 200
    assert handoff.one_way > 0 and handoff.same_thread > 0
    assert set(threading.enumerate()) <= threads_before
    with pytest.raises(ValueError):
        callprofile.thread_handoff(round_trips=0)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="pinning threads is Linux only")
def test_the_other_thread_of_a_hand_off_can_be_pinned_to_a_cpu_this_process_may_use():
    cpu = min(os.sched_getaffinity(0))
    handoff = callprofile.thread_handoff(round_trips=100, other_cpus=[cpu])
    assert handoff.round_trips >= 1 and handoff.one_way > 0
    with pytest.raises(ValueError, match="CPUs this process may use"):
        callprofile.thread_handoff(round_trips=10, other_cpus=[10_000])
