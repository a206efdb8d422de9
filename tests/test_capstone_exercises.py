"""Notebook 15's exercise checks (rpclab.capstone.exercise) pass the solution and name what is
wrong with the answers a learner is likely to write first."""

from __future__ import annotations

import uuid

import grpc
import pytest

from rpclab import exercises
from rpclab.capstone import exercise, shop

Code = grpc.StatusCode


@pytest.fixture
def services():
    running = shop.start()
    try:
        yield running
    finally:
        running.stop()


def make_order(reserve, charge, release):
    price = reserve()
    try:
        transaction = charge(price)
    except grpc.RpcError:
        release()
        raise
    return price, transaction


def never_undoes(reserve, charge, release):
    price = reserve()
    return price, charge(price)


def undoes_but_succeeds(reserve, charge, release):
    price = reserve()
    try:
        return price, charge(price)
    except grpc.RpcError:
        release()
        return price, ""


def always_undoes(reserve, charge, release):
    price = reserve()
    try:
        return price, charge(price)
    finally:
        release()


def raises_a_new_error(reserve, charge, release):  # the cold reader's: the status code is lost
    price = reserve()
    try:
        transaction = charge(price)
    except grpc.RpcError:
        release()
        raise grpc.RpcError("payment failed")  # noqa: B904 (the mistake this test is about)
    return price, transaction


def blank(reserve, charge, release):
    raise exercises.NotDone("charge, and release if that fails")


@pytest.mark.parametrize(
    ("steps", "status", "words"),
    [
        (make_order, "right", "the stock stayed at"),
        (blank, "not done", "charge, and release"),
        (never_undoes, "wrong", "never released"),
        (undoes_but_succeeds, "wrong", "raise the error again"),
        (always_undoes, "wrong", "release() only when the charge fails"),
        (raises_a_new_error, "wrong", "the status code is lost on the way"),
    ],
)
def test_the_make_order_check(services, steps, status, words):
    verdict = exercises.check(
        "make-order", lambda: exercise.check_make_order(steps, services), show=False
    )
    assert verdict.status == status and words in verdict.message, verdict
    assert services.orders.steps is shop.make_order  # the shop is left as it was
    assert services.flaky["payments"].faults.fail == 0


def test_the_make_order_check_leaves_payments_as_it_found_them(services):
    services.fail("payments", 1.0)
    exercises.check("make-order", lambda: exercise.check_make_order(make_order, services))
    assert services.flaky["payments"].faults.fail == 1.0


def place_safely(gateway, request, timeout):
    request.idempotency_key = uuid.uuid4().hex
    for attempt in range(1, 4):
        try:
            return gateway.PlaceOrder(request, timeout=timeout)
        except grpc.RpcError as error:
            retry = error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            if not retry or attempt == 3:
                raise


def new_key_each_attempt(gateway, request, timeout):
    for attempt in range(1, 4):
        request.idempotency_key = uuid.uuid4().hex
        try:
            return gateway.PlaceOrder(request, timeout=timeout)
        except grpc.RpcError:
            if attempt == 3:
                raise


def no_key(gateway, request, timeout):
    for attempt in range(1, 4):
        try:
            return gateway.PlaceOrder(request, timeout=timeout)
        except grpc.RpcError:
            if attempt == 3:
                raise


def no_retry(gateway, request, timeout):
    request.idempotency_key = uuid.uuid4().hex
    return gateway.PlaceOrder(request, timeout=timeout)


def one_key_for_every_order(gateway, request, timeout):
    request.idempotency_key = "my-key"
    return retry_three_times(gateway, request, timeout)


def a_key_from_the_order_retrying_for_ever(gateway, request, timeout):  # the cold reader's
    request.idempotency_key = f"{request.customer}-{request.item}-{request.quantity}"
    while True:
        try:
            return gateway.PlaceOrder(request, timeout=timeout)
        except grpc.RpcError:
            pass


def a_key_from_the_order(gateway, request, timeout):
    request.idempotency_key = f"{request.customer}-{request.item}-{request.quantity}"
    return retry_three_times(gateway, request, timeout)


def retry_three_times(
    gateway, request, timeout, retried=(Code.DEADLINE_EXCEEDED, Code.UNAVAILABLE)
):
    for attempt in range(1, 4):
        try:
            return gateway.PlaceOrder(request, timeout=timeout)
        except grpc.RpcError as error:
            if error.code() not in retried or attempt == 3:
                raise


def retries_every_error(gateway, request, timeout):
    request.idempotency_key = uuid.uuid4().hex
    return retry_three_times(gateway, request, timeout, retried=tuple(Code))


def retries_only_deadline_exceeded(gateway, request, timeout):
    request.idempotency_key = uuid.uuid4().hex
    return retry_three_times(gateway, request, timeout, retried=(Code.DEADLINE_EXCEEDED,))


def five_attempts(gateway, request, timeout):
    request.idempotency_key = uuid.uuid4().hex
    for attempt in range(1, 6):
        try:
            return gateway.PlaceOrder(request, timeout=timeout)
        except grpc.RpcError:
            if attempt == 5:
                raise


def gives_up_with_a_new_error(gateway, request, timeout):
    request.idempotency_key = uuid.uuid4().hex
    try:
        return retry_three_times(gateway, request, timeout)
    except grpc.RpcError:
        raise grpc.RpcError("the order failed")  # noqa: B904 (the mistake this test is about)


def a_longer_timeout(gateway, request, timeout):
    request.idempotency_key = uuid.uuid4().hex
    return retry_three_times(gateway, request, timeout * 2)


@pytest.mark.parametrize(
    ("client", "status", "words"),
    [
        (place_safely, "right", "charged once"),
        (new_key_each_attempt, "wrong", "choose one key per order"),
        (no_key, "wrong", "carried the keys ['', '', '']"),
        (no_retry, "wrong", "made 1 attempt(s): make 3 in all"),
        (one_key_for_every_order, "wrong", "choose a new key for every order"),
        (a_key_from_the_order_retrying_for_ever, "wrong", "still retrying after 10 attempts"),
        (a_key_from_the_order, "wrong", "A key made from what is ordered"),
        (retries_every_error, "wrong", "retry only DEADLINE_EXCEEDED and UNAVAILABLE"),
        (retries_only_deadline_exceeded, "wrong", "UNAVAILABLE is worth another attempt"),
        (five_attempts, "wrong", "made 5 attempt(s): make 3 in all"),
        (gives_up_with_a_new_error, "wrong", "raised an error with no status code (RpcError)"),
        (a_longer_timeout, "wrong", "give every attempt `timeout` seconds"),
    ],
)
def test_the_place_safely_check(services, client, status, words):
    verdict = exercises.check(
        "place-safely", lambda: exercise.check_place_safely(client, services), show=False
    )
    assert verdict.status == status and words in verdict.message, verdict
