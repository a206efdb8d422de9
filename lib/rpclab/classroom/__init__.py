"""The teacher's side of the graded assignments (A1-A4): what nbgrader runs on top of its own steps.

``rpclab.grading`` is the learner's side (sockets fed in awkward chunks, a framed server); this
package is for the teacher's machine, and learners never import it:

* ``scan``      -- reads a submission's own code, without running it, for the known ways out of
                   the autograder (``get_ipython()``, input transformers, ``sys.modules``, ...)
                   and for imports an assignment forbids; ``python -m rpclab.classroom.scan``;
* ``autograde`` -- nbgrader preprocessors: every graded cell must prove that it ran its own code
                   to the end, the scan's findings cost the points of the cells they touch, and the
                   hidden tests go back in without nbgrader's false "checksum has changed" alarm;
* ``feedback``  -- feedback without the hidden tests, and ``release_feedback`` that skips (and
                   names) submissions that did not come through the exchange instead of crashing.

``assignments/nbgrader_config.py`` switches them on; TEACHING.md says what each one catches and
what it cannot.
"""
