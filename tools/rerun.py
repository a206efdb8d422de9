"""Run a notebook twice in one kernel and report what each run left behind.

A learner re-runs cells all the time. After the second run of a notebook in
the same kernel there must be no error, and the kernel must hold the same
Python threads and listening sockets as after the first run: nothing leaks.

    python tools/rerun.py notebooks/01-local-vs-remote.ipynb [...]
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient

PROBE = """\
import json as _json
from rpclab.runtime import process as _process
print(_json.dumps({"threads": _process.thread_names(), "listening": _process.listening_ports()}))
"""


@dataclass
class Census:
    threads: list[str]
    listening: list[list]


@dataclass
class RerunReport:
    path: Path
    first: Census
    second: Census
    seconds: tuple[float, float]

    @property
    def leaks(self) -> list[str]:
        problems = []
        if len(self.second.threads) != len(self.first.threads):
            problems.append(
                f"threads after run 1: {self.first.threads}; after run 2: {self.second.threads}"
            )
        if len(self.second.listening) != len(self.first.listening):
            problems.append(
                f"listening after run 1: {self.first.listening}; after run 2: "
                f"{self.second.listening}"
            )
        return problems


def _census(client: NotebookClient, index: int) -> Census:
    cell = nbformat.v4.new_code_cell(PROBE)
    client.nb.cells.append(cell)
    try:
        client.execute_cell(cell, index)
    finally:
        client.nb.cells.pop()
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
    data = json.loads(text.strip().splitlines()[-1])
    return Census(data["threads"], data["listening"])


def rerun(path: str | Path, timeout: int = 300) -> RerunReport:
    """Execute ``path`` twice in one fresh kernel; raise CellExecutionError on any error."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    censuses, seconds = [], []
    with client.setup_kernel():
        for _ in range(2):
            start = time.perf_counter()
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    client.execute_cell(cell, index)
            seconds.append(time.perf_counter() - start)
            censuses.append(_census(client, len(nb.cells)))
    return RerunReport(path, censuses[0], censuses[1], (seconds[0], seconds[1]))


def main(argv: list[str]) -> int:
    status = 0
    for name in argv:
        report = rerun(name)
        leaks = report.leaks
        print(
            f"{name}: run 1 {report.seconds[0]:.1f}s, run 2 {report.seconds[1]:.1f}s, "
            f"threads {len(report.second.threads)}, listening {len(report.second.listening)}"
            + ("" if not leaks else "\n  LEAK: " + "\n  LEAK: ".join(leaks))
        )
        status |= bool(leaks)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
