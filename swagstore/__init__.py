"""Swagstore: sell swag at an event booth, with live stock and Stripe payments."""

from __future__ import annotations

import os
import secrets
import sqlite3
from datetime import timedelta
from typing import Any

from flask import Flask, current_app, has_request_context, request
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .models import READ_ONLY, db

DEFAULTS: dict[str, Any] = {
    "STRIPE_SECRET_KEY": None,
    "STRIPE_WEBHOOK_SECRET": None,
    # pk_test_… / pk_live_…: Stripe Elements needs it on the payment_intent card page.
    "STRIPE_PUBLISHABLE_KEY": None,
    "STRIPE_API_BASE": None,
    # Seconds per Stripe request, and the SDK's retries of a failed one (same idempotency key).
    "STRIPE_TIMEOUT": 20,
    "STRIPE_MAX_RETRIES": 2,
    # Raise on a Stripe call made while a database transaction is open (unset: on in TESTING).
    "STRIPE_CALL_GUARD": None,
    # Sandbox only: deliver its events to the webhook (SANDBOX_WEBHOOK_URL, else in process).
    "SANDBOX_DELIVER": True,
    "SANDBOX_WEBHOOK_URL": None,
    # Sandbox only: the SQLite file of its tables (default: sandbox.sqlite in the instance folder).
    "SANDBOX_DATABASE": None,
    "STORE_ID": "booth",
    "PURCHASE_MODE": "payment_link",
    "LINK_CAPTURE": "automatic",
    "PUBLIC_URL": None,
    "HOLD_SECONDS": 300,
    # Each client address may hold this many units at a time, and start this many holds a
    # minute (modes reserved_checkout and payment_intent).
    "HOLDS_PER_CLIENT": 4,
    "HOLDS_PER_CLIENT_PER_MINUTE": 6,
    "ADMIN_PASSWORD": None,
    # A staff login lasts this long at most (also the cookie's lifetime).
    "ADMIN_SESSION_HOURS": 12,
    # How money and times read on every page and in every command: a Babel locale, and the
    # booth's IANA time zone (None: this laptop's own).
    "LOCALE": "en_US",
    "TIMEZONE": None,
    # The background worker (`flask worker`): its sleep when a round found nothing to do,
    # and whether it runs the outbox (false leaves tasks and due holds to `run-tasks`).
    "WORKER_IDLE_SECONDS": 0.25,
    "WORKER_TASKS": True,
    # The outbox: a lease lapses only when its runner is gone; the backoff scale shortens
    # retries in tests.
    "TASK_LEASE_SECONDS": 120,
    "TASK_BACKOFF_SCALE": 1.0,
    # How Stripe events come in: auto (webhook when STRIPE_WEBHOOK_SECRET is set, else the
    # worker polls), webhook or poll. A poll every half second puts a sale on the kiosk
    # within about a second (bench/poll_latency.py); two requests a second is far below
    # Stripe's rate limits.
    "EVENT_SOURCE": "auto",
    "POLL_SECONDS": 0.5,
    # Webhook bodies are a few KiB; anything near a megabyte is abuse.
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    # CSRF is checked by the admin blueprint itself, so webhooks and the sandbox API are
    # unaffected; a token lives as long as the staff session (a booth page stays open all day).
    "WTF_CSRF_CHECK_DEFAULT": False,
    "WTF_CSRF_TIME_LIMIT": None,
}

