"""Errors in one place: JSON or a page by the Accept header; an unavailable database is 503."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from conftest import LiveServer, both_databases, make_product
from swagstore import create_app
from swagstore.models import db

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"Accept": "application/json"}
# What Stripe sends with each webhook delivery.
STRIPE = {"Accept": "*/*; q=0.5, application/xml", "Content-Type": "application/json"}


@pytest.fixture
def app_config(app_config):
    # /buy writes (it holds a unit), so a locked database shows on it.
    return {**app_config, "PURCHASE_MODE": "reserved_checkout", "ADMIN_PASSWORD": "pw"}


def test_a_browser_gets_the_error_page_and_a_client_gets_json(client):
    page = client.get("/no/such/page", headers=BROWSER)
    assert page.status_code == 404
    assert page.mimetype == "text/html"
    assert "<h1>Not Found</h1>" in page.text
    assert "SANDBOX: no real payments" in page.text  # the site's own layout

    for headers in (JSON, {"Accept": "*/*"}, {}):
        answer = client.get("/no/such/page", headers=headers)
        assert answer.status_code == 404
        assert answer.get_json()["error"] == "not_found"
        assert answer.get_json()["message"]


def test_a_wrong_method_keeps_its_allow_header(client):
    answer = client.delete("/api/stock", headers=JSON)
    assert answer.status_code == 405
    assert answer.get_json()["error"] == "method_not_allowed"
    assert "GET" in answer.headers["Allow"]


def test_the_webhook_keeps_its_json_contract(client):
    big = b'{"padding": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    too_big = client.post("/stripe/webhook", data=big, headers=STRIPE)
    assert too_big.status_code == 413
    assert too_big.get_json()["error"] == "request_entity_too_large"
    forged = client.post(
        "/stripe/webhook", data=b"{}", headers={**STRIPE, "Stripe-Signature": "t=1,v1=00"}
    )
    assert forged.status_code == 400
    assert forged.get_json()["error"]


def test_an_unexpected_error_is_a_logged_500_that_shows_nothing(app_config, caplog):
    # As in production: the exception is handled, not raised into the test.
    app = create_app({**app_config, "PROPAGATE_EXCEPTIONS": False})

    @app.get("/boom")
    def boom():
        raise RuntimeError("sk_live_leaked in /srv/swagstore/secret.py")

    client = app.test_client()
    with caplog.at_level(logging.ERROR):
        page = client.get("/boom", headers=BROWSER)
        answer = client.get("/boom", headers=JSON)
    assert (page.status_code, answer.status_code) == (500, 500)
    assert "<h1>Internal Server Error</h1>" in page.text
    assert answer.get_json()["error"] == "internal_server_error"
    for body in (page.text, answer.text):
        assert "sk_live" not in body
        assert "Traceback" not in body
    # The staff can still find out what happened: Flask logged it with its traceback.
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 2
    assert "sk_live_leaked" in str(logged[0].exc_info[1])


def missing_database(database_url: str, tmp_path) -> str:
    """Return the URL of a database that cannot be opened, of the same kind."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/no/such/dir/swagstore.sqlite"
    url = make_url(database_url).set(database="swagstore_test_does_not_exist")
    return url.render_as_string(hide_password=False)


@both_databases
def test_an_unreachable_database_is_503_with_retry_after_everywhere(
    app_config, database_url, tmp_path, caplog
):
    app = create_app(
        {**app_config, "SQLALCHEMY_DATABASE_URI": missing_database(database_url, tmp_path)}
    )
    client = app.test_client()
    with caplog.at_level(logging.ERROR):
        for path in ("/", "/api/stock", "/buy/tee-m", "/qr/tee-m.svg"):
            page = client.get(path, headers=BROWSER)
            assert (page.status_code, page.headers.get("Retry-After")) == (503, "5"), path
            assert "<h1>Back in a moment</h1>" in page.text
            # A kiosk screen showing this page reloads it by itself.
            assert '<meta http-equiv="refresh" content="5">' in page.text
            answer = client.get(path, headers=JSON)
            assert (answer.status_code, answer.headers.get("Retry-After")) == (503, "5"), path
            assert answer.get_json()["error"] == "database_unavailable"
    assert any("database unavailable on GET /api/stock" in r.message for r in caplog.records)
    # The log names the driver's reason, not a statement with its parameters.
    assert not any("SELECT" in r.getMessage() for r in caplog.records)
    with app.app_context():
        db.engine.dispose()


@contextmanager
def locked(db_path) -> Iterator[None]:
    """Hold SQLite's write lock from another connection, as a stuck writer would."""
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.rollback()
        blocker.close()


@contextmanager
def unavailable(database_url: str, db_path) -> Iterator[None]:
    """Make the database refuse work: SQLite locked for writers, PostgreSQL closed to all."""
    if database_url.startswith("sqlite"):
        with locked(db_path):
            yield
        return
    name = make_url(database_url).database
    admin = make_url(database_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        try:
            yield
        finally:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@both_databases
def test_a_live_server_answers_503_while_its_database_is_unavailable(
    app, server_env, database_url, db_path
):
    make_product(app, "tee-m", stock=3)
    with app.app_context():
        db.engine.dispose()
    server = LiveServer(server_env, threads=4).start()
    try:
        assert requests.get(server.url + "/api/stock", timeout=30).status_code == 200
        with unavailable(database_url, db_path), ThreadPoolExecutor(2) as pool:
            # Together: on SQLite each waits out busy_timeout (10 s) for the write lock.
            page, answer = pool.map(
                lambda h: requests.get(
                    server.url + "/buy/tee-m", headers=h, timeout=60, allow_redirects=False
                ),
                (BROWSER, JSON),
            )
        assert (page.status_code, page.headers["Retry-After"]) == (503, "5")
        assert "Back in a moment" in page.text
        assert (answer.status_code, answer.json()["error"]) == (503, "database_unavailable")
        # Once the database is back, so is the store (a dropped pooled connection may cost
        # one more 503 first).
        deadline = time.monotonic() + 30
        while (stock := requests.get(server.url + "/api/stock", timeout=30)).status_code != 200:
            assert stock.status_code == 503
            assert time.monotonic() < deadline, "the store did not come back in 30 s"
            time.sleep(0.5)
        assert stock.json()["items"][0]["sku"] == "tee-m"
    finally:
        server.stop()


def test_the_sandbox_api_answers_in_stripes_error_shape(app, client, app_config):
    auth = {"Authorization": "Bearer sk_test_x", "Accept": "*/*"}
    big = client.post("/sandbox/v1/products", data={"name": "x" * (2 * 1024 * 1024)}, headers=auth)
    assert big.status_code == 413
    assert big.get_json()["error"]["type"] == "invalid_request_error"
    with locked(app_config["SANDBOX_DATABASE"]):
        busy = client.post("/sandbox/v1/products", data={"name": "Mug"}, headers=auth)
    assert busy.status_code == 503
    assert busy.get_json()["error"]["type"] == "api_error"
    assert (
        client.post("/sandbox/v1/products", data={"name": "Mug"}, headers=auth).status_code == 200
    )
