"""The pages nobody meant to see, in Debian's Chromium at the sizes people use: a phone told
to wait (429, both shares), a payment Stripe refuses for good (502), the staff login locked
after wrong passwords (429), and the stock page of a link Stripe itself switched off.

One booth per module, driven into each state for real: a sandbox-mode server in
reserved_checkout mode whose share of holds is one open hold and two new ones a minute per
client. It trusts X-Forwarded-For from this machine (PROXY_HOPS=1, as behind `make public`),
so each browser context is a visitor at an address of its own and no state leaks from one
screenshot into the next. The worker runs no tasks, so a link Stripe stopped stays stopped
while the page is looked at.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Response, expect
from sqlalchemy import func, select

from conftest import (
    ADMIN_PASSWORD,
    STORE,
    LiveServer,
    Sandbox,
    csrf_from,
    make_item,
    start_sandbox,
)
from swagstore import auth, catalog, clock, create_app, payments, tasks
from swagstore.cli import init_db
from swagstore.models import PaymentLink, Sale, Task, db, read_only

SHOTS = Path(__file__).resolve().parent / "screenshots"
PHONE = (390, 844, 1)
# Width, height (CSS px) and device scale: a 4K monitor usually runs at 1920x1080 x 2.
SIZES = [(1920, 1080, 1), (1920, 1080, 2), (3840, 2160, 1), (1366, 768, 1), PHONE]
ITEMS = [
    make_item("hoodie", name="Zip hoodie", price=5500, stock=20),
    make_item("mug", name="Enamel mug", price=1800, stock=4),
    make_item("tee-m", name="Logo T-shirt", stock=5, group="tee", attributes={"size": "M"}),
    make_item("cap", name="Booth cap", price=2000, stock=1),
]
# Loaded after sync-stripe (which refuses it): a price under Stripe's minimum charge.
BUTTON = make_item("button", name="Pin button", price=30, stock=10)
addresses = (f"127.0.7.{n}" for n in itertools.count(1))


@dataclass
class Booth:
    app: Any
    sandbox: Sandbox

    @property
    def url(self) -> str:
        return self.sandbox.url


def wait_for(check: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    """Poll until check() is truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last saw {value!r}"
        time.sleep(0.2)
    return value


def link_of(app, sku: str) -> str:
    with app.app_context(), read_only():
        return db.session.scalar(select(PaymentLink.id).where(PaymentLink.sku == sku))


def delivered(sandbox: Sandbox) -> bool:
    return all(d["status"] == "delivered" for d in sandbox.deliveries())


def count(app, query) -> int:
    with app.app_context(), read_only():
        return db.session.scalar(query)


@pytest.fixture(scope="module")
def booth(tmp_path_factory) -> Iterator[Booth]:
    """The booth with two links Stripe stopped: the cap sold out, the tee at a lowered limit."""
    tmp = tmp_path_factory.mktemp("shop-pages")
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'swagstore.sqlite'}",
        "SANDBOX_DATABASE": str(tmp / "sandbox.sqlite"),
        "STORE_ID": STORE,
        "STRIPE_CALL_GUARD": True,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PURCHASE_MODE": "reserved_checkout",
        "HOLD_SECONDS": 300,
        "HOLDS_PER_CLIENT": 1,
        "HOLDS_PER_CLIENT_PER_MINUTE": 2,
        "PROXY_HOPS": 1,
        "WORKER_TASKS": False,
    }
    app = create_app(config)
    with app.app_context():
        init_db()
        catalog.load(ITEMS, STORE)
        db.session.commit()
    # As JSON, the way from_prefixed_env reads them: "False" would be a true string.
    env = {
        f"SWAGSTORE_{k}": v if isinstance(v, str) else json.dumps(v)
        for k, v in config.items()
        if k != "TESTING"
    }
    server = LiveServer(env)
    try:
        sandbox = start_sandbox(app, server)
        synced = app.test_cli_runner().invoke(args=["sync-stripe"])
        assert synced.exit_code == 0, synced.output
        # The last cap sold through its link: Stripe stops it; the task records that.
        sandbox.pay(sandbox.open_session(link_of(app, "cap"))["id"])
        wait_for(lambda: count(app, select(func.count(Sale.id))) == 1, "the cap's sale")
        wait_for(lambda: delivered(sandbox), "the cap's events delivered")
        with app.app_context():
            tasks.run_due()
            catalog.load([BUTTON], STORE)
            db.session.commit()
            # A lost sync, say: the tee's link may complete one session where 5 are in stock.
            payments.gateway().update_payment_link(
                link_of(app, "tee-m"),
                {"restrictions": {"completed_sessions": {"limit": 1}}},
                "lower",
            )
        sandbox.pay(sandbox.open_session(link_of(app, "tee-m"))["id"])
        wait_for(lambda: count(app, select(func.count(Sale.id))) == 2, "the tee's sale")
        # payment_link.updated queued the sync that would switch the tee's link on again.
        sync = select(func.count(Task.id)).where(
            Task.kind == "sync_link", Task.status == "pending"
        )
        wait_for(lambda: count(app, sync), "the tee's sync_link task")
        wait_for(lambda: delivered(sandbox), "the tee's events delivered")
        yield Booth(app, sandbox)
    finally:
        payments.close(app)
        server.stop()
        with app.app_context():
            db.engine.dispose()


