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
