"""create_app: configuration sources, validation and the SQLite connection settings."""

from __future__ import annotations

import pytest

from swagstore import create_app
from swagstore.models import db


def test_defaults(app_config):
    app = create_app(app_config)
    assert app.config["PURCHASE_MODE"] == "payment_link"
    assert app.config["LINK_CAPTURE"] == "automatic"
    assert app.config["HOLD_SECONDS"] == 300
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    assert app.config["SANDBOX"] is True


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("SWAGSTORE_STORE_ID", "hall-b")
    monkeypatch.setenv("SWAGSTORE_HOLD_SECONDS", "60")
    monkeypatch.setenv("SWAGSTORE_STRIPE_SECRET_KEY", "sk_test_123")
    monkeypatch.setenv("SWAGSTORE_SQLALCHEMY_DATABASE_URI", f"sqlite:///{tmp_path}/x.sqlite")
    app = create_app()
    assert app.config["STORE_ID"] == "hall-b"
    assert app.config["HOLD_SECONDS"] == 60
    assert app.config["SANDBOX"] is False


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("PURCHASE_MODE", "barter", "PURCHASE_MODE must be one of"),
        ("LINK_CAPTURE", "later", "LINK_CAPTURE must be one of"),
    ],
)
def test_bad_settings_refuse_to_start(app_config, key, value, message):
    with pytest.raises(ValueError, match=message):
        create_app({**app_config, key: value})


def test_sqlite_connections_are_durable_and_strict(app):
    with app.app_context():
        pragma = {
            name: db.session.execute(db.text(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 2,
        "busy_timeout": 10000,
        "foreign_keys": 1,
    }


def test_init_db_twice_is_harmless(runner):
    assert runner.invoke(args=["init-db"]).exit_code == 0
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0
    assert "Database ready" in result.output
