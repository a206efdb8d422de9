"""What this process is running right now: its threads and its listening TCP ports, and which
of them the Jupyter kernel itself started.

Shown in notebooks 00 and 11; tools/rerun.py checks every notebook with it.

Used by notebook 00 to show what a background server leaves behind, and by the
tests that check a notebook re-run leaves nothing behind. The sockets and file
descriptors come from psutil, which asks the operating system the same question
on Linux (/proc), macOS and Windows.
"""

from __future__ import annotations

import threading

import psutil

__all__ = ["thread_names", "listening_ports", "open_fd_count", "kernel_ports", "kernel_threads"]


def thread_names() -> list[str]:
    """Names of this process's live Python threads, sorted.

    Leaves out threading's "Dummy-N" entries: threads started outside Python
    (gRPC's C core runs call credentials on its own threads) that merely
    called into it. Python keeps such an entry for as long as it lives.
    """
    dummy = getattr(threading, "_DummyThread", ())
    return sorted(t.name for t in threading.enumerate() if not isinstance(t, dummy))


def open_fd_count() -> int | None:
    """How many file descriptors (on Windows: handles) this process has open.

    None where the operating system will not say (psutil raises AccessDenied).
    """
    me = psutil.Process()
    try:
        return me.num_fds() if hasattr(me, "num_fds") else me.num_handles()
    except psutil.Error:
        return None


def listening_ports() -> list[tuple[str, int]] | None:
    """(host, port) of every TCP socket this process listens on, sorted.

    None where the operating system will not say (psutil raises AccessDenied).
    """
    me = psutil.Process()
    connections = getattr(me, "net_connections", None) or me.connections  # psutil < 6
    try:
        found = connections(kind="tcp")
    except psutil.Error:
        return None
    return sorted(
        (c.laddr.ip, c.laddr.port) for c in found if c.status == psutil.CONN_LISTEN and c.laddr
    )


# The Jupyter messaging sockets a kernel listens on (jupyter-client's "Messaging in Jupyter").
_KERNEL_SOCKETS = {
    "shell_port": "Jupyter shell: the code you run comes in here",
    "iopub_port": "Jupyter IOPub: outputs and busy/idle go out to every front end",
    "stdin_port": "Jupyter stdin: input() asks the front end for text",
    "control_port": "Jupyter control: interrupt and shutdown",
    "hb_port": "Jupyter heartbeat: the front end checks the kernel is alive",
}


def kernel_ports() -> dict[int, str]:
    """The TCP ports the Jupyter kernel running this code listens on, each with what it is for.

    Empty outside a Jupyter kernel (a plain ``python``, or a kernel on IPC sockets).
    """
    try:
        from ipykernel.kernelapp import IPKernelApp
    except ImportError:
        return {}
    if not IPKernelApp.initialized():
        return {}
    app = IPKernelApp.instance()
    if getattr(app, "transport", "tcp") != "tcp":
        return {}
    ports = {getattr(app, name, 0): role for name, role in _KERNEL_SOCKETS.items()}
    pipe = getattr(getattr(app, "iopub_thread", None), "_pipe_port", None)  # ipykernel's own
    if pipe:
        ports[pipe] = "ipykernel's pipe: output printed by child processes of the kernel"
    ports.pop(0, None)
    return ports


# The threads ipykernel (6 and 7) starts, by their class, or by name: Python names a thread
# started with a target "Thread-N (target)", which is how the output watchers show up.
_KERNEL_THREAD_CLASSES = {
    "ShellChannelThread": "Jupyter shell: receives the requests to run code",
    "ControlThread": "Jupyter control: interrupt and shutdown",
    "Heartbeat": "Jupyter heartbeat: answers the front end's 'are you alive?'",
    "ParentPollerUnix": "ends the kernel if the program that started it has ended",
    "ParentPollerWindows": "ends the kernel if the program that started it has ended",
    "HistorySavingThread": "IPython: saves the history of the cells you ran to disk",
}
_KERNEL_THREAD_NAMES = {
    "MainThread": "runs your cells",
    "IOPub": "Jupyter IOPub: sends outputs and busy/idle to every front end",
}
_PIPE_WATCHER = (
    "(_watch_pipe_fd)",
    "passes on output written straight to stdout or stderr (by C code, a child process)",
)


def kernel_threads() -> dict[str, str]:
    """The live threads the Jupyter kernel running this code started, by name, each with what
    it is for: the threads a notebook sees that are not its own.

    Empty outside a Jupyter kernel (a plain ``python``).
    """
    try:
        from ipykernel.kernelapp import IPKernelApp
    except ImportError:
        return {}
    if not IPKernelApp.initialized():
        return {}
    found = {}
    for thread in threading.enumerate():
        role = _KERNEL_THREAD_CLASSES.get(type(thread).__name__) or _KERNEL_THREAD_NAMES.get(
            thread.name
        )
        if role is None and thread.name.endswith(_PIPE_WATCHER[0]):
            role = _PIPE_WATCHER[1]
        if role is not None:
            found[thread.name] = role
    return dict(sorted(found.items()))
