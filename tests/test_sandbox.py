"""The sandbox as a Stripe stand-in: encoding, lists, events, delayed payments, the clock."""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import select

from conftest import make_product
from swagstore.models import StripeEvent, db
from swagstore.sandbox import store
from swagstore.sandbox.checkout import SESSION_PARAMS
from swagstore.sandbox.errors import StripeError
from swagstore.sandbox.forms import decode
from swagstore.sandbox.params import check


def test_decode_reads_stripes_bracket_notation_and_the_api_says_which_are_arrays():
    pairs = [
        ("metadata[sku]", "tee-m"),
        ("line_items[0][price]", "price_1"),
        ("line_items[0][quantity]", "1"),
        ("line_items[1][price]", "price_2"),
        ("line_items[1][quantity]", "2"),
        ("metadata[0]", "a digit key stays a key"),
        ("expires_at", "1700000000"),
        ("mode", "payment"),
    ]
    raw = decode(pairs)
    assert raw["line_items"] == {
        "0": {"price": "price_1", "quantity": "1"},
        "1": {"price": "price_2", "quantity": "2"},
    }
    assert decode([("types[]", "a"), ("types[]", "b")]) == {"types": {"0": "a", "1": "b"}}
    shaped = check("POST /v1/checkout/sessions", raw, SESSION_PARAMS)
    assert shaped == {
        "metadata": {"sku": "tee-m", "0": "a digit key stays a key"},
        "line_items": [
            {"price": "price_1", "quantity": "1"},
            {"price": "price_2", "quantity": "2"},
        ],
        "expires_at": "1700000000",
        "mode": "payment",
    }
    with pytest.raises(StripeError):
        decode([("bad]name", "x")])


def make_link(sandbox, capture: str = "automatic", amount: int = 2500) -> dict:
    product = sandbox.api("POST", "products", data={"name": "Mug"}).json()
    price = sandbox.api(
        "POST", "prices", data={"product": product["id"], "unit_amount": amount, "currency": "usd"}
    ).json()
    return sandbox.api(
        "POST",
        "payment_links",
        data={
            "line_items[0][price]": price["id"],
            "line_items[0][quantity]": 1,
            "metadata[sku]": "mug",
            "metadata[store]": "booth",
            "payment_intent_data[capture_method]": capture,
        },
    ).json()


def test_lists_page_with_starting_after_and_ending_before(sandbox):
    ids = [sandbox.api("POST", "products", data={"name": f"P{n}"}).json()["id"] for n in range(5)]
    newest_first = list(reversed(ids))
    first = sandbox.api("GET", "products", params={"limit": 2}).json()
    assert [p["id"] for p in first["data"]] == newest_first[:2] and first["has_more"]
    second = sandbox.api(
        "GET", "products", params={"limit": 2, "starting_after": first["data"][-1]["id"]}
    ).json()
    assert [p["id"] for p in second["data"]] == newest_first[2:4] and second["has_more"]
    back = sandbox.api(
        "GET", "products", params={"limit": 2, "ending_before": second["data"][0]["id"]}
    ).json()
    assert [p["id"] for p in back["data"]] == newest_first[:2]
    assert sandbox.api("GET", "products", params={"limit": 0}).status_code == 400


def test_events_filter_by_type_and_created(sandbox):
    link = make_link(sandbox)
    sessions = [sandbox.open_session(link["id"])["id"] for _ in range(3)]
    for session in sessions:
        sandbox.pay(session)
    completed = sandbox.events("checkout.session.completed")
    assert [e["data"]["object"]["id"] for e in completed] == list(reversed(sessions))
    both = sandbox.events("checkout.session.completed", "payment_intent.succeeded")
    assert len(both) == 6
    created = completed[0]["created"]
    later = sandbox.api(
        "GET", "events", params={"created[gt]": created, "type": "checkout.session.completed"}
    ).json()["data"]
    assert later == []


