"""The instructor's nbgrader settings on the class hub (deploy/jupyterhub/run installs this).

The formgrader finds the course here: ~/rpclab-course, which `run` copied from assignments/.
The course id and the exchange, the same for everyone, are in the shared environment's
etc/jupyter/nbgrader_config.py.
"""

import os

c = get_config()  # noqa: F821 (nbgrader provides get_config)
c.CourseDirectory.root = os.path.expanduser("~/rpclab-course")
