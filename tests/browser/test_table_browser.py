"""The table in Debian's Chromium against a running booth and its sandbox: what buyers and
staff see after a payment, handing over from a phone, off sale and back, and reports that
agree with the stock page.

The booth runs in payment_link mode with PUBLIC_URL set to itself, so its payment links
send buyers to its own /paid page; the sandbox delivers events to its webhook and the
server runs the outbox (refunds, link switches) as at a real booth.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select

from conftest import (
    ADMIN_PASSWORD,
    STORE,
    LiveServer,
    Sandbox,
    csrf_from,
    make_item,
    start_sandbox,
)
from swagstore import catalog, payments
from swagstore.models import PaymentLink, Sale, db, read_only

SHOTS = Path(__file__).resolve().parent / "screenshots"
PHONE = (390, 844)
SIZES = [(1920, 1080), (1366, 768), PHONE]
NAVY = {"colour": "Navy"}
ITEMS = [
    make_item(
        "tee-s", name="Logo T-shirt", group="tee", stock=6, attributes={"size": "S", **NAVY}
    ),
    make_item(
        "tee-m", name="Logo T-shirt", group="tee", stock=6, attributes={"size": "M", **NAVY}
    ),
    make_item(
        "tee-l", name="Logo T-shirt", group="tee", stock=6, attributes={"size": "L", **NAVY}
    ),
    make_item("hoodie", name="Zip hoodie", price=5500, stock=1),
    make_item("stickers", name="Sticker pack", price=500, stock=50),
    make_item("mug", name="Enamel mug", price=1800, stock=4),
]


@pytest.fixture
def app_config(app_config):
    return {**app_config, "ADMIN_PASSWORD": ADMIN_PASSWORD, "TIMEZONE": "America/Chicago"}


@pytest.fixture
def booth(app, server_env) -> Iterator[Sandbox]:
    """The booth with its catalog synced to the sandbox, its links leading to /paid."""
    with app.app_context():
        catalog.load(ITEMS, STORE)
        db.session.commit()
    server = LiveServer(server_env)
    server.env["SWAGSTORE_PUBLIC_URL"] = server.url
    sandbox = start_sandbox(app, server)
    app.config["PUBLIC_URL"] = server.url
    try:
        synced = app.test_cli_runner().invoke(args=["sync-stripe"])
        assert synced.exit_code == 0, synced.output
        yield sandbox
    finally:
        payments.close(app)
        server.stop()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    """Poll until check() is truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last saw {value!r}")
        time.sleep(0.25)


def link_of(app, sku: str) -> str:
    with app.app_context(), read_only():
        return db.session.scalar(
            select(PaymentLink.id).where(PaymentLink.sku == sku, PaymentLink.retired_at.is_(None))
        )


def sale(app, session_id: str) -> Sale | None:
    with app.app_context(), read_only():
        found = db.session.scalar(select(Sale).where(Sale.checkout_session_id == session_id))
        if found is not None:
            db.session.expunge(found)
        return found


def buy(app, sandbox: Sandbox, sku: str) -> Sale:
    """A phone pays for one unit through the item's link; return its sale once recorded."""
    session = sandbox.open_session(link_of(app, sku))
    sandbox.pay(session["id"])
    return wait_for(lambda: sale(app, session["id"]), f"the sale of {session['id']}")


def settled(app, session_id: str, status: str) -> Sale:
    return wait_for(
        lambda: (s := sale(app, session_id)) is not None and s.status == status and s,
        f"{session_id} {status}",
    )


def staff(browser: Browser, server_url: str, size: tuple[int, int]) -> BrowserContext:
    """A logged-in staff browser of a size (one CSS pixel per screenshot pixel)."""
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(server_url + "/admin/login")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_label("Your name").fill("Ada")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Stock")).to_be_visible()
    page.close()
    return context


def shoot(page: Page, name: str) -> Path:
    """Save a screenshot of the viewport, checking its size and that nothing scrolls sideways."""
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= width, f"{name}: {wide} px wide in a {width} px window"
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}-{width}x{height}.png"
    page.screenshot(path=path)
    with Image.open(path) as image:
        assert image.size == (width, height)
    return path


TARGETS = (
    "main button, main input:not([type=hidden]):not([type=checkbox]), main select, "
    "main .button, main summary, header button, header nav a"
)


def small_targets(page: Page) -> list[str]:
    """Name every visible button, field or link button shorter than 44 px (a thumb's size)."""
    return page.evaluate(
        """(selector) => [...document.querySelectorAll(selector)]
          .filter((el) => el.offsetParent !== null)
          .filter((el) => el.getBoundingClientRect().height < 44)
          .map((el) => el.outerHTML.slice(0, 80))""",
        TARGETS,
    )


# An honest ending ---------------------------------------------------------------------------


