"""The kiosk in Debian's Chromium (Playwright) against a live server: what the booth sees."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect
from sqlalchemy import select

from conftest import ROOT, STORE, LiveServer, make_product, wait_in_page
from swagstore import catalog, inventory
from swagstore.models import PaymentLink, db, utcnow

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page the size of the booth monitor."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    yield context.new_page()
    context.close()


@pytest.fixture
def demo_catalog(app) -> list[catalog.Item]:
    """Load the demo catalog (instance/catalog.toml) into the test database."""
    items = catalog.read(str(ROOT / "instance" / "catalog.toml"))
    with app.app_context():
        catalog.load(items, app.config["STORE_ID"])
        db.session.commit()
    return items


@pytest.fixture
def kiosk_env(server_env) -> dict[str, str]:
    """A server whose QR codes point at the booth's own buy pages (no Stripe link needed)."""
    return {
        **server_env,
        "SWAGSTORE_PURCHASE_MODE": "reserved_checkout",
        "SWAGSTORE_PUBLIC_URL": "https://booth.example",
    }


@pytest.fixture
def kiosk(demo_catalog, kiosk_env) -> Iterator[LiveServer]:
    server = LiveServer(kiosk_env).start()
    yield server
    server.stop()


def screenshot(page: Page, name: str, **options) -> bytes:
    """Save a screenshot for review under tests/browser/screenshots/ and return it."""
    SCREENSHOTS.mkdir(exist_ok=True)
    return page.screenshot(path=SCREENSHOTS / f"{name}.png", **options)


def variant(page: Page, sku: str) -> Locator:
    return page.locator(f'.variant[data-sku="{sku}"]')


def change(app, action, *args) -> None:
    """Change stock as the server would, in the test process, on the server's database."""
    with app.app_context():
        assert action(*args) is not None
        db.session.commit()


def open_kiosk(page: Page, server: LiveServer) -> None:
    page.goto(server.url + "/")
    expect(page.locator("body")).to_have_attribute("data-stream", "live")


def test_counts_badges_and_sold_out_cards_follow_stock_live(app, page, kiosk):
    open_kiosk(page, kiosk)
    hoodie, mug = variant(page, "hoodie"), variant(page, "mug")
    expect(hoodie.locator(".count .n")).to_have_text("8")
    expect(page.locator(".sandbox-banner")).to_have_text("SANDBOX: no real payments")
    expect(page.locator(".variant .qr")).to_have_count(10)
    screenshot(page, "kiosk-normal")

    expect(mug).not_to_have_class(re.compile("is-changed"))
    change(app, inventory.take, "mug", STORE, 2)
    expect(mug.locator(".count .n")).to_have_text("22")
    expect(mug).to_have_class(re.compile("is-changed"))  # the highlight, gone after 1.6 s
    expect(mug).not_to_have_class(re.compile("is-changed"))
    change(app, inventory.hold, "mug", STORE, 1)
    expect(mug.locator(".reserved")).to_have_text("1 being bought")
    expect(mug.locator(".count .n")).to_have_text("21")

    change(app, inventory.adjust, "hoodie", STORE, 3)
    expect(hoodie.locator(".badge")).to_be_visible()
    expect(hoodie.locator(".count .n")).to_have_text("3")
    change(app, inventory.adjust, "tee-xl", STORE, 2)
    expect(variant(page, "tee-xl").locator(".badge")).to_be_visible()
    expect(mug.locator(".badge")).to_be_hidden()
    screenshot(page, "kiosk-low-stock")

    change(app, inventory.take, "hoodie", STORE, 3)
    expect(hoodie.locator(".sold-out")).to_be_visible()
    expect(hoodie.locator(".qr")).to_be_hidden()
    expect(hoodie.locator(".badge")).to_be_hidden()
    change(app, inventory.take, "tee-xl", STORE, 2)
    expect(variant(page, "tee-xl").locator(".sold-out")).to_be_visible()
    expect(variant(page, "tee-l").locator(".qr")).to_be_visible()
    screenshot(page, "kiosk-sold-out")

    change(app, inventory.restock, "hoodie", STORE, 5)
    expect(hoodie.locator(".qr")).to_be_visible()
    expect(hoodie.locator(".sold-out")).to_be_hidden()
    expect(hoodie.locator(".count .n")).to_have_text("5")


