"""nbgrader's configuration for RPC Lab's graded assignments.

Run nbgrader from this folder (see TEACHING.md):

    cd assignments
    nbgrader generate_assignment a1-framing     # source/ -> release/ (the student version)
    nbgrader autograde a1-framing               # submitted/<student>/a1-framing/ -> autograded/
    nbgrader generate_feedback a1-framing       # -> feedback/

release/, submitted/, autograded/, feedback/ and gradebook.db are made here and
are not committed.
"""

import os

c = get_config()  # noqa: F821 (nbgrader provides get_config)

# The course is this folder, wherever it was copied to.
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))

# The course's name on a JupyterHub: the exchange keeps each course's assignments
# under it, and learners' `nbgrader fetch_assignment` must use the same name.
c.CourseDirectory.course_id = "rpclab"

# Where the exchange lives on a shared machine (JupyterHub): nbgrader's default,
# a folder every user of the machine can write to. Uncomment to change it.
# c.Exchange.root = "/srv/nbgrader/exchange"

# Every assignment runs in well under 30 s; one cell may take at most this long
# before the autograder interrupts it and records a timeout error.
c.Execute.timeout = 60

# --------------------------------------------------------------------------- RPC Lab's own steps
# rpclab.classroom (TEACHING.md, "What the autograder checks") adds to nbgrader's steps:
#
# - sanitizing: the teacher's set-up and test cells go back as nbgrader puts them back, warning
#   only about cells a learner really changed (nbgrader's own warns about every test cell with
#   hidden tests), and a test cell a learner deleted is put back too;
# - autograding: every graded test cell must prove it ran its own code to the end, and a scan of
#   the learner's own code gives 0 to the cells that a way out of the autograder (get_ipython(),
#   input transformers, sys.modules, ...) or a forbidden import touches;
# - feedback: the hidden tests stay hidden (nbgrader's own feedback shows them in full);
# - release_feedback: a submission placed in submitted/ by hand is named and skipped, instead
#   of stopping the release with FileNotFoundError: .../timestamp.txt.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "rpclab.classroom.autograde.RestoreTeacherCells",  # instead of nbgrader's OverwriteCells
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.OverwriteCells.add_missing_cells = True
c.Autograde.autograde_preprocessors = [
    "rpclab.classroom.autograde.MarkTestCells",
    "nbgrader.preprocessors.Execute",
    "rpclab.classroom.autograde.CheckIntegrity",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.GenerateFeedback.preprocessors = [
    "rpclab.classroom.feedback.HideHiddenTests",
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
c.ExchangeFactory.release_feedback = "rpclab.classroom.feedback.ReleaseFeedback"