def test_an_oversold_buyer_is_told_refunded_and_never_to_collect(app, booth, browser):
    hoodie = link_of(app, "hoodie")
    # Two phones open the last hoodie's checkout; the first pays.
    first, second = booth.open_session(hoodie), booth.open_session(hoodie)
    booth.pay(first["id"])
    winner = settled(app, first["id"], "fulfilled")

    context = browser.new_context(viewport={"width": PHONE[0], "height": PHONE[1]})
    try:
        phone = context.new_page()
        seen: list[str] = []
        phone.goto(second["url"])
        phone.get_by_role("button", name="Pay", exact=True).click()
        # Stripe (the sandbox) sends the buyer to the booth's page for this session.
        expect(phone).to_have_url(f"{booth.url}/paid/{second['id']}")
        heading = phone.get_by_role("heading", name="Sold out just before you: refunded")
        while not heading.is_visible():
            seen.append(phone.inner_text("body"))
            time.sleep(0.2)
        seen.append(phone.inner_text("body"))
        assert "refunded automatically" in seen[-1] and "$55.00" in seen[-1]
        assert not [text for text in seen if "collect" in text.lower()]
        # The page stops following once the sale has ended: refunded, for good.
        assert settled(app, second["id"], "refunded").pickup_code is None
        expect(phone.locator("#sale-status")).to_have_attribute("data-final", "yes")
        shoot(phone, "paid-refunded")

        phone.goto(f"{booth.url}/paid/{first['id']}")
        expect(phone.get_by_role("heading", name="Ready to collect")).to_be_visible()
        expect(phone.locator(".pickup-code")).to_have_text(winner.pickup_code)
        expect(phone.locator("#sale-status")).to_contain_text(
            f"Show code {winner.pickup_code} at the table to collect Zip hoodie."
        )
        shoot(phone, "paid-ready")
    finally:
        context.close()
    ledger = booth.ledger()["payment_intents"]
    assert ledger[winner.payment_intent_id].get("refund") is None
    assert ledger[sale(app, second["id"]).payment_intent_id]["refund"]["count"] == 1


def test_the_buyers_page_waits_for_the_payment_then_shows_the_code(app, booth, browser):
    session = booth.open_session(link_of(app, "mug"))
    context = browser.new_context(viewport={"width": PHONE[0], "height": PHONE[1]})
    try:
        phone = context.new_page()
        # Before Stripe's event reaches the booth the page says it is confirming, and follows.
        phone.goto(f"{booth.url}/paid/{session['id']}")
        expect(phone.get_by_role("heading", name="Confirming your payment…")).to_be_visible()
        shoot(phone, "paid-waiting")
        booth.pay(session["id"])
        expect(phone.get_by_role("heading", name="Ready to collect")).to_be_visible()
        code = settled(app, session["id"], "fulfilled").pickup_code
        expect(phone.locator(".pickup-code")).to_have_text(code)
        assert re.fullmatch(r"[346789ABCDEFGHJKMNPQRTUVWXY]{2}", code)
    finally:
        context.close()


# Handing over -------------------------------------------------------------------------------


def test_three_sales_handed_over_from_a_phone_and_the_fourth_still_listed(app, booth, browser):
    bought = [buy(app, booth, sku) for sku in ("tee-s", "tee-m", "mug", "stickers")]
    for s in bought:
        settled(app, s.checkout_session_id, "fulfilled")
    codes = [s.pickup_code for s in bought]
    assert len(set(codes)) == 4

    context = staff(browser, booth.url, PHONE)
    try:
        phone = context.new_page()
        phone.goto(booth.url + "/admin/handover")
        cards = phone.locator(".pickup")
        expect(cards).to_have_count(4)
        # Newest first, each with its code, label, time and amount.
        expect(cards.locator(".code")).to_have_text(codes[::-1])
        expect(cards.nth(3)).to_contain_text("Logo T-shirt, S")
        expect(cards.nth(0)).to_contain_text("$5.00")
        assert small_targets(phone) == []
        shoot(phone, "handover-4")
        for code, s in zip(codes[:3], bought[:3], strict=True):
            phone.get_by_role("button", name=f"Handed over {code}").click()
            expect(phone.get_by_role("status").first).to_contain_text(f"Handed over {code}")
            expect(phone.locator(f"#pickup-{s.id}")).to_have_count(0)
        expect(cards).to_have_count(1)
        expect(cards.locator(".code")).to_have_text([codes[3]])
        shoot(phone, "handover-1")
    finally:
        context.close()
    handed = [sale(app, s.checkout_session_id) for s in bought]
    assert [s.handed_over_by for s in handed] == ["staff:Ada"] * 3 + [None]
    assert all(s.handed_over_at for s in handed[:3]) and handed[3].handed_over_at is None


