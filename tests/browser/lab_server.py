"""A real `jupyter lab` for the browser suite: isolated settings, a token, a port read back, a clean
stop."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
# Settings the server hands every page: what `make lab` and Binder install (no news or update
# pop-up), and every cell kept in the DOM (with windowing, JupyterLab detaches cells scrolled out
# of view).
SETTINGS_OVERRIDES: dict[str, dict[str, Any]] = {
    **json.loads((REPO / "tools" / "jupyterlab-overrides.json").read_text()),
    "@jupyterlab/notebook-extension:tracker": {
        "windowingMode": "none",
        "scrollPastEnd": False,  # no blank screen below the last cell in full-page screenshots
    },
}
# Front-end extensions that only the `teach` extra brings (nbgrader, and Notebook 7 with it):
# hidden so that the page looks like a learner's `make lab`.
DISABLED_EXTENSIONS = ["@jupyter/nbgrader", "@jupyter-notebook/lab-extension"]

START_TIMEOUT = 90.0  # s: a cold JupyterLab on a busy 2-core machine
STOP_TIMEOUT = 30.0  # s: SIGTERM shuts kernels down first, then exits
HTTP_TIMEOUT = 30.0  # s: one REST call
# A line the server logs a moment before it writes its runtime file jpserver-<pid>.json.
_READY_LINE = "is running at"


@dataclass
class LabServer:
    """One running `jupyter lab` process serving a scratch copy of a notebooks folder."""

    process: subprocess.Popen[str]
    root: Path  # the served copy: autosave writes here, never into the sources
    url: str  # "http://127.0.0.1:PORT/"
    token: str
    log_path: Path
    runtime: Path  # JUPYTER_RUNTIME_DIR: kernel connection files live here
    _log_thread: threading.Thread = field(repr=False)

    def page_url(self, path: str) -> str:
        """The URL of a page of the server, e.g. page_url("lab/tree/x.ipynb?reset")."""
        return self.url + path

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the server's REST API (path like "api/sessions"); the decoded JSON answer or
        None."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # loopback only
            payload = response.read()
        return json.loads(payload) if payload else None

    def sessions(self) -> list[dict[str, Any]]:
        """Every open session (notebook ↔ kernel) on the server."""
        return list(self.api("GET", "api/sessions"))

    def close_sessions(self, path: str | None = None) -> list[str]:
        """Shut down the kernel of every session (or only those of notebook `path`); their paths."""
        closed = []
        for session in self.sessions():
            if path is None or session.get("path") == path:
                try:
                    self.api("DELETE", f"api/sessions/{session['id']}")
                except urllib.error.HTTPError as error:
                    if error.code != 404:  # 404: it ended meanwhile, which is what we want
                        raise
                closed.append(str(session.get("path")))
        return closed

    def stop(self) -> list[int]:
        """Shut every kernel down through the API, then stop the server and wait for it to exit.

        Returns the pids of kernels that outlived the server (killed here); [] when all is clean.
        """
        try:
            if self.process.poll() is None:
                self.close_sessions()
                for kernel in self.api("GET", "api/kernels"):  # kernels without a session
                    self.api("DELETE", f"api/kernels/{kernel['id']}")
        finally:
            _terminate(self.process)
            self._log_thread.join(timeout=STOP_TIMEOUT)
            leftovers = _kill_kernels_of(self.runtime)
            shutil.rmtree(self.root.parent, ignore_errors=True)
        return leftovers


def start_lab(notebooks: Path, workdir: Path, log_path: Path, extra_pythonpath: Path) -> LabServer:
    """Start `jupyter lab` on a copy of `notebooks` inside `workdir`; return once it serves."""
    root = workdir / "served" / "notebooks"
    shutil.copytree(notebooks, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    runtime = workdir / "runtime"
    app_settings = workdir / "app-settings"
    app_settings.mkdir(parents=True)
    (app_settings / "overrides.json").write_text(json.dumps(SETTINGS_OVERRIDES, indent=2))
    labconfig = workdir / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {name: True for name in DISABLED_EXTENSIONS}})
    )
    token = secrets.token_hex(24)
    env = dict(os.environ)
    env.update(
        JUPYTER_RUNTIME_DIR=str(runtime),
        # A config dir of its own: the tester's ~/.jupyter (passwords, extensions config) stays out.
        JUPYTER_CONFIG_DIR=str(workdir / "config"),
        PYTHONPATH=os.pathsep.join(p for p in (str(extra_pythonpath), env.get("PYTHONPATH")) if p),
        PYTHONUNBUFFERED="1",
    )
    jupyter_lab = Path(sys.executable).with_name("jupyter-lab")
    command = [
        str(jupyter_lab),
        "--no-browser",
        "--ip=127.0.0.1",
        "--port=0",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        # Settings of its own: overrides.json here, user settings and workspaces in the scratch
        # dir. Nothing is written into the .venv, where a learner's own JupyterLab would read it.
        f"--LabApp.app_settings_dir={app_settings}",
        f"--LabApp.user_settings_dir={workdir / 'user-settings'}",
        f"--LabApp.workspaces_dir={workdir / 'workspaces'}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        command,
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a group of its own: a stop reaches its helpers too
    )
    ready = threading.Event()
    assert process.stdout is not None
    log_thread = threading.Thread(
        target=_copy_log,
        args=(process.stdout, log_path, ready),
        name="jupyter-lab-log",
        daemon=True,
    )
    log_thread.start()
    try:
        if not ready.wait(START_TIMEOUT) or process.poll() is not None:
            raise RuntimeError(
                f"jupyter lab did not start within {START_TIMEOUT:.0f} s "
                f"(exit code {process.poll()}); its log:\n{_tail(log_path)}"
            )
        info = _read_runtime_file(runtime / f"jpserver-{process.pid}.json", process)
    except BaseException:
        _terminate(process)
        log_thread.join(timeout=STOP_TIMEOUT)
        raise
    return LabServer(
        process=process,
        root=root,
        url=f"http://127.0.0.1:{int(info['port'])}/",
        token=token,
        log_path=log_path,
        runtime=runtime,
        _log_thread=log_thread,
    )


def _copy_log(stream: IO[str], log_path: Path, ready: threading.Event) -> None:
    """Copy the server's output to log_path (never letting the pipe fill) and flag readiness."""
    with open(log_path, "w", encoding="utf-8") as log:
        for line in stream:
            log.write(line)
            log.flush()
            if _READY_LINE in line:
                ready.set()
    ready.set()  # the server exited: let the starter see it at once


def _read_runtime_file(path: Path, process: subprocess.Popen[str]) -> dict[str, Any]:
    """The server's runtime info, written right after it logged that it is running."""
    waited = threading.Event()
    for _ in range(200):  # bounded: about 10 s in all, though it takes a few ms
        if path.exists():
            try:
                return dict(json.loads(path.read_text()))
            except json.JSONDecodeError:
                pass  # caught mid-write: read again
        if process.poll() is not None:
            break
        waited.wait(0.05)
    raise RuntimeError(f"jupyter lab wrote no readable {path.name} (exit code {process.poll()})")


def _terminate(process: subprocess.Popen[str]) -> None:
    """Stop the server (SIGTERM, then SIGKILL) and anything left in its process group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
    try:  # a kernel the server failed to shut down would otherwise outlive the suite
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_kernels_of(runtime: Path) -> list[int]:
    """Kill kernels whose connection file lies in `runtime` (they run in sessions of their own)."""
    marker = str(runtime).encode() + b"/kernel-"
    pids = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in entry.read_bytes():
                pid = int(entry.parent.name)
                os.kill(pid, signal.SIGKILL)
                pids.append(pid)
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return pids


def _tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
