"""Fixtures: an app on a real SQLite file, its client and CLI runner, and a live server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from swagstore import create_app
from swagstore.catalog import Item, load
from swagstore.cli import init_db
from swagstore.models import db

ROOT = Path(__file__).resolve().parent.parent
STORE = "booth"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "swagstore.sqlite"


@pytest.fixture
def app_config(db_path: Path) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}",
        "STORE_ID": STORE,
    }


@pytest.fixture
def app(app_config: dict):
    app = create_app(app_config)
    with app.app_context():
        init_db()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def make_item(sku: str = "tee-m", *, stock: int = 10, price: int = 2500, **fields) -> Item:
    """Build a valid catalog item; keyword arguments override its fields."""
    fields.setdefault("name", f"Item {sku}")
    fields.setdefault("currency", "usd")
    return Item(sku=sku, price=price, stock=stock, **fields)


def make_product(app, sku: str = "tee-m", *, stock: int = 10, store: str = STORE, **fields):
    """Add one product with its stock row to the database and commit."""
    with app.app_context():
        load([make_item(sku, stock=stock, **fields)], store)
        db.session.commit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The app under gunicorn in its own process group, as the booth runs it."""

    def __init__(self, env: dict[str, str], workers: int = 1, threads: int = 16) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.workers = workers
        self.threads = threads
        self.proc: subprocess.Popen | None = None

    def start(self) -> LiveServer:
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--access-logfile",
            "/dev/null",
            "wsgi:app",
        ]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return self
            # A worker still booting on a busy machine may accept and answer late.
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise RuntimeError("server did not become healthy in 30 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def kill(self) -> None:
        """Stop the server as a power cut would: SIGKILL to every process."""
        self.stop(signal.SIGKILL)


@pytest.fixture
def server_env(app_config: dict) -> dict[str, str]:
    """Environment that points a server process at this test's database."""
    return {
        "SWAGSTORE_" + key: str(value) for key, value in app_config.items() if key != "TESTING"
    }


@pytest.fixture
def live_server(app, server_env) -> Iterator[LiveServer]:
    server = LiveServer(server_env).start()
    yield server
    server.stop()


ADMIN_PASSWORD = "correct horse battery staple"


def csrf_from(html: str) -> str:
    """Return the CSRF token of the first form in an HTML page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def log_in(client, password: str = ADMIN_PASSWORD, name: str = "") -> str:
    """Log a Flask test client into /admin; return a CSRF token for its next forms."""
    token = csrf_from(client.get("/admin/login").text)
    response = client.post(
        "/admin/login", data={"csrf_token": token, "password": password, "name": name}
    )
    assert response.status_code == 303, response.text
    return csrf_from(client.get("/admin").text)


def log_in_http(base_url: str, password: str = ADMIN_PASSWORD) -> tuple[requests.Session, str]:
    """Log a new requests.Session into a running server's /admin; return it and a token."""
    http = requests.Session()
    token = csrf_from(http.get(base_url + "/admin/login", timeout=30).text)
    response = http.post(
        base_url + "/admin/login",
        data={"csrf_token": token, "password": password},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 303, response.text
    return http, csrf_from(http.get(base_url + "/admin", timeout=30).text)


class Sandbox:
    """A live server in sandbox mode, and what a test needs to play the visitor's phone.

    `url` is the server, `api_base` its Stripe API base (`<url>/sandbox`), also set as the
    in-process `app`'s STRIPE_API_BASE so `payments.gateway()` reaches it with the real SDK.
    Helpers answer the sandbox's JSON:
    - `open_session(link_id)` -> {"id", "url"}: a phone opening a payment link.
    - `pay(session, method="card")` -> the Checkout Session, paid (`session` is an id or its
      url; method "delayed" completes it unpaid, then `settle(session, "succeeded")`).
    - `confirm(intent_id, client_secret)` -> the PaymentIntent, authorized by the card form.
    - `fault(path_prefix, count, mode="error"|"timeout", seconds=...)`: next calls fail.
    - `ledger()` -> {"entries", "payment_intents": {pi: {action: {"count", "amount"}}}}.
    - `events(*types)` -> events newest first; `deliveries()` -> webhook delivery attempts.
    - `advance_clock(seconds)`: move the sandbox's time on (due sessions expire).
    - `api(method, path, **kw)`: a raw authenticated request to `<api_base>/v1/<path>`.
    """

    KEY = "sk_test_swagstore_sandbox"

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.url = server.url
        self.api_base = server.url + "/sandbox"

    def _post(self, path: str, **kwargs) -> dict:
        response = requests.post(
            self.url + path, headers={"Accept": "application/json"}, timeout=60, **kwargs
        )
        assert response.status_code < 300, (path, response.status_code, response.text)
        return response.json()

    def open_session(self, link_id: str) -> dict:
        return self._post(f"/sandbox/payment_links/{link_id}/sessions")

    def pay(self, session: str, method: str = "card") -> dict:
        session_id = session.rstrip("/").rsplit("/", 1)[-1]
        return self._post(f"/sandbox/checkout/{session_id}/pay", data={"method": method})

    def settle(self, session: str, outcome: str = "succeeded") -> dict:
        session_id = session.rstrip("/").rsplit("/", 1)[-1]
        return self._post(f"/sandbox/checkout/{session_id}/settle", data={"outcome": outcome})

    def confirm(self, intent_id: str, client_secret: str) -> dict:
        return self._post(
            f"/sandbox/payment_intents/{intent_id}/confirm", data={"client_secret": client_secret}
        )

    def fault(self, path_prefix: str, count: int = 1, mode: str = "error", seconds: float = 0):
        body = {"path_prefix": path_prefix, "count": count, "mode": mode, "seconds": seconds}
        return self._post("/sandbox/_control/faults", json=body)

    def ledger(self) -> dict:
        return requests.get(self.url + "/sandbox/_control/ledger", timeout=60).json()

    def deliveries(self) -> list[dict]:
        return requests.get(self.url + "/sandbox/_control/deliveries", timeout=60).json()[
            "deliveries"
        ]

    def advance_clock(self, seconds: float) -> dict:
        return self._post("/sandbox/_control/clock", json={"advance": seconds})

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.KEY}", **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.api_base}/v1/{path}", headers=headers, timeout=60, **kwargs
        )

    def events(self, *types: str) -> list[dict]:
        params = {"limit": 100, **{f"types[{n}]": t for n, t in enumerate(types)}}
        return self.api("GET", "events", params=params).json()["data"]


@pytest.fixture
def sandbox_env() -> dict[str, str]:
    """Extra SWAGSTORE_* settings for the sandbox server; override it in a test module.

    An override applies to every test of that module: e.g. SANDBOX_WEBHOOK_URL sends the
    events to a test receiver instead of the app's own /stripe/webhook.
    """
    return {}


@pytest.fixture
def sandbox(app, server_env, sandbox_env) -> Iterator[Sandbox]:
    """A live sandbox-mode server on this test's database; `app` talks to it over HTTP."""
    from swagstore import payments

    server = LiveServer({**server_env, **sandbox_env})
    server.env["SWAGSTORE_STRIPE_API_BASE"] = server.url + "/sandbox"
    server.start()
    app.config["STRIPE_API_BASE"] = server.url + "/sandbox"
    payments.close(app)
    try:
        yield Sandbox(server)
    finally:
        payments.close(app)
        server.stop()
