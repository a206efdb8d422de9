"""The notebooks: tidy, navigable, and safe to run twice in one kernel.

nbval (`pytest --nbval-lax notebooks/`, part of the default test run) proves
each notebook executes in a fresh kernel; these tests add the rest.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(
        f"rpclab_tools_{name}", ROOT / "tools" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


nav = _tool("nav")
rerun = _tool("rerun")

ALL = sorted(NOTEBOOKS.glob("*.ipynb"))
NUMBERED = nav.numbered_notebooks()
ids = [p.name for p in ALL]


def test_there_are_notebooks_and_every_name_is_numbered_kebab_case():
    assert NUMBERED, "no notebooks found"
    strays = [p.name for p in ALL if p not in NUMBERED and p.name != nav.INDEX]
    assert not strays, f"notebooks must be named NN-kebab-title.ipynb: {strays}"


def test_numbers_run_from_00_without_gaps_or_repeats():
    numbers = [int(p.name[:2]) for p in NUMBERED]
    assert numbers == list(range(len(numbers))), numbers


@pytest.mark.parametrize("path", ALL, ids=ids)
def test_no_outputs_or_execution_counts_are_committed(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count)
    ]
    assert not dirty, (
        f"cells {dirty} carry outputs or execution counts: clear them before committing"
    )


@pytest.mark.parametrize("path", ALL, ids=ids)
def test_notebook_is_valid_and_uses_python3_kernel(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    raw = json.loads(path.read_text(encoding="utf-8"))  # nbformat.read adds missing ids quietly
    if raw.get("nbformat_minor", 0) >= 5:
        missing = [i for i, cell in enumerate(raw["cells"]) if "id" not in cell]
        assert not missing, f"cells without an id (nbformat 4.5 wants one): {missing}"


@pytest.mark.parametrize("path", NUMBERED, ids=[p.name for p in NUMBERED])
def test_title_cell_says_what_you_will_learn_and_how_long(path):
    nb = nbformat.read(path, as_version=4)
    entry = nav.parse_title_cell(path.name, nb.cells[0].source)
    assert entry.learn and entry.minutes > 0


@pytest.mark.parametrize("path", NUMBERED, ids=[p.name for p in NUMBERED])
def test_notebook_has_try_it_prompts_and_a_summary(path):
    text = "\n".join(
        c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"
    )
    assert "**Try it" in text, "a notebook needs at least one 'Try it' prompt"
    assert re.search(r"^## Summary", text, re.M), "a notebook needs a '## Summary' section"


def test_navigation_index_and_readme_map_are_current():
    stale = [
        str(p.relative_to(ROOT))
        for p, text in nav.planned_files().items()
        if not p.exists() or p.read_text() != text
    ]
    assert not stale, f"out of date, run `python tools/nav.py`: {stale}"


def test_navigation_rewrite_is_in_place_and_idempotent(tmp_path):
    for p in NUMBERED[:3]:
        (tmp_path / p.name).write_text(p.read_text())
    first = nav.planned_files(tmp_path, tmp_path / "README.md")
    for p, text in first.items():
        p.write_text(text)
    second = nav.planned_files(tmp_path, tmp_path / "README.md")
    assert first == second
    for p in nav.numbered_notebooks(tmp_path):
        cells = nbformat.read(p, as_version=4).cells
        navs = [c for c in cells if c.source.startswith(nav.SENTINEL)]
        assert len(navs) == 2 and cells[1] is navs[0] and cells[-1] is navs[1]


def test_every_module_a_notebook_imports_says_so_in_its_docstring():
    problems = nav.provenance_problems()
    assert not problems, "\n".join(problems)


def test_the_provenance_check_finds_a_notebook_a_module_does_not_list(tmp_path):
    lib, notebooks = tmp_path / "lib", tmp_path / "notebooks"
    (lib / "rpclab" / "byhand").mkdir(parents=True)
    notebooks.mkdir()
    (lib / "rpclab" / "__init__.py").write_text('"""Everything, 01-14."""\n')
    (lib / "rpclab" / "byhand" / "__init__.py").write_text('"""Part I (notebooks 02-06)."""\n')
    (lib / "rpclab" / "byhand" / "framing.py").write_text('"""Built by hand in 02."""\n')
    (lib / "rpclab" / "kv.py").write_text('"""The store: local in 01, remote from 04 on."""\n')
    for name, source in [
        ("02-a.ipynb", "from rpclab.byhand import framing"),
        ("03-b.ipynb", "import rpclab.byhand.framing\nfrom rpclab.byhand import framing as f"),
        ("05-c.ipynb", "%time 1\nfrom rpclab.kv import KVStore\nfrom rpclab import byhand"),
    ]:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        nbformat.write(nb, notebooks / name)
    assert nav.provenance_problems(notebooks, lib) == [
        "03-b.ipynb imports rpclab.byhand.framing: its docstring (rpclab/byhand/framing.py) must "
        "say where it is taught or used, naming 03",
        "05-c.ipynb imports rpclab.kv: its docstring (rpclab/kv.py) must say where it is taught or "
        "used, naming 05",
    ]
    assert nav.listed_notebooks("built in 04; failures in 05, 06-08") == {
        "04",
        "05",
        "06",
        "07",
        "08",
    }


@pytest.mark.notebook
@pytest.mark.parametrize("path", NUMBERED, ids=[p.name for p in NUMBERED])
def test_runs_twice_in_one_kernel_without_leaks(path):
    report = rerun.rerun(path)
    assert not report.leaks, "\n".join(report.leaks)
