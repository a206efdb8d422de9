"""Write the navigation of RPC Lab from the notebooks themselves.

Each notebook's title cell (``# NN · Title``, a "You will learn" list and a
reading time) is the one source. From it this script writes:

* a navigation cell (previous · contents · next) right after each title cell
  and at the end of each notebook, found by the ``<!--NAVIGATION-->`` sentinel
  so it is rewritten in place, never duplicated;
* notebooks/index.ipynb, the contents page;
* the notebook map in README.md, between its two marker comments.

It also checks provenance the other way round: every ``rpclab`` module a notebook imports must
say, in its docstring, that this notebook uses it -- by the notebook's two-digit number ("built
by hand in 04; failures in 05"), alone or in a range ("02-06"). That it cannot write: it
reports it, and exits 1.

    python tools/nav.py           # write everything
    python tools/nav.py --check   # exit 1 if anything is out of date (a test runs this)
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
README = ROOT / "README.md"
INDEX = "index.ipynb"
SENTINEL = "<!--NAVIGATION-->"
MAP_START = "<!-- notebook-map:start (written by tools/nav.py) -->"
MAP_END = "<!-- notebook-map:end -->"
NAME = re.compile(r"^(\d\d)-[a-z0-9]+(?:-[a-z0-9]+)*\.ipynb$")
TITLE = re.compile(r"^#\s+(\d\d)\s+·\s+(.+?)\s*$")
READING = re.compile(r"\*Reading time: about (\d+) minutes\.\*")
NB_VERSION = 4
LIB = ROOT / "lib"
# The short names notebooks may use, and the modules they are (rpclab/socketrpc.py says so).
SHORT_NAMES = {
    "rpclab.socketrpc": "rpclab.byhand.socketrpc",
    "rpclab.background": "rpclab.runtime.background",
}
LISTED = re.compile(r"\b(\d\d)(?:\s*[-–]\s*(\d\d))?\b")  # "04", or a range "02-06"


@dataclass(frozen=True)
class Entry:
    """What the navigation needs to know about one notebook."""

    number: str
    filename: str
    title: str
    learn: tuple[str, ...]
    minutes: int

    @property
    def label(self) -> str:
        return f"{self.number} · {self.title}"


class TitleCellError(ValueError):
    """A notebook's first cell is not a proper title cell."""


def parse_title_cell(filename: str, source: str) -> Entry:
    """Read the number, title, 'You will learn' bullets and reading time from a title cell."""
    lines = source.strip().splitlines()
    match = TITLE.match(lines[0]) if lines else None
    if not match:
        raise TitleCellError(f"{filename}: the first cell must start with '# NN · Title'")
    if match.group(1) != filename[:2]:
        raise TitleCellError(
            f"{filename}: title number {match.group(1)} does not match the file name"
        )
    try:
        start = next(i for i, line in enumerate(lines) if "you will learn" in line.lower())
    except StopIteration:
        raise TitleCellError(f"{filename}: the title cell needs a 'You will learn' list") from None
    learn = []
    for line in lines[start + 1 :]:
        if line.lstrip().startswith(("- ", "* ")):
            learn.append(line.lstrip()[2:].strip())
        elif learn and line.strip():
            break
    if not learn:
        raise TitleCellError(f"{filename}: the 'You will learn' list is empty")
    reading = READING.search(source)
    if not reading:
        raise TitleCellError(f"{filename}: the title cell needs '*Reading time: about N minutes.*'")
    return Entry(match.group(1), filename, match.group(2), tuple(learn), int(reading.group(1)))


def numbered_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    return sorted(p for p in folder.glob("*.ipynb") if NAME.match(p.name))


def entries(folder: Path = NOTEBOOKS) -> list[Entry]:
    result = []
    for path in numbered_notebooks(folder):
        nb = nbformat.read(path, as_version=NB_VERSION)
        if not nb.cells or nb.cells[0].cell_type != "markdown":
            raise TitleCellError(f"{path.name}: the first cell must be a markdown title cell")
        result.append(parse_title_cell(path.name, nb.cells[0].source))
    return result


def nav_source(prev: Entry | None, nxt: Entry | None) -> str:
    parts = []
    parts.append(f"< [{prev.label}]({prev.filename})" if prev else "")
    parts.append(f"[Contents]({INDEX})")
    parts.append(f"[{nxt.label}]({nxt.filename}) >" if nxt else "")
    return SENTINEL + "\n" + " | ".join(p for p in parts if p)


