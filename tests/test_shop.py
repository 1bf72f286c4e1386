"""The shop views: /buy/<sku>, /pay/<sku> and POST /api/intents."""

from __future__ import annotations

import collections
import re
import threading
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from conftest import STORE, LiveServer, Sandbox, free_port, make_product, start_sandbox
from swagstore import create_app, inventory, payments, qr, tasks
from swagstore.models import Hold, Sale, Stock, StripeEvent, Task, db, utcnow


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
        assert "Sorry, Logo tee is sold out" in page
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


def test_api_intents_refuses_json_nested_past_the_parser_with_400(app, shop_app):
    make_product(app, stock=1)
    client = shop_app("payment_intent").test_client()
    body = "[" * 100_000 + "]" * 100_000
    response = client.post("/api/intents", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_request"
    assert stock_of(app) == (1, 0)


@pytest.mark.parametrize("sku", [r"\ud800", r"tee-m\u0000", "a b", "x" * 10_000, "../tee-m"])
def test_api_intents_answers_404_for_what_cannot_be_a_sku(app, shop_app, sku):
    make_product(app, stock=1)
    client = shop_app("payment_intent").test_client()
    body = '{"sku": "' + sku + '"}'  # JSON escapes as written: a lone surrogate, a NUL
    response = client.post("/api/intents", data=body, content_type="application/json")
    assert (response.status_code, response.get_json()["error"]) == (404, "not_found")
    assert stock_of(app) == (1, 0) and holds_of(app) == []


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
    response = (
        shop_app("reserved_checkout", **down)
        .test_client()
        .get("/buy/tee-m", headers={"Accept": "text/html"})
    )
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


def test_a_refusal_for_good_says_so_and_never_asks_to_retry(app, shop_app, sandbox):
    make_product(app, stock=1)
    # A key the account does not know: Stripe answers 401, and no retry can change that.
    refused = {
        "STRIPE_SECRET_KEY": "rk_test_not_this_accounts",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_x",
        "STRIPE_API_BASE": sandbox.api_base,
    }
    html = {"Accept": "text/html"}
    for mode, path in (("payment_intent", "pay"), ("reserved_checkout", "buy")):
        page = shop_app(mode, **refused).test_client().get(f"/{path}/tee-m", headers=html)
        assert page.status_code == 502
        text = page.get_data(as_text=True)
        assert "This item cannot be paid for here" in text
        assert "Trying again will not help" in text and "try again" not in text
        assert "rk_test" not in text and "Retry-After" not in page.headers
    response = (
        shop_app("payment_intent", **refused)
        .test_client()
        .post("/api/intents", json={"sku": "tee-m"})
    )
    assert response.status_code == 502
    assert "Retry-After" not in response.headers
    body = response.get_json()
    assert body["error"] == "payment_refused"
    assert "retrying will not help" in body["message"]
    assert "rk_test" not in str(body)
    # Nothing is kept: every hold made on the way was released at once.
    assert stock_of(app) == (1, 0)
    assert holds_of(app) == [("tee-m", "released")] * 3


def test_a_price_stripe_will_not_charge_is_refused_for_good(app, shop_app):
    # Loaded around load-catalog (which refuses it); the sandbox refuses it as Stripe does.
    make_product(app, "button", stock=3, price=30)
    client = shop_app("payment_intent").test_client()
    response = client.post("/api/intents", json={"sku": "button"})
    assert response.status_code == 502
    body = response.get_json()
    assert (body["error"], body["code"]) == ("payment_refused", "amount_too_small")
    page = client.get("/pay/button", headers={"Accept": "text/html"})
    assert page.status_code == 502 and "Trying again will not help" in page.text
    assert stock_of(app, "button") == (3, 0)


def test_payment_intent_mode_live_needs_a_publishable_key(app_config):
    live = {**app_config, "PURCHASE_MODE": "payment_intent", "STRIPE_SECRET_KEY": "sk_test_x"}
    with pytest.raises(ValueError, match="STRIPE_PUBLISHABLE_KEY"):
        create_app(live)
    assert create_app({**live, "STRIPE_PUBLISHABLE_KEY": "pk_test_x"}).config["SANDBOX"] is False


@pytest.mark.parametrize("mode, path", [("reserved_checkout", "buy"), ("payment_intent", "pay")])
def test_kiosk_qr_codes_point_at_the_shop(app, shop_app, mode, path):
    make_product(app, stock=3)
    kiosk = shop_app(mode, PUBLIC_URL="https://booth.test/").test_client().get("/")
    url = f"https://booth.test/{path}/tee-m"
    assert f'src="/qr/tee-m.svg?v={qr.version(url)}"' in kiosk.get_data(as_text=True)


def test_cancelled_page(app, shop_app):
    client = shop_app("reserved_checkout").test_client()
    page = client.get("/buy/tee-m/cancelled").get_data(as_text=True)
    assert "Nothing was charged" in page and 'href="/buy/tee-m"' in page


# Against a running server and its sandbox, with the real SDK over HTTP -------------------

DROP_UNITS, DROP_VISITORS = 20, 500


@pytest.fixture
def shop_server(app, server_env):
    """Start a sandbox-mode server in a hold mode, two workers as the booth runs it."""
    servers = []

    def start(mode: str, *, workers: int = 2, threads: int = 32, **config) -> Sandbox:
        env = {**server_env, "SWAGSTORE_PURCHASE_MODE": mode}
        # Every visitor of these tests comes from 127.0.0.1: one address, hundreds of phones.
        # The per-address share is tested in test_hold_share.py and test_public.py.
        config = {"HOLDS_PER_CLIENT": 10_000, "HOLDS_PER_CLIENT_PER_MINUTE": 10_000, **config}
        env.update({f"SWAGSTORE_{key}": str(value) for key, value in config.items()})
        server = LiveServer(env, workers=workers, threads=threads)
        servers.append(server)
        # The test's own app (tasks run in-process, expiry forced) calls the same sandbox.
        return start_sandbox(app, server)

    yield start
    payments.close(app)
    for server in servers:
        server.stop()


def crowd(count: int, visit) -> list:
    """Run `count` visitors at once, each a thread with its own HTTP connection."""
    start = threading.Barrier(count)
    results: list = [None] * count

    def run(n: int) -> None:
        with requests.Session() as http:
            start.wait(timeout=120)
            results[n] = visit(http, n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return results


def wait_until(check, what: str, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def sale_counts(app) -> collections.Counter:
    with app.app_context():
        return collections.Counter(db.session.scalars(select(Sale.status)))


def hold_counts(app) -> collections.Counter:
    with app.app_context():
        return collections.Counter(db.session.scalars(select(Hold.status)))


def ledger_counts(sandbox: Sandbox) -> collections.Counter:
    return collections.Counter(entry["action"] for entry in sandbox.ledger()["entries"])


def buy(http: requests.Session, url: str, sku: str = "tee-m") -> tuple[int, str | None]:
    response = http.get(f"{url}/buy/{sku}", allow_redirects=False, timeout=300)
    return response.status_code, response.headers.get("Location")


def intent(http: requests.Session, url: str, sku: str = "tee-m") -> tuple[int, dict]:
    response = http.post(f"{url}/api/intents", json={"sku": sku}, timeout=300)
    return response.status_code, response.json()


def session_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def test_drop_reserved_checkout_20_units_500_visitors(app, shop_server):
    make_product(app, stock=DROP_UNITS)
    sandbox = shop_server("reserved_checkout")
    answers = crowd(DROP_VISITORS, lambda http, n: buy(http, sandbox.url))
    assert collections.Counter(status for status, _ in answers) == {
        303: DROP_UNITS,
        409: DROP_VISITORS - DROP_UNITS,
    }
    urls = {location for status, location in answers if status == 303}
    assert len(urls) == DROP_UNITS
    sessions = sandbox.api("GET", "checkout/sessions", params={"limit": 100}).json()["data"]
    assert len(sessions) == DROP_UNITS  # the sandbox saw exactly one session per unit
    assert {s["url"] for s in sessions} == urls
    assert {s["metadata"]["sku"] for s in sessions} == {"tee-m"}
    assert stock_of(app) == (DROP_UNITS, DROP_UNITS)

    paid = crowd(DROP_UNITS, lambda http, n: sandbox.pay(sorted(urls)[n]))
    assert {session["status"] for session in paid} == {"complete"}
    wait_until(lambda: sale_counts(app)["fulfilled"] == DROP_UNITS, "20 fulfilled sales")
    assert sale_counts(app) == {"fulfilled": DROP_UNITS}
    assert hold_counts(app) == {"settled": DROP_UNITS}
    assert stock_of(app) == (0, 0)
    ledger = ledger_counts(sandbox)
    assert (ledger["charge"], ledger["refund"], ledger["cancel"]) == (DROP_UNITS, 0, 0)
    with app.app_context():
        linked = db.session.execute(select(Sale.hold_id, Hold.checkout_session_id).join(Hold))
        assert {session_id for _, session_id in linked} == {s["id"] for s in sessions}


def test_drop_payment_intent_20_units_500_visitors(app, shop_server):
    make_product(app, stock=DROP_UNITS)
    sandbox = shop_server("payment_intent")
    answers = crowd(DROP_VISITORS, lambda http, n: intent(http, sandbox.url))
    assert collections.Counter(status for status, _ in answers) == {
        201: DROP_UNITS,
        409: DROP_VISITORS - DROP_UNITS,
    }
    opened = [body for status, body in answers if status == 201]
    assert len({body["payment_intent"] for body in opened}) == DROP_UNITS
    assert stock_of(app) == (DROP_UNITS, DROP_UNITS)

    crowd(
        DROP_UNITS,
        lambda http, n: sandbox.confirm(opened[n]["payment_intent"], opened[n]["client_secret"]),
    )

    def all_captured():
        with app.app_context():
            return db.session.scalar(select(func.count(Sale.id)).where(Sale.captured)) == 20

    wait_until(all_captured, "20 captured sales")
    assert sale_counts(app) == {"fulfilled": DROP_UNITS}
    assert hold_counts(app) == {"settled": DROP_UNITS}
    assert stock_of(app) == (0, 0)
    ledger = ledger_counts(sandbox)
    assert (ledger["authorize"], ledger["capture"]) == (DROP_UNITS, DROP_UNITS)
    assert (ledger["refund"], ledger["cancel"]) == (0, 0)
    for body in opened:
        pi = sandbox.api("GET", f"payment_intents/{body['payment_intent']}").json()
        assert (pi["status"], pi["capture_method"]) == ("succeeded", "manual")


@pytest.mark.parametrize("mode", ["reserved_checkout", "payment_intent"])
def test_abandoned_holds_return_to_sale_after_hold_seconds(app, shop_server, mode):
    make_product(app, stock=3)
    sandbox = shop_server(mode, workers=1, threads=16, HOLD_SECONDS=2)
    visit = buy if mode == "reserved_checkout" else intent
    answers = crowd(3, lambda http, n: visit(http, sandbox.url))
    assert {status for status, _ in answers} == {303 if mode == "reserved_checkout" else 201}
    assert stock_of(app) == (3, 3)
    kiosk = requests.get(sandbox.url + "/", timeout=60).text
    assert re.search(r'<span class="r">3</span> being bought', kiosk)
    assert '<b class="n">0</b> left' in kiosk

    wait_until(lambda: hold_counts(app) == {"released": 3}, "3 released holds")
    assert stock_of(app) == (3, 0)
    item = requests.get(sandbox.url + "/api/stock", timeout=60).json()["items"][0]
    assert (item["available"], item["reserved"], item["sold_out"]) == (3, 0, False)
    kiosk = requests.get(sandbox.url + "/", timeout=60).text
    assert '<b class="n">3</b> left' in kiosk
    assert re.search(r'<p class="reserved" hidden>\s*<span class="r">0</span>', kiosk)
    if mode == "reserved_checkout":
        sessions = sandbox.api("GET", "checkout/sessions").json()["data"]
        assert {s["status"] for s in sessions} == {"expired"}
    else:
        for _, body in answers:
            pi = sandbox.api("GET", f"payment_intents/{body['payment_intent']}").json()
            assert pi["status"] == "canceled"
    assert sale_counts(app) == {}
    with requests.Session() as http:
        assert visit(http, sandbox.url)[0] in (303, 201)  # the units are on sale again


# The expire-versus-pay race, forced in both orders -------------------------------------


def force_expiry(app) -> None:
    """Run expiry as if HOLD_SECONDS had passed (the server's own runner is off)."""
    with app.app_context():
        later = utcnow() + timedelta(seconds=3600)
        assert tasks.expire_holds(later) == 1


def run_tasks(app) -> list[tuple[str, str, str | None]]:
    with app.app_context():
        tasks.run_due()
        rows = db.session.execute(
            select(Task.kind, Task.status, Task.last_error).order_by(Task.id)
        )
        return [tuple(r) for r in rows]


def raw_pay(sandbox: Sandbox, path: str, **data) -> requests.Response:
    return requests.post(
        sandbox.url + path, data=data, headers={"Accept": "application/json"}, timeout=60
    )


def events_applied(app, kind: str) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).where(StripeEvent.type == kind))


@pytest.fixture
def race_server(app, shop_server):
    """A server whose worker leaves the outbox alone, so the test decides when tasks run."""
    make_product(app, stock=1)

    def start(mode: str) -> Sandbox:
        return shop_server(mode, workers=1, threads=16, WORKER_TASKS="false")

    return start


def test_checkout_paid_before_its_expire_call_settles(app, race_server):
    sandbox = race_server("reserved_checkout")
    with requests.Session() as http:
        status, url = buy(http, sandbox.url)
    assert status == 303
    force_expiry(app)
    assert hold_counts(app) == {"expiring": 1}
    assert sandbox.pay(url)["status"] == "complete"
    wait_until(lambda: sale_counts(app) == {"fulfilled": 1}, "the sale")
    # The expire call fails (the session is complete): not an error, the payment won.
    assert run_tasks(app) == [("expire_session", "done", None)]
    assert hold_counts(app) == {"settled": 1}
    assert stock_of(app) == (0, 0)
    assert ledger_counts(sandbox)["refund"] == 0


def test_checkout_expired_before_its_payment_refuses_the_payment(app, race_server):
    sandbox = race_server("reserved_checkout")
    with requests.Session() as http:
        status, url = buy(http, sandbox.url)
    force_expiry(app)
    assert run_tasks(app) == [("expire_session", "done", None)]
    assert hold_counts(app) == {"released": 1}
    assert stock_of(app) == (1, 0)
    refused = raw_pay(sandbox, f"/sandbox/checkout/{session_id(url)}/pay")
    assert refused.status_code == 400
    wait_until(lambda: events_applied(app, "checkout.session.expired"), "the expired event")
    assert sale_counts(app) == {} and stock_of(app) == (1, 0)
    assert hold_counts(app) == {"released": 1}
    assert ledger_counts(sandbox)["charge"] == 0


def test_intent_paid_before_its_cancel_call_settles(app, race_server):
    sandbox = race_server("payment_intent")
    with requests.Session() as http:
        status, body = intent(http, sandbox.url)
    force_expiry(app)
    sandbox.confirm(body["payment_intent"], body["client_secret"])
    wait_until(lambda: sale_counts(app) == {"fulfilled": 1}, "the sale")
    # The authorization withdrew the cancel nobody had tried yet; the capture runs.
    assert run_tasks(app) == [
        ("cancel", "done", "withdrawn: the visitor paid"),
        ("capture", "done", None),
    ]
    assert hold_counts(app) == {"settled": 1}
    assert stock_of(app) == (0, 0)
    ledger = ledger_counts(sandbox)
    assert (ledger["capture"], ledger["cancel"]) == (1, 0)


def test_intent_paid_while_its_cancel_is_under_way_is_voided(app, race_server):
    sandbox = race_server("payment_intent")
    with requests.Session() as http:
        status, body = intent(http, sandbox.url)
    force_expiry(app)
    # Every try of the first cancel attempt (the SDK retries twice) answers 500.
    sandbox.fault("/v1/payment_intents", 1 + payments.NETWORK_RETRIES, "error")
    # A failed attempt may still have reached Stripe, so its task stays and retries later.
    assert run_tasks(app)[0][:2] == ("cancel", "pending")
    sandbox.confirm(body["payment_intent"], body["client_secret"])
    wait_until(lambda: sale_counts(app) == {"voided": 1}, "the voided sale")
    assert stock_of(app) == (1, 1)
    wait_until(lambda: run_tasks(app) == [("cancel", "done", None)], "the retried cancel")
    assert hold_counts(app) == {"released": 1}
    assert stock_of(app) == (1, 0)
    ledger = ledger_counts(sandbox)
    assert (ledger["authorize"], ledger["cancel"], ledger["capture"]) == (1, 1, 0)


def test_intent_cancelled_before_its_payment_refuses_the_payment(app, race_server):
    sandbox = race_server("payment_intent")
    with requests.Session() as http:
        status, body = intent(http, sandbox.url)
    force_expiry(app)
    assert run_tasks(app) == [("cancel", "done", None)]
    assert hold_counts(app) == {"released": 1}
    intent_id = body["payment_intent"]
    refused = raw_pay(
        sandbox,
        f"/sandbox/payment_intents/{intent_id}/confirm",
        client_secret=body["client_secret"],
    )
    assert refused.status_code == 400
    assert sale_counts(app) == {} and stock_of(app) == (1, 0)
    assert ledger_counts(sandbox)["authorize"] == 0


def test_reload_gets_the_same_checkout_not_a_second_hold(app, shop_server):
    make_product(app, stock=5)
    sandbox = shop_server("reserved_checkout", workers=1, threads=16)
    with requests.Session() as http:
        first = buy(http, sandbox.url)
        again = buy(http, sandbox.url)
    with requests.Session() as other:
        third = buy(other, sandbox.url)
    assert first[0] == again[0] == third[0] == 303
    assert first[1] == again[1] != third[1]
    assert stock_of(app) == (5, 2)
    assert len(sandbox.api("GET", "checkout/sessions").json()["data"]) == 2


def test_pay_page_takes_the_visitor_through_the_sandbox_card_form(app, shop_server):
    make_product(app, stock=2, name="Logo tee")
    sandbox = shop_server("payment_intent", workers=1, threads=16)
    with requests.Session() as http:
        page = http.get(sandbox.url + "/pay/tee-m", timeout=60)
        assert page.status_code == 200 and "Logo tee" in page.text
        again = http.get(sandbox.url + "/pay/tee-m", timeout=60)
        form = re.search(r'action="(/sandbox/payment_intents/(pi_\w+)/form)"', page.text)
        assert form and form.group(2) in again.text  # a reload shows the same intent
        secret = re.search(r'name="client_secret" value="([^"]+)"', page.text).group(1)
        return_url = re.search(r'name="return_url" value="([^"]+)"', page.text).group(1)
        card = http.get(
            sandbox.url + form.group(1),
            params={"client_secret": secret, "return_url": return_url},
            timeout=60,
        )
        assert card.status_code == 200
        done = http.post(
            sandbox.url + f"/sandbox/payment_intents/{form.group(2)}/confirm",
            data={"client_secret": secret, "return_url": return_url},
            headers={"Accept": "text/html"},
            timeout=60,
        )
    # Back on the buyer's page for this payment, which follows it to the pickup code.
    assert done.status_code == 200
    assert done.url.startswith(f"{sandbox.url}/paid/{form.group(2)}?payment_intent=")
    wait_until(lambda: sale_counts(app) == {"fulfilled": 1}, "the sale")
    assert stock_of(app) == (1, 0)
    assert "Ready to collect" in requests.get(done.url, timeout=60).text


@pytest.mark.parametrize(("hold_seconds", "lifetime"), [(300, 35 * 60), (3600, 3600 + 5 * 60)])
def test_buy_opens_a_checkout_session_named_after_its_hold(
    app, shop_server, hold_seconds, lifetime
):
    """expires_at: Stripe's 30-minute minimum (or HOLD_SECONDS) plus 5 minutes for the call.

    Mutations tried, each failing this: SESSION_MARGIN_SECONDS = 0 (a retried create would
    be due sooner than Stripe's 30 minutes); no client_reference_id.
    """
    make_product(app, stock=2, price=2500)
    sandbox = shop_server("reserved_checkout", workers=1, threads=8, HOLD_SECONDS=hold_seconds)
    with requests.Session() as http:
        status, location = buy(http, sandbox.url)
    assert status == 303, location
    session = sandbox.api("GET", f"checkout/sessions/{session_id(location)}").json()
    with app.app_context():
        hold = db.session.scalar(select(Hold))
    assert hold.checkout_session_id == session["id"]
    assert session["client_reference_id"] == str(hold.id)
    assert session["metadata"] == {"sku": "tee-m", "store": STORE, "hold": str(hold.id)}
    # From the hold's clock, so a create retried minutes later is the same request.
    assert session["expires_at"] == int(hold.created_at.timestamp()) + lifetime
    assert session["expires_at"] - session["created"] >= 30 * 60  # Stripe's rule
    assert (session["mode"], session["amount_total"], session["currency"]) == (
        "payment",
        2500,
        "usd",
    )
    assert stock_of(app) == (2, 1)


def test_api_intents_answers_its_hold_and_a_manual_capture_payment_intent(app, shop_server):
    """Mutation tried: capture_method "automatic" for the intent fails this."""
    make_product(app, stock=2, price=2500)
    sandbox = shop_server("payment_intent", workers=1, threads=8)
    with requests.Session() as http:
        status, body = intent(http, sandbox.url)
    assert status == 201, body
    with app.app_context():
        hold = db.session.scalar(select(Hold))
    assert body == {
        "hold": hold.id,
        "payment_intent": hold.payment_intent_id,
        "client_secret": body["client_secret"],
        "amount": 2500,
        "currency": "usd",
    }
    assert body["client_secret"].startswith(hold.payment_intent_id + "_secret_")
    pi = sandbox.api("GET", f"payment_intents/{hold.payment_intent_id}").json()
    assert pi["client_secret"] == body["client_secret"]
    assert (pi["amount"], pi["currency"], pi["capture_method"]) == (2500, "usd", "manual")
    assert pi["metadata"] == {"sku": "tee-m", "store": STORE, "hold": str(hold.id)}
    assert pi["status"] == "requires_payment_method"
    assert stock_of(app) == (2, 1)
