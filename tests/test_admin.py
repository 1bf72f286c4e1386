"""The back office over HTTP: closed doors, CSRF on every form, and each staff action."""

from __future__ import annotations

import csv
import io
import re
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import inspect, select, text
from stripe_fixtures import make_event, make_session

from conftest import ADMIN_PASSWORD, STORE, csrf_from, log_in, make_product
from swagstore import auth, fulfilment, inventory, tasks
from swagstore.models import LoginFailure, Sale, Stock, StockEvent, Task, db


@pytest.fixture
def app_config(app_config):
    return {**app_config, "ADMIN_PASSWORD": ADMIN_PASSWORD}


def admin_rules(app):
    return sorted(
        (r for r in app.url_map.iter_rules() if r.rule.startswith("/admin")),
        # Login and logout renew the session (and its CSRF secret): check them last.
        key=lambda r: (
            r.endpoint in ("admin.login", "admin.logout"),
            r.endpoint == "admin.logout",
            r.rule,
        ),
    )


def url(app, rule, **values) -> str:
    values = {"sku": "tee-m", "sale_id": 1, "task_id": 1, **values}
    with app.test_request_context():
        adapter = app.url_map.bind("localhost")
        return adapter.build(rule.endpoint, {a: values[a] for a in rule.arguments})


def snapshot(app) -> dict[str, list[tuple]]:
    """Every row of every table: proof that a refused request changed nothing."""
    with app.app_context():
        names = inspect(db.engine).get_table_names()
        return {n: db.session.execute(text(f"SELECT * FROM {n} ORDER BY 1")).all() for n in names}


def card_sale(app, sku: str = "tee-m", status: str = "fulfilled", pi: str = "pi_1") -> int:
    with app.app_context():
        sale = Sale(sku=sku, store=STORE, amount=2500, currency="usd", kind="card", status=status)
        sale.payment_intent_id, sale.checkout_session_id = pi, "cs_" + pi
        db.session.add(sale)
        db.session.flush()
        assert inventory.take(sku, STORE, ref=f"sale:{sale.id}")
        db.session.commit()
        return sale.id


def failed_task(app) -> int:
    with app.app_context():
        task = tasks.enqueue("refund", {"payment_intent": "pi_x"})
        task.status, task.last_error = "failed", "StripeError: charge_already_refunded"
        db.session.commit()
        return task.id


def level(app, sku: str = "tee-m") -> tuple[int, int]:
    with app.app_context():
        stock = db.session.get(Stock, (sku, STORE))
        return stock.on_hand, stock.reserved


def flashes(html: str) -> list[str]:
    return re.findall(r'<p class="flash[^"]*" role="status">([^<]*)</p>', html)


# Closed doors ----------------------------------------------------------------------------


def test_without_a_password_every_admin_route_is_closed(app_config):
    from swagstore import create_app

    closed = create_app({**app_config, "ADMIN_PASSWORD": None})
    client = closed.test_client()
    rules = admin_rules(closed)
    assert len(rules) >= 12
    for rule in rules:
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(url(closed, rule), method=method)
            assert response.status_code == 403, (method, rule)
            assert "closed until" in response.text and "ADMIN_PASSWORD" in response.text


def test_without_a_session_every_admin_route_answers_401_or_sends_to_login(app, client):
    make_product(app, "tee-m", stock=5)
    card_sale(app)
    failed_task(app)
    before = snapshot(app)
    checked = 0
    for rule in admin_rules(app):
        if rule.endpoint == "admin.login":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = client.open(url(app, rule), method=method, data={"quantity": "1"})
            if method == "GET":
                assert response.status_code == 302, rule
                assert response.headers["Location"] == "/admin/login"
            else:
                assert response.status_code == 401, rule
                assert "Please log in first." in response.text
            checked += 1
    assert checked >= 12
    assert snapshot(app) == before


# CSRF --------------------------------------------------------------------------------------

VALID_FORMS = {
    "admin.login": {"password": ADMIN_PASSWORD},
    "admin.logout": {},
    "admin.restock": {"quantity": "2"},
    "admin.count": {"counted": "3", "reason": "stock-take"},
    "admin.sell": {"quantity": "1", "kind": "cash"},
    "admin.refund": {"restock": "yes"},
    "admin.retry": {},
    "admin.off_sale": {"on": "no"},
    "admin.hand_over": {},
}