def test_a_delayed_payment_completes_unpaid_then_settles(sandbox):
    link = make_link(sandbox)
    session = sandbox.open_session(link["id"])
    pending = sandbox.pay(session["id"], method="delayed")
    assert (pending["status"], pending["payment_status"]) == ("complete", "unpaid")
    paid = sandbox.settle(session["id"], "succeeded")
    assert paid["payment_status"] == "paid"
    assert [
        e["data"]["object"]["id"]
        for e in sandbox.events("checkout.session.async_payment_succeeded")
    ] == [session["id"]]

    failing = sandbox.open_session(link["id"])
    sandbox.pay(failing["id"], method="delayed")
    assert sandbox.settle(failing["id"], "failed")["payment_status"] == "unpaid"
    assert len(sandbox.events("checkout.session.async_payment_failed")) == 1
    again = requests.post(
        f"{sandbox.url}/sandbox/checkout/{failing['id']}/settle",
        data={"outcome": "succeeded"},
        headers={"Accept": "application/json"},
        timeout=30,
    )
    assert again.status_code == 400


def test_sessions_expire_when_the_clock_passes_expires_at(sandbox):
    link = make_link(sandbox)
    session = sandbox.open_session(link["id"])
    assert sandbox.advance_clock(23 * 3600)["expired"] == 0
    assert sandbox.advance_clock(2 * 3600)["expired"] == 1
    retrieved = sandbox.api("GET", f"checkout/sessions/{session['id']}").json()
    assert retrieved["status"] == "expired"
    expired = sandbox.events("checkout.session.expired")
    assert [e["data"]["object"]["id"] for e in expired] == [session["id"]]
    late = requests.post(
        f"{sandbox.url}/sandbox/checkout/{session['id']}/pay",
        headers={"Accept": "application/json"},
        timeout=30,
    )
    assert late.status_code == 400
    assert "is expired and can no longer be paid" in late.json()["error"]["message"]


@pytest.mark.parametrize("sandbox_env", [{"SWAGSTORE_SANDBOX_DELIVER": "false"}])
def test_with_deliveries_off_sessions_still_expire_and_the_poller_hears_of_it(app, sandbox):
    # Stripe expires a session whether or not anyone listens; the booth then polls the event.
    _, _, link = sandbox.one_unit_link(2500, name="Mug")
    session = sandbox.open_session(link["id"])
    with app.app_context():
        store.advance_clock(25 * 3600)  # the clock alone: nothing here expires the session
        db.session.commit()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with app.app_context():
            heard = db.session.scalar(
                select(StripeEvent.id).where(StripeEvent.type == "checkout.session.expired")
            )
        if heard is not None:
            break
        time.sleep(0.2)
    retrieved = sandbox.api("GET", f"checkout/sessions/{session['id']}").json()
    assert retrieved["status"] == "expired"
    assert heard is not None


def test_hosted_pages_show_the_sandbox_banner_and_pay_from_a_browser_form(sandbox):
    link = make_link(sandbox)
    html = {"Accept": "text/html"}
    page = requests.get(link["url"], headers=html, timeout=30)
    assert page.status_code == 200 and "/sandbox/checkout/cs_test_" in page.url
    assert "SANDBOX: no real payments" in page.text and "Pay" in page.text
    paid = requests.post(page.url + "/pay", data={"method": "card"}, headers=html, timeout=30)
    assert paid.status_code == 200
    assert "SANDBOX: no real payments" in paid.text and "Payment paid" in paid.text
    done = requests.get(page.url, headers=html, timeout=30)
    assert "This checkout is complete (paid)" in done.text


def test_the_card_form_confirms_only_with_the_client_secret(sandbox):
    intent = sandbox.api(
        "POST",
        "payment_intents",
        data={"amount": 900, "currency": "usd", "capture_method": "manual"},
    ).json()
    form = requests.get(
        f"{sandbox.url}/sandbox/payment_intents/{intent['id']}/form",
        params={"client_secret": intent["client_secret"]},
        timeout=30,
    )
    assert form.status_code == 200 and "SANDBOX: no real payments" in form.text
    assert intent["client_secret"] in form.text
    forged = requests.post(
        f"{sandbox.url}/sandbox/payment_intents/{intent['id']}/confirm",
        data={"client_secret": "pi_x_secret_y"},
        headers={"Accept": "application/json"},
        timeout=30,
    )
    assert forged.status_code == 400
    back = requests.post(
        f"{sandbox.url}/sandbox/payment_intents/{intent['id']}/confirm",
        data={"client_secret": intent["client_secret"], "return_url": "http://shop.test/thanks"},
        headers={"Accept": "text/html"},
        allow_redirects=False,
        timeout=30,
    )
    assert back.status_code == 303
    assert back.headers["Location"] == (
        f"http://shop.test/thanks?payment_intent={intent['id']}"
        f"&payment_intent_client_secret={intent['client_secret']}&redirect_status=succeeded"
    )
    confirmed = sandbox.api("GET", f"payment_intents/{intent['id']}").json()
    assert (confirmed["status"], confirmed["amount_capturable"]) == ("requires_capture", 900)
    assert len(sandbox.events("payment_intent.amount_capturable_updated")) == 1


