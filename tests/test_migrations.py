"""Schema changes as Alembic revisions: the newest one is the models, init-db upgrades in place.

A model change without a revision fails `test_the_newest_revision_is_the_models`: write one
with `flask --app swagstore db migrate -m "what changed"` and review it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Integer, MetaData, create_engine, inspect, select, text

from conftest import STORE, both_databases
from swagstore import create_app, schema
from swagstore.cli import init_db
from swagstore.models import Product, Sale, Stock, Store, db


def head() -> str:
    """Return the newest revision in migrations/."""
    return ScriptDirectory(str(schema.MIGRATIONS)).get_current_head()


def differences(conn: Connection, metadata: MetaData) -> list[Any]:
    """Return what autogenerate would write to bring the database to `metadata`."""
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(context, metadata)


def layout(conn: Connection) -> dict[str, Any]:
    """Return every table's columns, keys, indexes and CHECKs, as the database reports them.

    Alembic's comparison skips CHECK constraints and partial-index conditions; this does not.
    """
    inspector = inspect(conn)
    tables = {}
    for name in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        tables[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c["default"])
                for c in inspector.get_columns(name)
            ],
            "pk": inspector.get_pk_constraint(name),
            "fks": sorted(
                (f["name"], f["constrained_columns"], f["referred_table"], f["referred_columns"])
                for f in inspector.get_foreign_keys(name)
            ),
            "indexes": sorted(
                (
                    i["name"],
                    i["column_names"],
                    bool(i["unique"]),
                    {k: str(v) for k, v in i.get("dialect_options", {}).items()},
                )
                for i in inspector.get_indexes(name)
            ),
            "unique": sorted(
                (u["name"], u["column_names"]) for u in inspector.get_unique_constraints(name)
            ),
            "checks": sorted(
                (c["name"], " ".join(c["sqltext"].split()))
                for c in inspector.get_check_constraints(name)
            ),
        }
    return tables


def revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


@both_databases
def test_the_newest_revision_is_the_models(app):
    with app.app_context(), db.engine.connect() as conn:
        assert revision(conn) == head()
        assert differences(conn, db.metadata) == []
        assert "sandbox_object" not in inspect(conn).get_table_names()


@both_databases
def test_the_revisions_build_exactly_what_create_all_builds(app):
    with app.app_context():
        with db.engine.connect() as conn:
            migrated = layout(conn)
        with db.engine.begin() as conn:
            config = schema.migrate.get_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
            assert set(inspect(conn).get_table_names()) == {"alembic_version"}
            conn.execute(text("DROP TABLE alembic_version"))
            db.metadata.create_all(conn)
        with db.engine.connect() as conn:
            created = layout(conn)
    assert sorted(migrated) == sorted(db.metadata.tables)
    assert migrated == created


def test_the_check_sees_a_model_change_without_a_revision(app):
    changed = MetaData(naming_convention=db.metadata.naming_convention)
    for table in db.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["stock"].append_column(Column("shelf", Integer, nullable=True))
    with app.app_context(), db.engine.connect() as conn:
        diff = differences(conn, changed)
    assert [(d[0], d[2], d[3].name) for d in diff] == [("add_column", "stock", "shelf")]


def build_the_old_way(url: str) -> None:
    """Make a database as releases before migrations did: the first revision's tables
    (what their create_all made), then some rows."""
    spec = importlib.util.spec_from_file_location(
        "baseline", schema.MIGRATIONS / "versions" / "0001_initial.py"
    )
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            with Operations.context(MigrationContext.configure(conn)):
                baseline.upgrade()
            conn.execute(Store.__table__.insert().values(id=STORE, name="Booth"))
            conn.execute(
                Product.__table__.insert().values(
                    sku="mug",
                    name="Mug",
                    price=1200,
                    currency="usd",
                    description="",
                    attributes={},
                    position=0,
                )
            )
            # Spelled out: the model's later columns (and their defaults) are not there yet.
            conn.execute(
                text("INSERT INTO stock (sku, store, on_hand, reserved) VALUES ('mug', :s, 7, 0)"),
                {"s": STORE},
            )
            conn.execute(
                Sale.__table__.insert().values(
                    sku="mug",
                    store=STORE,
                    quantity=1,
                    amount=1200,
                    currency="usd",
                    kind="cash",
                    status="fulfilled",
                    captured=False,
                    created_at=datetime(2026, 11, 30, 12, tzinfo=UTC),
                    updated_at=datetime(2026, 11, 30, 12, tzinfo=UTC),
                )
            )
    finally:
        engine.dispose()


@both_databases
def test_init_db_adopts_a_database_made_by_create_all_and_keeps_its_rows(app_config, database_url):
    build_the_old_way(database_url)
    app = create_app(app_config)
    with app.app_context():
        with db.engine.connect() as conn:
            assert revision(conn) is None
        init_db()
        init_db()
        with db.engine.connect() as conn:
            assert revision(conn) == head()
            assert differences(conn, db.metadata) == []
        assert db.session.execute(select(Store.id, Store.name)).all() == [(STORE, "Booth")]
        assert db.session.execute(select(Stock.sku, Stock.on_hand)).all() == [("mug", 7)]
        assert db.session.execute(select(Sale.sku, Sale.amount, Sale.kind)).all() == [
            ("mug", 1200, "cash")
        ]
        db.session.remove()
        db.engine.dispose()


def test_init_db_on_an_empty_database_makes_the_store_and_the_revision(app_config):
    app = create_app(app_config)
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        with db.engine.connect() as conn:
            assert revision(conn) == head()
            assert conn.scalars(select(Store.id)).all() == [STORE]
        db.engine.dispose()


# One booth starting: its own app on the shared database, waiting for the common start line.
INIT_BOOTH = """
import sys
from swagstore import create_app
from swagstore.cli import init_db
uri, store = sys.argv[1:3]
app = create_app({"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": "x", "STORE_ID": store,
                  "STRIPE_SECRET_KEY": "sk_test_live"})
with app.app_context():
    print("ready", flush=True)
    sys.stdin.readline()
    init_db()
"""


@both_databases
def test_booths_upgrading_an_old_database_together_agree(database_url):
    # Starting on an empty database together is test_booths' case; this one also stamps.
    build_the_old_way(database_url)
    stores = [f"hall-{n}" for n in range(5)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", INIT_BOOTH, database_url, store],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for store in stores
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.communicate(timeout=60)[1]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(stores), "\n".join(errors)
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.scalars(text("SELECT version_num FROM alembic_version")).all() == [head()]
            assert sorted(conn.scalars(select(Store.id))) == sorted([STORE, *stores])
            assert conn.execute(select(Stock.sku, Stock.on_hand)).all() == [("mug", 7)]
    finally:
        engine.dispose()
