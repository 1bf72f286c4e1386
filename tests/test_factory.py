"""create_app: configuration sources, validation, the SQLite settings and the sandbox's file."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from conftest import ROOT, both_databases, free_port
from swagstore import SANDBOX_WARNING, create_app
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


@pytest.mark.parametrize(
    ("text", "expected"), [("false", False), ("False", False), ("off", False), ("1", True)]
)
def test_an_on_off_setting_from_the_environment_means_what_it_says(
    monkeypatch, tmp_path, text, expected
):
    # from_prefixed_env reads JSON: "false" is False, but "False" or "off" stay text, which
    # Python counts as true.
    monkeypatch.setenv("SWAGSTORE_WORKER_TASKS", text)
    monkeypatch.setenv("SWAGSTORE_SQLALCHEMY_DATABASE_URI", f"sqlite:///{tmp_path}/x.sqlite")
    assert create_app().config["WORKER_TASKS"] is expected


def test_an_on_off_setting_that_is_neither_refuses_to_start(app_config):
    with pytest.raises(ValueError, match="SANDBOX_DELIVER must be true or false, not 'maybe'"):
        create_app({**app_config, "SANDBOX_DELIVER": "maybe"})


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


# A fresh interpreter: builds a live app, runs init-db, reports what it imported.
LIVE_APP_IMPORTS = """
import json, sys
from swagstore import create_app
from swagstore.cli import init_db
app = create_app({"SQLALCHEMY_DATABASE_URI": sys.argv[1], "SECRET_KEY": "x",
                  "STRIPE_SECRET_KEY": "sk_test_live", "SANDBOX_DATABASE": sys.argv[2]})
with app.app_context():
    init_db()
    app.test_client().get("/api/stock")
print(json.dumps(sorted(m for m in sys.modules if m.startswith("swagstore"))))
"""


@both_databases
def test_a_live_store_never_imports_the_sandbox_nor_makes_its_tables(
    database_url, tmp_path, app_config
):
    sandbox_file = tmp_path / "sandbox.sqlite"
    out = subprocess.run(
        [sys.executable, "-c", LIVE_APP_IMPORTS, database_url, str(sandbox_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    modules = json.loads(out)
    assert "swagstore.models" in modules
    assert [m for m in modules if m.startswith("swagstore.sandbox")] == []
    assert not sandbox_file.exists()
    engine = create_engine(database_url)
    try:
        tables = inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert "stock" in tables
    assert [t for t in tables if t.startswith("sandbox")] == []


@both_databases
def test_sandbox_tables_live_in_their_own_file(app, app_config, database_url):
    sandbox_file = Path(app_config["SANDBOX_DATABASE"])
    with app.app_context():
        product_tables = set(inspect(db.engine).get_table_names())
        sandbox_tables = set(inspect(db.engines["sandbox"]).get_table_names())
        assert db.engines["sandbox"].url.database == str(sandbox_file)
    assert sandbox_file.exists()
    assert {"stock", "product", "stripe_event"} <= product_tables
    assert not any(t.startswith("sandbox") for t in product_tables)
    assert sandbox_tables == {
        "sandbox_object",
        "sandbox_event",
        "sandbox_delivery",
        "sandbox_idempotency",
        "sandbox_fault",
        "sandbox_ledger",
        "sandbox_setting",
    }
    # The sandbox answers from its file: an object made through its API is stored there.
    client = app.test_client()
    auth = {"Authorization": "Bearer sk_test_x"}
    made = client.post("/sandbox/v1/products", data={"name": "Mug"}, headers=auth)
    assert made.status_code == 200, made.text
    with sqlite3.connect(sandbox_file) as conn:
        stored = conn.execute("SELECT id FROM sandbox_object WHERE type = 'product'").fetchall()
    assert stored == [(made.json["id"],)]


def test_without_a_key_the_app_says_at_start_that_it_is_a_sandbox(app_config, caplog):
    with caplog.at_level(logging.WARNING):
        create_app(app_config)
    assert [r.getMessage() for r in caplog.records] == [SANDBOX_WARNING]
    assert SANDBOX_WARNING.startswith("SANDBOX MODE: no STRIPE_SECRET_KEY is set")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        create_app({**app_config, "STRIPE_SECRET_KEY": "sk_test_live"})
    assert caplog.records == []


@pytest.mark.parametrize("command", ["gunicorn", "flask"])
def test_a_process_without_a_key_says_so_on_its_error_stream(server_env, command):
    env = {**os.environ, **server_env}
    if command == "flask":
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "swagstore", "init-db"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert SANDBOX_WARNING in done.stderr
        live = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "swagstore", "init-db"],
            cwd=ROOT,
            env={**env, "SWAGSTORE_STRIPE_SECRET_KEY": "sk_test_live"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert live.returncode == 0 and "SANDBOX" not in live.stderr
        return
    # The booth's web server: gunicorn's workers build the app as they boot.
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, "gunicorn exited:\n" + "".join(lines)
            lines.append(line)
            if SANDBOX_WARNING in line:
                break
        assert any(SANDBOX_WARNING in line for line in lines), "".join(lines)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stderr.close()


def test_with_a_key_nothing_of_the_sandbox_is_mounted(app_config):
    live = create_app({**app_config, "STRIPE_SECRET_KEY": "sk_test_live"})
    assert not [r.rule for r in live.url_map.iter_rules() if r.rule.startswith("/sandbox")]
    assert not [name for name in live.blueprints if name.startswith("sandbox")]
    client = live.test_client()
    auth = {"Authorization": "Bearer sk_test_live"}
    for path in ("/sandbox/v1/products", "/sandbox/pay/plink_1", "/sandbox/_control/ledger"):
        assert client.get(path, headers=auth).status_code == 404, path
    assert client.post("/sandbox/checkout/cs_1/pay").status_code == 404
    with live.app_context():
        db.engine.dispose()


def test_the_sandbox_file_defaults_to_the_instance_folder(app_config):
    config = {k: v for k, v in app_config.items() if k != "SANDBOX_DATABASE"}
    app = create_app(config)
    assert app.config["SQLALCHEMY_BINDS"] == {
        "sandbox": "sqlite:///" + os.path.join(app.instance_path, "sandbox.sqlite")
    }
    live = create_app({**app_config, "STRIPE_SECRET_KEY": "sk_test_live"})
    assert "sandbox" not in live.config.get("SQLALCHEMY_BINDS", {})
