"""JupyterHub for one RPC Lab class on one Linux server (start it with deploy/jupyterhub/run).

- Authenticator: PAM (JupyterHub's default): learners log in with their OS account and password;
  only the accounts in the class list may log in.
- Spawner: LocalProcessSpawner: each user's Jupyter server runs as that OS user, in their home,
  from the one environment `run` installed (RPC Lab, JupyterLab, nbgrader), on 127.0.0.1.
- Roles: the instructor's server gets nbgrader's formgrader, course list and Create Assignment;
  a learner's server gets only the assignment list and Validate. The hub picks the role's
  Jupyter config folder (JUPYTER_CONFIG_PATH, which comes before the user's own ~/.jupyter).
- Proxy: configurable-http-proxy from node_modules/ here (`npm ci`).

Every setting comes from the environment: see hubsettings.py. TEACHING.md explains the whole.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubsettings import Settings  # noqa: E402

c = get_config()  # noqa: F821 (JupyterHub provides get_config)
hub = Settings.from_env()

# Where learners connect, and the two ports that stay on this machine.
c.JupyterHub.ip = hub.ip
c.JupyterHub.port = hub.port
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = hub.api_port
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{hub.proxy_api_port}"
c.ConfigurableHTTPProxy.command = [str(hub.proxy_command)]
c.ConfigurableHTTPProxy.pid_file = str(hub.state / "proxy.pid")
if hub.ssl_cert:
    c.JupyterHub.ssl_cert = hub.ssl_cert
    c.JupyterHub.ssl_key = hub.ssl_key

# The hub's own files: its database and the secret that signs login cookies.
c.JupyterHub.db_url = f"sqlite:///{hub.state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(hub.state / "jupyterhub_cookie_secret")

# Who may log in: the class list, checked by PAM against the OS accounts.
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = set(hub.users)

# Each user's server: their own OS user, their home, the shared environment.
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [str(hub.venv / "bin" / "jupyterhub-singleuser")]
c.Spawner.ip = "127.0.0.1"
c.Spawner.notebook_dir = "~"
c.Spawner.default_url = "/lab"
c.Spawner.environment = {
    # nbgrader runs `alembic` from PATH; learners' terminals find `rpclab` and `nbgrader` here.
    "PATH": f"{hub.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
    "JUPYTER_CONFIG_PATH": lambda spawner: str(hub.role_dir(hub.role_of(spawner.user.name))),
}
# A server nobody uses for an hour is not stopped here; see TEACHING.md (jupyterhub-idle-culler).
