"""The shop views: /buy/<sku>, /pay/<sku> and POST /api/intents."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from conftest import STORE, free_port, make_product
from swagstore import create_app, inventory
from swagstore.models import Hold, Stock, db


@pytest.fixture
def shop_app(app_config, app):
    """Make apps in a hold mode, on the same database as `app`."""
    made = []

    def make(mode: str, **config):
        made.append(create_app({**app_config, "PURCHASE_MODE": mode, **config}))
        return made[-1]

    yield make
    for other in made:
        with other.app_context():
            db.engine.dispose()


def stock_of(app, sku: str = "tee-m") -> tuple[int, int]:
    with app.app_context():
        stock = db.session.get(Stock, (sku, STORE))
        return stock.on_hand, stock.reserved


def holds_of(app) -> list[tuple[str, str]]:
    with app.app_context():
        return [tuple(r) for r in db.session.execute(select(Hold.sku, Hold.status))]


def test_shop_routes_answer_only_in_their_mode(app, client):
    make_product(app, stock=1)
    assert client.get("/buy/tee-m").status_code == 404
    assert client.get("/pay/tee-m").status_code == 404
    assert client.post("/api/intents", json={"sku": "tee-m"}).status_code == 404
    assert stock_of(app) == (1, 0)


def test_sold_out_page_lists_what_else_is_in_stock(app, shop_app):
    make_product(app, "tee-m", stock=1, name="Logo tee")
    make_product(app, "mug", stock=2, name="Booth mug", price=1800)
    make_product(app, "cap", stock=0, name="Cap")
    with app.app_context():
        inventory.hold("tee-m", STORE)
        db.session.commit()
    for mode, path in (("reserved_checkout", "buy"), ("payment_intent", "pay")):
        response = shop_app(mode).test_client().get(f"/{path}/tee-m")
        assert response.status_code == 409
        page = response.get_data(as_text=True)
        assert "tee-m is sold out" in page
        assert f'href="/{path}/mug"' in page and "Booth mug" in page and "2 left" in page
        assert "Cap" not in page
        assert "SANDBOX: no real payments" in page
    assert stock_of(app) == (1, 1)
    assert holds_of(app) == []


def test_api_intents_answers_409_json_when_sold_out(app, shop_app):
    make_product(app, "tee-m", stock=0)
    make_product(app, "mug", stock=3, name="Booth mug")
    client = shop_app("payment_intent").test_client()
    response = client.post("/api/intents", json={"sku": "tee-m"})
    assert response.status_code == 409
    assert response.get_json() == {
        "error": "sold_out",
        "sku": "tee-m",
        "others": [{"sku": "mug", "name": "Booth mug"}],
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json": {}},
        {"json": {"sku": 5}},
        {"json": ["tee-m"]},
        {"data": "sku=tee-m", "content_type": "application/x-www-form-urlencoded"},
    ],
)
def test_api_intents_refuses_a_malformed_body(app, shop_app, kwargs):
    make_product(app, stock=1)
    response = shop_app("payment_intent").test_client().post("/api/intents", **kwargs)
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_request"
    assert stock_of(app) == (1, 0)


def test_unknown_item_is_404(app, shop_app):
    make_product(app, stock=1)
    assert shop_app("reserved_checkout").test_client().get("/buy/nope").status_code == 404
    client = shop_app("payment_intent").test_client()
    assert client.get("/pay/nope").status_code == 404
    response = client.post("/api/intents", json={"sku": "nope"})
    assert (response.status_code, response.get_json()["error"]) == (404, "not_found")


def test_stripe_unreachable_releases_the_hold_at_once(app, shop_app):
    make_product(app, stock=1)
    # A closed port: the real SDK gets "connection refused", as with Stripe unreachable.
    down = {"STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}"}
    response = shop_app("reserved_checkout", **down).test_client().get("/buy/tee-m")
    assert response.status_code == 503
    assert "Payments are down" in response.get_data(as_text=True)
    response = (
        shop_app("payment_intent", **down)
        .test_client()
        .post("/api/intents", json={"sku": "tee-m"})
    )
    assert (response.status_code, response.get_json()["error"]) == (503, "payment_unavailable")
    assert stock_of(app) == (1, 0)
    assert holds_of(app) == [("tee-m", "released"), ("tee-m", "released")]


def test_payment_intent_mode_live_needs_a_publishable_key(app_config):
    live = {**app_config, "PURCHASE_MODE": "payment_intent", "STRIPE_SECRET_KEY": "sk_test_x"}
    with pytest.raises(ValueError, match="STRIPE_PUBLISHABLE_KEY"):
        create_app(live)
    assert create_app({**live, "STRIPE_PUBLISHABLE_KEY": "pk_test_x"}).config["SANDBOX"] is False


def test_thanks_and_cancelled_pages(app, shop_app):
    client = shop_app("reserved_checkout").test_client()
    assert "Thank you" in client.get("/buy/tee-m/thanks").get_data(as_text=True)
    page = client.get("/buy/tee-m/cancelled").get_data(as_text=True)
    assert "Nothing was charged" in page and 'href="/buy/tee-m"' in page
