"""Say in one line whether this Python can run RPC Lab, before anything is installed with it.

The Makefile runs it with the Python that is about to make the venv (and with the venv's own
Python when one is already there), so an interpreter that is too old meets a sentence instead of
a resolver trace. The one source of the supported range is ``requires-python`` in pyproject.toml;
tests/test_packaging.py keeps it in the form ``>=X.Y`` read here.

    python3 tools/check_python.py          # exit 0, or 1 with the reason on stderr
    .venv/bin/python tools/check_python.py .venv

Written for any Python from 3.6 on, even one far too old for RPC Lab: no tomllib, no packaging.
"""

import os
import re
import sys

PYPROJECT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyproject.toml")


def lowest_supported(text):
    """(major, minor) from pyproject.toml's ``requires-python = ">=X.Y"``, or None."""
    match = re.search(r'^requires-python\s*=\s*"\s*>=\s*(\d+)\.(\d+)\s*"', text, re.MULTILINE)
    return (int(match.group(1)), int(match.group(2))) if match else None


def verdict(floor, version, executable, venv=None):
    """None when Python `version` (a version_info) is at least `floor`, else the one-line reason."""
    if tuple(version[:2]) >= floor:
        return None
    this = ".".join(str(n) for n in version[:3])
    wanted = f"{floor[0]}.{floor[1]}"
    if venv:  # a venv made earlier with a Python that is now too old
        return (
            f"{venv} was made with Python {this}; RPC Lab needs Python {wanted} or newer: "
            "run `make clean`, then make again with a newer Python (`make lab PYTHON=python3.12`)"
        )
    return (
        f"RPC Lab needs Python {wanted} or newer; {executable} is {this}: "
        "run make with a newer one, e.g. `make lab PYTHON=python3.12`"
    )


def main(argv):
    with open(PYPROJECT) as f:
        floor = lowest_supported(f.read())
    if floor is None:
        sys.exit('tools/check_python.py: pyproject.toml has no requires-python = ">=X.Y"')
    reason = verdict(floor, sys.version_info, sys.executable, argv[0] if argv else None)
    if reason:
        sys.exit(reason)


if __name__ == "__main__":
    main(sys.argv[1:])
