"""The back office on a running gunicorn with two workers, hit by real threads over HTTP."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from conftest import (
    ADMIN_PASSWORD,
    STORE,
    LiveServer,
    both_databases,
    csrf_from,
    log_in_http,
    make_product,
)
from swagstore.models import LoginFailure, Sale, Stock, StockEvent, db


@pytest.fixture
def app_config(app_config):
    return {**app_config, "ADMIN_PASSWORD": ADMIN_PASSWORD}


@pytest.fixture
def two_workers(app, server_env):
    server = LiveServer(server_env, workers=2, threads=8).start()
    yield server
    server.stop()


def all_at_once(n: int, job) -> list:
    """Run job(i) on n threads released together by a barrier."""
    barrier = threading.Barrier(n)

    def run(i: int):
        barrier.wait(timeout=60)
        return job(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


@both_databases
def test_lock_out_holds_across_workers_under_a_burst_of_guesses(app, two_workers):
    """Mutation tried: without auth's table lock, [postgres] let 7-12 guesses through."""
    base = two_workers.url
    guessers = []
    for _ in range(12):
        http = requests.Session()
        guessers.append((http, csrf_from(http.get(base + "/admin/login", timeout=30).text)))

    def guess(i: int) -> int:
        http, token = guessers[i]
        data = {"csrf_token": token, "password": f"guess-{i}"}
        return http.post(base + "/admin/login", data=data, timeout=60).status_code

    try:
        codes = all_at_once(len(guessers), guess)
        http, token = guessers[0]
        right = http.post(
            base + "/admin/login",
            data={"csrf_token": token, "password": ADMIN_PASSWORD},
            allow_redirects=False,
            timeout=30,
        )
    finally:
        for http, _ in guessers:
            http.close()
    # Exactly five guesses were checked; every other one, and then the right password, was
    # refused unheard, whichever worker answered.
    assert sorted(codes) == [401] * 5 + [429] * 7
    assert right.status_code == 429
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LoginFailure)) == 5


@both_databases
def test_concurrent_cash_sales_never_sell_more_than_there_is(app, two_workers):
    make_product(app, "tee-m", stock=5, price=2500)
    base = two_workers.url
    staff = [log_in_http(base) for _ in range(12)]

    def sell(i: int) -> str:
        http, token = staff[i]
        page = http.post(
            base + "/admin/stock/tee-m/sell",
            data={"csrf_token": token, "kind": "cash", "quantity": "1"},
            timeout=60,
        ).text
        return re.findall(r'role="status">([^<]*)<', page)[0]

    try:
        messages = all_at_once(len(staff), sell)
    finally:
        for http, _ in staff:
            http.close()
    recorded = [m for m in messages if m.startswith("Collect $25.00 in cash for 1")]
    refused = [m for m in messages if m.startswith("Only 0 of tee-m available")]
    assert (len(recorded), len(refused)) == (5, 7), messages
    with app.app_context():
        stock = db.session.get(Stock, ("tee-m", STORE))
        assert (stock.on_hand, stock.reserved) == (0, 0)
        sales = db.session.scalars(select(Sale)).all()
        assert [(s.kind, s.status, s.amount) for s in sales] == [("cash", "fulfilled", 2500)] * 5
        takes = db.session.scalars(select(StockEvent).where(StockEvent.reason == "cash")).all()
        assert sorted(e.ref for e in takes) == sorted(f"sale:{s.id}" for s in sales)
        assert sorted(e.on_hand for e in takes) == [0, 1, 2, 3, 4]


def test_a_restock_is_on_the_kiosk_api_at_once(app, live_server):
    make_product(app, "tee-m", stock=0)
    http, token = log_in_http(live_server.url)
    with http:
        before = http.get(live_server.url + "/api/stock", timeout=30).json()
        assert before["items"][0]["sold_out"] is True
        response = http.post(
            live_server.url + "/admin/stock/tee-m/restock",
            data={"csrf_token": token, "quantity": "3"},
            allow_redirects=False,
            timeout=30,
        )
        assert response.status_code == 303
        after = http.get(live_server.url + "/api/stock", timeout=30).json()
    assert (after["items"][0]["available"], after["items"][0]["sold_out"]) == (3, False)
    assert after["last_event_id"] == before["last_event_id"] + 1
