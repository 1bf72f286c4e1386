"""PostgreSQL specifics: the schema, its constraints and the isolation the stock rules rely on."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from conftest import STORE, make_product, needs_postgres
from swagstore import inventory
from swagstore.models import PaymentLink, StockEvent, db

pytestmark = needs_postgres


@pytest.fixture
def database_url(postgres_database_url: str) -> str:
    return postgres_database_url


def link(id: str, retired_at: datetime | None = None) -> PaymentLink:
    return PaymentLink(
        id=id, sku="tee-m", store=STORE, url="https://x", price_id="p", retired_at=retired_at
    )


def test_app_runs_on_postgres_with_read_committed(app):
    with app.app_context():
        assert db.engine.dialect.name == "postgresql"
        assert db.engine.dialect.driver == "psycopg"
        # The guarded UPDATEs rely on PostgreSQL re-checking WHERE on the newest row version.
        assert db.session.scalar(text("SHOW transaction_isolation")) == "read committed"


def test_schema_keeps_its_named_check_constraints(app):
    with app.app_context():
        checks = {c["name"] for c in inspect(db.engine).get_check_constraints("stock")}
        indexes = {i["name"] for i in inspect(db.engine).get_indexes("payment_link")}
    assert {"ck_stock_reserved_not_negative", "ck_stock_reserved_within_on_hand"} <= checks
    assert "uq_payment_link_current" in indexes


def test_one_current_link_per_item_but_any_number_retired(app):
    make_product(app, stock=1)
    with app.app_context():
        db.session.add_all([link("plink_old", datetime(2026, 1, 1, tzinfo=UTC)), link("plink_1")])
        db.session.commit()
        db.session.add(link("plink_2"))
        with pytest.raises(IntegrityError, match="uq_payment_link_current"):
            db.session.commit()
        db.session.rollback()
        db.session.add(link("plink_older", datetime(2025, 1, 1, tzinfo=UTC)))
        db.session.commit()
        assert db.session.scalar(select(db.func.count(PaymentLink.id))) == 3


def test_times_come_back_as_the_same_instant_in_utc(app):
    make_product(app, stock=1)
    at_noon_in_paris = datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with app.app_context():
        db.session.add(link("plink_old", at_noon_in_paris))
        db.session.commit()
        db.session.expunge_all()
        retired_at = db.session.scalar(select(PaymentLink.retired_at))
        stored = db.session.scalar(text("SELECT retired_at::text FROM payment_link"))
    assert retired_at == at_noon_in_paris
    assert retired_at.tzinfo is UTC
    assert stored == "2026-06-01 10:00:00"


def test_init_db_twice_is_harmless(runner):
    first = runner.invoke(args=["init-db"])
    assert first.exit_code == 0, first.output
    assert "postgresql+psycopg://" in first.output
    assert runner.invoke(args=["init-db"]).exit_code == 0


def test_stock_log_ids_become_visible_in_order(app):
    """A second writer waits for the first to commit, so no reader sees id n+1 before n."""
    make_product(app, "tee-m", stock=5)
    make_product(app, "mug", stock=5)
    second_done = threading.Event()

    def second_writer() -> None:
        with app.app_context():
            inventory.take("mug", STORE, ref="second")
            db.session.commit()
        second_done.set()

    with app.app_context():
        inventory.take("tee-m", STORE, ref="first")  # holds the store's log lock until commit
        writer = threading.Thread(target=second_writer)
        writer.start()
        try:
            # Autocommit: PostgreSQL keeps one pg_stat_activity snapshot per transaction, so a
            # watcher inside one transaction would never see the second writer start waiting.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
                deadline = time.monotonic() + 30
                while not watcher.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
                        " AND datname = current_database()"
                    )
                ):
                    assert time.monotonic() < deadline, "the second writer never waited"
                    time.sleep(0.05)
            assert not second_done.is_set()
            db.session.commit()
        finally:
            writer.join(30)
        refs = db.session.execute(
            select(StockEvent.ref).where(StockEvent.reason == "take").order_by(StockEvent.id)
        ).scalars()
        assert list(refs) == ["first", "second"]
