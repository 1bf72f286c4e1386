"""Security headers, the proxy's forwarded headers, Secure cookies: the app's own answers.

Chromium's view of the same pages (no CSP violation, pages still work) is in
tests/browser/test_csp_browser.py; the proxy in front is in tests/test_public.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ADMIN_PASSWORD, ROOT, csrf_from, make_product
from swagstore import create_app, security
from swagstore.models import db


@pytest.fixture
def app_config(app_config):
    return {**app_config, "ADMIN_PASSWORD": ADMIN_PASSWORD}


def directives(policy: str) -> dict[str, str]:
    return dict(d.strip().split(" ", 1) for d in policy.split(";"))


PAGES = ["/", "/api/stock", "/healthz", "/admin/login", "/no-such-page", "/sandbox/v1/products"]


@pytest.mark.parametrize("path", PAGES)
def test_every_answer_carries_the_security_headers(app, client, path):
    make_product(app)
    response = client.get(path)
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_only_the_live_card_form_may_load_stripe_js():
    live = directives(security.policy("shop.pay", sandbox=False))
    assert live["script-src"] == "'self' https://js.stripe.com"
    assert live["frame-src"] == "https://js.stripe.com https://hooks.stripe.com"
    assert live["connect-src"] == "'self' https://api.stripe.com"
    assert "stripe" not in security.policy("shop.pay", sandbox=True)
    assert "stripe" not in security.policy("kiosk.kiosk", sandbox=False)


TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
# An inline <script> (one without src), a <style> block, a style="" or on*="" attribute, or
# a javascript: URL: each one the policy would block.
INLINE = re.compile(
    r"<script(?![^>]*\ssrc=)[^>]*>|<style|\sstyle\s*=|\son[a-z]+\s*=|javascript:", re.IGNORECASE
)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_template_has_inline_script_or_style(template: Path):
    assert not INLINE.findall(template.read_text()), "move it to static/ (the CSP blocks it)"


def test_the_inline_check_finds_what_it_looks_for():
    found = INLINE.findall(
        '<script>x()</script> <script src="/a.js"></script> <style> <p style="a" onclick="b">'
    )
    assert len(found) == 4


def login(client, **environ) -> str:
    token = csrf_from(client.get("/admin/login", environ_base=environ).text)
    response = client.post(
        "/admin/login",
        data={"csrf_token": token, "password": ADMIN_PASSWORD},
        environ_base=environ,
    )
    assert response.status_code == 303, response.text
    return response.headers["Set-Cookie"]


def test_the_session_cookie_is_secure_only_over_https(app_config):
    behind = create_app({**app_config, "PROXY_HOPS": 1})
    with behind.app_context():
        from swagstore.cli import init_db

        init_db()
    try:
        https = {
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_X_FORWARDED_PROTO": "https",
            # Over HTTPS Flask-WTF also checks that the form came from this very site.
            "HTTP_REFERER": "https://localhost/admin/login",
        }
        cookie = login(behind.test_client(), **https)
        assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        plain = login(behind.test_client(), REMOTE_ADDR="127.0.0.1")
        assert "; Secure" not in plain
        # Only the proxy on this machine is believed: a LAN client cannot claim HTTPS.
        claimed = login(
            behind.test_client(), REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_PROTO="https"
        )
        assert "; Secure" not in claimed
    finally:
        with behind.app_context():
            db.engine.dispose()


def test_the_forwarded_client_is_believed_only_from_the_local_proxy(app_config):
    behind = create_app({**app_config, "PROXY_HOPS": 1})

    @behind.get("/whoami")
    def whoami() -> str:
        return security.client_address()

    client = behind.test_client()
    try:
        forwarded = {"HTTP_X_FORWARDED_FOR": "192.0.2.7"}
        assert (
            client.get("/whoami", environ_base={"REMOTE_ADDR": "127.0.0.1", **forwarded}).text
            == "192.0.2.7"
        )
        assert (
            client.get("/whoami", environ_base={"REMOTE_ADDR": "10.0.0.5", **forwarded}).text
            == "10.0.0.5"
        )
        assert client.get("/whoami", environ_base={"REMOTE_ADDR": "127.0.0.1"}).text == "127.0.0.1"
    finally:
        with behind.app_context():
            db.engine.dispose()


def test_without_a_proxy_forwarded_headers_are_ignored(app):
    @app.get("/whoami")
    def whoami() -> str:
        return security.client_address()

    forwarded = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "192.0.2.7"}
    assert app.test_client().get("/whoami", environ_base=forwarded).text == "127.0.0.1"


def test_the_kiosk_is_the_laptop_itself_or_a_configured_address(app):
    with app.test_request_context():
        assert security.is_kiosk("127.0.0.1") and security.is_kiosk("::1")
        assert not security.is_kiosk("127.0.0.2") and not security.is_kiosk("192.0.2.7")
        app.config["KIOSK_ADDRESSES"] = "192.0.2.7, 192.0.2.8"
        assert security.is_kiosk("192.0.2.8") and not security.is_kiosk("127.0.0.1")
