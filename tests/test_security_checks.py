"""Notebook 10's exercise check (rpclab.grpcstack.security_checks): the authorization
interceptor passes, and one that answers a known caller UNAUTHENTICATED, or decides by a name
written into it instead of the admins it was given, is caught."""

from __future__ import annotations

import grpc
import pytest

from rpclab.exercises import NotDone
from rpclab.grpcstack.handlers import run_before
from rpclab.grpcstack.security_checks import check_admin_only
from rpclab.runtime import aio, background


@pytest.fixture(autouse=True)
def _nothing_left_running():
    yield
    assert background.running() == {} and aio.running_aio() == {}


# --------------------------------------------------------------------------- 10


class AdminOnly(grpc.ServerInterceptor):  # the notebook's solution
    def __init__(self, auth, admins):
        self.auth, self.admins = auth, set(admins)

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if details.method != "/rpclab.kv.KV/Delete":
            return handler
        who = self.auth.holder(details.invocation_metadata)
        if who is None or who in self.admins:
            return handler

        def refuse(context):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{who} may not delete")

        return run_before(handler, refuse)


class UnauthenticatedForAll(AdminOnly):  # the confusion the exercise is about
    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if details.method != "/rpclab.kv.KV/Delete":
            return handler
        if self.auth.holder(details.invocation_metadata) in self.admins:
            return handler
        return run_before(
            handler, lambda context: context.abort(grpc.StatusCode.UNAUTHENTICATED, "no")
        )


class AdaOnly(AdminOnly):  # a name written in, instead of self.admins
    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if details.method != "/rpclab.kv.KV/Delete":
            return handler
        if self.auth.holder(details.invocation_metadata) == "ada":
            return handler
        return run_before(
            handler, lambda context: context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
        )


class FirstAdminOnly(AdminOnly):  # only the first admin named gets through
    def __init__(self, auth, admins):
        super().__init__(auth, admins)
        self.admins = set(list(admins)[:1])


class BlankAdminOnly(AdminOnly):
    def intercept_service(self, continuation, details):
        raise NotDone("refuse non-admins")


def test_admin_only_delete_passes_the_solution():
    assert "PERMISSION_DENIED" in check_admin_only(AdminOnly)


def test_admin_only_delete_says_a_known_caller_is_denied_not_unauthenticated():
    with pytest.raises(
        AssertionError, match="got UNAUTHENTICATED: bob should get PERMISSION_DENIED"
    ):
        check_admin_only(UnauthenticatedForAll)


def test_admin_only_delete_catches_an_admin_named_in_the_code_instead_of_admins():
    with pytest.raises(AssertionError, match=r"with admins=\['bob', 'grace'\], ada .* got OK"):
        check_admin_only(AdaOnly)


def test_admin_only_delete_catches_an_admin_of_the_list_left_out():
    with pytest.raises(AssertionError, match=r"grace \(an admin\) called Delete and got PERM"):
        check_admin_only(FirstAdminOnly)


def test_admin_only_delete_lets_a_blank_exercise_say_not_done():
    with pytest.raises(NotDone):
        check_admin_only(BlankAdminOnly)
