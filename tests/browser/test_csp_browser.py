"""The Content-Security-Policy in Debian's Chromium: every page works and breaks no rule.

The policy allows no inline script or style (swagstore/security.py). Chromium reports each
thing it blocks as a `securitypolicyviolation` event and a console error; this walks the
kiosk, a visitor's purchase (sold-out page, sandbox checkout, thanks page), an error page
and every staff page, and checks both stay empty while the pages do their work.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import ADMIN_PASSWORD, STORE, make_product, wait_in_page
from swagstore import inventory
from swagstore.models import db

# Recorded before any page script runs, so nothing the page does can hide a violation.
LISTEN = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def sandbox_env() -> dict[str, str]:
    return {
        "SWAGSTORE_PURCHASE_MODE": "reserved_checkout",
        "SWAGSTORE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }


class Watched:
    """A page with every CSP violation and console error it saw."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        page.add_init_script(LISTEN)
        page.on("console", lambda m: m.type == "error" and self.console.append(m.text))
        page.on("pageerror", lambda e: self.console.append(str(e)))

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__csp") + [
            text for text in self.console if "Content Security Policy" in text
        ]


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    yield Watched(context.new_page())
    context.close()


def style_of(page: Page, selector: str, prop: str, want: str) -> str:
    """Return an element's computed style once it is `want`, or what it is after 10 s.

    A stylesheet may still be on its way when the element shows on a loaded machine.
    """
    deadline = time.monotonic() + 10
    while True:
        got = page.eval_on_selector(selector, f"el => getComputedStyle(el).{prop}")
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_kiosk_shop_sandbox_and_error_pages_work_with_no_violation(app, sandbox, watched):
    make_product(app, "tee-m", stock=3, name="Logo tee")
    make_product(app, "mug", stock=0, name="Booth mug")
    page = watched.page

    page.goto(sandbox.url + "/")
    expect(page.locator("body")).to_have_attribute("data-stream", "live")
    tee = page.locator('.variant[data-sku="tee-m"]')
    expect(tee.locator(".count .n")).to_have_text("3")
    with app.app_context():
        assert inventory.take("tee-m", STORE, 1)
        db.session.commit()
    expect(tee.locator(".count .n")).to_have_text("2")  # the stream still flows
    assert watched.violations() == []

    # A visitor: a sold-out item, then a purchase through the sandbox's checkout page.
    page.goto(sandbox.url + "/buy/mug")
    expect(page.get_by_role("heading", name="Sorry, Booth mug is sold out")).to_be_visible()
    assert style_of(page, "body", "fontSize", "18px") == "18px"  # static/shop.css applied
    page.goto(sandbox.url + "/buy/tee-m")
    expect(page.get_by_text("SANDBOX: no real payments")).to_be_visible()
    assert (
        style_of(page, ".banner", "backgroundColor", "rgb(255, 212, 59)") == "rgb(255, 212, 59)"
    )  # sandbox.css
    page.get_by_role("button", name="Pay").first.click()
    # The buyer's page: it follows the sale until it lands, then shows the pickup code.
    expect(page.get_by_role("heading", name="Ready to collect")).to_be_visible()

    page.goto(sandbox.url + "/no-such-page")
    expect(page.get_by_role("heading", name="Not Found")).to_be_visible()
    assert style_of(page, "main", "maxWidth", "512px") == "512px"  # static/error.css applied
    assert watched.violations() == []
    # The only console errors are the sold-out page's 409 and the 404s (the error page, and
    # the sandbox page's favicon.ico) themselves.
    statuses = {text.split("status of ")[-1] for text in watched.console}
    assert statuses == {"409 (CONFLICT)", "404 (NOT FOUND)"}, watched.console


def test_every_staff_page_works_with_no_violation(app, sandbox, watched):
    make_product(app, "tee-m", stock=3, name="Logo tee")
    page = watched.page
    page.goto(sandbox.url + "/admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Stock")).to_be_visible()
    assert (
        style_of(page, "table", "borderCollapse", "collapse") == "collapse"
    )  # static/admin.css applied
    row = page.locator("#item-tee-m")
    row.get_by_label("units to add to tee-m").fill("2")
    row.get_by_role("button", name="+ Restock").click()
    expect(page.locator("#item-tee-m .available")).to_have_text("5")
    for link in ("Sales", "Tasks", "Activity", "Report"):
        page.get_by_role("link", name=link, exact=True).click()
        expect(page.get_by_role("heading", name=link).first).to_be_visible()
    assert watched.violations() == []
    assert watched.console == [], watched.console


def test_the_watch_sees_a_violation_when_there_is_one(app, sandbox, watched):
    make_product(app, "tee-m", stock=3)
    page = watched.page
    page.goto(sandbox.url + "/")
    page.evaluate(
        """document.body.insertAdjacentHTML("beforeend", "<p style='color:red'>x</p>")"""
    )
    page.evaluate("""document.body.insertAdjacentHTML("beforeend", "<img src=x onerror='1'>")""")
    wait_in_page(page, "window.__csp.length >= 2")
    found = " ".join(watched.violations())
    assert "style-src-attr" in found and "script-src-attr" in found
