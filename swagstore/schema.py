"""The store's schema as Alembic revisions (migrations/), brought up to date by init-db.

The newest revision always matches the models exactly (tests/test_migrations.py checks it).
A database made before migrations existed (tables, no alembic_version) was made by
create_all from the first revision's models, so it is stamped with that one, then upgraded.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from flask import Flask
from flask_migrate import Migrate
from sqlalchemy import Connection, inspect, text

from .models import db

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The first revision: the schema every release before migrations made with create_all.
BASELINE = "0001"
# Any fixed number: the key of the PostgreSQL advisory lock held while the schema changes.
SCHEMA_LOCK = 5_411_901

migrate = Migrate(db=db, directory=str(MIGRATIONS))


def init_app(app: Flask) -> None:
    """Register Flask-Migrate (and its `flask db` commands for writing revisions)."""
    migrate.init_app(app)


def upgrade(conn: Connection) -> None:
    """Bring the database to the newest revision in `conn`'s transaction, keeping its data."""
    if conn.dialect.name == "postgresql":
        # Booths sharing one database may start together: one at a time changes the schema,
        # and the others then find it done. (SQLite's BEGIN IMMEDIATE already serializes.)
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
    config = migrate.get_config()
    # env.py runs the revisions on this connection, inside this transaction.
    config.attributes["connection"] = conn
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables and "stock" in tables:
        command.stamp(config, BASELINE)
    command.upgrade(config, "head")


def current(conn: Connection) -> str | None:
    """Return the database's revision (None before the first upgrade)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()