def test_every_state_changing_route_needs_a_valid_csrf_token(app, client):
    make_product(app, "tee-m", stock=5)
    sale_id = card_sale(app)
    task_id = failed_task(app)
    token = log_in(client)
    other = app.test_client()
    foreign_token = log_in(other)  # valid, but for another session
    posts = [r for r in admin_rules(app) if "POST" in r.methods]
    assert {r.endpoint for r in posts} == set(VALID_FORMS), "a new form needs a CSRF case here"
    for rule in posts:
        path = url(app, rule, sale_id=sale_id, task_id=task_id)
        form = VALID_FORMS[rule.endpoint]
        for bad in (
            {},
            {"csrf_token": ""},
            {"csrf_token": "forged"},
            {"csrf_token": foreign_token},
        ):
            before = snapshot(app)
            response = client.post(path, data={**form, **bad})
            assert response.status_code == 400, (rule, bad)
            assert "Form refused; nothing changed" in response.text
            assert snapshot(app) == before, (rule, bad)
        # The same form with the session's own token is accepted, so the refusal above was
        # the token's doing and not the form's.
        response = client.post(path, data={**form, "csrf_token": token})
        assert response.status_code == 303, (rule, response.text)
        if rule.endpoint == "admin.login":
            token = csrf_from(client.get("/admin").text)
    assert client.get("/admin").status_code == 302  # the last form was logout


# Login ------------------------------------------------------------------------------------


def test_login_sets_a_httponly_samesite_session_and_logout_ends_it(app, client):
    assert client.get("/admin").headers["Location"] == "/admin/login"
    token = csrf_from(client.get("/admin/login").text)
    response = client.post("/admin/login", data={"csrf_token": token, "password": ADMIN_PASSWORD})
    assert (response.status_code, response.headers["Location"]) == (303, "/admin")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/admin")
    assert page.status_code == 200 and "SANDBOX: no real payments" in page.text
    response = client.post("/admin/logout", data={"csrf_token": csrf_from(page.text)})
    assert response.headers["Location"] == "/admin/login"
    assert client.get("/admin").status_code == 302


def test_wrong_passwords_lock_the_door_for_that_client_only(app, client):
    token = csrf_from(client.get("/admin/login").text)
    for left in ("4 more tries", "3 more tries", "2 more tries", "1 more try"):
        response = client.post("/admin/login", data={"csrf_token": token, "password": "guess"})
        assert response.status_code == 401 and "Wrong password." in response.text
        assert f"{left} from this device, then it is locked out for 5 minutes" in response.text
    response = client.post("/admin/login", data={"csrf_token": token, "password": "guess"})
    assert "This device is now locked out for 5 minutes." in response.text
    response = client.post("/admin/login", data={"csrf_token": token, "password": ADMIN_PASSWORD})
    assert response.status_code == 429
    assert "Too many wrong passwords from this device: try again after" in response.text
    assert 0 < int(response.headers["Retry-After"]) <= 300
    assert client.get("/admin").status_code == 302
    # Staff at another address log in as usual.
    staff = app.test_client()
    staff.environ_base["REMOTE_ADDR"] = "10.0.0.20"
    log_in(staff)
    assert staff.get("/admin").status_code == 200


def test_a_logged_out_cookie_opens_nothing_again(app, client):
    page = client.get("/admin/login")
    log_in(client)
    kept = client.get_cookie("session").value
    client.post("/admin/logout", data={"csrf_token": csrf_from(client.get("/admin").text)})
    replay = app.test_client()
    replay.set_cookie("session", kept)
    assert replay.get("/admin").headers["Location"] == "/admin/login"
    assert page.status_code == 200


def test_changing_the_password_ends_every_session(app, client):
    log_in(client)
    assert client.get("/admin").status_code == 200
    app.config["ADMIN_PASSWORD"] = "a brand new password"
    assert client.get("/admin").headers["Location"] == "/admin/login"
    # The refused cookie is cleared, so the browser forgets it too.
    assert client.get_cookie("session") is None


# Stock actions ------------------------------------------------------------------------------


