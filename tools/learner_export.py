"""The learners' copy of RPC Lab: a commit's files without the answer key, the student versions
of the assignments in its place.

The main branch is the teachers' and developers' branch: it holds the assignments' sources
(solutions and hidden tests, assignments/source/) and the wrong answers the tests bundle
(assignments/tests_data/), which CI needs to prove the autograder right. Learners get this
export instead -- published as the branch `learn`, which the repository offers as its default
branch and which the README's Binder link opens -- so `git clone`, `make lab` and Binder carry
no solutions and no hidden tests (TEACHING.md, "The answer key stays with the teacher")::

    python tools/learner_export.py --out DIR        # the learners' tree, in a folder
    python tools/learner_export.py --branch learn   # ... committed on the local branch `learn`
    python tools/learner_export.py --check learn    # exit 1 unless `learn` is the export of HEAD

The export is every file `git archive` gives for the commit (HEAD unless --rev), minus
TEACHER_ONLY, plus assignments/<assignment>/<assignment>.ipynb made by `nbgrader
generate_assignment` (nbgrader, from the test or teach extra, must be installed next to this
Python) and a README for them. Its content depends only on the commit, so --check can compare
trees. tests/test_classroom.py checks what the export holds, and that --check notices a stale
branch.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # nbgrader's commands live next to this Python

# What learners must not get: the answer key, and what only makes sense with it.
TEACHER_ONLY = (
    "assignments/source/",  # solutions and hidden tests
    "assignments/tests_data/",  # wrong (and right) answers, written out in full
    "assignments/nbgrader_config.py",  # the teacher's grading set-up
    "tests/test_assignments.py",  # these two read assignments/source
    "tests/test_classroom.py",
)

LEARNER_README = """\
# The graded assignments

Each folder holds the student version of one assignment: instructions, the cells you fill in
(`# YOUR CODE HERE`) and visible tests. Your teacher tells you which ones to do, when, and how to
hand them in; the first cell of each notebook says what it practises and how long it takes.

- `a1-framing/`: framing on a byte stream: length prefixes, short reads, limits, a decoder
  that is fed, ONC RPC record marking (read notebook 02 first);
- `a2-stub-and-dispatch/`: JSON-RPC 2.0 by hand: a dispatcher, a client stub, batches,
  pipelining (03, 04, 05);
- `a3-at-most-once/`: retries, a de-duplication table, one entry per client, a table that
  survives a restart (05);
- `a4-grpc-service/`: a gRPC service: a contract, status codes, the four kinds of call,
  deadlines and cancellations passed on (06-09).

The autograder runs hidden tests as well as the ones you see, and reads your code: write your
own (no imports from `rpclab` in your answers), and leave the test cells as they are.
"""


def _git(*args: str, env: dict | None = None, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _teacher_only(path: str) -> bool:
    return any(path == p.rstrip("/") or path.startswith(p) for p in TEACHER_ONLY)


def export(rev: str, out: Path, repo: Path = ROOT) -> list[str]:
    """Write the learners' tree of commit ``rev`` into ``out`` (which must not exist); return the
    student notebooks written, relative to ``out``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev], cwd=repo, capture_output=True, check=True
    ).stdout
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="rpclab-export-") as tmp:
        full = Path(tmp) / "full"
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(full, **safe)  # git's own archive of a commit
        for path in sorted(full.rglob("*")):
            relative = path.relative_to(full).as_posix()
            if path.is_dir() or _teacher_only(relative):
                continue
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        course = full / "assignments"
        if not (course / "source").is_dir():
            return []
        env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        done = subprocess.run(
            [str(BIN / "nbgrader"), "generate_assignment", "*", "--force"],
            cwd=course,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"nbgrader generate_assignment failed:\n{done.stderr[-3000:]}")
        written = []
        for notebook in sorted((course / "release").glob("*/*.ipynb")):
            target = out / "assignments" / notebook.parent.name / notebook.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(notebook, target)
            written.append(target.relative_to(out).as_posix())
    (out / "assignments" / "README.md").write_text(LEARNER_README)
    return written


def tree_of(folder: Path, repo: Path = ROOT) -> str:
    """The git tree object of ``folder``'s files, written into ``repo``'s object store."""
    with tempfile.TemporaryDirectory(prefix="rpclab-index-") as tmp:
        env = dict(os.environ, GIT_INDEX_FILE=str(Path(tmp) / "index"))
        _git("--work-tree", str(folder), "add", "--all", "--force", ".", env=env, cwd=repo)
        return _git("write-tree", env=env, cwd=repo)


def _branch_tip(branch: str, repo: Path) -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, help="write the learners' tree into this new folder")
    what.add_argument("--branch", help="commit the learners' tree on this local branch")
    what.add_argument("--check", metavar="BRANCH", help="exit 1 unless BRANCH is the export")
    parser.add_argument("--rev", default="HEAD", help="the commit to export (default: HEAD)")
    parser.add_argument("--repo", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    commit = _git("rev-parse", "--verify", f"{args.rev}^{{commit}}", cwd=repo)
    if args.out:
        notebooks = export(commit, args.out, repo)
        print(
            f"the learners' tree of {commit[:12]} is in {args.out} ({len(notebooks)} assignments)"
        )
        return 0
    with tempfile.TemporaryDirectory(prefix="rpclab-learn-") as tmp:
        export(commit, Path(tmp) / "tree", repo)
        tree = tree_of(Path(tmp) / "tree", repo)
    branch = args.branch or args.check
    tip = _branch_tip(branch, repo)
    current = tip is not None and _git("rev-parse", f"{tip}^{{tree}}", cwd=repo) == tree
    if args.check:
        if current:
            print(f"{branch} is the learners' export of {commit[:12]}")
            return 0
        what = "does not exist" if tip is None else "is stale"
        print(
            f"{branch} {what}: run `python tools/learner_export.py --branch {branch}` "
            f"(or `make learner-branch`) and push it"
        )
        return 1
    if current:
        print(f"{branch} is already the learners' export of {commit[:12]}")
        return 0
    message = f"Learners' export of {commit} (tools/learner_export.py)"
    parents = ["-p", tip] if tip else []
    new = _git("commit-tree", tree, *parents, "-m", message, cwd=repo)
    _git("update-ref", f"refs/heads/{branch}", new, *([tip] if tip else []), cwd=repo)
    print(f"{branch} is now {new[:12]}, the learners' export of {commit[:12]}; push it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