@pytest.mark.parametrize("mode", ["payment_link", "reserved_checkout"])
def test_every_qr_code_on_screen_reads_back_as_its_buy_url(
    app, page, demo_catalog, kiosk_env, mode
):
    """Decode a screenshot as a phone camera would: every code, exactly its item's URL."""
    if mode == "payment_link":
        with app.app_context():
            for n, item in enumerate(demo_catalog):
                db.session.add(
                    PaymentLink(
                        id=f"plink_{n}",
                        sku=item.sku,
                        store=STORE,
                        url=f"https://buy.stripe.com/test_{item.sku}{n:02d}aBcDeFgHiJkLmN",
                        price_id=f"price_{n}",
                    )
                )
            db.session.commit()
    server = LiveServer({**kiosk_env, "SWAGSTORE_PURCHASE_MODE": mode}).start()
    try:
        open_kiosk(page, server)
        expect(page.locator(".variant .qr")).to_have_count(len(demo_catalog))
        wait_in_page(
            page,
            "[...document.querySelectorAll('img.qr')].every(i => i.complete && i.naturalWidth)",
        )
        png = screenshot(page, f"kiosk-qr-{mode}")
        wanted = {
            i["buy_url"]
            for i in requests.get(server.url + "/api/stock", timeout=10).json()["items"]
        }
    finally:
        server.stop()
    codes = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode
    )
    assert sorted(c.text for c in codes) == sorted(wanted)
    assert len(wanted) == len(demo_catalog)
    assert {c.ec_level for c in codes} == {"M"}


def test_page_reconnects_and_catches_up_after_a_server_restart(app, page, kiosk):
    open_kiosk(page, kiosk)
    socks = variant(page, "socks")
    expect(socks.locator(".count .n")).to_have_text("30")
    expect(page.locator(".reconnecting")).to_be_hidden()
    kiosk.stop()
    expect(page.locator(".reconnecting")).to_be_visible()
    expect(page.locator(".reconnecting")).to_have_text("Reconnecting…")
    notice = page.locator(".reconnecting").bounding_box()
    for card in page.locator(".card").all():
        box = card.bounding_box()
        assert notice["y"] + notice["height"] <= box["y"] or box["x"] + box["width"] <= notice["x"]
    change(app, inventory.take, "socks", STORE, 4)  # a sale the page could not hear about
    page_id = page.evaluate("window.kioskPageId = Math.random()")
    kiosk.start()
    expect(page.locator(".reconnecting")).to_be_hidden()
    expect(socks.locator(".count .n")).to_have_text("26")
    change(app, inventory.take, "socks", STORE, 1)
    expect(socks.locator(".count .n")).to_have_text("25")
    assert page.evaluate("window.kioskPageId") == page_id  # caught up without a reload


def test_phone_layout_fits_the_screen(app, browser, kiosk):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        open_kiosk(page, kiosk)
        expect(variant(page, "tee-s").locator(".qr")).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        screenshot(page, "kiosk-phone", full_page=True)
    finally:
        context.close()
    assert width <= 390


def add_link(app, sku: str, url: str, link_id: str) -> None:
    """Give an item a current payment link, retiring the one it had (as sync-stripe does)."""
    with app.app_context():
        for old in db.session.scalars(
            select(PaymentLink).where(PaymentLink.sku == sku, PaymentLink.retired_at.is_(None))
        ):
            old.retired_at = utcnow()
        db.session.flush()
        db.session.add(PaymentLink(id=link_id, sku=sku, store=STORE, url=url, price_id="price_1"))
        db.session.commit()