def test_restock_adds_units_and_the_kiosk_api_shows_them(app, client):
    make_product(app, "tee-m", stock=0)
    token = log_in(client, name="Ada")
    response = client.post(
        "/admin/stock/tee-m/restock", data={"csrf_token": token, "quantity": "4"}
    )
    assert (response.status_code, response.headers["Location"]) == (303, "/admin")
    page = client.get("/admin").text
    assert flashes(page) == ["Restocked 4 × Item tee-m: 4 available."]
    assert level(app) == (4, 0)
    item = client.get("/api/stock").get_json()["items"][0]
    assert (item["available"], item["sold_out"]) == (4, False)
    assert "staff:Ada" in client.get("/admin/activity").text


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        ("0", "Restock: enter a whole number from 1 to 1000000."),
        ("-2", "Restock: enter a whole number of at least 1, not &#39;-2&#39;."),
        ("1.5", "Restock: enter a whole number of at least 1, not &#39;1.5&#39;."),
        ("abc", "Restock: enter a whole number of at least 1, not &#39;abc&#39;."),
        ("", "Restock: enter a whole number of at least 1, not &#39;&#39;."),
        ("99999999999999999999", "Restock: enter a whole number from 1 to 1000000."),
    ],
)
def test_restock_refuses_what_is_not_a_positive_count(app, client, quantity, message):
    make_product(app, "tee-m", stock=3)
    token = log_in(client)
    before = snapshot(app)
    response = client.post(
        "/admin/stock/tee-m/restock", data={"csrf_token": token, "quantity": quantity}
    )
    assert response.status_code == 303
    assert flashes(client.get("/admin").text) == [message]
    assert snapshot(app) == before


def test_count_sets_stock_and_refuses_below_reserved_or_without_reason(app, client):
    make_product(app, "tee-m", stock=10)
    with app.app_context():
        inventory.hold("tee-m", STORE, 2)
        db.session.commit()
    token = log_in(client)

    def count(counted: str, reason: str = "stock-take") -> list[str]:
        client.post(
            "/admin/stock/tee-m/count",
            data={"csrf_token": token, "counted": counted, "reason": reason},
        )
        return flashes(client.get("/admin").text)

    assert count("1") == [
        "Counted stock of tee-m cannot be 1: 2 units are held for checkouts in progress; "
        "nothing changed."
    ]
    assert count("5", reason="  ") == [
        "Counted stock: say why the count differs (e.g. &#39;stock-take&#39;, &#39;damaged&#39;)."
    ]
    assert count("-1") == ["Counted stock: enter a whole number of at least 0, not &#39;-1&#39;."]
    assert level(app) == (10, 2)
    assert count("6", reason="two damaged") == ["Counted Item tee-m: 6 on hand, 4 available."]
    assert level(app) == (6, 2)
    assert "two damaged" in client.get("/admin/activity").text


def test_cash_sale_and_giveaway_are_recorded_and_guarded(app, client):
    make_product(app, "tee-m", stock=3, price=2500)
    token = log_in(client)

    def hand_over(kind: str, quantity: str, sku: str = "tee-m") -> list[str]:
        client.post(
            f"/admin/stock/{sku}/sell",
            data={"csrf_token": token, "kind": kind, "quantity": quantity},
        )
        return flashes(client.get("/admin").text)

    assert hand_over("cash", "2") == ["Collect $50.00 in cash for 2 × Item tee-m (sale 1)."]
    assert hand_over("giveaway", "1") == ["Recorded giveaway sale 2: 1 × Item tee-m."]
    assert level(app) == (0, 0)
    before = snapshot(app)
    assert hand_over("giveaway", "1") == [
        "Only 0 of tee-m available, so 1 cannot be handed over; nothing changed."
    ]
    assert hand_over("cash", "0") == ["Quantity: enter a whole number from 1 to 1000000."]
    assert hand_over("card", "1") == ["A staff sale is cash or a giveaway, not &#39;card&#39;."]
    assert hand_over("cash", "1", sku="ghost") == [
        "There is no item &#39;ghost&#39; at this booth."
    ]
    assert snapshot(app) == before
    with app.app_context():
        sold = db.session.execute(select(Sale.kind, Sale.amount, Sale.status)).all()
    assert sold == [("cash", 5000, "fulfilled"), ("giveaway", 0, "fulfilled")]
    item = client.get("/api/stock").get_json()["items"][0]
    assert (item["available"], item["sold"], item["sold_out"]) == (0, 3, True)


