"""GET /api/stock and /healthz, in process and over real HTTP."""

from __future__ import annotations

import requests

from conftest import STORE, both_databases, make_product
from swagstore import inventory
from swagstore.models import PaymentLink, db


@both_databases
def test_stock_lists_items_with_counts(app, client):
    make_product(app, "tee-m", stock=3, price=2500)
    make_product(app, "mug", stock=1, price=1800)
    with app.app_context():
        inventory.hold("tee-m", STORE)
        inventory.take("mug", STORE)
        db.session.commit()
    body = client.get("/api/stock").get_json()
    assert body["store"] == STORE
    assert body["mode"] == "payment_link"
    assert body["sandbox"] is True
    assert body["last_event_id"] == 4
    mug, tee = body["items"]  # same catalog position, so by SKU
    assert tee == {
        "sku": "tee-m",
        "name": "Item tee-m",
        "price": 2500,
        "currency": "usd",
        "available": 2,
        "on_hand": 3,
        "reserved": 1,
        "sold": 0,
        "sold_out": False,
        "off_sale": False,
        "buy_url": None,
        "payment_link_id": None,
        "stopped_by_stripe": False,
    }
    assert (mug["available"], mug["sold_out"]) == (0, True)


@both_databases
def test_buy_url_follows_the_mode(app_config, app):
    from swagstore import create_app

    make_product(app, "tee-m", stock=3)
    with app.app_context():
        db.session.add(
            PaymentLink(
                id="plink_1",
                sku="tee-m",
                store=STORE,
                url="https://buy.example/1",
                price_id="price_1",
            )
        )
        db.session.commit()
    assert app.test_client().get("/api/stock").get_json()["items"][0]["buy_url"] == (
        "https://buy.example/1"
    )
    for mode, path in (("reserved_checkout", "buy"), ("payment_intent", "pay")):
        other = create_app({**app_config, "PURCHASE_MODE": mode, "PUBLIC_URL": "https://b.test/"})
        item = other.test_client().get("/api/stock").get_json()["items"][0]
        with other.app_context():
            db.engine.dispose()
        assert item["buy_url"] == f"https://b.test/{path}/tee-m"
        assert item["payment_link_id"] == "plink_1"


@both_databases
def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["database"] == "ok"


def test_healthz_reports_a_broken_database(app_config, tmp_path):
    from swagstore import create_app

    (tmp_path / "dir").mkdir()
    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/dir"})
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"


@both_databases
def test_live_server_answers_over_http(app, live_server):
    make_product(app, "tee-m", stock=4)
    body = requests.get(live_server.url + "/api/stock", timeout=5).json()
    assert [(i["sku"], i["available"]) for i in body["items"]] == [("tee-m", 4)]
