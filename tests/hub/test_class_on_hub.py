"""A class on a real JupyterHub (deploy/jupyterhub/), driven the way its people drive it.

An instructor and two learners log in through the hub's REST API and work in their own servers,
through nbgrader's own handlers (what the formgrader's and the assignment list's buttons call):
the instructor generates and releases A1, each learner fetches it, writes an answer (Ada the
solution, Grace a wrong answer from assignments/tests_data) and submits; the instructor collects,
autogrades, generates and releases feedback; each learner fetches their own feedback. Then a lab
class: Ada's kernel serves the key-value store with a token, Grace's kernel calls it.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from assignment_answers import points, right_answer, wrong_answer
from classhub import SUMMARY, KernelError, memory_mib

pytestmark = [pytest.mark.hub, pytest.mark.timeout(900)]

A1 = "a1-framing"
COURSE = "rpclab"
NOTEBOOK = f"{A1}/{A1}.ipynb"


def _mib(class_hub, user) -> float:
    return memory_mib(class_hub.accounts.uids[user.name])


def _page_config(user) -> dict:
    """JupyterLab's page config, as the browser gets it with /lab."""
    page = user.request("GET", "/lab")
    page.raise_for_status()
    match = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                      page.text, re.S)  # fmt: skip
    assert match, "no page config in /lab"
    return json.loads(match[1])


@pytest.fixture(scope="session")
def a1_cycle(class_hub) -> dict:
    """The whole A1 cycle, step by step through each user's server; returns what it produced."""
    teacher, (ada, grace) = class_hub.instructor, class_hub.learners
    answers = {ada.name: right_answer(A1), grace.name: wrong_answer(A1)}
    started = time.monotonic()

    teacher.nbgrader(f"/formgrader/api/assignment/{A1}/assign")
    teacher.nbgrader(f"/formgrader/api/assignment/{A1}/release")
    for learner in (ada, grace):
        learner.nbgrader("/assignments/fetch", course_id=COURSE, assignment_id=A1)
        fetched = learner.read_notebook(NOTEBOOK)
        learner.write_notebook(NOTEBOOK, answers[learner.name].fill(fetched))
        learner.nbgrader("/assignments/submit", course_id=COURSE, assignment_id=A1)

    teacher.nbgrader(f"/formgrader/api/assignment/{A1}/collect")
    for learner in (ada, grace):
        teacher.nbgrader(f"/formgrader/api/submission/{A1}/{learner.name}/autograde")
    teacher.nbgrader(f"/formgrader/api/assignment/{A1}/generate_feedback")
    teacher.nbgrader(f"/formgrader/api/assignment/{A1}/release_feedback")
    for learner in (ada, grace):
        learner.nbgrader("/assignments/fetch_feedback", course_id=COURSE, assignment_id=A1)

    submissions = teacher.request("GET", f"/formgrader/api/submissions/{A1}")
    submissions.raise_for_status()
    graded = teacher.request("GET", f"/formgrader/api/submitted_notebooks/{A1}/{A1}")
    graded.raise_for_status()
    cells = {}
    for notebook in graded.json():
        grades = teacher.request(
            "GET", "/formgrader/api/grades", params={"submission_id": notebook["id"]}
        )
        grades.raise_for_status()
        cells[notebook["student"]] = {  # the formgrader shows a manual score over the auto one
            g["name"]: g["auto_score"] if g["manual_score"] is None else g["manual_score"]
            for g in grades.json()
        }
    scores = {s["student"]: (s["score"], s["max_score"]) for s in submissions.json()}
    SUMMARY.append(f"{time.monotonic() - started:6.1f} s  the A1 cycle, release to feedback")
    for student, answer in answers.items():
        score, top = scores.get(student, (None, None))
        lost = sorted(c for c, s in cells.get(student, {}).items() if s < points(A1)[c])
        SUMMARY.append(f"  {student}: {score} / {top} ({answer.name}; lost: {lost or 'nothing'})")
    return {"answers": answers, "scores": scores, "cells": cells}