SANDBOX_WARNING = (
    "SANDBOX MODE: no STRIPE_SECRET_KEY is set, so this store takes no real payments "
    "(its offline sandbox stands in for Stripe). To sell for real, set "
    "SWAGSTORE_STRIPE_SECRET_KEY (README: Running the booth)."
)
# A request by one of these only reads: its transaction never takes the write lock.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PURCHASE_MODES = ("payment_link", "reserved_checkout", "payment_intent")
LINK_CAPTURES = ("automatic", "manual")
EVENT_SOURCES = ("auto", "webhook", "poll")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Create and configure the Swagstore app."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder="../templates",
        static_folder="../static",
    )
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(
        DEFAULTS,
        SQLALCHEMY_DATABASE_URI="sqlite:///" + os.path.join(app.instance_path, "swagstore.sqlite"),
    )
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_prefixed_env("SWAGSTORE")
    else:
        app.config.from_mapping(test_config)
    _check_config(app)
    # No secret key means the offline sandbox stands in for Stripe.
    app.config["SANDBOX"] = not app.config["STRIPE_SECRET_KEY"]
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(app)

    if app.config["SANDBOX"]:
        # The sandbox's tables live in their own file (the "sandbox" bind); a live store has none.
        path = app.config["SANDBOX_DATABASE"] or os.path.join(app.instance_path, "sandbox.sqlite")
        app.config["SQLALCHEMY_BINDS"] = {
            **(app.config.get("SQLALCHEMY_BINDS") or {}),
            "sandbox": "sqlite:///" + os.path.abspath(path),
        }
    db.init_app(app)

    from . import cli, clock, errors, money, schema, security, stream

    schema.init_app(app)
    errors.init_app(app)
    security.init_app(app)
    money.init_app(app)
    clock.init_app(app)

    stream.init_app(app)
    cli.init_app(app)

    from .views import admin, api, kiosk, paid, shop, webhook

    admin.csrf.init_app(app)
    app.register_blueprint(admin.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(shop.bp)
    app.register_blueprint(paid.bp)
    app.register_blueprint(kiosk.bp)
    app.register_blueprint(webhook.bp)
    if app.config["SANDBOX"]:
        # Imported only here: with a key set the product never loads the sandbox.
        from . import sandbox

        sandbox.init_app(app)
        # Every process says so as it starts (web workers, the worker, each command): a
        # booth that forgot its key must not pass for one taking money.
        app.logger.warning(SANDBOX_WARNING)
    return app


def _check_config(app: Flask) -> None:
    """Refuse to start on a setting that would silently do the wrong thing."""
    mode = app.config["PURCHASE_MODE"]
    if mode not in PURCHASE_MODES:
        raise ValueError(f"PURCHASE_MODE must be one of {', '.join(PURCHASE_MODES)}, not {mode!r}")
    capture = app.config["LINK_CAPTURE"]
    if capture not in LINK_CAPTURES:
        raise ValueError(
            f"LINK_CAPTURE must be one of {', '.join(LINK_CAPTURES)}, not {capture!r}"
        )
    source = app.config["EVENT_SOURCE"]
    if source not in EVENT_SOURCES:
        raise ValueError(f"EVENT_SOURCE must be one of {', '.join(EVENT_SOURCES)}, not {source!r}")
    for key in ("HOLD_SECONDS", "HOLDS_PER_CLIENT", "HOLDS_PER_CLIENT_PER_MINUTE"):
        app.config[key] = int(app.config[key])
    hours = float(app.config["ADMIN_SESSION_HOURS"])
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=hours)
    live = bool(app.config["STRIPE_SECRET_KEY"])
    if mode == "payment_intent" and live and not app.config["STRIPE_PUBLISHABLE_KEY"]:
        raise ValueError(
            "PURCHASE_MODE payment_intent needs STRIPE_PUBLISHABLE_KEY for its card form"
        )
    for key in ("TASK_LEASE_SECONDS", "TASK_BACKOFF_SCALE", "POLL_SECONDS", "WORKER_IDLE_SECONDS"):
        app.config[key] = float(app.config[key])
    for key in ("SANDBOX_DELIVER", "WORKER_TASKS", "STRIPE_CALL_GUARD"):
        app.config[key] = _switch(key, app.config[key])


def _switch(key: str, value: Any) -> bool | None:
    """Read an on/off setting; an environment's `False` or `off` is not the truthy text."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{key} must be true or false, not {value!r}")


def _instance_secret(app: Flask) -> str:
    """Return this instance's session key, made once and kept out of the repository."""
    path = os.path.join(app.instance_path, "secret_key")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        # O_EXCL: two workers starting at once must agree on one key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            with open(path) as f:
                return f.read().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


@event.listens_for(Engine, "connect")
def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_on_begin) instead of pysqlite's guesswork.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; FULL makes a commit durable before we answer 2xx.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_on_begin(conn: Any) -> None:
    if conn.dialect.name != "sqlite":
        return
    options = conn.get_execution_options()
    read_only = bool(options.get("swagstore_read_only"))
    # query_only belongs to the pooled connection and outlives the transaction: set it
    # whenever it changes, so a read-only transaction cannot write and no other one is read-only.
    record = conn.connection.info
    if record.get("query_only", False) != read_only:
        conn.exec_driver_sql(f"PRAGMA query_only={int(read_only)}")
        record["query_only"] = read_only
    if options.get("isolation_level") == "AUTOCOMMIT":
        return
    # IMMEDIATE takes the write lock up front, so a transaction that reads and then writes
    # waits its turn (busy_timeout) instead of failing with SQLITE_BUSY on the upgrade. A
    # read-only one must never wait for that lock: DEFERRED, and in WAL it reads a snapshot.
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


@event.listens_for(Engine, "engine_connect")
def _read_only_when_reading(conn: Any) -> None:
    if has_request_context() and _reads_only():
        conn.execution_options(**READ_ONLY)


def _reads_only() -> bool:
    """Tell whether this request only reads: a GET whose view is not marked @writes.

    Every connection such a request opens is read-only, so it never waits for the write
    lock. The sandbox plays Stripe, whose GETs move its clock on (expiring sessions): it
    keeps its own transactions.
    """
    if request.method not in SAFE_METHODS or (request.blueprint or "").startswith("sandbox"):
        return False
    view = current_app.view_functions.get(request.endpoint or "")
    return not getattr(view, "writes", False)
