"""Booth staff in Debian's Chromium: log in, restock and hand over, and the kiosk follows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from conftest import ADMIN_PASSWORD, STORE, LiveServer, make_product
from swagstore import inventory
from swagstore.models import db


@pytest.fixture
def booth(app, server_env) -> Iterator[LiveServer]:
    """The store with a sold-out mug, served as the booth runs it, with the admin open."""
    make_product(app, "mug", stock=2, name="Booth mug")
    make_product(app, "tee-m", stock=4, name="Logo tee")
    with app.app_context():
        assert inventory.take("mug", STORE, 2)
        db.session.commit()
    env = {
        **server_env,
        "SWAGSTORE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SWAGSTORE_PURCHASE_MODE": "reserved_checkout",
        "SWAGSTORE_PUBLIC_URL": "https://booth.example",
    }
    server = LiveServer(env).start()
    yield server
    server.stop()


def test_staff_restock_and_giveaway_show_on_the_kiosk_in_another_tab(browser, booth):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        kiosk: Page = context.new_page()
        kiosk.goto(booth.url + "/")
        expect(kiosk.locator("body")).to_have_attribute("data-stream", "live")
        mug = kiosk.locator('.variant[data-sku="mug"]')
        expect(mug).to_have_class("variant is-sold-out")
        expect(mug.locator(".sold-out")).to_be_visible()

        admin: Page = context.new_page()
        admin.goto(booth.url + "/admin")
        expect(admin).to_have_url(booth.url + "/admin/login")
        admin.get_by_label("Password").fill(ADMIN_PASSWORD)
        admin.get_by_label("Your name").fill("Ada")
        admin.get_by_role("button", name="Log in").click()
        expect(admin.get_by_role("heading", name="Stock")).to_be_visible()
        row = admin.locator("#item-mug")
        expect(row.locator(".available")).to_have_text("0")

        row.get_by_label("units to add to mug").fill("5")
        row.get_by_role("button", name="+ Restock").click()
        expect(admin.get_by_role("status")).to_have_text("Restocked 5 × Booth mug: 5 available.")
        expect(admin.locator("#item-mug .available")).to_have_text("5")

        # The kiosk tab was not touched: the stream brought the change.
        expect(mug.locator(".count .n")).to_have_text("5")
        expect(mug.locator(".sold-out")).to_be_hidden()
        expect(mug.locator(".qr")).to_be_visible()

        tee = admin.locator("#item-tee-m")
        tee.get_by_label("units to hand over").fill("4")
        tee.get_by_role("button", name="Giveaway").click()
        expect(admin.get_by_role("status")).to_have_text("Recorded giveaway sale 1: 4 × Logo tee.")
        expect(kiosk.locator('.variant[data-sku="tee-m"] .sold-out')).to_be_visible()

        admin.get_by_role("link", name="Activity").click()
        expect(admin.locator("tbody tr").first).to_contain_text("giveaway")
        expect(admin.locator("tbody tr").first).to_contain_text("staff:Ada")
        admin.get_by_role("button", name="Log out (staff:Ada)").click()
        expect(admin).to_have_url(booth.url + "/admin/login")
    finally:
        context.close()
