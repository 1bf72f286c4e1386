"""Staff login and its lock-out, without HTTP."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import func, select

from conftest import both_databases
from swagstore import auth
from swagstore.models import LoginFailure, db, utcnow

PASSWORD = "s3cret-pw"


def failures() -> int:
    return db.session.scalar(select(func.count()).select_from(LoginFailure))


def test_the_right_password_logs_in_and_forgets_earlier_failures(app):
    with app.app_context():
        assert auth.login("wrong", PASSWORD) == auth.Attempt(ok=False)
        assert failures() == 1
        assert auth.login(PASSWORD, PASSWORD) == auth.Attempt(ok=True)
        assert failures() == 0


def test_a_password_that_only_starts_right_is_wrong(app):
    with app.app_context():
        assert not auth.login(PASSWORD[:-1], PASSWORD).ok
        assert not auth.login(PASSWORD + "x", PASSWORD).ok
        assert not auth.login("", PASSWORD).ok
        assert auth.login("pässwörd", "pässwörd").ok


def test_five_failures_lock_out_even_the_right_password_for_five_minutes(app):
    start = utcnow()
    with app.app_context():
        for n in range(auth.MAX_FAILURES):
            attempt = auth.login(
                "guess", PASSWORD, remote="10.0.0.9", now=start + timedelta(seconds=n)
            )
            assert attempt == auth.Attempt(ok=False)
        locked = auth.login(PASSWORD, PASSWORD, now=start + timedelta(seconds=10))
        assert locked == auth.Attempt(ok=False, locked_until=start + auth.WINDOW)
        # A refused attempt is not another failure: the lock does not grow while it holds.
        assert failures() == auth.MAX_FAILURES
        still = auth.login(PASSWORD, PASSWORD, now=start + auth.WINDOW - timedelta(seconds=1))
        assert still.locked_until == start + auth.WINDOW
        assert auth.login(PASSWORD, PASSWORD, now=start + auth.WINDOW + timedelta(seconds=1)).ok


def test_failures_older_than_the_window_do_not_count(app):
    start = utcnow()
    with app.app_context():
        for n in range(auth.MAX_FAILURES - 1):
            auth.login("guess", PASSWORD, now=start + timedelta(seconds=n))
        later = start + auth.WINDOW + timedelta(seconds=5)
        assert auth.login("guess", PASSWORD, now=later) == auth.Attempt(ok=False)
        # The four old failures were pruned; only the new one is kept.
        assert failures() == 1
        assert auth.login(PASSWORD, PASSWORD, now=later + timedelta(seconds=1)).ok


def test_actor_labels_staff_by_the_name_they_give():
    assert auth.actor(None) == "staff"
    assert auth.actor("   ") == "staff"
    assert auth.actor("  Ada   Lovelace ") == "staff:Ada Lovelace"
    assert auth.actor("x" * 100) == "staff:" + "x" * auth.MAX_NAME


@both_databases
def test_a_burst_of_concurrent_wrong_guesses_checks_exactly_five(app):
    """Mutation tried: without the table lock in auth.login, [postgres] checked 12 of 12."""
    guesses = 12
    barrier = threading.Barrier(guesses)

    def guess(i: int) -> auth.Attempt:
        with app.app_context():
            db.session.connection()  # connected before the start line
            db.session.rollback()
            barrier.wait(timeout=60)
            return auth.login(f"guess-{i}", PASSWORD, remote=f"10.0.0.{i}")

    with ThreadPoolExecutor(guesses) as pool:
        attempts = list(pool.map(guess, range(guesses)))
    checked = [a for a in attempts if a.locked_until is None]
    assert len(checked) == auth.MAX_FAILURES
    assert not any(a.ok for a in attempts)
    with app.app_context():
        assert failures() == auth.MAX_FAILURES
        assert auth.login(PASSWORD, PASSWORD).locked_until is not None
