"""The graded assignments: solutions pass, student versions fail, wrong answers lose exactly the
right points.

Runs nbgrader's own commands (`generate_assignment`, `autograde`) on a copy of
assignments/ in a temporary folder, never in assignments/ itself:

- every source notebook runs with no error (so every graded test passes on the solution);
- every student version that `nbgrader generate_assignment` makes carries no
  solution and no hidden test, and fails every graded test cell (the tests bite);
- `nbgrader autograde` gives the solution full marks, and each wrong submission in
  assignments/tests_data/<assignment>.yml loses the points of exactly the graded
  cells it names, read back from the gradebook with nbgrader's Gradebook API.

Also unit tests for rpclab.grading, the scaffolding the assignments use.
"""

from __future__ import annotations

import contextlib
import html as html_lib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from rpclab import grading
from rpclab.byhand import framing
from rpclab.runtime import background

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "assignments"
ASSIGNMENTS = sorted(p.name for p in (COURSE / "source").iterdir() if p.is_dir())
BIN = Path(sys.executable).parent  # nbgrader's commands live next to this Python
KERNEL_TIMEOUT = 120  # seconds a notebook cell may take before nbclient gives up

EXCHANGE_SECRET = "0123456789abcdef"  # what `nbgrader submit` writes to submission_secret.txt
SOLUTION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION")
HIDDEN_MARKERS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


# --------------------------------------------------------------------------- helpers


