"""Log-in throttling (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.throttle import LoginThrottle

T0 = datetime(2026, 11, 29, 8, tzinfo=UTC)


def test_a_user_name_waits_after_five_failures_until_the_oldest_expires() -> None:
    throttle = LoginThrottle()
    for minute in range(5):
        assert throttle.retry_after("crew-north", "10.0.0.1", T0) is None
        throttle.failed("crew-north", "10.0.0.1", T0 + timedelta(minutes=minute))
    now = T0 + timedelta(minutes=5)
    assert throttle.retry_after("crew-north", "10.0.0.9", now) == timedelta(minutes=10)
    assert throttle.retry_after("CREW-NORTH", "10.0.0.9", now) == timedelta(minutes=10)
    assert throttle.retry_after("crew-south", "10.0.0.9", now) is None
    assert throttle.retry_after("crew-north", "10.0.0.9", T0 + timedelta(minutes=15)) is None


def test_an_address_trying_many_names_waits_after_twenty_failures() -> None:
    throttle = LoginThrottle()
    for index in range(20):
        throttle.failed(f"guess-{index}", "203.0.113.7", T0)
    assert throttle.retry_after("anyone", "203.0.113.7", T0) == timedelta(minutes=15)
    assert throttle.retry_after("anyone", "203.0.113.8", T0) is None


def test_a_success_clears_the_user_names_failures_and_old_keys_are_forgotten() -> None:
    throttle = LoginThrottle()
    for _ in range(4):
        throttle.failed("tech", "10.0.0.1", T0)
    throttle.succeeded("tech")
    throttle.failed("tech", "10.0.0.1", T0)
    assert throttle.retry_after("tech", "10.0.0.2", T0) is None
    later = T0 + timedelta(hours=1)
    assert throttle.retry_after("tech", "10.0.0.1", later) is None
    assert throttle._failures == {}  # memory stays bounded


def test_concurrent_attempts_are_counted_as_they_start_not_as_they_fail() -> None:
    throttle = LoginThrottle()
    started = [throttle.attempt("tech", "10.0.0.1", T0) for _ in range(8)]
    assert started == [None] * 5 + [timedelta(minutes=15)] * 3, "the sixth waits at once"


def test_a_successful_attempt_is_taken_back_from_its_address_too() -> None:
    throttle = LoginThrottle()
    for index in range(19):
        throttle.failed(f"guess-{index}", "10.0.0.1", T0)
    assert throttle.attempt("tech", "10.0.0.1", T0) is None
    throttle.succeeded("tech", "10.0.0.1", T0)
    assert throttle.retry_after("someone", "10.0.0.1", T0) is None, "19 failures, not 20"
    assert throttle.attempt("tech", "10.0.0.1", T0) is None
    assert throttle.retry_after("someone", "10.0.0.1", T0) == timedelta(minutes=15)
