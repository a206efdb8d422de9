"""The classroom as a teacher runs it: `make assignments` from a fresh clone, and the teacher's
side of grading (rpclab.classroom): the scan of learners' code, the proof that every test cell
ran, feedback without hidden tests.

The nbgrader commands themselves run in tests/test_assignments.py, on the course copy it builds.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
import pytest
from nbformat.notebooknode import NotebookNode

from rpclab.classroom import scan
from rpclab.classroom.feedback import hide_hidden_tests

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "assignments"
ASSIGNMENTS = sorted(p.name for p in (COURSE / "source").iterdir() if p.is_dir())
CHEAT = "get_ipython().input_transformers_cleanup.append(lambda lines: [])"


def _source(assignment: str):
    return nbformat.read(COURSE / "source" / assignment / f"{assignment}.ipynb", as_version=4)


def _cell(nb, grade_id: str):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _label(nb, index: int) -> str:
    return nb.cells[index].metadata.get("nbgrader", {}).get("grade_id", f"cell {index + 1}")


# --------------------------------------------------------------------------- make assignments


@pytest.mark.notebook
def test_make_assignments_works_from_a_fresh_clone(tmp_path):
    """What a teacher does first: clone, `make assignments`. It clones the committed tree (what a
    teacher gets), creates .venv there and installs the teach extra (uv reuses its cache)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    if shutil.which("make") is None or shutil.which("git") is None:
        pytest.skip("needs make and git")
    clone = tmp_path / "rpclab"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(
        ["make", "assignments"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"make assignments failed in a fresh clone:\n{log[-4000:]}"
    for assignment in ASSIGNMENTS:
        release = clone / "assignments" / "release" / assignment / f"{assignment}.ipynb"
        assert release.exists(), f"no student version of {assignment}:\n{log[-2000:]}"
        assert "BEGIN SOLUTION" not in release.read_text()
    assert (clone / "assignments" / "gradebook.db").exists()


# --------------------------------------------------------------------------- the scan


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_reference_solutions_give_the_scan_nothing_to_report(assignment):
    nb = _source(assignment)
    assert scan.scan_notebook(nb) == []


def test_the_scan_finds_the_one_line_cheat_and_costs_every_later_test_cell():
    nb = _source("a1-framing")
    _cell(nb, "a1-send-frame").source += "\n" + CHEAT
    findings = scan.scan_notebook(nb)
    assert {f.kind for f in findings} == {scan.ESCAPE}
    assert all(f.cell_id == "a1-send-frame" for f in findings)
    assert any("get_ipython" in f.what for f in findings)
    zeroed = {_label(nb, i) for i in scan.cells_to_zero(nb, findings)}
    graded = {
        c.metadata.nbgrader["grade_id"]
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("grade")
    }
    assert zeroed == graded


@pytest.mark.parametrize(
    "code, seen",
    [
        ("import IPython\nIPython.get_ipython().ast_transformers.append(None)", "IPython"),
        ("import sys\nsys.modules['rpclab.grading'] = None", "sys.modules"),
        ("import sys as s\ns.settrace(lambda *a: None)", "settrace"),
        ("f = eval('lambda: 1')", "eval"),
        ("__import__('builtins').print = len", "__import__"),
        ("x = ().__class__.__base__.__subclasses__()", "__subclasses__"),
        ("import inspect\nframe = inspect.currentframe().f_back", "currentframe"),
        ("%time x = 1", "get_ipython"),
        ("!ls", "get_ipython"),
        ("class Always:\n    def __eq__(self, other):\n        return True", "__eq__"),
        ("grading.receive_from_chunks = lambda *a, **k: b'hello'", "grading.receive_from_chunks"),
        ("HEADER = struct.Struct('<I')", "HEADER"),
        ("def cheat():\n    setattr(grading, 'bytes_sent_by', None)", "setattr"),
        ("open('../../gradebook.db', 'wb')", "gradebook"),
        ("import unittest.mock", "unittest"),
    ],
)
def test_the_scan_finds_each_known_way_out(code, seen):
    nb = _source("a1-framing")
    _cell(nb, "a1-recv-frame").source = code
    findings = scan.scan_notebook(nb)
    assert findings and any(seen in f.what for f in findings), [str(f) for f in findings]
    assert all(f.kind == scan.ESCAPE for f in findings)


def test_a_forbidden_import_costs_only_the_test_cells_that_use_it():
    nb = _source("a1-framing")
    _cell(nb, "a1-recv-frame").source = (
        "from rpclab.byhand import framing\n\n"
        "def recv_frame(sock, max_size=MAX_FRAME_SIZE):\n"
        "    return framing.recv_frame(sock, max_size)\n"
    )
    findings = scan.scan_notebook(nb)
    assert [f.kind for f in findings] == [scan.FORBIDDEN]
    zeroed = {_label(nb, i) for i in scan.cells_to_zero(nb, findings)}
    assert "test-send-frame" not in zeroed
    assert {"test-short-reads", "test-size-limit"} <= zeroed


def test_reaching_past_a_set_up_module_is_forbidden_but_its_public_names_are_not():
    nb = _source("a1-framing")
    _cell(nb, "a1-recv-frame").source = "recv_exactly = grading.framing.recv_exactly"
    assert [f.kind for f in scan.scan_notebook(nb)] == [scan.FORBIDDEN]
    _cell(nb, "a1-recv-frame").source = (
        "from rpclab import grading\nfrom rpclab.grading import TookTooLong\n"
        "late = grading.receive_from_chunks"
    )
    assert scan.scan_notebook(nb) == []


def test_a_learners_scratch_cell_may_reuse_names_the_tests_bind_for_themselves():
    nb = _source("a3-at-most-once")
    index = nb.cells.index(_cell(nb, "a3-server"))
    scratch = "server = AtMostOnceServer(kv.KVStore())\nstore = server.store\nconnection = None"
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(scratch))
    assert scan.scan_notebook(nb) == []


def test_a_graded_cell_reaches_an_answer_through_set_up_functions():
    nb = _source("a2-stub-and-dispatch")
    reach = scan.dependencies(nb)
    calls = nb.cells.index(_cell(nb, "test-calls"))
    assert "a2-dispatch" in {_label(nb, i) for i in reach[calls]}  # through roundtrip()
    assert "a2-proxy" not in {_label(nb, i) for i in reach[calls]}


def test_the_scan_command_lists_findings_by_student(tmp_path, capsys):
    course = tmp_path / "course"
    shutil.copytree(COURSE / "source" / "a1-framing", course / "source" / "a1-framing")
    for student, extra in [("honest", ""), ("cheater", "\n" + CHEAT)]:
        nb = _source("a1-framing")
        _cell(nb, "a1-send-frame").source += extra
        folder = course / "submitted" / student / "a1-framing"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "a1-framing.ipynb")
    assert scan.main(["a1-framing", "--course", str(course)]) == 1
    out = capsys.readouterr().out
    assert "cheater · a1-framing/a1-framing.ipynb · a1-send-frame, line" in out
    assert "honest" not in out