def visitor(browser: Browser, size: tuple[int, int, int], address: str) -> BrowserContext:
    """A browser of a size, seen by the booth as a client at `address`."""
    width, height, scale = size
    return browser.new_context(
        viewport={"width": width, "height": height},
        device_scale_factor=scale,
        extra_http_headers={"X-Forwarded-For": address},
    )


def http_at(address: str) -> requests.Session:
    http = requests.Session()
    http.headers.update({"X-Forwarded-For": address, "Accept": "text/html"})
    return http


def shoot(page: Page, name: str) -> Path:
    """Save the viewport, then check that nothing scrolls sideways (the picture shows why)."""
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    scale = page.evaluate("devicePixelRatio")
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}-{width}x{height}{'@2x' if scale == 2 else ''}.png"
    page.screenshot(path=path)
    with Image.open(path) as image:
        assert image.size == (width * scale, height * scale)
    wide, inner = page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
    assert wide <= inner, f"{path.name}: {wide} px wide in a {inner} px window"
    return path


def in_view(page: Page, locator: Locator) -> None:
    """Assert an element is seen whole without scrolling, in this window."""
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, (locator, box)
    assert box["y"] >= 0 and box["y"] + box["height"] <= height, (locator, box)


# The visitor's phone -------------------------------------------------------------------------


def test_a_client_over_its_open_share_is_told_to_pay_first(booth, browser):
    for size in SIZES:
        address = next(addresses)
        held = http_at(address).get(booth.url + "/buy/hoodie", allow_redirects=False, timeout=60)
        assert held.status_code == 303
        context = visitor(browser, size, address)
        try:
            page = context.new_page()
            answer = page.goto(booth.url + "/buy/mug")
            assert answer.status == 429 and answer.headers["retry-after"] == "60"
            in_view(page, page.get_by_role("heading", name="Please wait a moment"))
            in_view(page, page.get_by_text("This device is already holding 1 item for checkout"))
            # When the share frees up at the latest: HOLD_SECONDS.
            in_view(page, page.get_by_text("goes back on sale within 5 minutes"))
            shoot(page, "shop-too-many-open")
        finally:
            context.close()


def test_a_client_over_its_share_a_minute_is_told_how_long_to_wait(booth, browser):
    for size in SIZES:
        address = next(addresses)
        http = http_at(address)
        # Two holds started (each released at once: Stripe refuses the button's price).
        for _ in range(2):
            assert http.get(booth.url + "/buy/button", timeout=60).status_code == 502
        context = visitor(browser, size, address)
        try:
            page = context.new_page()
            answer = page.goto(booth.url + "/buy/mug")
            assert answer.status == 429
            wait = int(answer.headers["retry-after"])
            assert 1 <= wait <= 61
            in_view(page, page.get_by_role("heading", name="Please wait a moment"))
            in_view(page, page.get_by_text(f"Please try again in {wait} seconds"))
            shoot(page, "shop-too-many-minute")
        finally:
            context.close()