def test_only_the_instructor_gets_the_formgrader_and_create_assignment(class_hub):
    teacher, learners = class_hub.instructor, class_hub.learners
    assert teacher.request("GET", "/formgrader/api/status").json() == {"status": True}
    hidden = {
        "@jupyter/nbgrader:formgrader",
        "@jupyter/nbgrader:create-assignment",
        "@jupyter/nbgrader:course-list",
    }
    assert not hidden & set(_page_config(teacher)["disabledExtensions"])
    for learner in learners:
        assert learner.request("GET", "/formgrader/api/status").status_code == 404
        assert hidden <= set(_page_config(learner)["disabledExtensions"])
        # ... and they keep what a learner needs: the assignment list and Validate.
        assert learner.request("GET", "/assignments", params={"course_id": COURSE}).ok
        assert (
            "@jupyter/nbgrader:assignment-list" not in _page_config(learner)["disabledExtensions"]
        )


def test_jupyterlab_asks_nobody_about_news(class_hub):
    """The shared environment carries tools/jupyterlab-overrides.json, as `make lab` does."""
    for user in class_hub.sessions:
        reply = user.request("GET", "/lab/api/settings/@jupyterlab/apputils-extension:notification")
        reply.raise_for_status()
        # overrides.json changes the defaults the schema gives
        assert reply.json()["schema"]["properties"]["fetchNews"]["default"] == "false", user.name


def test_the_course_id_and_exchange_are_the_same_for_everyone(class_hub):
    kernel = class_hub.learners[0].kernel()
    try:
        out = kernel.run(
            "from nbgrader.apps import NbGraderApp\n"
            "app = NbGraderApp(); app.load_config_file()\n"
            "print(app.config.CourseDirectory.course_id, app.config.Exchange.root)"
        )
    finally:
        kernel.close()
    assert out.split() == [COURSE, str(class_hub.exchange)]


def test_autograding_on_the_hub_gives_the_grades_the_answers_earn(a1_cycle):
    top = sum(points(A1).values())
    expected = {
        student: top - sum(points(A1)[cell] for cell in answer.loses)
        for student, answer in a1_cycle["answers"].items()
    }
    assert {s: score for s, (score, _) in a1_cycle["scores"].items()} == expected
    assert {top_score for _, top_score in a1_cycle["scores"].values()} == {top}
    for student, answer in a1_cycle["answers"].items():
        lost = {
            cell for cell, score in a1_cycle["cells"][student].items() if score < points(A1)[cell]
        }
        assert lost == answer.loses, f"{student} ({answer.name})"


def test_each_learner_fetches_only_their_own_feedback(class_hub, a1_cycle):
    scores = a1_cycle["scores"]
    for learner in class_hub.learners:
        folders = learner.listing(f"{A1}/feedback")
        assert len(folders) == 1, f"{learner.name} got {folders}"
        pages = learner.listing(folders[0])
        assert pages == [f"{folders[0]}/{A1}.html"]
        html = learner.read_text(pages[0])
        score, top = scores[learner.name]
        assert f"{score:g}" in html and f"{top:g}" in html
        assert learner.name in html or "Score" in html


def test_the_exchange_has_the_modes_nbgrader_and_the_hub_give_it(class_hub, a1_cycle):
    """The root: anyone adds, nobody takes another's entries (sticky, as /tmp); the course:
    the instructor's; outbound: everyone reads; inbound: everyone adds, nobody lists;
    feedback: nobody lists, each learner opens only the file named after their submission."""
    course = class_hub.exchange / COURSE
    modes = {
        path.name: oct(path.stat().st_mode & 0o7777)
        for path in (class_hub.exchange, course, *(course / d for d in DIRECTORIES))
    }
    assert modes == {
        class_hub.exchange.name: "0o1777",
        COURSE: "0o755",
        "outbound": "0o755",
        "inbound": "0o2733",
        "feedback": "0o711",
    }
    assert course.stat().st_uid == class_hub.accounts.uids[class_hub.instructor.name]


DIRECTORIES = ("outbound", "inbound", "feedback")


