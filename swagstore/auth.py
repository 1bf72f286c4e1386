"""Staff login: one shared password, compared in constant time, with a lock-out.

Failures are rows in the database, not process memory, so the lock-out holds across
gunicorn workers and restarts, and attempts are counted one at a time on any database.
At most MAX_FAILURES wrong passwords are tried in any WINDOW; after that every attempt,
even the right password, is refused until the oldest of those failures is WINDOW old.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, text

from .models import LoginFailure, db, utcnow

MAX_FAILURES = 5
WINDOW = timedelta(minutes=5)
MAX_NAME = 32


@dataclass(frozen=True)
class Attempt:
    """The outcome of one login attempt."""

    ok: bool
    locked_until: datetime | None = None


def login(
    given: str, password: str, *, remote: str | None = None, now: datetime | None = None
) -> Attempt:
    """Check a staff password unless recent failures lock the door, and commit the outcome."""
    now = now or utcnow()
    since = now - WINDOW
    _one_attempt_at_a_time()
    recent = db.session.scalars(
        select(LoginFailure.at)
        .where(LoginFailure.at > since)
        .order_by(LoginFailure.at.desc())
        .limit(MAX_FAILURES)
    ).all()
    if len(recent) >= MAX_FAILURES:
        db.session.rollback()
        return Attempt(ok=False, locked_until=recent[-1] + WINDOW)
    ok = hmac.compare_digest(given.encode(), password.encode())
    if ok:
        db.session.execute(delete(LoginFailure))
    else:
        db.session.execute(delete(LoginFailure).where(LoginFailure.at <= since))
        db.session.add(LoginFailure(at=now, remote=(remote or "")[:64] or None))
    db.session.commit()
    return Attempt(ok=ok)


def _one_attempt_at_a_time() -> None:
    """Make concurrent attempts count and add failures one after another, on any database."""
    # Else two workers could both count four failures and both check a fifth guess. On
    # SQLite the transaction's BEGIN IMMEDIATE already takes the write lock; PostgreSQL
    # locks the failures table itself until commit (plain reads of it still go on).
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("LOCK TABLE login_failure IN SHARE ROW EXCLUSIVE MODE"))


def actor(name: str | None) -> str:
    """Return the label stock events and sales record for a logged-in staff member."""
    name = " ".join((name or "").split())[:MAX_NAME]
    return f"staff:{name}" if name else "staff"
