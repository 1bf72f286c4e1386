"""This laptop: a database that takes writes at the newest schema, and room on the disk."""

from __future__ import annotations

import os
import shutil

from alembic.script import ScriptDirectory
from sqlalchemy import update
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from .. import schema
from ..models import Store, db
from .results import Result, Setup, fail, ok

# A booth day writes a few megabytes; SQLite needs room for its WAL and a checkpoint.
MIN_FREE_BYTES = 500 * 1024 * 1024


def check_database(store: str) -> Result:
    """Check the schema is current, the store exists, and a write goes through (rolled back)."""
    name = "database"
    fix_init = "run `flask --app swagstore init-db` (make run does)"
    try:
        with db.engine.connect() as conn:
            head = ScriptDirectory.from_config(schema.migrate.get_config()).get_current_head()
            revision = schema.current(conn)
            conn.rollback()
            if revision != head:
                found = f"at revision {revision}" if revision else "has no tables yet"
                return fail(name, f"the schema {found} (the newest is {head})", fix_init)
            # A real write, rolled back: proves the file (and its folder) take writes and
            # no other process holds the write lock past the busy timeout.
            with conn.begin() as transaction:
                touched = conn.execute(
                    update(Store).where(Store.id == store).values(name=Store.name)
                ).rowcount
                transaction.rollback()
    except OperationalError as e:
        reason = str(e.orig).strip()
        fix = "check the file and its folder are writable by this user, and no other program "
        fix += "holds the database" if "locked" in reason else "can write there"
        return fail(name, f"cannot write: {reason}", fix)
    except SQLAlchemyError as e:
        return fail(name, f"unusable: {str(e).splitlines()[0]}", fix_init)
    if touched != 1:
        return fail(name, f"no store {store!r} in the database", fix_init)
    where = db.engine.url.render_as_string(hide_password=True)
    return ok(name, f"writable, schema {head}: {where}")


def database_folder(setup: Setup) -> str:
    """Return the folder whose disk holds the data this laptop writes."""
    url = setup.database_url
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return os.path.dirname(os.path.abspath(url.removeprefix("sqlite:///"))) or "."
    return setup.instance_path


def check_disk(folder: str, min_free: int = MIN_FREE_BYTES) -> Result:
    """Check the disk under a folder has room for a day of sales and logs."""
    name = "disk"
    usage = shutil.disk_usage(folder)
    free = f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.0f} GiB"
    if usage.free < min_free:
        return fail(
            name,
            f"{folder}: only {free}",
            f"free at least {min_free / 2**20:.0f} MiB (old logs, downloads) before the booth",
        )
    return ok(name, f"{folder}: {free}")