def with_navigation(nb: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    """The notebook with its navigation cells (after the title, and last) set to ``source``."""
    cells = [
        c for c in nb.cells if not (c.cell_type == "markdown" and c.source.startswith(SENTINEL))
    ]
    top = nbformat.v4.new_markdown_cell(source, id="nav-top")
    bottom = nbformat.v4.new_markdown_cell(source, id="nav-bottom")
    nb.cells = [cells[0], top, *cells[1:], bottom]
    return nb


def map_markdown(items: list[Entry], link_prefix: str) -> str:
    rows = ["| # | notebook | you will learn | time |", "|---|---|---|---|"]
    for e in items:
        learn = "; ".join(e.learn)
        rows.append(
            f"| {e.number} | [{e.title}]({link_prefix}{e.filename}) | {learn} | {e.minutes} min |"
        )
    total = sum(e.minutes for e in items)
    rows.append("")
    rows.append(
        f"{len(items)} notebooks, about {total // 60} h {total % 60} min of reading and running."
    )
    return "\n".join(rows)


def index_notebook(items: list[Entry]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        },
        "language_info": {"name": "python"},
    }
    intro = (
        "# RPC Lab — contents\n\n"
        "Remote procedure calls from the ground up: read the notebooks in order. "
        "Each one starts its servers inside this kernel and stops them at the end.\n\n"
    )
    nb.cells = [nbformat.v4.new_markdown_cell(intro + map_markdown(items, ""), id="contents")]
    return nb


def module_file(name: str, lib: Path = LIB) -> Path | None:
    """The file of module ``name`` ("rpclab.byhand.framing") under ``lib``, or None."""
    path = lib.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def notebook_imports(nb: nbformat.NotebookNode, lib: Path = LIB) -> set[str]:
    """The rpclab modules a notebook's code cells import (``from rpclab.x import y`` counts y
    when y is a module, else x), with the short names resolved."""
    found: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = cell.source.splitlines()
        source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)
        try:
            tree = ast.parse(source)
        except SyntaxError:  # a cell of IPython syntax this does not strip: nothing to learn
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "rpclab"}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rpclab":
                for alias in node.names:
                    inner = f"{node.module}.{alias.name}"
                    found.add(inner if module_file(inner, lib) else node.module)
    return {SHORT_NAMES.get(name, name) for name in found}


def listed_notebooks(docstring: str) -> set[str]:
    """The notebook numbers a docstring names: "04" -> {"04"}, "02-06" -> {"02", ..., "06"}."""
    numbers: set[str] = set()
    for first, last in LISTED.findall(docstring):
        numbers |= {f"{n:02d}" for n in range(int(first), int(last or first) + 1)}
    return numbers


def provenance_problems(folder: Path = NOTEBOOKS, lib: Path = LIB) -> list[str]:
    """Each rpclab module a notebook imports whose docstring does not list that notebook."""
    problems = []
    for path in numbered_notebooks(folder):
        number = path.name[:2]
        nb = nbformat.read(path, as_version=NB_VERSION)
        for name in sorted(notebook_imports(nb, lib)):
            file = module_file(name, lib)
            if file is None:
                problems.append(f"{path.name} imports {name}, which is not in {lib}")
                continue
            docstring = ast.get_docstring(ast.parse(file.read_text())) or ""
            if number not in listed_notebooks(docstring):
                problems.append(
                    f"{path.name} imports {name}: its docstring ({file.relative_to(lib)}) must "
                    f"say where it is taught or used, naming {number}"
                )
    return problems


def _render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb, version=NB_VERSION) + "\n"


def planned_files(folder: Path = NOTEBOOKS, readme: Path = README) -> dict[Path, str]:
    """Every file this script writes, with the text it should hold."""
    items = entries(folder)
    files: dict[Path, str] = {}
    for i, entry in enumerate(items):
        path = folder / entry.filename
        nb = nbformat.read(path, as_version=NB_VERSION)
        source = nav_source(
            items[i - 1] if i else None, items[i + 1] if i + 1 < len(items) else None
        )
        files[path] = _render(with_navigation(nb, source))
    files[folder / INDEX] = _render(index_notebook(items))
    if readme.exists():
        text = readme.read_text()
        if MAP_START in text and MAP_END in text:
            head, rest = text.split(MAP_START, 1)
            _, tail = rest.split(MAP_END, 1)
            files[readme] = (
                f"{head}{MAP_START}\n{map_markdown(items, 'notebooks/')}\n{MAP_END}{tail}"
            )
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="report files that are out of date; write nothing"
    )
    args = parser.parse_args(argv)
    try:
        files = planned_files()
    except TitleCellError as exc:
        print(f"nav: {exc}", file=sys.stderr)
        return 2
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    problems = provenance_problems()
    for problem in problems:
        print(f"provenance: {problem}")
    if args.check:
        for p in stale:
            print(f"out of date: {p.relative_to(ROOT)} (run: python tools/nav.py)")
        return 1 if stale or problems else 0
    for p in stale:
        p.write_text(files[p])
        print(f"wrote {p.relative_to(ROOT)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
