"""Staff login, its lock-out per client address and staff sessions, without HTTP."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import func, select

from conftest import both_databases
from swagstore import auth
from swagstore.models import LoginFailure, StaffSession, db, utcnow

PASSWORD = "s3cret-pw"
GUESSER = "10.0.0.9"
STAFF = "10.0.0.20"


def failures() -> int:
    return db.session.scalar(select(func.count()).select_from(LoginFailure))


def test_the_right_password_logs_in_and_forgets_the_clients_earlier_failures(app):
    with app.app_context():
        assert auth.login("wrong", PASSWORD, remote=STAFF) == auth.Attempt(ok=False, tries_left=4)
        auth.login("wrong", PASSWORD, remote=GUESSER)
        assert failures() == 2
        attempt = auth.login(PASSWORD, PASSWORD, remote=STAFF)
        assert attempt.ok and attempt.token and attempt.locked_until is None
        assert failures() == 1  # the guesser's failure stays


def test_a_password_that_only_starts_right_is_wrong(app):
    with app.app_context():
        assert not auth.login(PASSWORD[:-1], PASSWORD).ok
        assert not auth.login(PASSWORD + "x", PASSWORD).ok
        assert not auth.login("", PASSWORD).ok
        assert auth.login("pässwörd", "pässwörd").ok


def test_five_failures_lock_that_client_out_even_with_the_right_password(app):
    start = utcnow()
    with app.app_context():
        for n in range(auth.MAX_FAILURES):
            attempt = auth.login(
                "guess", PASSWORD, remote=GUESSER, now=start + timedelta(seconds=n)
            )
            assert attempt == auth.Attempt(ok=False, tries_left=auth.MAX_FAILURES - n - 1)
        later = start + timedelta(seconds=10)
        locked = auth.login(PASSWORD, PASSWORD, remote=GUESSER, now=later)
        assert locked == auth.Attempt(ok=False, locked_until=start + auth.WINDOW)
        # A refused attempt is not another failure: the lock does not grow while it holds.
        assert failures() == auth.MAX_FAILURES
        still = auth.login(
            PASSWORD, PASSWORD, remote=GUESSER, now=start + auth.WINDOW - timedelta(seconds=1)
        )
        assert still.locked_until == start + auth.WINDOW
        after = start + auth.WINDOW + timedelta(seconds=1)
        assert auth.login(PASSWORD, PASSWORD, remote=GUESSER, now=after).ok


def test_a_locked_out_client_never_blocks_the_staff_on_another(app):
    start = utcnow()
    with app.app_context():
        for n in range(3 * auth.MAX_FAILURES):
            auth.login("guess", PASSWORD, remote=GUESSER, now=start + timedelta(seconds=n))
        later = start + timedelta(seconds=60)
        assert auth.login(PASSWORD, PASSWORD, remote=GUESSER, now=later).locked_until
        # Another client, even one with a wrong guess or two behind it, logs in at once.
        auth.login("typo", PASSWORD, remote=STAFF, now=later)
        assert auth.login(PASSWORD, PASSWORD, remote=STAFF, now=later).ok
        assert auth.login(PASSWORD, PASSWORD, now=later).ok  # no address: its own bucket


def test_failures_older_than_the_window_do_not_count(app):
    start = utcnow()
    with app.app_context():
        for n in range(auth.MAX_FAILURES - 1):
            auth.login("guess", PASSWORD, remote=GUESSER, now=start + timedelta(seconds=n))
        later = start + auth.WINDOW + timedelta(seconds=5)
        # The old ones no longer count: four tries are left, not none.
        fresh = auth.login("guess", PASSWORD, remote=GUESSER, now=later)
        assert fresh == auth.Attempt(ok=False, tries_left=auth.MAX_FAILURES - 1)
        # The four old failures were pruned; only the new one is kept.
        assert failures() == 1
        assert auth.login(PASSWORD, PASSWORD, remote=GUESSER, now=later + timedelta(seconds=1)).ok


def test_a_session_ends_on_logout(app):
    with app.app_context():
        token = auth.login(PASSWORD, PASSWORD, remote=STAFF).token
        other = auth.login(PASSWORD, PASSWORD, remote=STAFF).token
        assert auth.session_valid(token, PASSWORD) and auth.session_valid(other, PASSWORD)
        auth.logout(token)
        assert not auth.session_valid(token, PASSWORD)
        assert auth.session_valid(other, PASSWORD)  # another staff member stays in


def test_a_session_ends_when_the_password_changes(app):
    with app.app_context():
        token = auth.login(PASSWORD, PASSWORD, remote=STAFF).token
        assert not auth.session_valid(token, "the-new-password")
        assert auth.session_valid(token, PASSWORD)  # and the old one is the old one


def test_a_session_ends_after_its_lifetime(app):
    start = utcnow()
    with app.app_context():
        lifetime = timedelta(hours=12)
        token = auth.login(PASSWORD, PASSWORD, remote=STAFF, lifetime=lifetime, now=start).token
        assert auth.session_valid(token, PASSWORD, now=start + lifetime - timedelta(seconds=1))
        assert not auth.session_valid(token, PASSWORD, now=start + lifetime)
        # The next login sweeps it away.
        auth.login(PASSWORD, PASSWORD, remote=STAFF, now=start + lifetime)
        assert db.session.scalar(select(func.count()).select_from(StaffSession)) == 1


def test_a_forged_or_missing_token_opens_nothing(app):
    with app.app_context():
        auth.login(PASSWORD, PASSWORD, remote=STAFF)
        for token in (None, "", "x" * 43, 17):
            assert not auth.session_valid(token, PASSWORD)
        # The table keeps no token, only its digest: the rows open nothing either.
        row = db.session.scalars(select(StaffSession)).one()
        assert not auth.session_valid(row.id, PASSWORD)


def test_actor_labels_staff_by_the_name_they_give():
    assert auth.actor(None) == "staff"
    assert auth.actor("   ") == "staff"
    assert auth.actor("  Ada   Lovelace ") == "staff:Ada Lovelace"
    assert auth.actor("x" * 100) == "staff:" + "x" * auth.MAX_NAME


@both_databases
def test_a_burst_of_concurrent_wrong_guesses_checks_exactly_five(app):
    """One client's burst: without the table lock in auth.login, [postgres] checked 12 of 12."""
    guesses = 12
    barrier = threading.Barrier(guesses)

    def guess(i: int) -> auth.Attempt:
        with app.app_context():
            db.session.connection()  # connected before the start line
            db.session.rollback()
            barrier.wait(timeout=60)
            return auth.login(f"guess-{i}", PASSWORD, remote=GUESSER)

    with ThreadPoolExecutor(guesses) as pool:
        attempts = list(pool.map(guess, range(guesses)))
    checked = [a for a in attempts if a.locked_until is None]
    assert len(checked) == auth.MAX_FAILURES
    assert not any(a.ok for a in attempts)
    with app.app_context():
        assert failures() == auth.MAX_FAILURES
        assert auth.login(PASSWORD, PASSWORD, remote=GUESSER).locked_until is not None
        assert auth.login(PASSWORD, PASSWORD, remote=STAFF).ok