def _env() -> dict[str, str]:
    """The environment for nbgrader: it runs `alembic` from PATH when it makes a gradebook."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _nbgrader(course: Path, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "nbgrader"), *args],
        cwd=course,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{log[-4000:]}"
    return log


def _source(assignment: str) -> Path:
    return COURSE / "source" / assignment / f"{assignment}.ipynb"


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _graded(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and _meta(c).get("grade")]


def _run(nb, cwd: Path):
    """Execute a notebook in a fresh kernel, carrying on past errors; return it with its outputs."""
    NotebookClient(
        nb,
        timeout=KERNEL_TIMEOUT,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    ).execute()
    return nb


def _errors(cell) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for o in cell.get("outputs", []) if o.output_type == "error"]


def _solution_code(cell) -> str:
    """An answer cell of the source with its solution markers taken out: the code a right submission
    holds."""
    return "\n".join(
        line for line in cell.source.splitlines() if not any(m in line for m in SOLUTION_MARKERS)
    )


def _hidden_region(source: str) -> str:
    return source.split(HIDDEN_MARKERS[0])[1].split(HIDDEN_MARKERS[1])[0]


def _wrong_answers(assignment: str) -> dict:
    path = COURSE / "tests_data" / f"{assignment}.yml"
    return yaml.safe_load(path.read_text()) if path.exists() else {}


@contextlib.contextmanager
def _path_with_bin():
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{BIN}{os.pathsep}{saved}"
    try:
        yield
    finally:
        os.environ["PATH"] = saved


# --------------------------------------------------------------------------- the course copy


def _submissions(root: Path, assignment: str) -> dict[str, dict]:
    """Write the solution and every wrong answer as submitted/<student>/<assignment>/; return them
    by student.

    An entry of tests_data/<assignment>.yml starts from the student version with every answer
    cell holding the solution (or, with ``blank: true``, left as released) and then: ``answers``
    replaces answer cells, ``replace`` changes lines of their solutions (``{old: ..., new: ...}``
    pairs, each ``old`` found exactly once), ``extra`` appends code to them, ``edits`` changes
    other cells, ``inserted`` adds cells of the learner's own after the cells named, ``deletes``
    removes cells.
    """
    source = nbformat.read(_source(assignment), as_version=4)
    solutions = {
        _meta(c)["grade_id"]: _solution_code(c) for c in source.cells if _meta(c).get("solution")
    }
    release = nbformat.read(root / "release" / assignment / f"{assignment}.ipynb", as_version=4)
    students = {"solution": {}} | {
        name: entry for name, entry in _wrong_answers(assignment).items()
    }
    ids = {_meta(c)["grade_id"] for c in release.cells if _meta(c)}
    others = {
        _meta(c)["grade_id"] for c in release.cells if _meta(c) and not _meta(c).get("solution")
    }
    for student, entry in students.items():
        answers, edits = entry.get("answers", {}), entry.get("edits", {})
        extra, inserted = entry.get("extra", {}), entry.get("inserted", {})
        answers = dict(answers)
        for grade_id, changes in entry.get("replace", {}).items():
            code = solutions[grade_id]
            for change in changes:
                assert code.count(change["old"]) == 1, (
                    f"{student}: {change['old']!r} is not in {grade_id}'s solution exactly once"
                )
                code = code.replace(change["old"], change["new"])
            answers[grade_id] = code
        deletes = set(entry.get("deletes", []))
        unknown = (set(answers) | set(extra)) - set(solutions)
        assert not unknown, f"{student}: {sorted(unknown)} are not answer cells"
        assert set(edits) <= others, (
            f"{student}: {sorted(set(edits) - others)} are not cells of {assignment}"
        )
        assert set(inserted) | deletes <= ids, f"{student}: inserted/deletes name unknown cells"
        submission = nbformat.from_dict(release)  # a copy of the student version ...
        cells = []
        for cell in submission.cells:  # ... with every answer filled in, and the edits made
            grade_id = _meta(cell).get("grade_id")
            if grade_id in edits:
                cell.source = edits[grade_id].rstrip("\n")
            elif _meta(cell).get("solution"):
                answer = cell.source if entry.get("blank") else solutions[grade_id]
                cell.source = answers.get(grade_id, answer).rstrip("\n")
                if grade_id in extra:
                    cell.source += "\n" + extra[grade_id].rstrip("\n")
            if grade_id not in deletes:
                cells.append(cell)
            if grade_id in inserted:
                cells.append(nbformat.v4.new_code_cell(inserted[grade_id].rstrip("\n")))
        submission.cells = cells
        folder = root / "submitted" / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(submission, folder / f"{assignment}.ipynb")
        if student == "solution":  # as if collected from nbgrader's exchange; the others by hand
            (folder / "timestamp.txt").write_text("2025-01-06 09:00:00.000000 UTC")
            (folder / "submission_secret.txt").write_text(EXCHANGE_SECRET)
    return students


def _start_nbgrader(course: Path, *args: str, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(BIN / "nbgrader"), *args],
            cwd=course,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _finish(process: subprocess.Popen, log: Path, timeout: float) -> None:
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    assert returncode == 0, f"{' '.join(process.args[1:])} failed:\n{log.read_text()[-4000:]}"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course copy per assignment, its student version generated and its submissions being
    autograded.

    One course folder (and gradebook) per assignment, so that the four `nbgrader autograde`
    runs go side by side (much of their time is kernels starting and tests waiting on
    timeouts), and side by side with the tests that execute notebooks with nbclient;
    `autograded` waits for them.
    """
    base = tmp_path_factory.mktemp("course")
    roots = {}
    for assignment in ASSIGNMENTS:
        roots[assignment] = base / assignment
        (roots[assignment] / "source").mkdir(parents=True)
        shutil.copy(COURSE / "nbgrader_config.py", roots[assignment])
        shutil.copytree(COURSE / "source" / assignment, roots[assignment] / "source" / assignment)
    generating = {
        a: _start_nbgrader(
            roots[a], "generate_assignment", a, "--force", log=roots[a] / "generate.log"
        )
        for a in ASSIGNMENTS
    }
    for assignment, process in generating.items():
        _finish(process, roots[assignment] / "generate.log", timeout=300)
    students = {a: _submissions(roots[a], a) for a in ASSIGNMENTS}
    grading_runs = {
        a: _start_nbgrader(roots[a], "autograde", a, "--force", log=roots[a] / "autograde.log")
        for a in ASSIGNMENTS
    }
    try:
        yield {"roots": roots, "students": students, "autograde": grading_runs}
    finally:
        for process in grading_runs.values():
            if process.poll() is None:
                process.kill()
            process.wait()


KERNEL_PORT_RACE = "zmq.error.ZMQError: Address already in use"