# Sales, refunds, tasks, report ---------------------------------------------------------------


def test_sales_page_lists_and_filters_and_refunds_a_card_sale(app, client):
    make_product(app, "tee-m", stock=5, name="Logo tee")
    card = card_sale(app, pi="pi_card")
    voided = card_sale(app, status="voided", pi="pi_void")
    token = log_in(client)
    client.post(
        "/admin/stock/tee-m/sell", data={"csrf_token": token, "kind": "cash", "quantity": "1"}
    )
    page = client.get("/admin/sales").text
    assert [int(n) for n in re.findall(r'<tr id="sale-(\d+)">', page)] == [3, voided, card]
    assert "pi_card" in page and "cs_pi_card" in page and "Logo tee" in page
    # Sandbox: the ids are shown as text, not linked to a dashboard that knows nothing of them.
    assert "dashboard.stripe.com" not in page
    # Only the fulfilled card sale has a refund button.
    assert re.findall(r"/admin/sales/(\d+)/refund", page) == [str(card)]
    only_voided = client.get("/admin/sales?status=voided").text
    assert re.findall(r'<tr id="sale-(\d+)">', only_voided) == [str(voided)]

    response = client.post(
        f"/admin/sales/{card}/refund", data={"csrf_token": token, "restock": "yes"}
    )
    assert response.headers["Location"] == "/admin/sales"
    page = client.get("/admin/sales?status=refund_pending").text
    assert flashes(page) == [f"Refund of sale {card} queued, units back in stock."]
    assert re.findall(r'<tr id="sale-(\d+)">', page) == [str(card)]
    assert level(app) == (3, 0)  # 5 - card - voided's take - cash + returned unit
    with app.app_context():
        task = db.session.scalars(select(Task).where(Task.kind == "refund")).one()
        assert (task.sale_id, task.args["payment_intent"]) == (card, "pi_card")
    client.post(f"/admin/sales/{card}/refund", data={"csrf_token": token})
    assert flashes(client.get("/admin/sales").text) == [
        f"Sale {card} is a refund pending card sale; only a fulfilled card payment can be "
        "refunded here."
    ]
    assert f"sale {card}" in client.get("/admin/tasks").text


def test_live_key_links_payments_to_the_stripe_dashboard(app_config):
    from swagstore import create_app

    live = create_app({**app_config, "STRIPE_SECRET_KEY": "sk_test_abc"})
    with live.app_context():
        from swagstore.cli import init_db

        init_db()
    make_product(live, "tee-m", stock=2)
    card_sale(live, pi="pi_777")
    client = live.test_client()
    log_in(client)
    page = client.get("/admin/sales").text
    assert 'href="https://dashboard.stripe.com/test/payments/pi_777"' in page
    assert "SANDBOX" not in page


def test_tasks_page_shows_the_last_error_and_retries(app, client):
    task_id = failed_task(app)
    token = log_in(client)
    page = client.get("/admin/tasks").text
    assert "StripeError: charge_already_refunded" in page and f'id="task-{task_id}"' in page
    response = client.post(f"/admin/tasks/{task_id}/retry", data={"csrf_token": token})
    assert response.headers["Location"] == "/admin/tasks"
    assert flashes(client.get("/admin/tasks").text) == [f"Task {task_id} will run again now."]
    with app.app_context():
        assert db.session.get(Task, task_id).status == "pending"
    client.post("/admin/tasks/999/retry", data={"csrf_token": token})
    assert flashes(client.get("/admin/tasks").text) == ["There is no task 999."]


@pytest.mark.parametrize(
    "path", ["/admin/sales/{}/hand-over", "/admin/sales/{}/refund", "/admin/tasks/{}/retry"]
)
def test_an_id_beyond_the_databases_integers_is_404_not_500(app, client, path):
    make_product(app, "tee-m", stock=5)
    card_sale(app)
    failed_task(app)
    token = log_in(client)
    before = snapshot(app)
    for huge in (2**31, 2**63, 10**30):
        response = client.post(path.format(huge), data={"csrf_token": token})
        assert response.status_code == 404, huge
    assert snapshot(app) == before