def test_a_new_sale_appears_on_the_open_hand_over_page(app, booth, browser):
    context = staff(browser, booth.url, PHONE)
    try:
        phone = context.new_page()
        phone.goto(booth.url + "/admin/handover")
        expect(phone.get_by_text("Nothing to hand over")).to_be_visible()
        shoot(phone, "handover-empty")
        s = buy(app, booth, "tee-l")
        code = settled(app, s.checkout_session_id, "fulfilled").pickup_code
        expect(phone.locator(".pickup .code")).to_have_text([code])
    finally:
        context.close()


# Off sale and back --------------------------------------------------------------------------


def test_off_sale_hides_the_item_on_the_kiosk_and_switches_its_link_off_then_back(
    app, booth, browser
):
    kiosk_context = browser.new_context(viewport={"width": 1920, "height": 1080})
    context = staff(browser, booth.url, (1366, 768))
    gateway = payments.gateway
    try:
        kiosk = kiosk_context.new_page()
        kiosk.goto(booth.url + "/")
        expect(kiosk.locator("body")).to_have_attribute("data-stream", "live")
        expect(kiosk.locator('.variant[data-sku="stickers"]')).to_have_count(1)

        admin = context.new_page()
        admin.goto(booth.url + "/admin")
        row = admin.locator("#item-stickers")
        row.get_by_text("Counted stock, off sale").click()
        row.get_by_role("button", name="Take off sale").click()
        expect(admin.get_by_role("status")).to_have_text("Sticker pack is off sale.")
        expect(admin.locator("#item-stickers .tag.off")).to_have_text("off sale")
        shoot(admin, "stock-off-sale")

        # The kiosk, untouched, drops the item and lays itself out anew.
        expect(kiosk.locator('.variant[data-sku="stickers"]')).to_have_count(0)
        expect(kiosk.locator('.variant[data-sku="mug"]')).to_have_count(1)
        link = link_of(app, "stickers")
        with app.app_context():
            wait_for(lambda: not gateway().retrieve_payment_link(link).active, "link off")
        inactive = requests.get(f"{booth.url}/sandbox/pay/{link}", timeout=30)
        assert "Sold out at the booth" in inactive.text

        row = admin.locator("#item-stickers")
        row.get_by_text("Counted stock, off sale").click()
        row.get_by_role("button", name="Put back on sale").click()
        expect(admin.get_by_role("status")).to_have_text("Sticker pack is back on sale.")
        expect(kiosk.locator('.variant[data-sku="stickers"]')).to_have_count(1)
        expect(kiosk.locator('.variant[data-sku="stickers"] .count .n')).to_have_text("50")
        with app.app_context():
            wait_for(lambda: gateway().retrieve_payment_link(link).active, "link on")

        # History kept: both changes in the audit trail, by whom.
        admin.goto(booth.url + "/admin/activity")
        rows = admin.locator("tbody tr")
        expect(rows.nth(0)).to_contain_text("on-sale")
        expect(rows.nth(1)).to_contain_text("off-sale")
        expect(rows.nth(0)).to_contain_text("staff:Ada")
    finally:
        context.close()
        kiosk_context.close()


# Reports that agree with the shelf ------------------------------------------------------------


def stock_page(http: requests.Session, url: str) -> dict[str, tuple[int, str]]:
    """Read each item's units sold and takings off the stock page."""
    html = http.get(url + "/admin", timeout=30).text
    found = {}
    for sku, row in re.findall(r'<tr id="item-([\w.-]+)"[^>]*>(.*?)</tr>', html, re.S):
        sold = re.search(r'class="n sold"[^>]*>(\d+)<', row).group(1)
        takings = re.search(r'class="n takings"[^>]*>(.*?)</td>', row, re.S).group(1)
        found[sku] = (int(sold), re.sub(r"<[^>]+>", " ", takings).strip())
    return found


