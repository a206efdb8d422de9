"""rpclab.runtime.process: this process's threads, listening ports and open files, on any OS."""

from __future__ import annotations

import socket

import pytest

from rpclab.runtime import process


def test_listening_ports_lists_this_process_listeners_v4_and_v6_and_forgets_closed_ones():
    v4 = socket.create_server(("127.0.0.1", 0))
    try:
        v6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        v6 = None  # a machine without IPv6 loopback
    mine = {("127.0.0.1", v4.getsockname()[1])}
    if v6 is not None:
        mine.add(("::1", v6.getsockname()[1]))
    try:
        assert mine <= set(process.listening_ports())
    finally:
        v4.close()
        if v6 is not None:
            v6.close()
    assert not mine & set(process.listening_ports())


def test_a_connected_socket_is_not_a_listener_but_is_an_open_file():
    before = process.open_fd_count()
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    try:
        assert process.open_fd_count() == before + 2
        assert client.getsockname() not in process.listening_ports()
    finally:
        client.close()
        server.close()
    assert process.open_fd_count() == before


def test_thread_names_are_sorted_and_include_this_one():
    names = process.thread_names()
    assert names == sorted(names) and "MainThread" in names


@pytest.mark.parametrize("fn", [process.listening_ports, process.open_fd_count])
def test_an_os_that_will_not_say_gives_none_not_an_error(monkeypatch, fn):
    import psutil

    def refuse(*args, **kwargs):
        raise psutil.AccessDenied()

    for name in ("net_connections", "connections", "num_fds", "num_handles"):
        monkeypatch.setattr(psutil.Process, name, refuse, raising=False)
    assert fn() is None


def test_outside_a_jupyter_kernel_there_are_no_kernel_ports():
    assert process.kernel_ports() == {}


def test_outside_a_jupyter_kernel_there_are_no_kernel_threads():
    assert process.kernel_threads() == {}


def test_in_a_fresh_jupyter_kernel_every_thread_is_the_kernels_own_and_named():
    """Notebook 00 lists a kernel's threads with what each is for: none may go unexplained."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    source = (
        "from rpclab.runtime import process\n"
        "print(sorted(set(process.thread_names()) - set(process.kernel_threads())))\n"
        "print(len(process.kernel_threads()))"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    unexplained, named = notebook.cells[0].outputs[0]["text"].splitlines()
    assert unexplained == "[]" and int(named) >= 5
