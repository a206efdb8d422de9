"""A retry budget: a token bucket that lets retries add at most a fixed fraction of extra calls.

Taught in notebook 15 (retries within a budget).

A client that retries every failure three times turns an outage downstream
into three times the load on a service that is already in trouble. A retry
budget bounds that: every call deposits ``ratio`` tokens, every retry spends
one whole token, and a retry with no token left is refused (the failure goes
back to the caller instead)::

    budget = RetryBudget(ratio=0.1, max_tokens=10)
    budget.record_call()            # once per call (the first attempt)
    if budget.try_retry():          # once per retry; False: do not retry
        ...

So over any run, retries <= initial tokens + ratio x calls: with ratio 0.1,
at most 10% extra calls once the initial tokens are spent, and in an outage it
goes on allowing them. The bucket holds at most ``max_tokens``, so a long quiet
spell cannot save up a flood of retries. Finagle's RetryBudget works this way
(its deposits also expire after a while). gRPC's own ``retryThrottling`` (gRFC
A6) is another kind of bucket: it starts full, every failed call takes a token,
every success gives ``tokenRatio`` back, and no retry is made while half the
tokens or fewer are left, so in an outage it stops retrying altogether
(notebook 15 measures both).

Pure: no clock, no I/O; safe to share between threads.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

from rpclab import checks

__all__ = ["RetryBudget", "BudgetStats"]

_SCALE = 1000  # tokens are kept in thousandths, so that ten deposits of 0.1 make exactly one token


class BudgetStats(NamedTuple):
    """What a budget has seen: calls recorded, retries allowed and refused, and the tokens left."""

    calls: int
    retries: int
    refused: int
    tokens: float


class RetryBudget:
    """A token bucket for retries: each call deposits ``ratio`` tokens, each retry spends one."""

    def __init__(
        self, ratio: float = 0.1, *, max_tokens: float = 10.0, initial_tokens: float | None = None
    ) -> None:
        ratio = checks.number("ratio", ratio, low=0, high=1000)
        max_tokens = checks.number("max_tokens", max_tokens, low=1, high=1_000_000)
        initial = (
            max_tokens
            if initial_tokens is None
            else checks.number("initial_tokens", initial_tokens, low=0, high=max_tokens)
        )
        self.ratio = ratio
        self.max_tokens = max_tokens
        self._deposit = round(ratio * _SCALE)
        self._capacity = round(max_tokens * _SCALE)
        self._tokens = round(initial * _SCALE)
        self._calls = 0
        self._retries = 0
        self._refused = 0
        self._lock = threading.Lock()

    def record_call(self) -> None:
        """Count one call (a first attempt, not a retry) and deposit ``ratio`` tokens, up to
        ``max_tokens``."""
        with self._lock:
            self._calls += 1
            self._tokens = min(self._capacity, self._tokens + self._deposit)

    def try_retry(self) -> bool:
        """Spend one token on a retry and return True, or return False (retry refused) if less than
        one is left."""
        with self._lock:
            if self._tokens >= _SCALE:
                self._tokens -= _SCALE
                self._retries += 1
                return True
            self._refused += 1
            return False

    @property
    def tokens(self) -> float:
        """Tokens in the bucket now (one pays for one retry)."""
        with self._lock:
            return self._tokens / _SCALE

    @property
    def stats(self) -> BudgetStats:
        """A snapshot of the counts so far."""
        with self._lock:
            return BudgetStats(self._calls, self._retries, self._refused, self._tokens / _SCALE)

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<RetryBudget ratio {self.ratio:g}, {s.tokens:g}/{self.max_tokens:g} tokens; "
            f"{s.calls} calls, {s.retries} retries allowed, {s.refused} refused>"
        )
