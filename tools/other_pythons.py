"""Run the tests on every other Python this machine has that RPC Lab supports.

``make test`` runs everything on the default Python. This script finds the others --
``python3.X`` on PATH, then pyenv's versions when pyenv is installed -- keeps those that
pyproject.toml's ``requires-python`` admits, and runs ``make test`` with each in a venv of its
own (``.venv-3.12``, ...): the unit tests and every notebook, without the browser tests, which
need one run only. It says which versions ran, which were outside the range, and which of the
versions RPC Lab is for (its classifiers) the machine lacks, with each run's wall-clock and CPU
time; it exits 1 when any run failed.

    python tools/other_pythons.py [PYTEST_ARGS...]     # `make test-other-pythons` runs this
    python tools/other_pythons.py --list                # only say what would run
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
ASK_VERSION = "import sys; print('%d.%d.%d' % sys.version_info[:3])"  # any Python, 2.7 included
# A make that runs this script hands its own command-line variables to every make below it
# through these; each run below must get only the ones it is given.
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


@dataclass(frozen=True)
class Interpreter:
    path: str
    where: str  # "PATH" or "pyenv"
    version: Version

    @property
    def minor(self) -> str:
        return f"{self.version.major}.{self.version.minor}"


def project() -> tuple[SpecifierSet, list[str]]:
    """requires-python, and the minor versions the classifiers name (e.g. ["3.11", "3.12"])."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    minors = [
        c.rsplit("::", 1)[1].strip()
        for c in meta.get("classifiers", [])
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    return SpecifierSet(meta["requires-python"]), minors


def _run(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def candidates() -> list[tuple[str, str]]:
    """(path, where) of every Python found: python3.X on PATH first, then pyenv's versions."""
    found = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder and Path(folder).is_dir():
            for exe in sorted(Path(folder).glob("python3.*")):
                if re.fullmatch(r"python3\.\d+", exe.name) and os.access(exe, os.X_OK):
                    found.append((str(exe), "PATH"))
    pyenv = shutil.which("pyenv")
    root = _run([pyenv, "root"]) if pyenv else None
    if root:
        for name in (_run([pyenv, "versions", "--bare"]) or "").split():
            exe = Path(root, "versions", name, "bin", "python")
            if exe.is_file():
                found.append((str(exe), "pyenv"))
    return found


def interpreters() -> list[Interpreter]:
    """One interpreter per minor version (the first found), oldest first.

    A candidate that does not run (a pyenv shim for a version not selected) is left out."""
    by_minor: dict[tuple[int, int], Interpreter] = {}
    for path, where in candidates():
        answer = _run([path, "-c", ASK_VERSION])
        try:
            version = Version(answer or "")
        except InvalidVersion:
            continue
        by_minor.setdefault((version.major, version.minor), Interpreter(path, where, version))
    return [by_minor[k] for k in sorted(by_minor)]


@dataclass
class Outcome:
    python: Interpreter
    install_s: float
    test_s: float
    cpu_s: float
    ok: bool


def _timed(command: list[str], env: dict[str, str]) -> tuple[bool, float, float]:
    """Run command with its output going to ours; (succeeded, wall seconds, CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    code = subprocess.run(command, cwd=ROOT, env=env).returncode
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code == 0, wall, cpu


OTHER_PYTHON_MARKS = "not browser and not hub and not notebook"


def run_suite(python: Interpreter, pytest_args: list[str]) -> Outcome:
    """`make test` with this Python in .venv-X.Y: install (timed apart), then the tests."""
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARIABLES}
    venv = f".venv-{python.minor}"
    common = [f"VENV={venv}", f"PYTHON={python.path}"]
    print(f"\n=== Python {python.version} ({python.path}): installing into {venv}", flush=True)
    installed, install_s, install_cpu = _timed(["make", *common, f"{venv}/.installed-test"], env)
    if not installed:
        return Outcome(python, install_s, 0.0, install_cpu, False)
    # The unit tests and nbval (every notebook runs once): the browser, the hub and the tests
    # that run notebooks again (re-runs, exercises solved, nbgrader) run on the default Python.
    args = shlex.join(["-m", OTHER_PYTHON_MARKS, *pytest_args])
    print(f"=== Python {python.version}: make test PYTEST_ARGS={args!r}", flush=True)
    passed, test_s, test_cpu = _timed(["make", "test", *common, f"PYTEST_ARGS={args}"], env)
    return Outcome(python, install_s, test_s, install_cpu + test_cpu, passed)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def main(argv: list[str]) -> int:
    list_only = argv[:1] == ["--list"]
    pytest_args = argv[1:] if list_only else argv
    supported, meant_for = project()
    this = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = interpreters()

    print(f"Pythons on this machine (RPC Lab: requires-python {supported}):")
    to_run = []
    for python in found:
        if python.minor == this:
            what = "the default: `make test` runs the whole suite on it"
        elif not supported.contains(python.version, prereleases=True):
            what = "outside requires-python: not run"
        else:
            what = f"runs in .venv-{python.minor}: the unit tests and the notebooks"
            to_run.append(python)
        print(f"  {python.version!s:<8} {python.where:<5} {python.path}  {what}")
    present = {p.minor for p in found}
    absent = [m for m in meant_for if m not in present and m != this]
    print(f"  absent (RPC Lab is for them, this machine lacks them): {', '.join(absent) or 'none'}")
    if list_only:
        return 0

    outcomes = [run_suite(python, pytest_args) for python in to_run]

    print("\nOther Pythons: the unit tests and the notebooks (the browser tests, the hub and the")
    print("tests that run notebooks again run once, on the default Python). Wall-clock time varies")
    print("with the machine's load; CPU time is that of every process the run started (make, uv,")
    print("pytest, the notebook kernels).")
    for o in outcomes:
        result = "passed" if o.ok else "FAILED"
        print(
            f"  {o.python.version!s:<8} {result}  install {_minutes(o.install_s)}, "
            f"tests {_minutes(o.test_s)}, CPU {_minutes(o.cpu_s)}"
        )
    if not outcomes:
        print("  none: this machine has no other Python that RPC Lab supports")
    print(f"  absent: {', '.join(absent) or 'none'}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
