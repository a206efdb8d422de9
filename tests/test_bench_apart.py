"""rpclab.bench.placement and rpclab.bench.server_process: threads pinned as asked and put back;
echo servers in a child process that reports its CPU time, pauses on demand and leaves nothing
behind."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from rpclab.bench import echo, placement, server_process
from rpclab.runtime import background, process

CAN_PIN = placement.unavailable("two-cpus") is None
needs_two_cpus = pytest.mark.skipif(
    not CAN_PIN, reason=f"pinning: {placement.unavailable('two-cpus') if not CAN_PIN else ''}"
)


def test_free_placement_pins_nothing_and_unknown_placements_are_refused():
    me = threading.get_native_id()
    before = placement.cpus_of(me)
    with placement.placed("free") as cpus:
        assert cpus == [] and placement.cpus_of(me) == before
    with pytest.raises(ValueError, match="one-cpu, two-cpus, free"):
        placement.unavailable("anywhere")


@needs_two_cpus
def test_two_cpus_puts_the_caller_on_one_and_every_other_thread_here_on_another():
    cpus = placement.usable_cpus()
    gate = threading.Event()
    other = threading.Thread(target=gate.wait, args=(5.0,), name="rpclab-test-other")
    other.start()
    try:
        me = threading.get_native_id()
        before = placement.cpus_of(me), placement.cpus_of(other.native_id)
        with placement.placed("two-cpus") as pinned:
            assert pinned == cpus[:2]
            assert placement.cpus_of(me) == {cpus[0]}
            assert placement.cpus_of(other.native_id) == {cpus[1]}
            started_here: list[set[int] | None] = []
            child = threading.Thread(  # inherits the CPU of the thread that starts it
                target=lambda: started_here.append(placement.cpus_of(threading.get_native_id()))
            )
            child.start()
            child.join(5.0)
            assert started_here == [{cpus[0]}]
        assert (placement.cpus_of(me), placement.cpus_of(other.native_id)) == before
    finally:
        gate.set()
        other.join(5.0)


@needs_two_cpus
def test_pins_are_undone_when_the_block_raises():
    me = threading.get_native_id()
    before = placement.cpus_of(me)
    with pytest.raises(KeyError), placement.placed("one-cpu"):
        raise KeyError("boom")
    assert placement.cpus_of(me) == before


@pytest.fixture
def servers():
    child = server_process.start(["raw", "socketrpc"])
    try:
        yield child
    finally:
        background.stop_all()


def test_the_server_process_serves_each_echo_and_reports_its_cpu_time(servers):
    assert set(servers.addresses) == {"raw", "socketrpc"}
    assert background.running() == {"bench-servers": servers.addresses["raw"]}
    endpoint = servers.endpoint("socketrpc")
    assert endpoint.server_pid == servers.pid != os.getpid()
    conn = endpoint.connect("hello")
    try:
        before = endpoint.server_cpu_ns()
        assert all(conn.call() == "hello" for _ in range(200))
        used = endpoint.server_cpu_ns() - before
    finally:
        conn.close()
        endpoint.close()
    assert used > 0  # the child answered 200 calls: its own CPU time, not ours
    with pytest.raises(ValueError, match="does not serve 'grpc'"):
        servers.endpoint("grpc")


@needs_two_cpus
def test_two_cpus_with_a_server_process_pins_the_whole_child_and_puts_it_back(servers):
    cpus = placement.usable_cpus()
    child_threads = os.listdir(f"/proc/{servers.pid}/task")
    assert len(child_threads) > 1  # the child's main thread and its servers' threads
    before = {t: placement.cpus_of(int(t)) for t in child_threads}
    with placement.placed("two-cpus", server_pid=servers.pid):
        assert all(placement.cpus_of(int(t)) == {cpus[1]} for t in child_threads)
        assert placement.cpus_of(threading.get_native_id()) == {cpus[0]}
    assert {t: placement.cpus_of(int(t)) for t in child_threads} == before


def test_a_paused_server_answers_late_but_answers(servers):
    endpoint = servers.endpoint("raw")
    conn = endpoint.connect("x")
    try:
        conn.call()
        paused = threading.Event()
        pausing = threading.Thread(target=servers.pause, args=(0.2, paused))
        pausing.start()
        assert paused.wait(5.0)
        start = time.perf_counter()
        assert bytes(conn.call()) == b"x"
        late = time.perf_counter() - start
        pausing.join(5.0)
    finally:
        conn.close()
        endpoint.close()
    assert late > 0.1
    with pytest.raises(ValueError):
        servers.pause(60)


def test_stopping_the_server_process_leaves_no_process_thread_or_port():
    threads_before = {t.name for t in threading.enumerate()}
    ports_before = process.listening_ports()
    child = server_process.start(["raw"])
    pid = child.pid
    os.kill(pid, signal.SIGSTOP)  # even a child left paused is ended
    background.stop("bench-servers")
    assert child.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert {t.name for t in threading.enumerate()} <= threads_before
    assert process.listening_ports() == ports_before
    assert background.running() == {}


def test_starting_it_again_replaces_the_old_child():
    first = server_process.start(["raw"])
    second = server_process.start(["raw"])
    try:
        assert first.process.poll() is not None and second.process.poll() is None
    finally:
        background.stop_all()


def test_a_child_that_cannot_start_says_why():
    with pytest.raises(ValueError, match="name transports the child can serve"):
        server_process.start(["carrier-pigeon"])
    assert server_process.main(["carrier-pigeon"]) == 2
    assert set(echo.TRANSPORTS) >= {"raw", "socketrpc", "grpc-aio"}


def test_the_queue_server_answers_one_call_at_a_time_each_taking_its_service_time():
    child = server_process.start(["queue"])
    try:
        endpoint = child.endpoint("queue")
        conns = [endpoint.connect("q") for _ in range(4)]
        start = time.perf_counter()
        threads = [threading.Thread(target=c.call) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5.0)
        took = time.perf_counter() - start
        for c in conns:
            c.close()
        endpoint.close()
    finally:
        background.stop_all()
    assert took >= 4 * echo.QUEUE_SERVICE_S  # four calls at once, answered one after another
