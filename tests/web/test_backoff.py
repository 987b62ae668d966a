"""The console's sign-in back-off on its own: what it remembers is bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from creditsd.web.backoff import SignInBackoff


def test_sign_in_back_off_remembers_a_bounded_number_of_clients() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    backoff = SignInBackoff(size=3)
    for client in ("a", "b", "c", "d"):
        for _ in range(5):
            backoff.failed(client, now)
    assert [backoff.wait(client, now) for client in ("a", "b", "c", "d")] == [0, 1, 1, 1]


def test_an_hour_without_a_failure_forgets_the_count() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    backoff = SignInBackoff()
    for _ in range(4):
        backoff.failed("a", now)
    backoff.failed("a", now + timedelta(minutes=61))  # the fifth, but an hour after the fourth
    assert backoff.wait("a", now + timedelta(minutes=61)) == 0