# --------------------------------------------------------------------------- autograde steps


def test_a_test_cell_that_did_not_print_its_token_scores_zero_and_the_token_is_taken_out(
    tmp_path,
):
    from rpclab.classroom import autograde

    nb = _source("a1-framing")
    marker = autograde.MarkTestCells()
    nb, resources = marker.preprocess(nb, {})
    marks = resources[autograde.MARKS]
    ran, emptied = sorted(marks)[:2]
    for index, (_, line) in marks.items():
        assert nb.cells[index].source.endswith(f"print({line!r})")
    # As if executed: the first test cell printed its token (a print may come as two stream
    # messages: the text, then the newline), the second was emptied.
    nb.cells[ran].outputs = [
        NotebookNode(output_type="stream", name="stdout", text=f"hello\n{marks[ran][1]}"),
        NotebookNode(output_type="stream", name="stdout", text="\n"),
    ]
    nb.cells[emptied].outputs = []
    checker = autograde.CheckIntegrity()
    checker._teacher_cells = lambda nb, resources: scan.teacher_cells(nb)
    nb, _ = checker.preprocess(nb, resources)
    assert [o.text for o in nb.cells[ran].outputs] == ["hello\n"]
    assert [o.ename for o in nb.cells[emptied].outputs] == ["IntegrityError"]
    assert all(nb.cells[i].source == source for i, (source, _) in marks.items())