def test_learners_cannot_read_the_course_the_exchange_or_each_other(class_hub, a1_cycle):
    ada, grace = class_hub.learners
    teacher_home = class_hub.home(class_hub.instructor)
    forbidden = {
        "the course (solutions, hidden tests)": teacher_home / "rpclab-course/source",
        "the gradebook": teacher_home / "rpclab-course/gradebook.db",
        "the instructor's home": teacher_home,
        "the other learner's notebook": class_hub.home(ada) / NOTEBOOK,
        "the submissions": class_hub.exchange / COURSE / "inbound",
        "everyone's feedback": class_hub.exchange / COURSE / "feedback",
    }
    kernel = grace.kernel()
    try:
        kernel.run(CAN_READ)
        for what, path in forbidden.items():
            assert kernel.run(f"print(can_read({str(path)!r}))") == "False\n", (
                f"Grace can read {what} ({path})"
            )
        # What a learner may see: the released assignment.
        outbound = class_hub.exchange / COURSE / "outbound"
        assert kernel.run(f"print(os.listdir({str(outbound)!r}))") == f"{[A1]!r}\n"
        SUMMARY.append(
            f"memory: the instructor's server {_mib(class_hub, class_hub.instructor):.0f} MiB "
            f"after autograding; a learner's server and one kernel {_mib(class_hub, grace):.0f} MiB"
        )
    finally:
        kernel.close()


def test_a_learner_calls_a_classmates_server_on_the_hub_with_a_token(class_hub):
    """The lab class: Ada serves the KV store (`rpclab serve grpc --token-file F`) from her
    kernel, on 127.0.0.1 of the hub's machine; Grace's kernel calls it with Ada's token."""
    ada, grace = class_hub.learners
    began = time.monotonic()
    serving, calling = ada.kernel(), grace.kernel()
    try:
        started = serving.run(SERVE)
        address, token = re.fullmatch(r"listening on (\S+) token (\S+)\n", started).groups()
        assert address.startswith("127.0.0.1:")
        out = calling.run(CALL.format(address=address, token=token))
        assert out.split("\n")[:2] == ["without a token: UNAUTHENTICATED", "with it: from grace"]
        assert serving.run(STOP).strip() == "exit 0"
        SUMMARY.append(f"{time.monotonic() - began:6.1f} s  the lab class: serve, call, stop")
    finally:
        try:
            serving.run(
                "server.kill() if 'server' in globals() and server.poll() is None else None"
            )
        except KernelError:
            pass
        serving.close()
        calling.close()


CAN_READ = """
import os
def can_read(path):
    try:
        os.listdir(path) if os.path.isdir(path) else open(path, "rb").close()
    except PermissionError:
        return False
    return True
"""

SERVE = """
import os, secrets, selectors, subprocess, sys
from pathlib import Path
token = secrets.token_urlsafe(16)
tokens = Path.home() / "class-tokens.txt"
tokens.write_text(f"grace {token}\\n")
tokens.chmod(0o600)
server = subprocess.Popen(
    [os.path.join(sys.prefix, "bin", "rpclab"), "serve", "grpc", "--token-file", str(tokens)],
    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
)
with selectors.DefaultSelector() as wait:
    wait.register(server.stdout, selectors.EVENT_READ)
    ready = wait.select(60)
line = server.stdout.readline() if ready else ""
if not line.startswith("listening on "):
    server.kill()
    raise RuntimeError(f"rpclab serve grpc said {line!r}; stderr: {server.stderr.read()}")
print(line.strip(), "token", token)
"""

CALL = """
import grpc
from rpclab.grpcstack import protos
kv_pb2, kv_pb2_grpc = protos.load("kv")
with grpc.insecure_channel("{address}") as channel:
    stub = kv_pb2_grpc.KVStub(channel)
    try:
        stub.Put(kv_pb2.PutRequest(key="who", value="nobody"), timeout=10)
        print("without a token: accepted")
    except grpc.RpcError as error:
        print("without a token:", error.code().name)
    auth = [("authorization", "Bearer {token}")]
    stub.Put(kv_pb2.PutRequest(key="who", value="from grace"), metadata=auth, timeout=10)
    print("with it:", stub.Get(kv_pb2.GetRequest(key="who"), metadata=auth, timeout=10).value)
"""

STOP = """
server.terminate()
print("exit", server.wait(15))
"""
