"""The offline sandbox: the Stripe API subset the app uses, its hosted pages and webhooks.

Mounted at /sandbox when no STRIPE_SECRET_KEY is set. It is a fake Stripe server written
with Flask and SQLAlchemy (it never imports `stripe`); the app reaches it through the real
SDK, so the gateway code is the same online and offline.
"""

from __future__ import annotations

from flask import Flask

from .delivery import signing_secret


def init_app(app: Flask) -> None:
    """Mount the sandbox on a sandbox-mode app; the worker delivers its events."""
    if not app.config["SANDBOX"]:
        return
    # The app verifies deliveries with it (payments.webhook_secret), never importing the sandbox.
    app.config["SANDBOX_WEBHOOK_SECRET"] = signing_secret(app.config)
    from . import api, pages

    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
