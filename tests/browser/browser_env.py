"""Where the browser suite finds its notebooks, its Chromium, and where it writes screenshots."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# RPCLAB_BROWSER_NOTEBOOKS points the suite at another folder of notebooks (default: notebooks/).
NOTEBOOKS = Path(os.environ.get("RPCLAB_BROWSER_NOTEBOOKS") or REPO / "notebooks")
ARTIFACTS = REPO / "artifacts" / "browser"
# Debian's Chromium; RPCLAB_CHROMIUM points at another build. Never `playwright install`.
CHROMIUM = Path(os.environ.get("RPCLAB_CHROMIUM") or "/usr/bin/chromium")
# CI sets RPCLAB_REQUIRE_BROWSER=1: a missing browser then fails the suite instead of skipping it.
REQUIRE_BROWSER = os.environ.get("RPCLAB_REQUIRE_BROWSER") == "1"
# Flags that let Chromium run headless as root in a container, with no traffic of its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def notebook_names() -> list[str]:
    """The notebooks to test, found when tests are collected: every *.ipynb in NOTEBOOKS."""
    return sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


try:
    from playwright.sync_api import Error as PlaywrightError
except ImportError:  # no Playwright: the `chromium` fixture skips (or fails) the suite, saying so

    class PlaywrightError(Exception):  # type: ignore[no-redef]
        """Stands in for Playwright's error class so that this suite still imports."""