def test_report_page_draws_charts_and_csv_matches_the_cli(app, client, runner, tmp_path):
    make_product(app, "tee-m", stock=5)
    make_product(app, "mug", stock=5, price=1800)
    card_sale(app)
    token = log_in(client)
    client.post(
        "/admin/stock/mug/sell", data={"csrf_token": token, "kind": "cash", "quantity": "2"}
    )
    page = client.get("/admin/report").text
    assert page.count("<svg") == 2 and "<script" not in page
    assert "Units sold per item" in page and "$61.00" in page

    download = client.get("/admin/sales.csv")
    assert download.mimetype == "text/csv"
    assert "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [(r["sku"], r["kind"], r["quantity"], r["amount"]) for r in rows] == [
        ("tee-m", "card", "1", "2500"),
        ("mug", "cash", "2", "3600"),
    ]
    out = tmp_path / "report.csv"
    result = runner.invoke(args=["report", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    assert "Item mug" in result.output and "Takings: $61.00" in result.output
    assert out.read_text() == download.text
    assert runner.invoke(args=["report", "--csv", "-"]).output == download.text


def test_activity_is_the_audit_trail(app, client):
    make_product(app, "tee-m", stock=2)
    token = log_in(client, name="Bo")
    client.post(
        "/admin/stock/tee-m/sell", data={"csrf_token": token, "kind": "giveaway", "quantity": "1"}
    )
    page = client.get("/admin/activity").text
    rows = re.findall(r'<tr id="event-(\d+)">(.*?)</tr>', page, re.S)
    assert [int(n) for n, _ in rows] == [2, 1]
    newest = re.sub(r"<[^>]+>|\s+", " ", rows[0][1]).split()
    assert newest[-6:] == ["tee-m", "giveaway", "1", "0", "sale:1", "staff:Bo"]
    assert "system" in rows[1][1]  # the catalog load had no staff actor
    with app.app_context():
        assert db.session.scalars(select(StockEvent.actor).order_by(StockEvent.id)).all() == [
            None,
            "staff:Bo",
        ]


def test_manual_capture_warns_about_sales_not_yet_captured(app_config):
    from swagstore import create_app
    from swagstore.cli import init_db

    manual = create_app({**app_config, "LINK_CAPTURE": "manual"})
    with manual.app_context():
        init_db()
    make_product(manual, "tee-m", stock=5)
    card_sale(manual, pi="pi_a")
    captured = card_sale(manual, pi="pi_b")
    with manual.app_context():
        db.session.get(Sale, captured).captured = True
        db.session.commit()
    client = manual.test_client()
    log_in(client)
    page = client.get("/admin").text
    assert "1 card sale handed over but not yet\n  captured" in page
    assert "(not captured yet)" in client.get("/admin/sales").text


def test_tasks_page_reports_payments_for_unknown_items(app, client):
    make_product(app, stock=1)
    event = make_event(make_session("no-such-sku"))
    with app.app_context():
        fulfilment.apply(event)
    log_in(client)

    page = client.get("/admin/tasks").text

    assert f'id="event-{event["id"]}"' in page
    assert "unknown item &#39;no-such-sku&#39;" in page


# The table: booth time, labels, off sale, unknown filters ------------------------------------


def test_the_lock_out_says_the_booths_time(app_config):
    from swagstore import create_app

    chicago = create_app({**app_config, "TIMEZONE": "America/Chicago"})
    with chicago.app_context():
        from swagstore.cli import init_db

        init_db()
    client = chicago.test_client()
    token = csrf_from(client.get("/admin/login").text)
    for _ in range(5):
        client.post("/admin/login", data={"csrf_token": token, "password": "guess"})
    response = client.post("/admin/login", data={"csrf_token": token, "password": "guess"})
    with chicago.app_context():
        # Locked until the oldest of the five failures is WINDOW old.
        first = db.session.scalar(select(LoginFailure.at).order_by(LoginFailure.at))
        db.engine.dispose()
    until = (first + auth.WINDOW).astimezone(ZoneInfo("America/Chicago"))
    assert response.status_code == 429
    assert f"try again after {until:%H:%M:%S}." in response.text
    assert "UTC" not in response.text


def test_stock_page_labels_variants_and_shows_price_takings_and_cash_due(app, client):
    navy = {"colour": "Navy"}
    make_product(app, "tee-s", name="Logo T-shirt", group="tee", attributes={"size": "S", **navy})
    make_product(app, "tee-m", name="Logo T-shirt", group="tee", attributes={"size": "M", **navy})
    card_sale(app, "tee-m")
    refunded = card_sale(app, "tee-m", pi="pi_2")
    with app.app_context():
        db.session.get(Sale, refunded).status = "refunded"
        db.session.commit()
    log_in(client)
    page = client.get("/admin").text
    rows = dict(re.findall(r'<tr id="item-([\w-]+)"[^>]*>(.*?)</tr>', page, re.S))
    assert '<span class="item-name">Logo T-shirt, S</span>' in rows["tee-s"]
    assert '<span class="item-name">Logo T-shirt, M</span>' in rows["tee-m"]
    assert re.search(r'class="n sold"[^>]*>1<', rows["tee-m"])  # not the refunded one
    assert re.search(r'class="n takings"[^>]*>\$25.00<', rows["tee-m"])
    assert re.search(r'class="n price"[^>]*>\$25.00<', rows["tee-s"])
    assert "collect $25.00 each" in rows["tee-s"]


def test_an_item_goes_off_sale_and_back_with_its_history(app, client):
    make_product(app, "tee-m", stock=4, name="Logo tee")
    make_product(app, "mug", stock=4, name="Mug")
    token = log_in(client, name="Ada")

    def toggle(on: str, sku: str = "tee-m") -> list[str]:
        client.post(f"/admin/stock/{sku}/off-sale", data={"csrf_token": token, "on": on})
        return flashes(client.get("/admin").text)

    assert toggle("no") == ["Logo tee is off sale."]
    assert toggle("no") == ["tee-m is already off sale; nothing changed."]
    with app.app_context():
        assert db.session.get(Stock, ("tee-m", STORE)).off_sale
    items = {i["sku"]: i for i in client.get("/api/stock").get_json()["items"]}
    assert items["tee-m"]["off_sale"] and not items["mug"]["off_sale"]
    assert items["tee-m"]["available"] == 4  # the units stay
    kiosk = client.get("/").text
    assert 'data-sku="tee-m"' not in kiosk and 'data-sku="mug"' in kiosk
    assert "Put back on sale" in client.get("/admin").text

    assert toggle("yes") == ["Logo tee is back on sale."]
    assert toggle("yes") == ["tee-m is already on sale; nothing changed."]
    assert toggle("no", sku="ghost") == ["There is no item &#39;ghost&#39; at this booth."]
    assert 'data-sku="tee-m"' in client.get("/").text
    with app.app_context():
        log = db.session.execute(
            select(StockEvent.reason, StockEvent.actor, StockEvent.on_hand)
            .where(StockEvent.sku == "tee-m")
            .order_by(StockEvent.id)
        ).all()
    assert log == [("catalog", None, 4), ("off-sale", "staff:Ada", 4), ("on-sale", "staff:Ada", 4)]


def test_an_unknown_sales_status_is_refused_with_the_allowed_ones(app, client):
    log_in(client)
    page = client.get("/admin/sales?status=paid", headers={"Accept": "text/html"})
    assert page.status_code == 400
    assert "unknown status &#39;paid&#39;; use one of pending, fulfilled, voided" in page.text
    answer = client.get("/admin/sales?status=paid", headers={"Accept": "application/json"})
    assert answer.status_code == 400
    assert answer.get_json()["message"] == (
        "unknown status 'paid'; use one of pending, fulfilled, voided, refund_pending, "
        "refunded, failed"
    )
    assert client.get("/admin/sales?status=").status_code == 200
    assert client.get("/admin/sales?status=refunded").status_code == 200


@pytest.mark.parametrize(
    ("settings", "codes"),
    [
        ({}, False),  # plain payment links: the buyer ends on Stripe's page
        ({"PUBLIC_URL": "https://booth.example"}, True),  # the booth's /paid page
        ({"PURCHASE_MODE": "reserved_checkout", "PUBLIC_URL": "https://booth.example"}, True),
    ],
)
def test_the_hand_over_page_says_how_to_match_a_buyer_in_this_mode(app, settings, codes):
    app.config.update(settings)
    client = app.test_client()
    log_in(client)
    page = client.get("/admin/handover").text
    assert ("Ask for the buyer's code" in page) is codes
    assert ("find the sale by item, time and amount" in page) is not codes
