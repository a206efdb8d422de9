"""The library, the tests, the tools and deploy/ pass ruff's lint and format checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
pytestmark = pytest.mark.skipif(
    RUFF is None, reason="ruff is not installed: `make test` installs it"
)


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_passes(command):
    result = subprocess.run(
        [RUFF, *command, "lib", "tests", "tools", "deploy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (
        f"`ruff {' '.join(command)}` failed; `ruff check --fix` and `ruff format` mend most:\n"
        f"{result.stdout}{result.stderr}"
    )