def test_hidden_regions_fold_to_one_line_in_feedback():
    source = _cell(_source("a1-framing"), "test-size-limit").source
    folded = hide_hidden_tests(source)
    assert "tracemalloc" in source and "tracemalloc" not in folded
    assert "BEGIN HIDDEN" not in folded
    assert "# ... hidden tests:" in folded and "lines, not shown in feedback" in folded
    assert folded.startswith(source.split("### BEGIN HIDDEN TESTS")[0].rstrip("\n"))


# --------------------------------------------------------------------------- the learner route


def _answer_key_lines() -> dict[str, set[str]]:
    """Lines only the answer key holds: each assignment's solutions and hidden tests, minus what
    the student version shows anyway (the statement, the visible tests, set-up code)."""
    key = {}
    for assignment in ASSIGNMENTS:
        nb = _source(assignment)
        secret, shown = set(), []
        for cell in nb.cells:
            inside = None
            for line in cell.source.splitlines():
                if "BEGIN SOLUTION" in line or "BEGIN HIDDEN TESTS" in line:
                    inside = True
                elif "END SOLUTION" in line or "END HIDDEN TESTS" in line:
                    inside = None
                elif inside:
                    secret.add(line.strip())
                else:
                    shown.append(line.strip())
        key[assignment] = {
            line for line in secret - set(shown) if len(line) > 25 and not line.startswith("#")
        }
    return key


@pytest.mark.notebook
def test_the_learner_branch_carries_no_answer_key_and_its_check_sees_it_go_stale(tmp_path):
    """The learners' route: the branch `learn` that tools/learner_export.py makes from a commit
    (in a clone, so that this repository's branches stay as they are)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to export")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)

    def tool(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                str(ROOT / "tools" / "learner_export.py"),
                "--repo",
                str(clone),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )

    made = tool("--branch", "learn")
    assert made.returncode == 0, made.stdout + made.stderr
    tree = tmp_path / "learn"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "learn"], cwd=clone, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))

    files = {p.relative_to(tree).as_posix(): p for p in tree.rglob("*") if p.is_file()}
    students = {f"assignments/{a}/{a}.ipynb" for a in ASSIGNMENTS}
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout.split()
    teacher_only = [
        f for f in tracked if f.startswith(("assignments/source/", "assignments/tests_data/"))
    ]
    assert teacher_only, "main holds the answer key"
    expected = {f for f in tracked if f not in teacher_only} - {
        "assignments/nbgrader_config.py",
        "tests/test_assignments.py",
        "tests/test_classroom.py",
    }
    expected |= students | {"assignments/README.md"}
    assert set(files) == expected, (
        "the learners' branch holds what main holds, but the answer key and what needs it, "
        f"and the student versions: {sorted(set(files) ^ expected)}"
    )
    key = _answer_key_lines()
    for assignment in ASSIGNMENTS:
        student = f"assignments/{assignment}/{assignment}.ipynb"
        nb = nbformat.read(files[student], as_version=4)
        text = "\n".join(c.source for c in nb.cells)
        assert "SOLUTION" not in text and "HIDDEN TESTS" not in text
        assert key[assignment], assignment
        leaked = sorted(key[assignment] & {line.strip() for line in text.splitlines()})
        assert not leaked, f"{student} holds {assignment}'s answer key: {leaked[:3]}"
    assert (tree / "notebooks" / "00-start-here.ipynb").exists() and (tree / "lib").is_dir()
    assert "learn" in (tree / "README.md").read_text(), "the README sends learners to `learn`"

    checked = tool("--check", "learn")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    notebook = clone / "notebooks" / "00-start-here.ipynb"
    notebook.write_text(notebook.read_text().replace("Start here", "Begin here", 1))
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam", "change"],
        cwd=clone,
        check=True,
    )
    stale = tool("--check", "learn")
    assert stale.returncode == 1 and "stale" in stale.stdout, stale.stdout + stale.stderr
