"""The sandbox alone: one Stripe account at the root of its own port, shared by several booths.

`flask --app swagstore sandbox --port P --db PATH` serves the sandbox's API (`/v1/…`), its
hosted pages and `/_control/*` at the root, exactly as the store's app mounts them under
/sandbox. Booths point at it with `SWAGSTORE_STRIPE_API_BASE=http://127.0.0.1:P` and any
`sk_test_` key: one account, so one Idempotency-Key space and one event stream. It
delivers events only to endpoints registered through `POST /v1/webhook_endpoints` (none:
booths poll), from a loop in this command's own process; it is not a store web process.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.serving import make_server

from ..models import db
from . import api, checkout, delivery, pages
from .models import create_tables

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"
# How often the loop looks for due deliveries and sessions to expire.
POLL_SECONDS = 0.2


def create_standalone_app(database: str, public_url: str | None = None) -> Flask:
    """Build the sandbox's own app on a SQLite file: the API and pages at the root."""
    app = Flask(__name__, template_folder=str(TEMPLATES))
    uri = "sqlite:///" + os.path.abspath(database)
    app.config.update(
        SANDBOX=True,
        SANDBOX_STANDALONE=True,
        SANDBOX_PREFIX="",
        PUBLIC_URL=public_url,
        SECRET_KEY=secrets.token_hex(16),
        SQLALCHEMY_DATABASE_URI=uri,
        SQLALCHEMY_BINDS={"sandbox": uri},
    )
    db.init_app(app)
    app.register_blueprint(api.bp, url_prefix="/v1")
    app.register_blueprint(pages.bp, url_prefix="")
    with app.app_context():
        create_tables()
    return app


def deliver_once(app: Flask) -> int:
    """Expire due sessions and try due deliveries once; return how many things happened."""
    with app.app_context():
        # No store webhook here: every delivery goes to a registered endpoint's URL.
        return checkout.expire_due_quietly() + delivery.deliver_due("", _nowhere)


def _nowhere(payload: bytes, headers: dict[str, str]) -> int:
    raise OSError("the standalone sandbox has no webhook of its own")


def serve(app: Flask, host: str, port: int, echo: Any = print) -> None:
    """Serve the app with threads and run the delivery loop here until SIGINT or SIGTERM."""
    server = make_server(host, port, app, threaded=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, name="sandbox-http", daemon=True).start()
    base = f"http://{host}:{server.server_port}"
    echo(f"Sandbox (one Stripe account) at {base}: booths set SWAGSTORE_STRIPE_API_BASE={base}")
    try:
        while not stop.is_set():
            try:
                deliver_once(app)
            except Exception:
                # A busy database must not end delivery for good.
                log.exception("sandbox delivery loop")
            stop.wait(POLL_SECONDS)
    finally:
        server.shutdown()