def _grade_again_after_a_port_race(root: Path, assignment: str) -> None:
    """Autograde again the submissions whose kernel died of jupyter_client's port race, else fail.

    jupyter_client picks a kernel's five TCP ports by binding to port 0 and letting go; with
    four autogrades and the notebook tests starting kernels side by side, another process can
    take one of them before the kernel binds it, and that kernel dies before it says hello
    ("Kernel died before replying to kernel_info"). That is the machine, not the submission:
    those students are graded again, once. Any other failure fails the test as before.
    """
    log = (root / "autograde.log").read_text(errors="replace")
    failed = re.findall(r"error processing assignment '[^']+' for student '([^']+)'", log)
    if KERNEL_PORT_RACE not in log or not failed:
        raise AssertionError(f"nbgrader autograde {assignment} failed:\n{log[-4000:]}")
    for student in sorted(set(failed)):
        again = root / f"autograde-again-{student}.log"
        process = _start_nbgrader(
            root, "autograde", assignment, "--force", f"--student={student}", log=again
        )
        _finish(process, again, timeout=300)


@pytest.fixture(scope="module")
def autograded(course) -> dict:
    """Scores from the gradebooks once autograding is done: assignment -> student -> grade id ->
    (score, max)."""
    from nbgrader.api import Gradebook

    scores: dict = {}
    for assignment, process in course["autograde"].items():
        root = course["roots"][assignment]
        try:
            _finish(process, root / "autograde.log", timeout=900)
        except AssertionError:
            _grade_again_after_a_port_race(root, assignment)
        with (
            _path_with_bin(),
            Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id="rpclab") as gradebook,
        ):
            scores[assignment] = {"max": gradebook.find_assignment(assignment).max_score}
            for student in course["students"][assignment]:
                notebook = gradebook.find_submission_notebook(assignment, assignment, student)
                scores[assignment][student] = {
                    g.name: (g.score, g.max_score) for g in notebook.grades
                }
    return scores


