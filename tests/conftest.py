"""Shared fixtures: every test leaves no background server behind."""

from __future__ import annotations

import pytest

from rpclab import background


@pytest.fixture(autouse=True)
def _no_leftover_servers():
    yield
    left = background.running()
    background.stop_all()
    assert not left, f"test left background servers running: {left}"