def test_a_price_stripe_refuses_is_a_dead_end_said_plainly(booth, browser):
    for size in SIZES:
        context = visitor(browser, size, next(addresses))
        try:
            page = context.new_page()
            answer = page.goto(booth.url + "/buy/button")
            assert answer.status == 502
            in_view(page, page.get_by_role("heading", name="This item cannot be paid for here"))
            in_view(page, page.get_by_text("Trying again will not help"))
            shoot(page, "shop-refused")
            # Its siblings, for comparison: sold out, and an unknown item.
            answer = page.goto(booth.url + "/buy/cap")
            assert answer.status == 409
            in_view(page, page.get_by_role("heading", name="Sorry, Booth cap is sold out"))
            shoot(page, "shop-sold-out")
            answer = page.goto(booth.url + "/buy/nothing-here")
            assert answer.status == 404
            in_view(page, page.get_by_role("heading", name="No such item"))
            shoot(page, "shop-problem")
        finally:
            context.close()


# Staff ---------------------------------------------------------------------------------------


def lock_out(url: str, address: str) -> None:
    """Guess wrong from an address until the booth locks it out."""
    http = http_at(address)
    token = csrf_from(http.get(url + "/admin/login", timeout=30).text)
    for _ in range(auth.MAX_FAILURES):
        wrong = http.post(
            url + "/admin/login", data={"csrf_token": token, "password": "guess"}, timeout=30
        )
        assert wrong.status_code == 401


def seconds_apart(reading: str, moment: datetime) -> int:
    """Return how far an HH:MM:SS reading is from a moment's time of day, across midnight."""
    h, m, s = map(int, reading.split(":"))
    apart = (h - moment.hour) * 3600 + (m - moment.minute) * 60 + s - moment.second
    return abs((apart + 43200) % 86400 - 43200)


def test_a_locked_out_login_says_until_when_even_to_the_right_password(booth, browser):
    address = next(addresses)
    lock_out(booth.url, address)
    for size in SIZES:
        context = visitor(browser, size, address)
        try:
            page = context.new_page()
            page.goto(booth.url + "/admin/login")
            page.get_by_label("Password").fill(ADMIN_PASSWORD)
            with page.expect_response(lambda r: r.request.method == "POST") as posted:
                page.get_by_role("button", name="Log in").click()
            answer: Response = posted.value
            assert answer.status == 429
            wait = int(answer.headers["retry-after"])
            assert 1 <= wait <= auth.WINDOW.total_seconds()
            alert = page.get_by_role("alert")
            in_view(page, page.get_by_role("heading", name="Staff login"))
            in_view(page, alert)
            # The time shown is when the lock-out ends, on the booth's clock.
            sent = parsedate_to_datetime(answer.headers["date"])
            until = (sent + timedelta(seconds=wait)).astimezone(clock.booth_zone(booth.app))
            shown = re.search(r"try again after (\d\d:\d\d:\d\d)\.", alert.inner_text())[1]
            assert seconds_apart(shown, until) <= 3, (shown, until)
            shoot(page, "login-locked")
        finally:
            context.close()


def test_the_stock_page_says_which_links_stripe_stopped(booth, browser):
    for size in SIZES:
        context = visitor(browser, size, next(addresses))
        try:
            page = context.new_page()
            page.goto(booth.url + "/admin/login")
            page.get_by_label("Password").fill(ADMIN_PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("heading", name="Stock")).to_be_visible()
            tee, cap = page.locator("#item-tee-m .link"), page.locator("#item-cap .link")
            expect(tee.locator(".tag")).to_have_text("sold out on Stripe's side, switching on")
            expect(tee).to_contain_text("the booth is switching it back on")
            expect(cap.locator(".tag")).to_have_text("sold out on Stripe's side")
            expect(cap).to_contain_text("a restock switches it back on")
            shoot(page, "stock-stopped-by-stripe")
            tee.scroll_into_view_if_needed()
            in_view(page, tee)
            shoot(page, "stock-stopped-by-stripe-tee")
        finally:
            context.close()