def test_there_are_four_assignments_each_with_wrong_answers_to_catch():
    assert ASSIGNMENTS == [
        "a1-framing",
        "a2-stub-and-dispatch",
        "a3-at-most-once",
        "a4-grpc-service",
    ]
    for assignment in ASSIGNMENTS:
        assert _wrong_answers(assignment), (
            f"assignments/tests_data/{assignment}.yml has no wrong answers"
        )


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_notebook_is_tidy_and_states_its_time_and_points(assignment):
    nb = nbformat.read(_source(assignment), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert all(
        not c.get("outputs") and not c.get("execution_count")
        for c in nb.cells
        if c.cell_type == "code"
    ), "clear outputs before committing"
    ids = [_meta(c)["grade_id"] for c in nb.cells if _meta(c)]
    assert len(ids) == len(set(ids)), f"grade ids repeat: {ids}"

    intro = nb.cells[0].source
    assert re.search(r"^# A\d · ", intro, re.M), "the first cell is the title"
    assert re.search(r"^\*Time: about \d+ (minutes|hours)\.\*", intro, re.M), (
        "the title cell gives a time estimate"
    )
    rows = re.findall(r"^\| (\d+) \|.*\| (\d+) \|$", intro, re.M)
    total = re.search(r"\*\*total\*\* \| \*\*(\d+)\*\*", intro)
    points = [_meta(c)["points"] for c in _graded(nb)]
    assert total and int(total[1]) == sum(int(p) for _, p in rows) == sum(points), (
        f"the points table ({rows}, total {total and total[1]}) disagrees with the graded cells "
        f"({points})"
    )

    table = {int(n): int(p) for n, p in rows}
    headings = 0
    for i, cell in enumerate(nb.cells):
        heading = (
            re.match(r"## Parts? (\d+)(?:–(\d+))? · .*\((\d+) points", cell.source)
            if cell.cell_type == "markdown"
            else None
        )
        if not heading:
            continue
        headings += 1
        first, last, stated = int(heading[1]), int(heading[2] or heading[1]), int(heading[3])
        following = []
        for later in nb.cells[i + 1 :]:
            if later.cell_type == "markdown" and later.source.startswith("## "):
                break
            if _meta(later).get("grade"):
                following.append(_meta(later)["points"])
        assert stated == sum(following) == sum(table[n] for n in range(first, last + 1)), (
            f"{cell.source.splitlines()[0]!r}: its graded cells give {following}, the table {table}"
        )
    assert sum(table.values()) and headings, "every part has a heading '## Part N · ... (P points)'"

    answers = [c for c in nb.cells if _meta(c).get("solution")]
    assert answers and all(SOLUTION_MARKERS[0] in c.source for c in answers), (
        "every answer cell holds a solution"
    )
    for cell in _graded(nb):
        assert cell.source.count(HIDDEN_MARKERS[0]) == 1 == cell.source.count(HIDDEN_MARKERS[1]), (
            f"{_meta(cell)['grade_id']}: every graded cell has one block of hidden tests"
        )
        visible = cell.source.split(HIDDEN_MARKERS[0])[0]
        assert visible.strip(), (
            f"{_meta(cell)['grade_id']}: every graded cell has visible tests too"
        )


@pytest.mark.notebook
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_student_version_hides_the_answers_and_fails_every_graded_cell(assignment, course):
    release = course["roots"][assignment] / "release" / assignment / f"{assignment}.ipynb"
    text = release.read_text()
    for marker in SOLUTION_MARKERS + HIDDEN_MARKERS:
        assert marker not in text, f"the student version still holds {marker!r}"
    nb = _run(nbformat.read(release, as_version=4), release.parent)
    graded = _graded(nb)
    assert graded
    passing = [_meta(c)["grade_id"] for c in graded if not _errors(c)]
    assert not passing, f"graded cells that pass before the learner wrote anything: {passing}"


@pytest.mark.notebook
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_notebook_passes_every_graded_cell(assignment, tmp_path):
    nb = _run(nbformat.read(_source(assignment), as_version=4), tmp_path)
    failures = {
        _meta(c).get("grade_id", i): _errors(c) for i, c in enumerate(nb.cells) if _errors(c)
    }
    assert not failures, f"the solution fails: {failures}"
    assert _graded(nb)


@pytest.mark.timeout(900)  # waits for the autograde runs
@pytest.mark.notebook
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_autograde_gives_the_solution_full_marks_and_wrong_answers_lose_their_points(
    assignment, course, autograded
):
    scores = autograded[assignment]
    source = nbformat.read(_source(assignment), as_version=4)

    def lost(student: str) -> set[str]:
        return {name for name, (score, top) in scores[student].items() if score < top}

    def why(student: str) -> str:
        path = (
            course["roots"][assignment]
            / "autograded"
            / student
            / assignment
            / f"{assignment}.ipynb"
        )
        graded = nbformat.read(path, as_version=4)
        return "; ".join(
            f"{_meta(c)['grade_id']}: {_errors(c)[-1][:300]}" for c in _graded(graded) if _errors(c)
        )

    assert scores["max"] == sum(_meta(c)["points"] for c in _graded(source))
    assert set(scores["solution"]) == {_meta(c)["grade_id"] for c in _graded(source)}
    assert not lost("solution"), f"the solution lost points: {why('solution')}"
    for student, entry in _wrong_answers(assignment).items():
        assert lost(student) == set(entry["loses"]), (
            f"{student} ({entry['why'].strip()}) should lose {sorted(entry['loses'])}, "
            f"lost {sorted(lost(student))}: {why(student)}"
        )


@pytest.mark.timeout(900)  # waits for the autograde runs
@pytest.mark.notebook
def test_autograde_warns_only_about_test_cells_a_learner_changed(course, autograded):
    log = "".join((course["roots"][a] / "autograde.log").read_text() for a in ASSIGNMENTS)
    assert "Attribute 'checksum'" not in log, "nbgrader's false alarm about hidden tests is back"
    changed = re.findall(r"Cell (\S+) was changed by the learner", log)
    edited = [
        cell
        for assignment in ASSIGNMENTS
        for entry in _wrong_answers(assignment).values()
        for cell in entry.get("edits", {})
    ]
    deleted = [
        cell
        for assignment in ASSIGNMENTS
        for entry in _wrong_answers(assignment).values()
        for cell in entry.get("deletes", [])
    ]
    assert sorted(changed) == sorted(edited)
    assert sorted(re.findall(r"Missing grade cell (\S+) encountered", log)) == sorted(deleted)


@pytest.mark.timeout(900)  # waits for the autograde runs
@pytest.mark.notebook
def test_feedback_hides_the_hidden_tests_and_release_skips_hand_placed_submissions(
    course, autograded, tmp_path
):
    assignment = "a1-framing"
    root = course["roots"][assignment]
    _nbgrader(root, "generate_feedback", assignment)
    source = nbformat.read(_source(assignment), as_version=4)
    visible = "\n".join(  # everything but the hidden tests: instructions, solutions, visible tests
        c.source.replace(_hidden_region(c.source), "") if _meta(c).get("grade") else c.source
        for c in source.cells
    )
    hidden = [
        line.strip()
        for cell in _graded(source)
        for line in _hidden_region(cell.source).splitlines()
        if len(line.strip()) > 20 and line.strip() not in visible
    ]
    assert hidden
    for student in course["students"][assignment]:
        html = (root / "feedback" / student / assignment / f"{assignment}.html").read_text()
        text = html_lib.unescape(re.sub(r"<[^>]+>", "", html))
        shown = [line for line in hidden if line in text]
        assert not shown, f"{student}'s feedback shows hidden tests: {shown[:3]}"
        assert "hidden tests:" in text
    late = root / "feedback" / "checks-size-after-reading" / assignment / f"{assignment}.html"
    assert "did not return within" in late.read_text(), "feedback says why a hidden test failed"

    exchange = tmp_path / "exchange"
    exchange.mkdir(mode=0o777)  # as TEACHING.md has the administrator make it
    log = _nbgrader(root, "release_feedback", assignment, f"--Exchange.root={exchange}")
    from nbgrader.utils import notebook_hash

    released = (
        exchange
        / "rpclab"
        / "feedback"
        / f"{notebook_hash(secret=EXCHANGE_SECRET, notebook_id=assignment)}.html"
    )
    assert released.exists(), log[-3000:]
    assert len(list((exchange / "rpclab" / "feedback").iterdir())) == 1
    for student in course["students"][assignment]:
        if student != "solution":
            assert f"Not released: {student}'s {assignment}" in log


# --------------------------------------------------------------------------- rpclab.grading


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    return framing.recv_exactly(sock, n)


def test_receive_from_chunks_delivers_each_chunk_separately():
    sizes = grading.receive_from_chunks(
        lambda sock: [len(sock.recv(100)) for _ in range(3)], [b"a", b"bc", b"def"]
    )
    assert sizes == [1, 2, 3]


def test_receive_from_chunks_hangs_up_after_the_chunks_unless_told_not_to():
    assert grading.receive_from_chunks(lambda sock: (sock.recv(10), sock.recv(10)), [b"xy"]) == (
        b"xy",
        b"",
    )
    with pytest.raises(grading.TookTooLong, match="kept its end open"):
        grading.receive_from_chunks(
            lambda sock: _recv_exactly(sock, 3), [b"xy"], close=False, timeout=0.3
        )


def test_receive_from_chunks_passes_on_the_receivers_exception():
    with pytest.raises(framing.ConnectionClosed):
        grading.receive_from_chunks(lambda sock: _recv_exactly(sock, 5), [b"ab"])


def test_receive_from_chunks_stops_a_receiver_that_spins_on_a_closed_socket():
    def spin(sock: socket.socket) -> None:
        while True:  # the classic bug: never checks for b""
            sock.recv(10)

    before = threading.active_count()
    with pytest.raises(grading.TookTooLong, match="returned b''"):
        grading.receive_from_chunks(spin, [b"x"], timeout=0.3)
    assert threading.active_count() == before, (
        "the helper's threads must end once the sockets are shut"
    )


def test_bytes_sent_by_shows_what_a_partial_send_loses():
    big = bytes(range(256)) * 16384  # 4 MiB
    assert grading.bytes_sent_by(lambda sock: sock.sendall(big)) == big
    partial = grading.bytes_sent_by(lambda sock: sock.send(big))
    assert 0 < len(partial) < len(big) and big.startswith(partial)


def test_frame_server_answers_frames_and_stays_silent_for_none():
    seen = []

    def handle(payload: bytes) -> bytes | None:
        seen.append(payload)
        return None if payload.startswith(b"quiet") else payload.upper()

    with (
        grading.serve_frames("grading-echo", handle) as server,
        grading.FramedConnection(server.address) as conn,
    ):
        conn.send(b"quiet please")
        assert conn.request(b"hello") == b"HELLO"
        with pytest.raises(TimeoutError):
            conn.recv(timeout=0.05)
    assert seen == [b"quiet please", b"hello"]


def test_framed_connection_keeps_frames_whole_across_a_timeout():
    """A frame that arrives in two pieces around a timeout comes out whole on the next recv."""
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        conn = grading.FramedConnection(listener.getsockname())
        peer, _ = listener.accept()
        with conn, peer:
            frame = framing.encode_frame(b"two pieces")
            peer.sendall(frame[:6])
            with pytest.raises(TimeoutError):
                conn.recv(timeout=0.05)
            peer.sendall(frame[6:])
            assert conn.recv(timeout=2) == b"two pieces"
            peer.close()
            with pytest.raises(ConnectionError, match="closed"):
                conn.recv(timeout=2)


def test_frame_server_closes_a_connection_whose_handler_raises(caplog):
    def handle(payload: bytes) -> bytes:
        raise NotImplementedError

    with (
        grading.serve_frames("grading-broken", handle) as server,
        grading.FramedConnection(server.address) as conn,
    ):
        with pytest.raises(ConnectionError):
            conn.request(b"anything", timeout=2)
    assert "handle(payload) raised" in caplog.text
    assert "grading-broken" not in background.running()


def test_held_frame_server_answers_a_pipelining_client_last_first_and_a_lock_step_one_never():
    with grading.serve_held_frames("grading-held", lambda p: p.upper(), hold=3) as server:
        with grading.FramedConnection(server.address) as conn:
            for payload in (b"a", b"b", b"c"):
                conn.send(payload)
            assert [conn.recv(timeout=2) for _ in range(3)] == [b"C", b"B", b"A"]
        with grading.FramedConnection(server.address) as conn:
            with pytest.raises(TimeoutError):
                conn.request(b"alone", timeout=0.2)
    with pytest.raises(ValueError, match="hold"):
        grading.HeldFrameServer(("127.0.0.1", 0), lambda p: p, hold=0)


def test_proto_file_from_tables_and_proto_differences_in_words():
    from rpclab.grpcstack import protos

    contract = grading.proto_file(
        "shop.proto",
        "shop",
        messages={
            "Item": [("sku", 1, "string"), ("cents", 2, "int64")],
            "Basket": [("items", 1, "Item", "repeated"), ("owner_id", 2, "int64")],
        },
        services={"Till": [("Ring", "Item", "Basket", True, False)]},
    )
    same = protos.describe(
        'syntax = "proto3"; package shop;'
        " message Item { string sku = 1; int64 cents = 2; }"
        " message Basket { repeated Item items = 1; int64 owner_id = 2; }"
        " service Till { rpc Ring(stream Item) returns (Basket); }",
        "shop.proto",
    )
    assert grading.proto_differences(contract, same) == []
    assert contract.message_type[1].field[1].json_name == same.message_type[1].field[1].json_name
    other = protos.describe(
        'syntax = "proto3"; package shop;'
        " message Item { string sku = 1; int32 cents = 3; string note = 4; }"
        " message Basket { Item items = 1; }"
        " service Till { rpc Ring(Item) returns (Basket); }",
        "shop.proto",
    )
    assert sorted(grading.proto_differences(contract, other)) == sorted(
        [
            "Item.cents is field 3, not 2",
            "Item.cents is int32, not int64",
            "Item has a field note the contract does not",
            "Basket.items must be repeated",
            "Basket has no field owner_id",
            "Ring's request must be a stream",
        ]
    )
    with pytest.raises(ValueError, match="unknown type"):
        grading.proto_file("x.proto", "x", {"A": [("b", 1, "float128")]}, {})
