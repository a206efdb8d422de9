"""Feedback a teacher can hand back without handing out the hidden tests.

nbgrader's ``generate_feedback`` renders the autograded notebook, in which ``autograde`` has put
the hidden tests back: the feedback HTML shows every hidden test in full, and a traceback shows
the lines around a failing one (nbgrader's choice, jupyter/nbgrader#917). Two plug-ins, switched
on in ``assignments/nbgrader_config.py``:

* :class:`HideHiddenTests` (a ``generate_feedback`` preprocessor) replaces each graded cell's
  hidden region with one comment line, and each error of a graded cell with its one-line message
  (``AssertionError: recv_frame accepted a frame that declares 64 MiB ...``): the learner sees
  which part failed and why, in words, not the test code;
* :class:`ReleaseFeedback` (nbgrader's exchange step) releases what it can and names the
  submissions it cannot. nbgrader's own stops with ``FileNotFoundError: .../timestamp.txt`` at the
  first submission that was not collected through the exchange (placed in ``submitted/`` by
  hand): such a submission has no ``timestamp.txt`` and no ``submission_secret.txt``, and the
  secret is what names the file its learner would fetch (jupyter/nbgrader#1897). Hand those
  learners ``feedback/<student>/<assignment>/*.html`` yourself.
"""

from __future__ import annotations

import glob
import os
import re
import shutil

from nbgrader import utils
from nbgrader.exchange.default.release_feedback import ExchangeReleaseFeedback
from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import notebook_hash

from rpclab.classroom.autograde import BEGIN_HIDDEN, END_HIDDEN

__all__ = ["HideHiddenTests", "ReleaseFeedback", "hide_hidden_tests"]

HIDDEN_NOTE = "# ... hidden tests: {n} lines, not shown in feedback"


def hide_hidden_tests(source: str) -> str:
    """The cell with each hidden region replaced by one comment that says how long it was."""
    out, hidden = [], None
    for line in source.split("\n"):
        if BEGIN_HIDDEN in line:
            hidden = 0
        elif END_HIDDEN in line and hidden is not None:
            out.append(HIDDEN_NOTE.format(n=hidden))
            hidden = None
        elif hidden is not None:
            hidden += 1
        else:
            out.append(line)
    if hidden is not None:  # no end marker: hide to the end
        out.append(HIDDEN_NOTE.format(n=hidden))
    return "\n".join(out)


class HideHiddenTests(NbGraderPreprocessor):
    """Graded cells in feedback: hidden regions folded to one line, errors to their message."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type == "code" and utils.is_grade(cell):
            cell.source = hide_hidden_tests(cell.source)
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    message = f"{output.ename}: {output.evalue}" if output.evalue else output.ename
                    output.traceback = [message]
        return cell, resources


class ReleaseFeedback(ExchangeReleaseFeedback):
    """nbgrader's release_feedback, skipping (and naming) submissions made outside the exchange."""

    def copy_files(self):
        excluded = set(filter(None, (self.coursedir.student_id_exclude or "").split(",")))
        pattern = re.escape(os.path.sep).join(
            [
                self.coursedir.format_path(
                    self.coursedir.feedback_directory,
                    "(?P<student_id>.*)",
                    self.coursedir.assignment_id,
                    escape=True,
                ),
                "(?P<notebook_id>.*).html",
            ]
        )
        for html_file in sorted(glob.glob(os.path.join(self.src_path, "*.html"))):
            match = re.match(pattern, html_file)
            if match is None:
                self.log.error("Could not match '%s' with regexp '%s'", html_file, pattern)
                continue
            student_id, notebook_id = match["student_id"], match["notebook_id"]
            if student_id in excluded:
                self.log.debug("Skipping student '%s'", student_id)
                continue
            folder = os.path.dirname(html_file)
            secret_file = os.path.join(folder, "submission_secret.txt")
            if not os.path.exists(secret_file):
                self.log.warning(
                    "Not released: %s's %s did not come through the exchange (no "
                    "submission_secret.txt), so they cannot fetch feedback; hand them %s yourself",
                    student_id,
                    notebook_id,
                    html_file,
                )
                continue
            with open(secret_file) as fh:
                secret = fh.read()
            timestamp_file = os.path.join(folder, "timestamp.txt")
            timestamp = "unknown time"
            if os.path.exists(timestamp_file):
                with open(timestamp_file) as fh:
                    timestamp = fh.read().strip()
            checksum = notebook_hash(secret=secret, notebook_id=notebook_id)
            temporary = os.path.join(self.dest_path, f"{checksum}-tmp.html")
            final = os.path.join(self.dest_path, f"{checksum}.html")
            self.log.info(
                "Releasing feedback for student '%s' on assignment '%s/%s/%s' (%s)",
                student_id,
                self.coursedir.course_id,
                self.coursedir.assignment_id,
                notebook_id,
                timestamp,
            )
            shutil.copy(html_file, temporary)
            shutil.move(temporary, final)  # a learner fetching now sees the old file or the new
            self.log.info("Feedback released to: %s", final)
