"""Staff login: one shared password, compared in constant time, with a lock-out.

Failures are rows in the database, not process memory, so the lock-out holds across
gunicorn workers and restarts. At most MAX_FAILURES wrong passwords are tried in any
WINDOW; after that every attempt, even the right password, is refused until the oldest
of those failures is WINDOW old.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

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
    # The first statement takes SQLite's write lock (BEGIN IMMEDIATE), so two workers
    # cannot both count four failures and both let a fifth guess through.
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


def actor(name: str | None) -> str:
    """Return the label stock events and sales record for a logged-in staff member."""
    name = " ".join((name or "").split())[:MAX_NAME]
    return f"staff:{name}" if name else "staff"
