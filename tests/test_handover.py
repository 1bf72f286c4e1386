"""Handing over against a running server: many staff phones tap one sale at once, and it is
handed over exactly once, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import re
import threading
from collections import Counter

import pytest
import requests
from sqlalchemy import select

from conftest import ADMIN_PASSWORD, STORE, both_databases, csrf_from, make_product
from swagstore import inventory
from swagstore.models import Sale, db

PHONES = 12


@pytest.fixture
def app_config(app_config):
    return {**app_config, "ADMIN_PASSWORD": ADMIN_PASSWORD}


def card_sale(app, code: str) -> int:
    with app.app_context():
        sale = Sale(
            sku="tee-m",
            store=STORE,
            amount=2500,
            currency="usd",
            kind="card",
            status="fulfilled",
            pickup_code=code,
            payment_intent_id=f"pi_{code}",
        )
        db.session.add(sale)
        db.session.flush()
        assert inventory.take("tee-m", STORE, ref=f"sale:{sale.id}")
        db.session.commit()
        return sale.id


def staff_phone(url: str, name: str) -> tuple[requests.Session, str]:
    http = requests.Session()
    token = csrf_from(http.get(url + "/admin/login", timeout=60).text)
    answer = http.post(
        url + "/admin/login",
        data={"csrf_token": token, "password": ADMIN_PASSWORD, "name": name},
        allow_redirects=False,
        timeout=60,
    )
    assert answer.status_code == 303, answer.text
    return http, csrf_from(http.get(url + "/admin/handover", timeout=60).text)


@both_databases
def test_many_phones_hand_one_sale_over_exactly_once(app, live_server):
    make_product(app, "tee-m", stock=10)
    target, other = card_sale(app, "K7"), card_sale(app, "M3")
    phones = [staff_phone(live_server.url, f"p{n}") for n in range(PHONES)]
    start = threading.Barrier(PHONES)
    said: list[str] = []

    def tap(http: requests.Session, token: str) -> None:
        start.wait(timeout=60)
        page = http.post(
            f"{live_server.url}/admin/sales/{target}/hand-over",
            data={"csrf_token": token},
            timeout=60,
        )
        assert page.status_code == 200 and page.url.endswith("/admin/handover"), page.text
        said.append(re.search(r'<p class="flash[^"]*" role="status">([^<]*)</p>', page.text)[1])

    threads = [threading.Thread(target=tap, args=phone) for phone in phones]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(said) == PHONES
    outcomes = Counter("already handed over" in s and "already" or s for s in said)
    assert outcomes == {"Handed over K7: 1 × Item tee-m.": 1, "already": PHONES - 1}
    with app.app_context():
        rows = db.session.execute(
            select(Sale.id, Sale.handed_over_by, Sale.handed_over_at).order_by(Sale.id)
        ).all()
    (_, by, at), (_, other_by, other_at) = rows
    assert by.startswith("staff:p") and at is not None
    assert f"by {by}" in next(s for s in said if "already" in s)
    # The other sale is still waiting at the table.
    assert (other_by, other_at) == (None, None)
    page = phones[0][0].get(live_server.url + "/admin/handover", timeout=60).text
    assert re.findall(r'id="pickup-(\d+)"', page) == [str(other)]
