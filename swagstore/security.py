"""HTTP hardening in one place: who the client is, the security headers, secure cookies.

Behind the reverse proxy of `make public` (PROXY_HOPS = 1) the client is the proxy's
X-Forwarded-For, believed only on a connection from this machine (gunicorn listens on
loopback there); otherwise it is the connection's own address. Every response carries a
Content-Security-Policy that allows no inline script or style, and the session cookie is
`Secure` whenever the request came over HTTPS.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any

from flask import Flask, current_app, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

# Stripe.js and the frames it opens, for the live card form only (Stripe's documented list).
STRIPE_JS = {
    "script-src": "https://js.stripe.com",
    "frame-src": "https://js.stripe.com https://hooks.stripe.com",
    "connect-src": "https://api.stripe.com",
}
POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    # data: for the empty favicon and catalog pictures inline; https: for a catalog's `image`
    # URL (a picture cannot run code).
    "img-src": "'self' data: https:",
    "connect-src": "'self'",
    "frame-src": "'none'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
}
# Pages that load Stripe.js when the store runs on a real key.
STRIPE_JS_ENDPOINTS = frozenset({"shop.pay"})


def init_app(app: Flask) -> None:
    """Trust the proxy's forwarded headers if configured; add the headers and cookie rules."""
    app.config.setdefault("PROXY_HOPS", 0)
    app.config.setdefault("KIOSK_ADDRESSES", "127.0.0.1 ::1")
    app.config["PROXY_HOPS"] = int(app.config["PROXY_HOPS"])
    if app.config["PROXY_HOPS"]:
        app.wsgi_app = FromLocalProxy(app.wsgi_app, app.config["PROXY_HOPS"])  # type: ignore[method-assign]
    app.session_interface = SecureWhenHttps()
    app.after_request(add_headers)


class FromLocalProxy:
    """Apply werkzeug's ProxyFix only to connections from this machine (the proxy)."""

    def __init__(self, wsgi_app: Any, hops: int) -> None:
        self.plain = wsgi_app
        # The proxy sets these three itself (deploy/nginx.conf.template), replacing whatever
        # the client sent; X-Forwarded-Port and -Prefix it passes on untouched: not believed.
        self.fixed = ProxyFix(wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if _is_loopback(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        # Anyone else could write X-Forwarded-For themselves: ignore it.
        return self.plain(environ, start_response)


class SecureWhenHttps(SecureCookieSessionInterface):
    """Mark the session cookie Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def client_address() -> str:
    """Return the address of the client of this request (the proxy's X-Forwarded-For)."""
    return request.remote_addr or "unknown"


def is_kiosk(address: str) -> bool:
    """Tell whether an address is one of the booth's own screens (KIOSK_ADDRESSES)."""
    return address in current_app.config["KIOSK_ADDRESSES"].replace(",", " ").split()


def client_tag(address: str) -> str:
    """Return a stable pseudonym of a client address, for rows that outlive the request."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, address.encode(), hashlib.sha256).hexdigest()[:32]


def policy(endpoint: str | None, sandbox: bool) -> str:
    """Return the Content-Security-Policy of a page."""
    rules = dict(POLICY)
    if endpoint in STRIPE_JS_ENDPOINTS and not sandbox:
        for directive, sources in STRIPE_JS.items():
            own = rules[directive]
            rules[directive] = sources if own == "'none'" else f"{own} {sources}"
    return "; ".join(f"{directive} {sources}" for directive, sources in rules.items())


def add_headers(response: Response) -> Response:
    """Add the security headers to a response."""
    headers = response.headers
    headers.setdefault(
        "Content-Security-Policy", policy(request.endpoint, current_app.config["SANDBOX"])
    )
    headers.setdefault("X-Content-Type-Options", "nosniff")
    # For browsers that predate frame-ancestors.
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    return response


def _is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False
