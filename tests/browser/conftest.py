"""Browser suite fixtures: Debian's Chromium driven by Playwright against a real `jupyter lab`.

Without Chromium (or Playwright) the suite skips, saying why; with RPCLAB_REQUIRE_BROWSER=1 (CI)
it fails instead. browser_env.py says which environment variables move which paths.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_env import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, NOTEBOOKS, REPO, REQUIRE_BROWSER
from lab_server import LabServer, start_lab
from notebook_page import NotebookRun, NotebookRuns

_timings: list[tuple[str, dict[str, float]]] = []
_TIMED = [("open", "open"), ("run", "run all"), ("total", "in all")]


def _unavailable(reason: str) -> None:
    """Skip the browser tests for `reason`, or fail them when CI requires a browser."""
    if REQUIRE_BROWSER:
        pytest.fail(f"RPCLAB_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The Chromium executable, or a skip (a failure under RPCLAB_REQUIRE_BROWSER=1)."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(
            f"no Chromium at {CHROMIUM} (install it: apt-get install chromium; "
            "never `playwright install`)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e '.[test]')")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium: Path) -> Iterator[Any]:
    """A headless Chromium, shared by the whole session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def lab(chromium: Path) -> Iterator[LabServer]:
    """`jupyter lab` on a temporary copy of the notebooks, with the suite's own settings."""
    workdir = Path(tempfile.mkdtemp(prefix="rpclab-lab-"))
    try:
        server = start_lab(NOTEBOOKS, workdir, ARTIFACTS / "jupyter-lab.log", REPO / "lib")
        try:
            yield server
        finally:
            leftovers = server.stop()
            assert server.process.returncode is not None, "jupyter lab is still running"
            assert not leftovers, f"kernels outlived jupyter lab (killed): pids {leftovers}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def notebook_runs(browser: Any, lab: LabServer) -> Iterator[NotebookRuns]:
    """Runs each notebook once, keeping the latest open while its tests look at it."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("*.png"):  # screenshots of a notebook since renamed mislead
        stale.unlink()
    runs = NotebookRuns(browser, lab, ARTIFACTS)
    try:
        yield runs
    finally:
        runs.shutdown()
        _timings.extend(runs.timings.items())


@pytest.fixture
def notebook_run(notebook: str, notebook_runs: NotebookRuns) -> NotebookRun:
    """The notebook `notebook` opened in JupyterLab, every cell run (once per session)."""
    return notebook_runs.get(notebook)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Group this folder's tests by notebook, so each notebook is opened and run only once."""
    here = Path(__file__).parent

    def notebook_of(item: pytest.Item) -> str | None:
        params = getattr(getattr(item, "callspec", None), "params", {})
        return params.get("notebook") if item.path.parent == here else None

    slots = [i for i, item in enumerate(items) if notebook_of(item) is not None]
    ordered = sorted((items[i] for i in slots), key=lambda item: str(notebook_of(item)))
    # a stable sort: test order within a notebook stays
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item
    # Browser tests go last: Playwright's sync API keeps an event loop running in the main
    # thread until the session ends, and tests that call asyncio.run() must not come after it.
    in_browser = [item for item in items if here in item.path.parents]
    items[:] = [item for item in items if here not in item.path.parents] + in_browser


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print how long each notebook took in the browser."""
    if not _timings:
        return
    terminalreporter.section("browser: seconds per notebook")
    for name, t in _timings:
        parts = [f"{label} {t[key]:5.1f}" for key, label in _TIMED if key in t]
        terminalreporter.write_line(f"{name:45s} " + "  ".join(parts))