def read_tile(tile: Locator) -> list[str]:
    codes = zxingcpp.read_barcodes(Image.open(io.BytesIO(tile.screenshot())))
    return [c.text for c in codes]


def test_a_payment_link_made_later_shows_up_without_a_reload(app, page, demo_catalog, server_env):
    server = LiveServer({**server_env, "SWAGSTORE_KIOSK_REFRESH_SECONDS": "1"}).start()
    try:
        open_kiosk(page, server)
        mug = variant(page, "mug")
        expect(page.locator(".variant .pending")).to_have_count(len(demo_catalog))
        expect(mug.locator(".pending")).to_have_text("Not on sale yet")

        add_link(app, "mug", "https://buy.stripe.com/test_mugFirst0001", "plink_a")
        expect(mug.locator(".qr")).to_be_visible()
        wait_in_page(page, "document.querySelector('[data-sku=mug] img.qr')?.naturalWidth > 0")
        assert read_tile(mug.locator(".tile")) == ["https://buy.stripe.com/test_mugFirst0001"]

        add_link(app, "mug", "https://buy.stripe.com/test_mugSecond002", "plink_b")
        expect(mug).to_have_attribute("data-buy-url", "https://buy.stripe.com/test_mugSecond002")
        wait_in_page(page, "document.querySelector('[data-sku=mug] img.qr')?.naturalWidth > 0")
        assert read_tile(mug.locator(".tile")) == ["https://buy.stripe.com/test_mugSecond002"]
        expect(page.locator(".variant .pending")).to_have_count(len(demo_catalog) - 1)
    finally:
        server.stop()


def test_paying_through_the_sandbox_ticks_down_sells_out_and_restocks(app, runner, page, sandbox):
    """A visitor pays on the sandbox's hosted page; the kiosk follows the webhook's stock."""
    make_product(app, "hoodie", stock=2, name="Zip hoodie")
    make_product(app, "mug", stock=5, name="Enamel mug")
    synced = runner.invoke(args=["sync-stripe"])
    assert synced.exit_code == 0, synced.output
    with app.app_context():
        links = {
            link.sku: link
            for link in db.session.scalars(
                select(PaymentLink).where(PaymentLink.retired_at.is_(None))
            )
        }
    open_kiosk(page, sandbox.server)
    hoodie = variant(page, "hoodie")
    expect(hoodie.locator(".qr")).to_be_visible()
    png = screenshot(page, "kiosk-sandbox-links")
    codes = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode
    )
    assert sorted(c.text for c in codes) == sorted(link.url for link in links.values())

    sandbox.pay(sandbox.open_session(links["hoodie"].id)["id"])
    expect(hoodie.locator(".count .n")).to_have_text("1")
    sandbox.pay(sandbox.open_session(links["hoodie"].id)["id"])  # the last one
    expect(hoodie.locator(".sold-out")).to_be_visible()
    expect(hoodie.locator(".qr")).to_be_hidden()
    expect(variant(page, "mug").locator(".count .n")).to_have_text("5")
    # What a phone scanning the code now meets: the link was switched off.
    assert link_answers(sandbox, links["hoodie"].id, 410)

    change(app, inventory.restock, "hoodie", STORE, 3)
    expect(hoodie.locator(".qr")).to_be_visible()
    expect(hoodie.locator(".sold-out")).to_be_hidden()
    expect(hoodie.locator(".count .n")).to_have_text("3")
    assert link_answers(sandbox, links["hoodie"].id, 201)


def link_answers(sandbox, link_id: str, status: int, deadline: float = 30) -> bool:
    """Wait until opening the payment link answers `status` (its switch runs after commit)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        url = f"{sandbox.url}/sandbox/payment_links/{link_id}/sessions"
        if requests.post(url, timeout=30).status_code == status:
            return True
        time.sleep(0.2)
    return False