def test_faults_are_used_up_and_can_be_cleared(sandbox):
    sandbox.fault("/v1/products", count=1)
    assert sandbox.api("GET", "products").status_code == 500
    assert sandbox.api("GET", "products").status_code == 200
    sandbox.fault("/v1/prices", count=5)
    left = requests.get(f"{sandbox.url}/sandbox/_control/faults", timeout=30).json()["faults"]
    assert left == [{"path_prefix": "/v1/prices", "mode": "error", "remaining": 5, "seconds": 0}]
    requests.delete(f"{sandbox.url}/sandbox/_control/faults", timeout=30)
    assert sandbox.api("GET", "prices").status_code == 200


def test_the_sandbox_is_absent_when_a_real_key_is_set(app_config):
    from swagstore import create_app

    live = create_app({**app_config, "STRIPE_SECRET_KEY": "sk_test_real_account"})
    assert live.config["SANDBOX"] is False
    assert live.test_client().get("/sandbox/v1/products").status_code == 404


def test_concurrent_requests_with_one_idempotency_key_create_one_object(sandbox):
    from concurrent.futures import ThreadPoolExecutor

    def create(_: int) -> requests.Response:
        return sandbox.api(
            "POST", "products", data={"name": "Hoodie"}, headers={"Idempotency-Key": "same"}
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(create, range(16)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 15
    assert len(sandbox.api("GET", "products").json()["data"]) == 1


def test_in_process_delivery_reaches_the_apps_webhook_and_an_oversold_payment_is_refunded(
    app, runner, sandbox
):
    """The reference flow offline: sync, two phones pay for the last unit, one is refunded."""
    make_product(app, "tee-m", stock=1)
    assert runner.invoke(args=["sync-stripe"]).exit_code == 0
    link = requests.get(sandbox.url + "/api/stock", timeout=30).json()["items"][0]
    first = sandbox.open_session(link["payment_link_id"])
    second = sandbox.open_session(link["payment_link_id"])
    paid = [sandbox.pay(first["url"]), sandbox.pay(second["url"])]

    def settled():
        item = requests.get(sandbox.url + "/api/stock", timeout=30).json()["items"][0]
        refunds = [e for e in sandbox.ledger()["entries"] if e["action"] == "refund"]
        return item["sold"] == 1 and refunds and (item, refunds)

    deadline = time.monotonic() + 90
    while not (done := settled()):
        assert time.monotonic() < deadline, "the oversold payment was not refunded in 90 s"
        time.sleep(0.2)
    item, refunds = done
    assert (item["available"], item["on_hand"], item["sold_out"]) == (0, 0, True)
    assert len(refunds) == 1
    assert refunds[0]["payment_intent"] in {s["payment_intent"] for s in paid}
    deliveries = sandbox.deliveries()
    completed = [d for d in deliveries if d["type"] == "checkout.session.completed"]
    assert [d["status"] for d in completed] == ["delivered", "delivered"]
    assert {d["last_status"] for d in completed} == {200}


def test_hosted_pages_show_amounts_in_the_currencys_own_units(sandbox):
    _, _, link = sandbox.one_unit_link(500, "jpy", name="Fan")
    page = requests.get(link["url"], headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 200
    # The store's one formatter: ¥500 reads ¥500, never 5.00 JPY.
    assert "¥500" in page.text and "5.00" not in page.text
