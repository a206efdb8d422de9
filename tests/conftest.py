"""Shared fixtures: every test leaves no background server behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from rpclab.runtime import background


@pytest.fixture(autouse=True)
def _no_leftover_servers():
    yield
    left = background.running()
    background.stop_all()
    assert not left, f"test left background servers running: {left}"


def _run_threads(target: Callable[[int], object], count: int, timeout: float = 60.0) -> None:
    """Run ``target(n)`` for n in 0..count-1, each in its own thread, and wait for all of them.

    Fails if a thread raised (a thread's exception is otherwise only a
    warning) or is still running after ``timeout`` seconds in all.
    """
    errors: list[str] = []

    def run(n: int) -> None:
        try:
            target(n)
        except BaseException as exc:  # reported below, with the thread's number
            errors.append(f"thread {n}: {exc!r}")

    threads = [
        threading.Thread(target=run, args=(n,), name=f"test-thread-{n}") for n in range(count)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    assert not [t.name for t in threads if t.is_alive()], f"threads still running after {timeout}s"
    assert errors == []


@pytest.fixture
def run_threads() -> Callable[[Callable[[int], object], int, float], None]:
    """``run_threads(target, count, timeout=60)``: run target(0..count-1) in threads; fail on an
    error or a hang."""
    return _run_threads