def test_report_csv_and_flask_report_agree_with_the_stock_page(app, booth, browser):
    http = requests.Session()
    token = csrf_from(http.get(booth.url + "/admin/login", timeout=30).text)
    http.post(booth.url + "/admin/login", data={"csrf_token": token, "password": ADMIN_PASSWORD})
    token = csrf_from(http.get(booth.url + "/admin", timeout=30).text)
    # Card sales, a refund put back on the shelf, cash and a giveaway, and an oversold payment.
    card = [buy(app, booth, sku) for sku in ("tee-m", "tee-m", "mug", "stickers")]
    for s in card:
        settled(app, s.checkout_session_id, "fulfilled")
    refunded = card[1]
    http.post(
        f"{booth.url}/admin/sales/{refunded.id}/refund",
        data={"csrf_token": token, "restock": "yes"},
    )
    cash = http.post(
        booth.url + "/admin/stock/mug/sell",
        data={"csrf_token": token, "kind": "cash", "quantity": "2"},
    )
    assert "Collect $36.00 in cash for 2 × Enamel mug" in cash.text
    http.post(
        booth.url + "/admin/stock/stickers/sell",
        data={"csrf_token": token, "kind": "giveaway", "quantity": "3"},
    )
    hoodie = link_of(app, "hoodie")
    first, second = booth.open_session(hoodie), booth.open_session(hoodie)
    booth.pay(first["id"])
    booth.pay(second["id"])
    settled(app, refunded.checkout_session_id, "refunded")
    oversold = [
        settled(app, s["id"], st) for s, st in ((first, "fulfilled"), (second, "refunded"))
    ]
    assert oversold[1].pickup_code is None

    shelf = stock_page(http, booth.url)
    expected = {
        "tee-s": (0, "–"),
        "tee-m": (1, "$25.00"),
        "tee-l": (0, "–"),
        "hoodie": (1, "$55.00"),
        "stickers": (4, "$5.00"),
        "mug": (3, "$54.00"),
    }
    assert shelf == expected
    units, takings = 9, "$139.00"

    report = http.get(booth.url + "/admin/report", timeout=30).text
    assert re.search(r'id="units-sold">(\d+)<', report).group(1) == str(units)
    assert re.search(r'id="takings">([^<]+)<', report).group(1) == takings
    row = r'id="report-([\w.-]+)">.*?"n units"[^>]*>(\d+)<.*?"n takings"[^>]*>(.*?)</td>'
    per_item = {
        sku: (int(n), re.sub(r"<[^>]+>", " ", t).strip())
        for sku, n, t in re.findall(row, report, re.S)
    }
    assert per_item == {sku: v for sku, v in expected.items() if v[0]}
    # The per-item chart is labelled by item name.
    assert "Logo T-shirt, M</text>" in report and "Enamel mug</text>" in report

    rows = list(csv.DictReader(io.StringIO(http.get(booth.url + "/admin/sales.csv").text)))
    sold: dict[str, list[int]] = {}
    for row in rows:
        if row["status"] == "fulfilled":
            pair = sold.setdefault(row["sku"], [0, 0])
            pair[0] += int(row["quantity"])
            pair[1] += int(row["amount"])
    assert {sku: (u, f"${a / 100:.2f}") for sku, (u, a) in sold.items()} == {
        sku: v for sku, v in expected.items() if v[0]
    }
    assert sorted(row["status"] for row in rows) == ["fulfilled"] * 6 + ["refunded"] * 2

    printed = app.test_cli_runner().invoke(args=["report"])
    assert printed.exit_code == 0, printed.output
    assert f"Units sold: {units}" in printed.output
    assert f"Takings: {takings}" in printed.output
    for label, (n, money) in {
        "Logo T-shirt, M": expected["tee-m"],
        "Zip hoodie": expected["hoodie"],
        "Sticker pack": expected["stickers"],
        "Enamel mug": expected["mug"],
    }.items():
        assert re.search(rf"^  {re.escape(label)} +{n} +{re.escape(money)}$", printed.output, re.M)

    context = staff(browser, booth.url, PHONE)
    try:
        page = context.new_page()
        page.goto(booth.url + "/admin/report")
        expect(page.locator("#units-sold")).to_have_text(str(units))
        shoot(page, "report")
    finally:
        context.close()


# Every changed page, looked at ------------------------------------------------------------------


PAGES = {
    "stock": "/admin",
    "handover": "/admin/handover",
    "sales": "/admin/sales",
    "report": "/admin/report",
    "activity": "/admin/activity",
    "tasks": "/admin/tasks",
}


def test_every_staff_page_fits_each_screen_with_big_targets_on_a_phone(app, booth, browser):
    for sku in ("tee-m", "stickers", "mug"):
        settled(app, buy(app, booth, sku).checkout_session_id, "fulfilled")
    for width, height in SIZES:
        context = staff(browser, booth.url, (width, height))
        try:
            page = context.new_page()
            for name, path in PAGES.items():
                page.goto(booth.url + path)
                shoot(page, name)
                if (width, height) == PHONE:
                    assert small_targets(page) == [], name
            page.goto(booth.url + "/")
            shoot(page, "kiosk")
        finally:
            context.close()
    context = browser.new_context(viewport={"width": 3840, "height": 2160})
    try:
        page = context.new_page()
        page.goto(booth.url + "/")
        expect(page.locator("body")).to_have_attribute("data-stream", "live")
        shoot(page, "kiosk")
    finally:
        context.close()
    context = browser.new_context(viewport={"width": PHONE[0], "height": PHONE[1]})
    try:
        page = context.new_page()
        page.goto(booth.url + "/admin/login")
        assert small_targets(page) == []
        shoot(page, "login")
    finally:
        context.close()
