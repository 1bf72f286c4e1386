"""Staff login: one shared password, a lock-out per client address, sessions that end.

Failures are rows in the database, not process memory, so the lock-out holds across
gunicorn workers and restarts, and attempts are counted one at a time on any database.
A client address that tried MAX_FAILURES wrong passwords in any WINDOW is refused, even
the right password, until the oldest of those is WINDOW old; every other address logs in
as usual, so a stranger's guessing never locks the staff out.

A login opens a staff session: a random token for the cookie, and a row that makes it
valid. Logging out deletes the row; changing ADMIN_PASSWORD invalidates every row (each
holds a proof of the password it was opened with); each row lapses after its lifetime.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, text

from .models import LoginFailure, StaffSession, db, utcnow
from .text import one_line

MAX_FAILURES = 5
WINDOW = timedelta(minutes=5)
MAX_NAME = 32
# The remote of an attempt with no address (a command, a test): one shared bucket.
NO_ADDRESS = "unknown"


@dataclass(frozen=True)
class Attempt:
    """The outcome of one login attempt, with the new session's token when it succeeded."""

    ok: bool
    locked_until: datetime | None = None
    token: str | None = None
    # After a wrong password: how many more this client may try before it is locked out.
    tries_left: int | None = None


def login(
    given: str,
    password: str,
    *,
    remote: str | None = None,
    lifetime: timedelta = timedelta(hours=12),
    now: datetime | None = None,
) -> Attempt:
    """Check a staff password unless this client is locked out; open a session if right."""
    now = now or utcnow()
    since = now - WINDOW
    client = (remote or NO_ADDRESS)[:64]
    _one_attempt_at_a_time()
    recent = db.session.scalars(
        select(LoginFailure.at)
        .where(LoginFailure.remote == client, LoginFailure.at > since)
        .order_by(LoginFailure.at.desc())
        .limit(MAX_FAILURES)
    ).all()
    if len(recent) >= MAX_FAILURES:
        db.session.rollback()
        return Attempt(ok=False, locked_until=recent[-1] + WINDOW)
    if not hmac.compare_digest(given.encode(), password.encode()):
        db.session.execute(delete(LoginFailure).where(LoginFailure.at <= since))
        db.session.add(LoginFailure(at=now, remote=client))
        db.session.commit()
        return Attempt(ok=False, tries_left=MAX_FAILURES - len(recent) - 1)
    db.session.execute(delete(LoginFailure).where(LoginFailure.remote == client))
    db.session.execute(delete(StaffSession).where(StaffSession.expires_at <= now))
    token = secrets.token_urlsafe(32)
    proof = _proof(token, password)
    db.session.add(
        StaffSession(id=_digest(token), proof=proof, created_at=now, expires_at=now + lifetime)
    )
    db.session.commit()
    return Attempt(ok=True, token=token)


def session_valid(token: object, password: str, *, now: datetime | None = None) -> bool:
    """Tell whether a staff session is still open for the current password."""
    if not isinstance(token, str) or not token:
        return False
    row = db.session.execute(
        select(StaffSession.proof, StaffSession.expires_at).where(
            StaffSession.id == _digest(token)
        )
    ).one_or_none()
    if row is None or row.expires_at <= (now or utcnow()):
        return False
    return hmac.compare_digest(row.proof, _proof(token, password))


def logout(token: object) -> None:
    """End a staff session for good, and commit."""
    if isinstance(token, str) and token:
        db.session.execute(delete(StaffSession).where(StaffSession.id == _digest(token)))
    db.session.commit()


def _one_attempt_at_a_time() -> None:
    """Make concurrent attempts count and add failures one after another, on any database."""
    # Else two workers could both count four failures and both check a fifth guess. On
    # SQLite the transaction's BEGIN IMMEDIATE already takes the write lock; PostgreSQL
    # locks the failures table itself until commit (plain reads of it still go on).
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("LOCK TABLE login_failure IN SHARE ROW EXCLUSIVE MODE"))


def _digest(token: str) -> str:
    # The table keeps no token, only this: a copy of the database opens no session.
    return hashlib.sha256(token.encode()).hexdigest()


def _proof(token: str, password: str) -> str:
    return hmac.new(token.encode(), password.encode(), hashlib.sha256).hexdigest()


def actor(name: str | None) -> str:
    """Return the label stock events and sales record for a logged-in staff member."""
    name = one_line(name, MAX_NAME)
    return f"staff:{name}" if name else "staff"
