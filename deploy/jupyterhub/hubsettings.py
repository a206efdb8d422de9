"""The class hub's settings, from the environment: one place for `run` and jupyterhub_config.py.

Every setting is an environment variable with a default that suits one Linux server; `run` also
reads them from `hub.env` beside this file when it exists (copy `hub.env.example`).

    RPCLAB_HUB_INSTRUCTOR  the instructor's OS account (one: nbgrader's "one class, one grader")
    RPCLAB_HUB_LEARNERS    the learners' OS accounts, separated by spaces or commas
    RPCLAB_HUB_PREFIX      where RPC Lab is installed once for everyone (default /opt/rpclab)
    RPCLAB_HUB_STATE       the hub's database, cookie secret and logs (default /srv/rpclab-hub)
    RPCLAB_HUB_EXCHANGE    nbgrader's exchange (default /srv/nbgrader/exchange)
    RPCLAB_HUB_IP          the address learners open (default 127.0.0.1: this machine only)
    RPCLAB_HUB_PORT        its port (default 8000)
    RPCLAB_HUB_API_PORT    the hub's own port, behind the proxy (default 8081, on 127.0.0.1)
    RPCLAB_HUB_PROXY_API_PORT  the proxy's control port (default 8001, on 127.0.0.1)
    RPCLAB_HUB_SSL_CERT, RPCLAB_HUB_SSL_KEY  HTTPS certificate and key (PEM files), if any
    RPCLAB_HUB_PYTHON      the Python the shared environment is made from (default /usr/bin/python3:
                           it must be readable by every user, which a Python under /root is not)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

COURSE_ID = "rpclab"  # the same as assignments/nbgrader_config.py
COURSE_FOLDER = "rpclab-course"  # the instructor's course directory, in their home
ROLES = ("instructor", "learner")

# A user name that useradd accepts and nbgrader can use as a student id (no '+', no '*').
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class SettingsError(ValueError):
    """A setting is missing or wrong; the message says which and how to fix it."""


def _names(text: str) -> list[str]:
    return [n for n in re.split(r"[\s,]+", text.strip()) if n]


def _port(env: dict[str, str], key: str, default: int) -> int:
    value = env.get(key, str(default))
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SettingsError(f"{key}={value!r}: a port is a number from 1 to 65535")
    return int(value)


@dataclass(frozen=True)
class Settings:
    instructor: str
    learners: tuple[str, ...]
    prefix: Path
    state: Path
    exchange: Path
    ip: str
    port: int
    api_port: int
    proxy_api_port: int
    ssl_cert: str
    ssl_key: str
    python: str

    @property
    def venv(self) -> Path:
        """The environment every user's server and kernel runs in."""
        return self.prefix / "venv"

    def role_dir(self, role: str) -> Path:
        """The Jupyter config folder a user of this role gets first on JUPYTER_CONFIG_PATH."""
        return self.prefix / "roles" / role

    def role_of(self, user: str) -> str:
        return "instructor" if user == self.instructor else "learner"

    @property
    def users(self) -> tuple[str, ...]:
        return (self.instructor, *self.learners)

    @property
    def proxy_command(self) -> Path:
        return HERE / "node_modules" / ".bin" / "configurable-http-proxy"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        instructor = env.get("RPCLAB_HUB_INSTRUCTOR", "").strip()
        learners = tuple(_names(env.get("RPCLAB_HUB_LEARNERS", "")))
        if not instructor:
            raise SettingsError(
                "RPCLAB_HUB_INSTRUCTOR is not set: name the instructor's OS account "
                "(in deploy/jupyterhub/hub.env, or in the environment)"
            )
        for name in (instructor, *learners):
            if not _USER_NAME.fullmatch(name):
                raise SettingsError(f"{name!r} is not a user name this hub accepts")
        if instructor in learners:
            raise SettingsError(f"{instructor} is both the instructor and a learner")
        if len(set(learners)) != len(learners):
            raise SettingsError("RPCLAB_HUB_LEARNERS names someone twice")
        cert, key = env.get("RPCLAB_HUB_SSL_CERT", ""), env.get("RPCLAB_HUB_SSL_KEY", "")
        if bool(cert) != bool(key):
            raise SettingsError("set both RPCLAB_HUB_SSL_CERT and RPCLAB_HUB_SSL_KEY, or neither")
        return cls(
            instructor=instructor,
            learners=learners,
            prefix=Path(env.get("RPCLAB_HUB_PREFIX", "/opt/rpclab")),
            state=Path(env.get("RPCLAB_HUB_STATE", "/srv/rpclab-hub")),
            exchange=Path(env.get("RPCLAB_HUB_EXCHANGE", "/srv/nbgrader/exchange")),
            ip=env.get("RPCLAB_HUB_IP", "127.0.0.1"),
            port=_port(env, "RPCLAB_HUB_PORT", 8000),
            api_port=_port(env, "RPCLAB_HUB_API_PORT", 8081),
            proxy_api_port=_port(env, "RPCLAB_HUB_PROXY_API_PORT", 8001),
            ssl_cert=cert,
            ssl_key=key,
            python=env.get("RPCLAB_HUB_PYTHON", "/usr/bin/python3"),
        )


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (blank lines and # comments skipped; quotes around a value removed)."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key.strip()):
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        values[key.strip()] = value.strip().strip("'\"")
    return values
