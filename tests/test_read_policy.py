"""A request that only reads never takes the write lock; a write waits its turn and says so.

Every GET route of the app is listed from its url_map, so a new route is covered as soon
as it exists: it must answer while another process holds SQLite's write lock, unless its
view is marked @writes (and named in WRITING below).
"""

from __future__ import annotations

import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError
from stripe_fixtures import WEBHOOK_SECRET, make_event, make_session, sign

from conftest import ADMIN_PASSWORD, STORE, both_databases, log_in_http, make_product
from swagstore.models import Setting, Stock, db, read_only

# GET views that write (a hold): they take the write lock like any POST.
WRITING = {"shop.buy", "shop.pay"}
# A reader that waited for the lock would wait out busy_timeout (10 s) and fail.
QUICK_SECONDS = 5.0


@both_databases
def test_a_read_only_transaction_refuses_to_write_and_leaves_the_connection_writable(app):
    """Mutation tried: dropping `PRAGMA query_only` from _sqlite_on_begin fails [sqlite]."""
    make_product(app, stock=3)
    with app.app_context():
        with pytest.raises(DBAPIError), read_only():
            assert db.session.scalar(select(Stock.on_hand)) == 3
            db.session.execute(insert(Setting).values(key="k", value="v"))
        # The pooled connection read-only a moment ago writes in the next transaction.
        db.session.execute(insert(Setting).values(key="k", value="v"))
        db.session.commit()
        assert db.session.scalar(select(Setting.value).where(Setting.key == "k")) == "v"


def test_read_only_inside_a_transaction_reads_in_it_and_keeps_it_open(app):
    make_product(app, stock=3)
    with app.app_context():
        db.session.execute(insert(Setting).values(key="k", value="v"))
        with read_only():
            assert db.session.scalar(select(Setting.value).where(Setting.key == "k")) == "v"
        db.session.commit()
        assert db.session.scalar(select(Setting.value).where(Setting.key == "k")) == "v"


@pytest.fixture
def app_config(app_config):
    return {
        **app_config,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PURCHASE_MODE": "reserved_checkout",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


def reading_urls(app) -> dict[str, str]:
    """Return one URL per GET route that only reads, by endpoint."""
    samples = {"sku": "tee-m", "filename": "kiosk.css", "reference": "cs_test_a1b2c3d4e5f6"}
    urls = {}
    for rule in app.url_map.iter_rules():
        # The sandbox plays Stripe; it is not the store and keeps its own transactions.
        if "GET" not in rule.methods or rule.endpoint.startswith("sandbox"):
            continue
        if getattr(app.view_functions[rule.endpoint], "writes", False):
            assert rule.endpoint in WRITING, f"{rule.endpoint} writes: add it to WRITING"
            continue
        assert rule.endpoint not in WRITING, f"{rule.endpoint} reads: mark it @writes"
        urls[rule.endpoint] = rule.build({k: samples[k] for k in rule.arguments})[1]
    return urls


def get(http: requests.Session, url: str) -> tuple[int, float]:
    start = time.monotonic()
    with http.get(url, timeout=30, stream=True, allow_redirects=False) as response:
        # /stream never ends: its first line is enough; any other body is read whole.
        first = (
            next(response.iter_lines(), None)
            if "event-stream" in response.headers.get("Content-Type", "")
            else response.content
        )
        assert first is not None
        return response.status_code, time.monotonic() - start


def test_every_reading_route_answers_while_another_process_holds_the_write_lock(
    app, db_path, sandbox
):
    """Mutation tried: GET connections not made read-only: every page reading the DB is 503."""
    make_product(app, "tee-m", stock=3)
    urls = reading_urls(app)
    assert {"kiosk.kiosk", "api.stock", "api.healthz", "kiosk.qr_code", "admin.stock"} <= set(urls)
    assert "kiosk.events" in urls
    staff, token = log_in_http(sandbox.url)
    before = {endpoint: get(staff, sandbox.url + url)[0] for endpoint, url in urls.items()}
    assert set(before.values()) == {200}, before

    writer = sqlite3.connect(db_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process mid-transaction, holding the lock
    try:
        during = {endpoint: get(staff, sandbox.url + url) for endpoint, url in urls.items()}
    finally:
        writer.rollback()
        writer.close()
    assert {endpoint: code for endpoint, (code, _) in during.items()} == before
    slow = {endpoint: s for endpoint, (_, s) in during.items() if s > QUICK_SECONDS}
    assert slow == {}


def test_writes_wait_for_the_lock_answer_503_and_succeed_after_it_is_released(
    app, db_path, sandbox
):
    make_product(app, "tee-m", stock=3)
    staff, token = log_in_http(sandbox.url)
    event = make_event(make_session("tee-m"))
    body = json.dumps(event).encode()

    def restock() -> int:
        return staff.post(
            f"{sandbox.url}/admin/stock/tee-m/restock",
            data={"csrf_token": token, "quantity": "2"},
            allow_redirects=False,
            timeout=60,
        ).status_code

    def webhook() -> int:
        headers = {"Stripe-Signature": sign(body), "Content-Type": "application/json"}
        return requests.post(
            sandbox.url + "/stripe/webhook", data=body, headers=headers, timeout=60
        ).status_code

    def buy() -> int:
        return requests.get(
            sandbox.url + "/buy/tee-m", allow_redirects=False, timeout=60
        ).status_code

    writes = {"restock": restock, "webhook": webhook, "buy": buy}
    writer = sqlite3.connect(db_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with ThreadPoolExecutor(len(writes)) as pool:
            futures = {name: pool.submit(job) for name, job in writes.items()}
            refused = {name: f.result() for name, f in futures.items()}
    finally:
        writer.rollback()
        writer.close()
    assert refused == {"restock": 503, "webhook": 503, "buy": 503}
    with app.app_context():
        assert db.session.scalar(select(Stock.on_hand)) == 3  # nothing half-done

    assert {name: job() for name, job in writes.items()} == {
        "restock": 303,
        "webhook": 200,
        "buy": 303,
    }
    with app.app_context():
        stock = db.session.get(Stock, ("tee-m", STORE))
        # 3 + 2 restocked - 1 sold by the event; the visitor's hold reserves one more.
        assert (stock.on_hand, stock.reserved) == (4, 1)
