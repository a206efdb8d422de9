"""A class server survives a misbehaving learner: each of issue 12's attacks on the stacks of
gRPC, Thrift, XML-RPC and REST, reproduced in this process, and the fix that stops it.

The same attacks, all at once across network namespaces, are in tests/test_class_lab_netns.py.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import grpc
import pytest

from rpclab.runtime import background
from rpclab.runtime.background import BackgroundServerError

# --------------------------------------------------------------------------- item 6: gRPC stop


def _stuck_service(release: threading.Event, entered: threading.Event):
    def register(server):
        def stuck(request, context):
            entered.set()
            release.wait()  # a handler that never returns (until the test releases it)
            return request

        handler = grpc.method_handlers_generic_handler(
            "test.Stuck", {"Hold": grpc.unary_unary_rpc_method_handler(stuck)}
        )
        server.add_generic_rpc_handlers((handler,))

    return register


def test_grpc_stop_honours_its_timeout_with_a_handler_that_never_returns():
    release, entered = threading.Event(), threading.Event()
    handle = background.serve_grpc("stuck", _stuck_service(release, entered))
    channel = grpc.insecure_channel(f"127.0.0.1:{handle.port}")
    future = channel.unary_unary("/test.Stuck/Hold").future(b"x", timeout=30)
    try:
        assert entered.wait(10)
        started = time.monotonic()
        with pytest.raises(BackgroundServerError, match="still running"):
            handle.stop(timeout=2)
        took = time.monotonic() - started
        assert took < 4, f"stop(timeout=2) took {took:.1f} s"
    finally:
        release.set()
        future.cancel()
        channel.close()


def test_exit_does_not_wait_for_a_grpc_handler_that_never_returns():
    script = textwrap.dedent(
        """
        import threading, grpc
        from rpclab.runtime import background

        entered = threading.Event()

        def register(server):
            def stuck(request, context):
                entered.set()
                threading.Event().wait()  # never returns
            handler = grpc.method_handlers_generic_handler(
                "test.Stuck", {"Hold": grpc.unary_unary_rpc_method_handler(stuck)})
            server.add_generic_rpc_handlers((handler,))

        handle = background.serve_grpc("stuck", register)
        channel = grpc.insecure_channel(f"127.0.0.1:{handle.port}")
        call = channel.unary_unary("/test.Stuck/Hold").future(b"x", timeout=60)
        assert entered.wait(20)
        print("leaving", flush=True)
        # the interpreter exits here: background's atexit stop_all, then threading's own join
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the process did not exit within 40 s of its last line: {out!r} {err[-2000:]}")
    assert out == "leaving\n", err
